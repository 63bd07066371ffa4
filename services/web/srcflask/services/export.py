"""A sponsor's data to take away: every document of theirs (archived ones too), with all its
revisions, every autodoc of each revision and every verdict on each autodoc, as one JSON
document (the README, "Accounts and email", gives its schema).

However much a sponsor holds, it is streamed in constant memory: one query joins documents,
revisions, autodocs and verdicts in the order the JSON nests them, and rows come from a
server-side cursor EXPORT_BATCH at a time (as the admin's export of reviews does); the
nesting is written as the rows go by, opening and closing each object when its key changes,
so no document is ever held whole.
"""
import datetime as dt
import json

from flask import Response, stream_with_context
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Document, Retention, User, Verdict
from ..static.data.processeddata.models import Autodoc, Revision
from .reviews import EXPORT_BATCH

FORMAT = "srcflask-export"
FORMAT_VERSION = 1
# The response is sent in pieces of about this size rather than one per row.
CHUNK_CHARS = 64 * 1024
# The lists each level of the nesting holds: a document's revisions, a revision's autodocs,
# an autodoc's verdicts.
CHILDREN = ("revisions", "autodocs", "verdicts")


def streamed_download(pieces, name, extension, content_type):
    """A file download streamed from `pieces` (strings), named `<name>-<today>.<extension>`:
    every export answers this way (this one, the reviews' and the training data's). Never
    cached: what it holds is people's writing and it changes with every review."""
    filename = f"{name}-{dt.date.today().isoformat()}.{extension}"
    return Response(stream_with_context(pieces), content_type=content_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


def attachment(sponsor):
    """The download of `sponsor`'s data: the one answer the account page's link and the
    API's GET /me/export both give."""
    return streamed_download(export_chunks(sponsor), f"srcflask-export-{sponsor.id}", "json", "application/json")


def export_chunks(sponsor):
    """`sponsor`'s data as pieces of one JSON document, in order."""
    buffer, size = [], 0
    for piece in _pieces(sponsor):
        buffer.append(piece)
        size += len(piece)
        if size >= CHUNK_CHARS:
            yield "".join(buffer)
            buffer, size = [], 0
    yield "".join(buffer)


def _pieces(sponsor):
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": db.session.scalar(select(func.now())),
        "account": {"id": sponsor.id, "name": sponsor.name, "email": sponsor.email,
                    "organization": sponsor.organization, "role": sponsor.role, "created_at": sponsor.created_at},
    }
    yield _opening(header, "documents")
    written = [0, 0, 0, 0]  # items so far in the list open at each level (documents ... verdicts)
    open_keys = []  # the document, revision and autodoc whose objects are open
    for row in _rows(sponsor):
        keys = [row.document_id, row.revision_id, row.autodoc_id]
        keys = keys[:keys.index(None)] if None in keys else keys
        same = 0
        while same < min(len(open_keys), len(keys)) and open_keys[same] == keys[same]:
            same += 1
        while len(open_keys) > same:
            open_keys.pop()
            yield "]}"
        for level in range(same, len(keys)):
            yield ("," if written[level] else "") + _opening(_LEVELS[level](row), CHILDREN[level])
            written[level] += 1
            written[level + 1] = 0
            open_keys.append(keys[level])
        if row.verdict_decision is not None:
            yield ("," if written[3] else "") + _json(_verdict(row))
            written[3] += 1
    yield "]}" * len(open_keys) + "]}\n"


_EDITOR, _SAVER, _JUDGE = aliased(User), aliased(User), aliased(User)


def _rows(sponsor):
    """One row per verdict (or per autodoc without one, or revision without an autodoc) of
    the sponsor's documents, in nesting order, from a server-side cursor."""
    return db.session.execute(
        select(
            Document.id.label("document_id"), Document.title.label("document_title"),
            Document.version.label("document_version"), Document.created_at.label("document_created_at"),
            Document.updated_at.label("document_updated_at"), Retention.archived_at, Retention.editor_id,
            _EDITOR.name.label("editor_name"),
            Revision.id.label("revision_id"), Revision.version, Revision.title, Revision.body, Revision.saved_at,
            _SAVER.name.label("saved_by"),
            Autodoc.id.label("autodoc_id"), Autodoc.generation, Autodoc.status, Autodoc.prompt, Autodoc.continuation,
            Autodoc.error, Autodoc.stamp, Autodoc.queued_at, Autodoc.started_at, Autodoc.finished_at,
            Verdict.decision.label("verdict_decision"), Verdict.comment.label("verdict_comment"),
            Verdict.correction.label("verdict_correction"),
            Verdict.created_at.label("verdict_at"), Verdict.current.label("verdict_current"),
            _JUDGE.name.label("verdict_editor"),
        )
        .select_from(Retention)
        .join(Document, Document.id == Retention.document_id)
        .join(_EDITOR, _EDITOR.id == Retention.editor_id)
        .join(Revision, Revision.document_id == Document.id)
        .join(_SAVER, _SAVER.id == Revision.saved_by_id)
        .outerjoin(Autodoc, Autodoc.revision_id == Revision.id)
        .outerjoin(Verdict, Verdict.autodoc_id == Autodoc.id)
        .outerjoin(_JUDGE, _JUDGE.id == Verdict.editor_id)
        .where(Retention.sponsor_id == sponsor.id)
        .order_by(Document.id, Revision.version, Autodoc.generation, Verdict.created_at, Verdict.id)
        .execution_options(yield_per=EXPORT_BATCH)
    )


def _document(row):
    return {"id": row.document_id, "title": row.document_title, "version": row.document_version,
            "created_at": row.document_created_at, "updated_at": row.document_updated_at,
            "archived_at": row.archived_at, "editor": {"id": row.editor_id, "name": row.editor_name}}


def _revision(row):
    return {"version": row.version, "title": row.title, "body": row.body, "saved_at": row.saved_at,
            "saved_by": row.saved_by}


def _autodoc(row):
    return {"id": row.autodoc_id, "generation": row.generation, "status": row.status, "prompt": row.prompt,
            "continuation": row.continuation, "error": row.error, "stamp": row.stamp, "queued_at": row.queued_at,
            "started_at": row.started_at, "finished_at": row.finished_at}


def _verdict(row):
    return {"decision": row.verdict_decision, "comment": row.verdict_comment, "correction": row.verdict_correction,
            "editor": row.verdict_editor, "given_at": row.verdict_at, "current": row.verdict_current}


_LEVELS = (_document, _revision, _autodoc)


def _opening(fields, children):
    """An object's fields and the opening of its list of `children`: '{..., "children": ['."""
    return _json(fields)[:-1] + f', "{children}": ['


def _json(value):
    return json.dumps(value, ensure_ascii=False, default=dt.datetime.isoformat)
