"""Revision and Autodoc: one row per save, and the writer's text for that save.

The autodocs table is also the writer's queue: a row is a job. Its claim columns
(srcflask/leased_job.py: attempt_token, lease_expires_at, worker, attempts) let several
writer processes share one database with SELECT ... FOR UPDATE SKIP LOCKED and leases; a late write from a
worker whose lease ran out is refused because its attempt token no longer matches.
"""
from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ....extensions import db
from ....leased_job import LeasedJob
from ....timestamps import Timestamp, TimestampOrNone

AUTODOC_STATUSES = ("queued", "running", "done", "failed")


class Revision(db.Model):
    """A document exactly as one save left it."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("document_id", "version", name="uq_revisions_document_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    saved_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    saved_at: Mapped[Timestamp]

    document = relationship("Document", back_populates="revisions")
    saved_by = relationship("User")
    autodocs: Mapped[list["Autodoc"]] = relationship(
        back_populates="revision", order_by="Autodoc.generation.desc()"
    )

    @property
    def latest_autodoc(self):
        """The newest attempt (a regenerate adds one without deleting the older text)."""
        return self.autodocs[0] if self.autodocs else None


class Autodoc(LeasedJob, db.Model):
    """The writer's text for one revision; `generation` counts regenerate attempts."""

    __tablename__ = "autodocs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        UniqueConstraint("revision_id", "generation", name="uq_autodocs_revision_generation"),
        Index("ix_autodocs_status_id", "status", "id"),
        # The writer's recent pace (the newest finished ones), read by every page that shows
        # a place in the queue, and the done autodocs of a set of revisions (review queues,
        # the review badge): without them both scan every autodoc (bench/RESULTS.md).
        Index("ix_autodocs_done_finished_at", "finished_at",
              postgresql_where=text("status = 'done'"), sqlite_where=text("status = 'done'")),
        Index("ix_autodocs_done_revision_id", "revision_id", postgresql_include=["id"],
              postgresql_where=text("status = 'done'"), sqlite_where=text("status = 'done'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(server_default="1")
    prompt: Mapped[str | None] = mapped_column(Text)
    continuation: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    stamp: Mapped[dict | None] = mapped_column(JSON)
    # The registry's model that wrote it (set with the text, services/autodoc_queue.py); a
    # model that wrote autodocs cannot be deleted.
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), index=True)
    queued_at: Mapped[Timestamp]
    finished_at: Mapped[TimestampOrNone]

    revision: Mapped[Revision] = relationship(back_populates="autodocs")
    model = relationship("WriterModel")
    # The editor's standing verdict (models.Verdict); earlier ones are kept, not current.
    current_verdict = relationship(
        "Verdict", primaryjoin="and_(Verdict.autodoc_id == Autodoc.id, Verdict.current)",
        viewonly=True, uselist=False,
    )

    @property
    def stale(self):
        """True once the document was saved again after this autodoc's revision: the text it
        was written from is no longer the document's. Derived, never stored."""
        return self.revision.version < self.revision.document.version
