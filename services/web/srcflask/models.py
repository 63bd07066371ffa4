"""Accounts, documents and who holds them (the owner's "retentions"), and what people
leave around them: editors' verdicts on autodocs, in-app notifications, the audit log.

Revisions and autodocs live in static/data/processeddata, as the owner's layout has it;
they are imported at the bottom so that every model is registered with one import.
"""
from flask_login import UserMixin
from sqlalchemy import (
    JSON, BigInteger, CheckConstraint, Float, ForeignKey, Index, String, Text, UniqueConstraint, cast, false,
    func, inspect, text, true,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .leased_job import LeasedJob
from .timestamps import Timestamp, TimestampOrNone

ROLES = ("sponsor", "editor", "admin")
DECISIONS = ("approve", "request_changes", "reject")
SELF_SERVICE_ROLES = ("sponsor", "editor")
STATUSES = ("pending", "approved", "rejected", "suspended")


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint(_in("status", STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    organization: Mapped[str] = mapped_column(String(200), server_default="")
    created_at: Mapped[Timestamp]
    last_login_at: Mapped[TimestampOrNone]
    decided_at: Mapped[TimestampOrNone]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    # Part of the id Flask-Login keeps in the session and remember-me cookies (get_id):
    # moving it on refuses every cookie issued before (security.load_user). Signed cookies
    # cannot be recalled one by one, so this is how log-out, a new password and an admin's
    # decisions end the account's sessions, on every device at once.
    session_generation: Mapped[int] = mapped_column(server_default="0")
    # When an admin erased the account at its holder's request (services.users.erase): its
    # personal data is gone, the row stays for what refers to it (revisions, verdicts, audit).
    erased_at: Mapped[TimestampOrNone]
    # When the last daily digest of notifications was due and done for this account (sent,
    # or nothing new to send): the mail senders' conditional update of it is what keeps two
    # of them from both sending one day's digest (services/notifications.py).
    digest_sent_at: Mapped[TimestampOrNone]

    decided_by: Mapped["User | None"] = relationship(remote_side=[id])

    def get_id(self):
        return f"{self.id}:{self.session_generation}"

    def end_sessions(self):
        """Refuse every session and remember-me cookie of this account from now on."""
        self.session_generation += 1

    def set_password(self, password):
        # werkzeug's default is scrypt with a per-password salt.
        self.password_hash = generate_password_hash(password)

    @validates("password_hash")
    def _new_password_ends_sessions(self, key, password_hash):
        """Whoever sets a new password (a change, a reset, a command) ends the sessions the
        old one opened; a new account (no row yet) has none."""
        if inspect(self).persistent:
            self.end_sessions()
        return password_hash

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    @property
    def is_approved(self):
        return self.status == "approved"

    def __repr__(self):
        return f"<User {self.id} {self.email} {self.role}/{self.status}>"


# Unique whatever the case, enforced by the database and not only by the form.
Index("uq_users_email_lower", func.lower(User.email), unique=True)


class Document(db.Model):
    __tablename__ = "documents"
    __table_args__ = (CheckConstraint("version >= 1", name="version_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    # Optimistic locking: every save states the version it was based on and bumps it.
    version: Mapped[int] = mapped_column(server_default="1")

    retention: Mapped["Retention"] = relationship(back_populates="document", uselist=False)
    revisions: Mapped[list["Revision"]] = relationship(
        back_populates="document", order_by="Revision.version.desc()"
    )


_ACTIVE, _ARCHIVED = text("archived_at IS NULL"), text("archived_at IS NOT NULL")


class Retention(db.Model):
    """Which sponsor owns a document and which editor is assigned to it (one per document),
    with the two figures every list of someone's documents needs from it.

    A list orders by the document's last change and is filtered by its sponsor or editor:
    with the time on `documents` and the people here, PostgreSQL had to read every one of a
    sponsor's documents to sort them (25-38 ms for 5,000 on each page view, bench/RESULTS.md,
    "Load at scale"). `document_updated_at` repeats documents.updated_at so that one index
    here both filters and orders; services.documents writes the two in one transaction.

    `awaiting_review` is how many of the document's written autodocs have no current verdict
    yet: an editor's backlog is the sum over their documents, an index-only read instead of
    counting ten thousand autodocs through three joins (~90 ms). It moves with the document
    when the editor changes, so a reassignment has nothing to recount. services.reviews keeps
    it, as row-level increments in the transactions that make the change (+1 when the writer
    writes an autodoc, -1 on an autodoc's first verdict), and checks and mends it
    (recount_awaiting_reviews).
    """

    __tablename__ = "retentions"
    __table_args__ = (
        CheckConstraint("awaiting_review >= 0", name="awaiting_review_not_negative"),
        # The lists show the documents that are not archived: the indexes they page by hold
        # only those, so a sponsor's archive never slows their list (services.archive).
        Index("ix_retentions_sponsor_recent", "sponsor_id", "document_updated_at", "document_id",
              postgresql_where=_ACTIVE, sqlite_where=_ACTIVE),
        Index("ix_retentions_editor_recent", "editor_id", "document_updated_at", "document_id",
              postgresql_where=_ACTIVE, sqlite_where=_ACTIVE),
        Index("ix_retentions_recent", "document_updated_at", "document_id",
              postgresql_where=_ACTIVE, sqlite_where=_ACTIVE),
        Index("ix_retentions_editor_awaiting", "editor_id", postgresql_include=["awaiting_review"],
              postgresql_where=text("awaiting_review > 0 AND archived_at IS NULL"),
              sqlite_where=text("awaiting_review > 0 AND archived_at IS NULL")),
        # The archived lists (a sponsor's, an admin's), in the same order.
        Index("ix_retentions_archived", "sponsor_id", "document_updated_at", "document_id",
              postgresql_where=_ARCHIVED, sqlite_where=_ARCHIVED),
    )

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    sponsor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    editor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[Timestamp]
    document_updated_at: Mapped[Timestamp]
    awaiting_review: Mapped[int] = mapped_column(server_default="0")
    # Set while the sponsor has archived the document: kept, but out of every list, search,
    # review queue and the writer's queue until restored (services.archive). The kept
    # figures go on being kept meanwhile, so a restore has nothing to recount.
    archived_at: Mapped[TimestampOrNone]

    document: Mapped[Document] = relationship(back_populates="retention")
    sponsor: Mapped[User] = relationship(foreign_keys=[sponsor_id])
    editor: Mapped[User] = relationship(foreign_keys=[editor_id])


class Verdict(db.Model):
    """An editor's decision on one autodoc. A new verdict on the same autodoc does not
    overwrite the last one: the old row stays, with `current` false, so the history of
    who decided what, and when, is kept."""

    __tablename__ = "verdicts"
    __table_args__ = (
        CheckConstraint(_in("decision", DECISIONS), name="decision"),
        # Asking for changes or rejecting says why; the database holds the rule too.
        CheckConstraint("decision = 'approve' OR length(trim(comment)) > 0", name="comment_required"),
        # A correction is the text the editor would have had instead: it goes with sending
        # back or rejecting, never with approving the writer's own text.
        CheckConstraint("correction IS NULL OR decision <> 'approve'", name="correction_not_approved"),
        # One current verdict per autodoc, however many came before it.
        Index("uq_verdicts_current_autodoc", "autodoc_id", unique=True,
              postgresql_where=text("current"), sqlite_where=text("current")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    autodoc_id: Mapped[int] = mapped_column(ForeignKey("autodocs.id", ondelete="CASCADE"), index=True)
    editor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, server_default="")
    # The autodoc's continuation as the editor says it should have read (None: no correction).
    # Training sets take it as the target instead of the writer's text (services/trainingsets.py).
    correction: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    current: Mapped[bool] = mapped_column(server_default=true())

    autodoc: Mapped["Autodoc"] = relationship()
    editor: Mapped[User] = relationship()


class Notification(db.Model):
    """A message in one person's in-app inbox. It names the document or autodoc it is
    about (when it is about one), so its link is built when it is shown, not stored."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_id_read_at", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    autodoc_id: Mapped[int | None] = mapped_column(ForeignKey("autodocs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[Timestamp]
    read_at: Mapped[TimestampOrNone]
    # When it went out by email (at once, or in a digest): never twice.
    emailed_at: Mapped[TimestampOrNone]


# The notifications a person may also have emailed (opt-in), and how.
EMAILED_NOTIFICATION_KINDS = ("autodoc_ready", "autodoc_failed", "autodoc_reviewed", "document_assigned")
DELIVERIES = ("immediate", "daily")


class NotificationPreference(db.Model):
    """One kind of notification a person chose to have emailed, at once or in the daily
    digest. No row means no email: email is opt-in. `chosen_at` is when this delivery was
    chosen; a digest carries only the notifications since, not the years before."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        CheckConstraint(_in("kind", EMAILED_NOTIFICATION_KINDS), name="kind"),
        CheckConstraint(_in("delivery", DELIVERIES), name="delivery"),
        # The digest pass looks for the users with a daily kind.
        Index("ix_notification_preferences_daily", "user_id",
              postgresql_where=text("delivery = 'daily'"), sqlite_where=text("delivery = 'daily'")),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery: Mapped[str] = mapped_column(String(16))
    chosen_at: Mapped[Timestamp]


class AuditEvent(db.Model):
    """Who did what to which row, and when. Rows are only ever inserted: nothing in the
    app updates or deletes them, and on PostgreSQL a trigger refuses it outright.
    The target is named by type and id (not a foreign key), so the record outlives it."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for the system (a command or the writer acting on its own).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int]
    details: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[Timestamp] = mapped_column(index=True)

    actor: Mapped[User | None] = relationship()


class ApiToken(db.Model):
    """A personal API token: only the SHA-256 of the secret is kept, so a leaked database
    cannot be replayed against the API. Revoked tokens stay (revoked_at set) as a record."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the secret, shown in the list so a person can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[Timestamp]
    last_used_at: Mapped[TimestampOrNone]
    revoked_at: Mapped[TimestampOrNone]

    user: Mapped[User] = relationship()


OUTBOX_STATUSES = ("queued", "running", "sent", "failed")


class OutboxMessage(LeasedJob, db.Model):
    """One email, written in the transaction of the change that causes it and delivered
    later by the mail sender (services/outbox.py), claimed by its LeasedJob columns as the
    autodocs are. `message_id` is fixed when the row is written, so every
    delivery attempt of it carries the same Message-ID and a receiver can drop a repeat."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
        # The sender's claim: the waiting messages that are due, oldest first.
        Index("ix_outbox_messages_due", "next_attempt_at", "id",
              postgresql_where=text("status = 'queued'"), sqlite_where=text("status = 'queued'")),
        # Counting the unsent ones (metrics) without reading years of sent mail.
        Index("ix_outbox_messages_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    # Not before this: a failed attempt pushes it out (exponential backoff).
    next_attempt_at: Mapped[Timestamp]
    created_at: Mapped[Timestamp]
    sent_at: Mapped[TimestampOrNone]
    last_error: Mapped[str | None] = mapped_column(Text)


# The model registry and retraining ---------------------------------------------------------

MODEL_KINDS = ("seed", "retrained")
MODEL_STATES = ("candidate", "active", "retired")
TRAINING_RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class WriterModel(db.Model):
    """A GPT-2 the writers may use, seed (fetched or copied in) or retrained here, with the
    sha256 of each of its files taken once, at registration: the writer checks them before
    it loads the folder (services/registry.py). At most one model is `active` — the one every
    writer uses — and the database holds that rule (a partial unique index), so two admins
    promoting at the same moment can never leave two."""

    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(_in("kind", MODEL_KINDS), name="kind"),
        CheckConstraint(_in("state", MODEL_STATES), name="state"),
        CheckConstraint("version >= 1", name="version_positive"),
        UniqueConstraint("name", "version", name="uq_models_name_version"),
        Index("uq_models_one_active", "state", unique=True,
              postgresql_where=text("state = 'active'"), sqlite_where=text("state = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    # Relative to the app's static/mlmodels/ when the folder is inside it (the app can move),
    # absolute otherwise (a WRITER_MODEL_DIR registered in place).
    path: Mapped[str] = mapped_column(String(500))
    files: Mapped[dict] = mapped_column(JSON)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    parameters: Mapped[int] = mapped_column(BigInteger)
    shape: Mapped[dict] = mapped_column(JSON)
    generation: Mapped[dict] = mapped_column(JSON)
    training: Mapped[dict | None] = mapped_column(JSON)
    # use_alter: models and training_sets refer to each other (a set's tokenizer model).
    training_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_sets.id", use_alter=True, name="fk_models_training_set_id_training_sets"))
    state: Mapped[str] = mapped_column(String(16), server_default="candidate")
    # Why the writer refused the folder (its files no longer match their hashes); cleared
    # when a check passes again.
    integrity_error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[Timestamp]
    promoted_at: Mapped[TimestampOrNone]
    retired_at: Mapped[TimestampOrNone]

    parent: Mapped["WriterModel | None"] = relationship(remote_side=[id])
    training_set: Mapped["TrainingSet | None"] = relationship(foreign_keys=[training_set_id])
    created_by: Mapped[User | None] = relationship()
    # Its validation figures, one per training set it was measured on (the Models page, the API).
    evaluations: Mapped[list["ModelEvaluation"]] = relationship(
        viewonly=True, order_by="ModelEvaluation.created_at, ModelEvaluation.id")

    @hybrid_property
    def label(self):
        return f"{self.name} v{self.version}"

    @label.inplace.expression
    @classmethod
    def _label_expression(cls):
        return cls.name + " v" + cast(cls.version, String)

    def __repr__(self):
        return f"<WriterModel {self.id} {self.label} {self.state}>"


class ModelEvaluation(db.Model):
    """One model's loss and perplexity on one training set's validation side: what the
    promotion gate compares (a candidate against the active model, on the same pairs)."""

    __tablename__ = "model_evaluations"
    __table_args__ = (UniqueConstraint("model_id", "training_set_id", name="uq_model_evaluations_model_set"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    training_set_id: Mapped[int] = mapped_column(ForeignKey("training_sets.id", ondelete="CASCADE"), index=True)
    loss: Mapped[float] = mapped_column(Float)
    perplexity: Mapped[float] = mapped_column(Float)
    tokens: Mapped[int]
    created_at: Mapped[Timestamp]

    model: Mapped[WriterModel] = relationship()
    training_set: Mapped["TrainingSet"] = relationship()


class TrainingSet(db.Model):
    """An immutable JSON Lines file of (prompt, continuation) pairs from reviewed autodocs,
    split by document, with what it holds (services/trainingsets.py)."""

    __tablename__ = "training_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Relative to the app's static/data/.
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    verdicts: Mapped[list] = mapped_column(JSON)
    seed: Mapped[int]
    train_documents: Mapped[int]
    train_pairs: Mapped[int]
    train_tokens: Mapped[int]
    validation_documents: Mapped[int]
    validation_pairs: Mapped[int]
    validation_tokens: Mapped[int]
    # Whose tokenizer counted the tokens.
    tokenizer_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    # The newest verdict it had seen, for "N reviews since".
    last_verdict_id: Mapped[int] = mapped_column(server_default="0")
    # How many of its pairs (both sides) take an editor's correction as their target.
    corrections: Mapped[int] = mapped_column(server_default="0")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[Timestamp]

    tokenizer_model: Mapped[WriterModel | None] = relationship(foreign_keys=[tokenizer_model_id])
    created_by: Mapped[User | None] = relationship()


class TrainingRun(LeasedJob, db.Model):
    """A fine-tuning job, queued by an admin and run by a trainer process, claimed by its
    LeasedJob columns as the autodocs and the outbox's messages are."""

    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint(_in("status", TRAINING_RUN_STATUSES), name="status"),
        Index("ix_training_runs_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    training_set_id: Mapped[int] = mapped_column(ForeignKey("training_sets.id"))
    settings: Mapped[dict] = mapped_column(JSON)
    progress: Mapped[dict | None] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(server_default=false())
    result_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    error: Mapped[str | None] = mapped_column(Text)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    queued_at: Mapped[Timestamp]
    finished_at: Mapped[TimestampOrNone]

    parent: Mapped[WriterModel] = relationship(foreign_keys=[parent_id])
    training_set: Mapped[TrainingSet] = relationship()
    result_model: Mapped[WriterModel | None] = relationship(foreign_keys=[result_model_id])
    requested_by: Mapped[User | None] = relationship()


# Shadow drafts and blind comparisons ----------------------------------------------------------

SHADOW_STATUSES = ("queued", "running", "done", "failed")
COMPARISON_WINNERS = ("candidate", "baseline", "tie")


class ShadowDraft(LeasedJob, db.Model):
    """A second text for a saved revision, written by a candidate model while one exists
    (services/shadow_drafts.py), for editors to compare blind with the real autodoc.

    A table of its own rather than a kind of autodoc: a shadow draft is never the document's
    autodoc, and kept apart it cannot show up in a list, a badge, a place in the queue, a
    notification, a review count or an export of real autodocs by a forgotten filter. It is
    claimed by its LeasedJob columns as the autodocs are; writers claim one only when no
    real autodoc waits."""

    __tablename__ = "shadow_drafts"
    __table_args__ = (
        CheckConstraint(_in("status", SHADOW_STATUSES), name="status"),
        UniqueConstraint("autodoc_id", "model_id", name="uq_shadow_drafts_autodoc_model"),
        Index("ix_shadow_drafts_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The real autodoc it shadows: same revision, same prompt rules, another model.
    autodoc_id: Mapped[int] = mapped_column(ForeignKey("autodocs.id", ondelete="CASCADE"))
    # The candidate that writes (or wrote) it.
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    prompt: Mapped[str | None] = mapped_column(Text)
    continuation: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    stamp: Mapped[dict | None] = mapped_column(JSON)
    queued_at: Mapped[Timestamp]
    finished_at: Mapped[TimestampOrNone]

    autodoc = relationship("Autodoc")
    model: Mapped[WriterModel] = relationship()


class Comparison(db.Model):
    """An editor's blind choice between a revision's autodoc (written by the model that was
    active, the baseline) and its shadow draft (written by a candidate): which reads better,
    or about the same. The models are named here, never on the page before the choice.
    One choice per editor and pair (the database holds it): a choice posted twice counts
    once, and two editors on the same pair count once each."""

    __tablename__ = "comparisons"
    __table_args__ = (
        CheckConstraint(_in("winner", COMPARISON_WINNERS), name="winner"),
        UniqueConstraint("shadow_draft_id", "editor_id", name="uq_comparisons_shadow_draft_editor"),
        Index("ix_comparisons_models", "candidate_model_id", "baseline_model_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    autodoc_id: Mapped[int] = mapped_column(ForeignKey("autodocs.id", ondelete="CASCADE"), index=True)
    shadow_draft_id: Mapped[int] = mapped_column(ForeignKey("shadow_drafts.id", ondelete="CASCADE"))
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    editor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    candidate_model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    baseline_model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    winner: Mapped[str] = mapped_column(String(16))
    # Which draft the page showed first (left, or on top on a phone): for checking that the
    # random order leaves no bias.
    candidate_shown_first: Mapped[bool]
    created_at: Mapped[Timestamp]

    autodoc = relationship("Autodoc")
    shadow_draft: Mapped[ShadowDraft] = relationship()
    editor: Mapped[User] = relationship()
    candidate_model: Mapped[WriterModel] = relationship(foreign_keys=[candidate_model_id])
    baseline_model: Mapped[WriterModel] = relationship(foreign_keys=[baseline_model_id])


from .static.data.processeddata.models import Autodoc, Revision  # noqa: E402,F401  (registers them)
