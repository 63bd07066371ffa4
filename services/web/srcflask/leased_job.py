"""The claim columns every job table shares: autodocs, shadow drafts, outbox messages and
training runs are each a queue that services/leases.py claims from (SELECT ... FOR UPDATE
SKIP LOCKED, a lease on the database clock, a fresh attempt token per claim, every write back
conditional on it). One definition, so that the four cannot drift apart; each table keeps its
own status CHECK (what its statuses are) and its own indexes."""
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .timestamps import TimestampOrNone


class LeasedJob:
    """Mixin of a job table's claim columns."""

    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    attempts: Mapped[int] = mapped_column(server_default="0")
    # The claim that owns the row; a late write from an earlier attempt matches no row.
    attempt_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[TimestampOrNone]
    worker: Mapped[str | None] = mapped_column(String(200))
    # The request that queued it (stamped by logging_setup), named on the job's log lines.
    request_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[TimestampOrNone]
