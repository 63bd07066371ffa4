"""Documents: creating, editing and reassigning them, and the queries their pages run.

Every save writes the document, a Revision (the text exactly as saved) and a queued
Autodoc (the writer's job for that text) in the caller's transaction, which commits once:
a failure anywhere leaves nothing behind. Each change is audited, and an editor who is
given a document is told so, in that same transaction. Edits use optimistic locking in the UPDATE
itself, so two saves based on the same version can never both win, whichever process
they run in. Functions here flush, never commit.
"""
from flask import abort, current_app
from sqlalchemy import func, select, true, update
from sqlalchemy.orm import Bundle, aliased, contains_eager, joinedload, selectinload

from ..extensions import db
from . import audit, comparisons, notifications, queue_signals, shadow_drafts
from .autodoc_queue import progress_of
from .pages import MAX_PAGE, paginate  # noqa: F401  (MAX_PAGE: re-exported; the lists here clamp to it)
from ..models import Autodoc, Document, Retention, Revision, User, Verdict
from ..static.data.processeddata.models import AUTODOC_STATUSES

TITLE_MAX_CHARS = Document.__table__.c.title.type.length
QUERY_MAX_CHARS = TITLE_MAX_CHARS  # a longer search could not match any title anyway
QUEUED = "queued"

# For each role: the retention column that ties its users to a document. Admins hold none.
_OWN = {"sponsor": Retention.sponsor_id, "editor": Retention.editor_id}


class DocumentError(Exception):
    """A change the rules refuse; its message is written for the person who asked."""


class InvalidDocument(DocumentError):
    """The title or body breaks a rule (required, too long)."""


class NoChanges(DocumentError):
    """The change would leave everything as it is, so nothing is written."""


class NotAnApprovedEditor(DocumentError):
    """The chosen editor is not an approved editor (unknown id, other role, pending...)."""


class EditConflict(DocumentError):
    """Someone saved the document since the editing user loaded it.

    `document` is the current, saved state, so the page can show it next to the text
    the user submitted (which is never silently thrown away or written over theirs).
    """

    def __init__(self, document):
        self.document = document
        super().__init__(
            f"This document was changed since you opened it: it is now at version {document.version}. "
            "Your text is kept below; review the current version and save again."
        )


# --- Text rules, shared by the forms and the service ---------------------------------

def clean_title(title):
    """The title as stored: surrounding spaces dropped. NUL characters, which PostgreSQL
    cannot store and no keyboard types, are removed wherever text comes in."""
    return (title or "").replace("\x00", "").strip()


def clean_body(body):
    """The body as stored: browsers send line breaks as CRLF; keep one form, "\\n", so a
    revision is exactly what was saved and lengths count what the user sees."""
    return (body or "").replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def title_error(title):
    """The problem with a cleaned title, or None."""
    if not title:
        return "Title is required."
    if len(title) > TITLE_MAX_CHARS:
        return f"Title is too long ({len(title):,} characters; at most {TITLE_MAX_CHARS:,})."
    return None


def body_error(body):
    """The problem with a cleaned body, or None. An empty body is allowed."""
    limit = current_app.config["DOCUMENT_BODY_MAX_CHARS"]
    if len(body) > limit:
        return f"Body is too long ({len(body):,} characters; at most {limit:,})."
    return None


def _checked_text(title, body):
    title, body = clean_title(title), clean_body(body)
    problem = title_error(title) or body_error(body)
    if problem:
        raise InvalidDocument(problem)
    return title, body


def clean_query(q):
    """A search string safe to run: trimmed, without NUL, at most QUERY_MAX_CHARS long."""
    return (q or "").replace("\x00", "").strip()[:QUERY_MAX_CHARS]


# --- Editors ----------------------------------------------------------------------------

def approved_editors():
    """The editors a document can be given to, by name: the choices of every editor field."""
    return db.session.scalars(
        select(User)
        .where(User.role == "editor", User.status == "approved")
        .order_by(func.lower(User.name), User.id)
    ).all()


def _approved_editor(editor_id):
    editor = db.session.scalar(
        select(User).where(User.id == editor_id, User.role == "editor", User.status == "approved")
    )
    if editor is None:
        raise NotAnApprovedEditor("Choose one of the approved editors.")
    return editor


# --- Changes ----------------------------------------------------------------------------

def _queue_revision(document_id, version, title, body, saved_by):
    """The revision a save leaves and the writer's job for it."""
    revision = Revision(document_id=document_id, version=version, title=title, body=body, saved_by_id=saved_by.id)
    autodoc = Autodoc(status=QUEUED)
    revision.autodocs.append(autodoc)
    db.session.add(revision)
    shadow_drafts.queue_for(autodoc)
    queue_signals.announce_queued()  # delivered when the save commits: an idle writer claims it at once
    return revision


def create_document(sponsor, editor_id, title, body):
    """Create a document owned by `sponsor` and assigned to an approved editor, with its
    first revision and a queued autodoc. Raises InvalidDocument or NotAnApprovedEditor
    before writing anything."""
    title, body = _checked_text(title, body)
    editor = _approved_editor(editor_id)
    document = Document(title=title, body=body, version=1)
    document.retention = Retention(sponsor_id=sponsor.id, editor_id=editor.id)
    db.session.add(document)
    db.session.flush()
    _queue_revision(document.id, document.version, title, body, sponsor)
    db.session.flush()
    audit.record(sponsor, "document.create", "document", document.id, title=title, editor_id=editor.id,
                 editor=editor.name)
    notifications.document_assigned(document, editor, sponsor)
    return document


def update_document(document, expected_version, title, body, saved_by):
    """Save a new version of `document` based on `expected_version`, with its revision
    and a queued autodoc.

    Raises NoChanges when title and body equal the version the user started from,
    EditConflict when the document is no longer at `expected_version` (checked by the
    UPDATE itself: a concurrent save holds the row until it commits, after which this
    one matches no row), InvalidDocument for bad text. Nothing is written in any of these.
    """
    title, body = _checked_text(title, body)
    if document.version == expected_version and (title, body) == (document.title, document.body):
        raise NoChanges(f"No changes to save: the title and body are the same as in version {document.version}.")
    saved = db.session.execute(
        update(Document)
        .where(Document.id == document.id, Document.version == expected_version)
        .values(title=title, body=body, version=Document.version + 1, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    # The row changed behind the ORM's back (or, on a conflict, someone else changed it):
    # reload what is now saved.
    db.session.refresh(document)
    if saved.rowcount != 1:
        raise EditConflict(document)
    db.session.execute(
        update(Retention).where(Retention.document_id == document.id)
        .values(document_updated_at=document.updated_at).execution_options(synchronize_session=False)
    )
    _queue_revision(document.id, document.version, title, body, saved_by)
    db.session.flush()
    audit.record(saved_by, "document.edit", "document", document.id, title=title, version=document.version)
    return document


def reassign_editor(document, editor_id, actor):
    """Give `document` to another approved editor. Only its sponsor may do this.
    Raises NotAnApprovedEditor, NoChanges (already that editor) or DocumentError."""
    retention = document.retention
    if actor.id != retention.sponsor_id:
        raise DocumentError("Only the document's sponsor can change its editor.")
    editor = _approved_editor(editor_id)
    if editor.id == retention.editor_id:
        raise NoChanges(f"{editor.name} is already this document's editor.")
    previous = retention.editor
    retention.editor = editor
    retention.assigned_at = func.now()
    db.session.flush()
    audit.record(actor, "document.reassign_editor", "document", document.id, title=document.title,
                 from_editor_id=previous.id, from_editor=previous.name, editor_id=editor.id, editor=editor.name)
    notifications.document_assigned(document, editor, actor)
    return editor


# --- Reading ----------------------------------------------------------------------------

def get_document_or_404(document_id, user, archived=False):
    """The document if `user` is its sponsor or its assigned editor, with its retention,
    sponsor and editor loaded; 404 for everyone else, so that existence is not revealed.
    An archived document answers 404 too, unless `archived` (its sponsor's page of it, and
    the restore): it is out of every list, and out of reach for edits, reviews and regenerates."""
    own = _OWN.get(user.role)
    if own is None:
        abort(404)
    document = db.session.scalar(
        select(Document)
        .join(Document.retention)
        .where(Document.id == document_id, own == user.id)
        .where(true() if archived else Retention.archived_at.is_(None))
        .options(
            contains_eager(Document.retention).joinedload(Retention.sponsor),
            contains_eager(Document.retention).joinedload(Retention.editor),
        )
    )
    if document is None:
        abort(404)
    return document


def get_any_document_or_404(document_id):
    """Any document, for the admin's read-only pages, loaded like get_document_or_404's."""
    document = db.session.get(
        Document, document_id,
        options=[joinedload(Document.retention).joinedload(Retention.sponsor),
                 joinedload(Document.retention).joinedload(Retention.editor)],
    )
    if document is None:
        abort(404)
    return document


def get_autodoc_or_404(autodoc_id, user):
    """An autodoc with its revision, for the document's sponsor and editor and for admins;
    404 for everyone else, as for the document itself."""
    autodoc = db.session.get(Autodoc, autodoc_id, options=[joinedload(Autodoc.revision)])
    if autodoc is None:
        abort(404)
    if user.role != "admin":
        get_document_or_404(autodoc.revision.document_id, user)
    return autodoc


# Revisions per page of a document's history: a document saved hundreds of times must
# not make its page render hundreds of texts and autodocs (bench/RESULTS.md).
HISTORY_PAGE_SIZE = 20


def _revisions_of(document):
    """The document's revisions, newest first, with their savers and autodocs, and each
    autodoc's current verdict and its editor (2 queries)."""
    return (
        select(Revision)
        .where(Revision.document_id == document.id)
        .options(joinedload(Revision.saved_by),
                 selectinload(Revision.autodocs).joinedload(Autodoc.current_verdict).joinedload(Verdict.editor))
        .order_by(Revision.version.desc())
    )


def document_revisions(document, page=1):
    """One page of the document's revisions (HISTORY_PAGE_SIZE, newest first, loaded as
    _revisions_of does): each carries its full text, so a long history is never sent or
    rendered whole (the API's list, and the document page's history)."""
    return paginate(_revisions_of(document), page, HISTORY_PAGE_SIZE)


def document_history(document, page=1):
    """One page of the document's revisions (document_revisions) and {autodoc id:
    Progress} for the queued autodocs on it: what a document page shows, in five queries
    however long the history."""
    history = document_revisions(document, page)
    autodocs = [autodoc for revision in history.items for autodoc in revision.autodocs]
    return history, progress_of(autodocs, current_app.config["WRITER_BATCH_SIZE"])


def history_page_of(document, version):
    """The page of the document's history that shows `version`."""
    return (document.version - version) // HISTORY_PAGE_SIZE + 1


def autodoc_state(autodoc, reader):
    """The live state of one autodoc (loaded by get_autodoc_or_404) as `reader` may see it,
    as plain values: what the API's GET /api/v1/autodocs/<id> answers and what the pages'
    polling endpoint renders, so both read one source of truth. `withheld`: the text is one
    of the drafts of a blind comparison waiting for the reader (comparisons.withheld_texts),
    and the continuation is None. Two queries for a queued autodoc (its place in the queue
    and the recent pace), two for a written one (the model that wrote it; what is withheld)."""
    progress = progress_of([autodoc], current_app.config["WRITER_BATCH_SIZE"]).get(autodoc.id)
    withheld = autodoc.id in comparisons.withheld_texts([autodoc], reader)
    revision = autodoc.revision
    return {
        "id": autodoc.id,
        "document_id": revision.document_id,
        "revision_version": revision.version,
        "generation": autodoc.generation,
        "status": autodoc.status,
        "stale": autodoc.stale,
        "position": progress.position if progress else None,
        "eta_seconds": progress.eta_seconds if progress else None,
        "prompt": autodoc.prompt,
        "continuation": None if withheld else autodoc.continuation,
        "withheld": withheld,
        "error": autodoc.error,
        "stamp": autodoc.stamp,
        "model": {"id": autodoc.model.id, "label": autodoc.model.label} if autodoc.model_id else None,
        "queued_at": autodoc.queued_at,
        "started_at": autodoc.started_at,
        "finished_at": autodoc.finished_at,
        "progress": progress,
    }


def _latest_autodoc(column):
    """`column` of the newest autodoc of the document's current revision (the revision whose
    version is the document's), as a correlated subquery: one query for a whole page."""
    return (
        select(column)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .where(Revision.document_id == Document.id, Revision.version == Document.version)
        .order_by(Autodoc.generation.desc())
        .limit(1)
        .correlate(Document)
        .scalar_subquery()
    )


def _latest_verdict(column):
    """`column` of the current verdict on the autodoc _latest_autodoc names (NULL while it
    has none), as a correlated subquery too."""
    return (
        select(column)
        .where(Verdict.current, Verdict.autodoc_id == _latest_autodoc(Autodoc.id))
        .correlate(Document)
        .scalar_subquery()
    )


# The two users a list row names.
_SPONSOR, _EDITOR = aliased(User), aliased(User)


def _documents_of(user, q, page, per_page, archived=False):
    """A page of document rows: every document for an admin (user None), else the ones
    the user holds in their role; the ones not archived, or only the archived ones.

    The page's ids are chosen first and the rows' columns computed for those ids only:
    PostgreSQL evaluates the latest-autodoc and verdict subqueries for every row it sorts,
    so one query over a sponsor's five thousand documents took half a second for the last
    page (bench/RESULTS.md, "Load at scale"). The ids come from the retentions alone, in
    the order of an index that starts with the sponsor or editor (see Retention); the
    documents are joined only for a title search. Three queries: count, ids, rows."""
    order = (Retention.document_updated_at.desc(), Retention.document_id.desc())
    # Spelled out in the query for the planner to use the partial indexes (see Retention).
    ids = select(Retention.document_id).order_by(*order).where(
        Retention.archived_at.is_not(None) if archived else Retention.archived_at.is_(None))
    if user is not None:
        ids = ids.where(_OWN[user.role] == user.id)
    q = clean_query(q)
    if q:
        ids = ids.join(Document, Document.id == Retention.document_id).where(
            Document.title.icontains(q, autoescape=True))
    pagination = paginate(ids, page, per_page)
    if pagination.items:
        pagination.items = db.session.scalars(
            select(_document_row()).select_from(Document)
            .join(Retention, Retention.document_id == Document.id)
            .join(_SPONSOR, _SPONSOR.id == Retention.sponsor_id).join(_EDITOR, _EDITOR.id == Retention.editor_id)
            .where(Document.id.in_(pagination.items)).order_by(*order)
        ).all()
    return pagination


def _document_row():
    """The columns of one row of a document list: a Bundle of columns, not the Document
    entity, since a list needs neither the bodies nor one query per row."""
    return Bundle(
        "row",
        Document.id,
        Document.title,
        Document.version,
        Document.updated_at,
        _SPONSOR.name.label("sponsor_name"),
        _EDITOR.name.label("editor_name"),
        _latest_autodoc(Autodoc.status).label("autodoc_status"),
        _latest_autodoc(Autodoc.id).label("autodoc_id"),
        _latest_verdict(Verdict.decision).label("verdict"),
        _latest_verdict(Verdict.comment).label("verdict_comment"),
    )


def sponsor_documents(sponsor, q="", page=1, per_page=None, archived=False):
    """The sponsor's documents, newest change first, optionally filtered by a title search
    (case-insensitive): a pagination of rows with id, title, version, updated_at,
    sponsor_name, editor_name, and the status, verdict and verdict_comment of the current
    version's newest autodoc. Three queries whatever the number of documents. The archived
    ones only with `archived`, and then only them."""
    return _documents_of(sponsor, q, page, per_page, archived)


def editor_documents(editor, q="", page=1, per_page=None):
    """The documents assigned to the editor, like sponsor_documents."""
    return _documents_of(editor, q, page, per_page)


def all_documents(q="", page=1, per_page=None, archived=False):
    """Every document, for the admin, like sponsor_documents."""
    return _documents_of(None, q, page, per_page, archived)


def autodoc_counts(user):
    """How many autodocs of the user's documents (every revision's, archived documents
    aside) are in each status."""
    own = _OWN[user.role]
    counts = dict.fromkeys(AUTODOC_STATUSES, 0)
    counts.update(
        db.session.execute(
            select(Autodoc.status, func.count())
            .join(Revision, Revision.id == Autodoc.revision_id)
            .join(Retention, Retention.document_id == Revision.document_id)
            .where(own == user.id, Retention.archived_at.is_(None))
            .group_by(Autodoc.status)
        ).all()
    )
    return counts
