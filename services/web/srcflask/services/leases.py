"""Rows as jobs: claims, leases on the database clock, attempt tokens.

Used by every table whose rows are work for a background process (the writer's autodocs and
shadow drafts, the mail outbox, training runs). Such a table has the columns `status`, `attempts`, `attempt_token`,
`worker`, `started_at` and `lease_expires_at`, and this discipline:

- A claim locks its rows with SELECT ... FOR UPDATE SKIP LOCKED (`lock`), so claimers
  running at the same moment never take the same row, and marks them `running` under a
  lease and a fresh attempt token (`take`), committed before any work starts.
- A row whose lease ran out (`expired`) belongs to whoever claims it next: its worker
  died or hung.
- Every write back is a conditional UPDATE on (id, attempt_token, status='running')
  (`own`; like the claim, it refreshes rows the session has loaded, so an object in hand
  never shows a state the row has left): a worker that lost its lease finds its token gone and its late result is
  refused, so each row is finished once however many processes run.
- A heartbeat (`extend`) pushes the lease of the rows still held by the attempt.

All times come from the database clock, the one clock every worker shares.
"""
import datetime as dt
import uuid

from sqlalchemy import func, select, update

from ..extensions import db


def database_now():
    """The database's current time, timezone-aware (SQLite gives naive UTC)."""
    now = db.session.execute(select(func.now())).scalar_one()
    if isinstance(now, str):
        now = dt.datetime.fromisoformat(now)
    return now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)


def expired(model, now):
    """The conditions of a `running` row whose lease ran out before `now`."""
    return (model.status == "running", model.lease_expires_at < now)


def lock(statement, of=None):
    """The ids `statement` selects, locked until commit; rows another claimer holds are
    skipped, not waited for (SQLite runs one process and ignores the clause)."""
    return db.session.scalars(statement.with_for_update(skip_locked=True, of=of)).all()


def take(model, ids, worker, lease_seconds, now, **values):
    """Mark the locked rows `ids` running for `worker` under one new attempt token and a
    lease of `lease_seconds` from `now` (plus `values`); returns the token. The caller
    commits."""
    token = uuid.uuid4().hex
    db.session.execute(
        update(model).where(model.id.in_(ids)).values(
            status="running", attempt_token=token, attempts=model.attempts + 1, worker=worker,
            started_at=now, lease_expires_at=now + dt.timedelta(seconds=lease_seconds), **values,
        ).execution_options(synchronize_session="fetch")
    )
    return token


def own(model, ids, token):
    """An UPDATE of the rows `ids` that applies only while attempt `token` still holds them."""
    return update(model).where(model.id.in_(ids), model.attempt_token == token, model.status == "running") \
        .execution_options(synchronize_session="fetch")


def extend(model, ids, token, lease_seconds, deadline_seconds=None):
    """Heartbeat: push the lease of the rows `ids` still held by attempt `token`; commits
    and returns how many. With `deadline_seconds`, a row claimed longer ago than that is
    not extended: a worker hung on it loses it when its lease runs out."""
    if not ids:
        return 0
    now = database_now()
    statement = own(model, ids, token)
    if deadline_seconds is not None:
        statement = statement.where(model.started_at > now - dt.timedelta(seconds=deadline_seconds))
    result = db.session.execute(statement.values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds)))
    db.session.commit()
    return result.rowcount


def retry_wait(attempts, retry_min_seconds, retry_max_seconds):
    """Seconds to wait after the `attempts`-th failure in a row: doubling from the minimum,
    capped at the maximum (the exponent is bounded so years of retries cannot overflow)."""
    return min(retry_max_seconds, retry_min_seconds * 2 ** min(attempts - 1, 30))


ERROR_CHARS = 300


def describe(error):
    """An error in one line for a row's `error`, the pages and /readyz: its class and the
    first line of its message, at most ERROR_CHARS (the traceback is in the log)."""
    message = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    return text[:ERROR_CHARS]
