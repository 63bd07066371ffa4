"""Accounts, documents and who holds them (the owner's "retentions").

Revisions and autodocs live in static/data/processeddata, as the owner's layout has it;
they are imported at the bottom so that every model is registered with one import.
"""
from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .timestamps import Timestamp, TimestampOrNone

ROLES = ("sponsor", "editor", "admin")
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

    decided_by: Mapped["User | None"] = relationship(remote_side=[id])

    def set_password(self, password):
        # werkzeug's default is scrypt with a per-password salt.
        self.password_hash = generate_password_hash(password)

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


class Retention(db.Model):
    """Which sponsor owns a document and which editor is assigned to it (one per document)."""

    __tablename__ = "retentions"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    sponsor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    editor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_at: Mapped[Timestamp]

    document: Mapped[Document] = relationship(back_populates="retention")
    sponsor: Mapped[User] = relationship(foreign_keys=[sponsor_id])
    editor: Mapped[User] = relationship(foreign_keys=[editor_id])


from .static.data.processeddata.models import Autodoc, Revision  # noqa: E402,F401  (registers them)
