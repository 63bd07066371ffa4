"""Editors' reviews of autodocs: the queue, verdicts, what a review page compares, and
the export of reviewed autodocs.

A verdict is given on one autodoc, so it is tied to the exact text the writer wrote and,
through the autodoc, to the exact revision that text was written from. An autodoc is
stale once its document was saved again (its revision's version is below the document's):
derived, never stored. A stale autodoc may be sent back or rejected, never approved.
A new verdict on the same autodoc replaces the current one and keeps it as history.
Sending back or rejecting may come with a correction: the writer's continuation as the
editor says it should have read, kept on the verdict (so tied to that exact autodoc and
revision), shown to the sponsor as a word diff, and taken by training sets as the target.
Functions here flush, never commit: the caller commits once.
"""
import json
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Bundle, aliased, joinedload

from ..extensions import db
from ..models import DECISIONS, Document, Retention, User, Verdict, WriterModel
from ..static.data.processeddata.models import Autodoc, Revision
from . import audit, comparisons, notifications
from .pages import paginate
from .worddiff import word_diff

DECISION_LABELS = {"approve": "Approved", "request_changes": "Changes requested", "reject": "Rejected"}
COMMENT_MAX_CHARS = 5000
COMMENT_REQUIRED = "Say what should change: a comment is required to request changes or to reject."
EXPORT_BATCH = 500


class ReviewError(Exception):
    """A verdict the rules refuse; its message is written for the person who asked."""


class InvalidVerdict(ReviewError):
    """An unknown decision, or a missing or too long comment."""


class InvalidCorrection(InvalidVerdict):
    """A correction that is empty, the writer's text unchanged, too long, or given with an approval."""


class NotReviewable(ReviewError):
    """The autodoc has no text to judge yet (queued, being written, or failed)."""


class NotTheEditor(ReviewError):
    """Only the document's assigned editor gives verdicts on its autodocs."""


class StaleApproval(ReviewError):
    """The document changed after this autodoc was written: approving it would approve text
    written from words the document no longer has. `newest_autodoc_id` is the one to
    review instead."""

    def __init__(self, version, current_version, newest_autodoc_id):
        self.newest_autodoc_id = newest_autodoc_id
        super().__init__(
            f"This autodoc was written from version {version}, but the document is now at version "
            f"{current_version}, so it cannot be approved. You can still request changes or reject it; "
            "to approve, review the newest autodoc."
        )


def comment_error(decision, comment):
    """Why `comment` cannot go with `decision`, or None (the form and the service share it)."""
    comment = (comment or "").strip()
    if decision != "approve" and not comment:
        return COMMENT_REQUIRED
    if len(comment) > COMMENT_MAX_CHARS:
        return f"The comment is too long ({len(comment):,} characters; at most {COMMENT_MAX_CHARS:,})."
    return None


def correction_error(decision, correction, written):
    """Why `correction` (cleaned: documents.clean_body) cannot go with `decision` on an autodoc whose
    continuation is `written`, or None; a correction of None is no correction (the form
    and the service share it)."""
    if correction is None:
        return None
    if decision == "approve":
        return "A correction goes with requesting changes or rejecting: approving keeps the writer's text as it is."
    if not correction.strip():
        return "The correction is empty: write the text as it should have read, or leave the correction out."
    if correction.strip() == (written or "").strip():
        return "The correction is the writer's text unchanged: change it, or leave the correction out."
    limit = current_app.config["DOCUMENT_BODY_MAX_CHARS"]
    if len(correction) > limit:
        return f"The correction is too long ({len(correction):,} characters; at most {limit:,})."
    return None


# --- the queue ------------------------------------------------------------------------------

def _awaiting_verdict():
    """The condition on Autodoc that it waits for a verdict: written, with no current one."""
    reviewed = select(Verdict.id).where(Verdict.autodoc_id == Autodoc.id, Verdict.current)
    return and_(Autodoc.status == "done", ~reviewed.exists())


def autodoc_written(autodoc_id):
    """One more written autodoc waits for its document's editor: the kept count
    (Retention.awaiting_review) goes up in the writer's transaction that wrote it. Its other
    changes are here too: give_verdict takes one off, recount_awaiting_reviews mends it."""
    document_id = (
        select(Revision.document_id).join(Autodoc, Autodoc.revision_id == Revision.id)
        .where(Autodoc.id == autodoc_id).scalar_subquery()
    )
    db.session.execute(
        update(Retention).where(Retention.document_id == document_id)
        .values(awaiting_review=Retention.awaiting_review + 1)
    )


def awaiting_review_count(editor):
    """How many autodocs wait for the editor's verdict, as a scalar subquery (the navigation
    asks for it with its other counts, in one query per page): the sum of the kept counts
    of the editor's documents (Retention.awaiting_review), one index entry per document
    with something waiting rather than a row per waiting autodoc. Archived documents keep
    their counts but are left out, as from the queue itself."""
    return (
        select(func.coalesce(func.sum(Retention.awaiting_review), 0))
        .where(Retention.editor_id == editor.id, Retention.awaiting_review > 0, Retention.archived_at.is_(None))
        .scalar_subquery()
    )


def review_queue(editor, page=1, per_page=None):
    """The autodocs waiting for the editor's verdict, oldest first: a pagination of rows
    with autodoc_id, generation, finished_at, document_id, title, version, sponsor_name
    and stale. Two queries whatever their number: the page's rows, and its total from
    the kept counts rather than from counting the rows."""
    sponsor = aliased(User)
    row = Bundle(
        "row",
        Autodoc.id.label("autodoc_id"),
        Autodoc.generation,
        Autodoc.finished_at,
        Document.id.label("document_id"),
        Document.title,
        Revision.version,
        sponsor.name.label("sponsor_name"),
        (Revision.version < Document.version).label("stale"),
    )
    stmt = (
        select(row)
        .select_from(Autodoc)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Retention, Retention.document_id == Revision.document_id)
        .where(Retention.editor_id == editor.id, Retention.archived_at.is_(None), _awaiting_verdict())
        .join(Document, Document.id == Revision.document_id)
        .join(sponsor, sponsor.id == Retention.sponsor_id)
        .order_by(Autodoc.finished_at, Autodoc.id)
    )
    return paginate(stmt, page, per_page, total=db.session.scalar(select(awaiting_review_count(editor))))


def recount_awaiting_reviews():
    """Set every document's Retention.awaiting_review to what its autodocs and verdicts say
    now, and return the ids of the documents whose kept count was wrong (none, unless rows
    were changed behind the services' back: `flask reviews recount` mends that)."""
    return db.session.scalars(recount_awaiting_reviews_statement()).all()


def recount_awaiting_reviews_statement():
    """The UPDATE behind recount_awaiting_reviews, RETURNING the mended documents' ids (the
    benchmarks' data generator runs it too, after writing autodocs and verdicts in bulk)."""
    waiting = (
        select(func.count()).select_from(Autodoc)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .where(Revision.document_id == Retention.document_id, _awaiting_verdict())
        .scalar_subquery()
    )
    return (
        update(Retention).where(Retention.awaiting_review != waiting).values(awaiting_review=waiting)
        .returning(Retention.document_id).execution_options(synchronize_session=False)
    )


# --- verdicts -------------------------------------------------------------------------------

def newest_autodoc_id(document_id):
    """The newest attempt at the autodoc of the document's current version."""
    return db.session.scalar(
        select(Autodoc.id)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Document, Document.id == Revision.document_id)
        .where(Document.id == document_id, Revision.version == Document.version)
        .order_by(Autodoc.generation.desc())
        .limit(1)
    )


def give_verdict(autodoc, editor, decision, comment, correction=None):
    """Record `editor`'s verdict on `autodoc`, replacing its current one (kept as history),
    audit it and tell the sponsor. `correction` (None: none) is the continuation as it
    should have read, cleaned by the form or the API as a body is (documents.clean_body,
    which this module cannot import: documents → shadow_drafts → autodoc_queue → reviews)
    and kept as written, its leading space too: it joins the prompt as the writer's text
    does. Raises InvalidVerdict (InvalidCorrection), NotReviewable, NotTheEditor or
    StaleApproval before writing anything."""
    if decision not in DECISIONS:
        raise InvalidVerdict("Choose approve, request changes or reject.")
    problem = comment_error(decision, comment)
    if problem:
        raise InvalidVerdict(problem)
    problem = correction_error(decision, correction, autodoc.continuation)
    if problem:
        raise InvalidCorrection(problem)
    # Verdicts on one autodoc are taken one after the other, and the document cannot be
    # saved between the staleness check and the commit (an edit waits for this share lock).
    db.session.execute(select(Autodoc.id).where(Autodoc.id == autodoc.id).with_for_update())
    current_version = db.session.scalar(
        select(Document.version).where(Document.id == autodoc.revision.document_id).with_for_update(read=True)
    )
    if autodoc.status != "done":
        raise NotReviewable(f"This autodoc is {autodoc.status}: there is no text to review yet.")
    document = autodoc.revision.document
    if document.retention.editor_id != editor.id:
        raise NotTheEditor("Only the document's editor can review its autodocs.")
    version = autodoc.revision.version
    stale = version < current_version
    if stale and decision == "approve":
        raise StaleApproval(version, current_version, newest_autodoc_id(document.id))
    replaced = db.session.scalar(
        update(Verdict).where(Verdict.autodoc_id == autodoc.id, Verdict.current)
        .values(current=False).returning(Verdict.id)
    )
    if replaced is None:  # its first verdict: one fewer waits for the editor
        db.session.execute(
            update(Retention).where(Retention.document_id == document.id)
            .values(awaiting_review=Retention.awaiting_review - 1)
        )
    verdict = Verdict(autodoc_id=autodoc.id, editor_id=editor.id, decision=decision, comment=(comment or "").strip(),
                      correction=correction)
    db.session.add(verdict)
    db.session.flush()
    audit.record(editor, f"verdict.{decision}", "autodoc", autodoc.id, verdict_id=verdict.id,
                 document_id=document.id, title=document.title, version=version,
                 generation=autodoc.generation, stale=stale, comment=verdict.comment, replaces=replaced,
                 has_correction=correction is not None)
    notifications.autodoc_reviewed(editor, verdict, autodoc, document)
    return verdict


# --- the review page ------------------------------------------------------------------------

@dataclass(frozen=True)
class Review:
    """Everything a review page shows about one autodoc."""

    autodoc: Autodoc
    document: Document
    stale: bool
    newest_autodoc_id: int | None
    previous_revision: Revision | None
    previous_autodoc: Autodoc | None  # the previous revision's newest written autodoc
    # The previous autodoc's text is withheld from the editor: its own blind pair waits.
    previous_withheld: bool
    # word_diff segments; None when there is nothing to compare with (a first version,
    # no written autodoc on one side, or the previous one withheld)
    title_diff: list | None
    body_diff: list | None
    autodoc_diff: list | None
    verdicts: list  # every verdict on the autodoc, newest (the current one) first
    # The editor's blind comparison (comparisons.BlindPair, or the Revealed choice), or None.
    # While it is blind, the page shows neither the autodoc's text nor anything made from it.
    comparison: "comparisons.BlindPair | comparisons.Revealed | None"

    @property
    def blind(self):
        return self.comparison is not None and self.comparison.blind


def review_of(autodoc, document, editor=None):
    """The review page of `autodoc` (of `document`, loaded by the caller's access check),
    for `editor` (None: an admin's read-only page, without comparisons): four queries, and
    up to three for the editor's comparison."""
    revision = autodoc.revision
    previous = db.session.scalar(
        select(Revision).where(Revision.document_id == document.id, Revision.version == revision.version - 1)
    )
    previous_autodoc = None
    if previous is not None:
        previous_autodoc = db.session.scalar(
            select(Autodoc).where(Autodoc.revision_id == previous.id, Autodoc.status == "done")
            .order_by(Autodoc.generation.desc()).limit(1)
        )
    verdicts = db.session.scalars(
        select(Verdict).where(Verdict.autodoc_id == autodoc.id).options(joinedload(Verdict.editor))
        .order_by(Verdict.created_at.desc(), Verdict.id.desc())
    ).all()
    stale = revision.version < document.version
    previous_withheld = previous_autodoc is not None and \
        previous_autodoc.id in comparisons.withheld_texts([previous_autodoc], editor)
    comparable = autodoc.status == "done" and previous_autodoc is not None and not previous_withheld
    return Review(
        autodoc=autodoc,
        document=document,
        stale=stale,
        newest_autodoc_id=newest_autodoc_id(document.id) if stale else autodoc.id,
        previous_revision=previous,
        previous_autodoc=previous_autodoc,
        previous_withheld=previous_withheld,
        title_diff=word_diff(previous.title, revision.title) if previous else None,
        body_diff=word_diff(previous.body, revision.body) if previous else None,
        autodoc_diff=word_diff(previous_autodoc.continuation, autodoc.continuation) if comparable else None,
        verdicts=verdicts,
        comparison=comparisons.for_review(autodoc, editor) if editor is not None else None,
    )


# --- evaluation data ------------------------------------------------------------------------

def export_lines():
    """Every reviewed autodoc (one with a current verdict) as a line of JSON, oldest verdict
    first: the revision's text, the prompt and continuation, the generation stamp and the
    verdict. Rows are fetched EXPORT_BATCH at a time from a server-side cursor, so an
    export of any size holds one batch in memory."""
    editor = aliased(User)
    rows = db.session.execute(
        select(
            Autodoc.id, Autodoc.generation, Autodoc.prompt, Autodoc.continuation, Autodoc.stamp,
            Autodoc.model_id, WriterModel.label.label("model_label"),
            Autodoc.finished_at, Revision.document_id, Revision.version, Revision.title, Revision.body,
            (Revision.version < Document.version).label("stale"),
            Verdict.decision, Verdict.comment, Verdict.correction, Verdict.created_at.label("reviewed_at"),
            editor.name.label("editor_name"),
        )
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Document, Document.id == Revision.document_id)
        .join(Verdict, (Verdict.autodoc_id == Autodoc.id) & Verdict.current)
        .join(editor, editor.id == Verdict.editor_id)
        .outerjoin(WriterModel, WriterModel.id == Autodoc.model_id)
        .order_by(Verdict.created_at, Verdict.id)
        .execution_options(yield_per=EXPORT_BATCH)
    )
    for row in rows:
        yield json.dumps({
            "autodoc_id": row.id,
            "document_id": row.document_id,
            "revision_version": row.version,
            "revision_title": row.title,
            "revision_body": row.body,
            "generation": row.generation,
            "prompt": row.prompt,
            "continuation": row.continuation,
            "stamp": row.stamp,
            "model": {"id": row.model_id, "label": row.model_label} if row.model_id else None,
            "written_at": _iso(row.finished_at),
            "verdict": row.decision,
            "comment": row.comment,
            "correction": row.correction,
            "reviewed_by": row.editor_name,
            "reviewed_at": _iso(row.reviewed_at),
            "stale": row.stale,
        }, ensure_ascii=False) + "\n"


def _iso(moment):
    return moment.isoformat() if moment else None
