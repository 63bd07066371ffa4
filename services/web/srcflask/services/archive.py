"""Archived documents: kept, never deleted, but out of the way until their sponsor (or an
admin) restores them.

Archiving sets Retention.archived_at and nothing else. Every place that shows or works on
documents filters on it: the lists and their search (services.documents), the editor's
review queue and badge (services.reviews), the writer's queue and its places
(services.autodoc_queue: the waiting autodocs of an archived document are not claimed and
hold no place; one already being written finishes). No row is moved or recounted, so the
kept figures (Retention.document_updated_at, awaiting_review) stay right throughout and a
restore puts everything back as it was, its waiting autodocs back in their sponsor's turns.
Each change is audited. Functions here flush, never commit.
"""
from sqlalchemy import func, update

from ..extensions import db
from ..models import Retention
from . import audit
from .documents import DocumentError, NoChanges


def archive_document(document, by):
    """Archive `document` (loaded with its retention), as its sponsor `by`. Raises
    NoChanges when it is archived already (two clicks at once: one wins, by the UPDATE's
    condition), DocumentError for anyone but its sponsor."""
    if by.id != document.retention.sponsor_id:
        raise DocumentError("Only the document's sponsor can archive it.")
    _set_archived(document, func.now(), Retention.archived_at.is_(None), "This document is archived already.")
    audit.record(by, "document.archive", "document", document.id, title=document.title)


def restore_document(document, by):
    """Bring an archived `document` back, as its sponsor or an admin `by`. Raises NoChanges
    when it is not archived, DocumentError for anyone else."""
    if by.role != "admin" and by.id != document.retention.sponsor_id:
        raise DocumentError("Only the document's sponsor or an admin can restore it.")
    _set_archived(document, None, Retention.archived_at.is_not(None), "This document is not archived.")
    audit.record(by, "document.restore", "document", document.id, title=document.title)


def _set_archived(document, value, condition, unchanged):
    changed = db.session.execute(
        update(Retention).where(Retention.document_id == document.id, condition).values(archived_at=value)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise NoChanges(unchanged)
    db.session.refresh(document.retention)
