"""The autodocs table as the writer's job queue.

A queued autodoc row is a job, claimed and held the way services/leases.py says (the
mail outbox does the same). Writers claim jobs with SELECT ... FOR UPDATE SKIP LOCKED
(PostgreSQL; SQLite runs one process and ignores the clause) and hold them under a lease
that a heartbeat extends. Every claim gets a fresh attempt token, and every write back is
a conditional UPDATE on (id, attempt_token, status='running'): a worker whose lease ran out
and whose job was claimed again finds its token gone and its late result is refused, so
each job is written exactly once however many processes and machines run writers. The
heartbeat extends a lease only until the job's deadline (WRITER_JOB_DEADLINE_SECONDS after
its claim): a writer hung inside generate loses its jobs the same way a dead one does.

The write that finishes a job also tells the people on its document (the editor: there
is text to review; the sponsor: the writer gave up), in the same transaction and only
when that write won, so each finished job is announced exactly once. Queueing, claiming,
finishing and giving back a job also send a PostgreSQL NOTIFY in their transaction
(services/queue_signals.py): idle writers wake and open pages refresh when it commits.

Waiting jobs are taken in turns between sponsors, not first come first served: each
sponsor's oldest waiting job goes before anyone's second, their second before anyone's
third, and so on (ties by age). A sponsor who saves a hundred times in a minute then
delays nobody else by more than one job of theirs per turn, and still has every save
written, in order. Turns are per sponsor rather than per user because a document's
autodocs are the sponsor's, whoever asked for them (an admin's regenerate included).
Places in the queue shown on the pages follow the same order.

All times come from the database clock, the one clock every writer shares.
"""
import datetime as dt
import math
import statistics
from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Document, Retention, User
from ..static.data.processeddata.models import Autodoc, Revision
from . import audit, leases, notifications, queue_signals, reviews

DIED_MESSAGE = "The writer stopped {attempts} times while writing this autodoc."


@dataclass(frozen=True)
class Job:
    """One claimed autodoc and the revision text it must be written from."""

    autodoc_id: int
    attempt_token: str
    title: str
    body: str
    queued_at: dt.datetime
    started_at: dt.datetime
    request_id: str | None = None  # of the request that queued it, for the writer's log lines

    # What the writer's log calls it (services/shadow_drafts.py's jobs are "shadow_draft").
    kind = "autodoc"

    @property
    def id(self):
        """The row the job writes: the writer handles this queue's jobs and shadow drafts alike."""
        return self.autodoc_id


def claim_jobs(worker, limit, lease_seconds, max_attempts):
    """Claim up to `limit` jobs for `worker`, in the sponsors' turns; commits and returns them.

    Jobs whose lease ran out are claimed again, unless they already used up their
    attempts: those are marked failed, so nothing stays `running` forever."""
    now = leases.database_now()
    _fail_exhausted_expired_jobs(now, max_attempts)
    # Jobs whose writer died come first: they waited longest. Then the sponsors' turns.
    ids = leases.lock(select(Autodoc.id).where(*leases.expired(Autodoc, now)).order_by(Autodoc.id).limit(limit))
    if len(ids) < limit:
        # The next few jobs in turn order first, in a subquery of its own (its LIMIT keeps the
        # planner from joining the whole queue to the locking scan: with the statistics of a
        # queue that just filled up, that plan took seconds); a few more than the free slots,
        # since a writer claiming at the same moment may hold some of them.
        turns = _queued_with_turns()
        candidates = (
            select(turns.c.id, turns.c.turn).where(turns.c.status == "queued")
            .order_by(turns.c.turn, turns.c.id).limit(4 * limit).subquery("candidates")
        )
        ids += leases.lock(
            # The status is checked on the locked row itself too: a job another writer
            # claimed since this query's snapshot is re-read under the lock and skipped.
            select(Autodoc.id).join(candidates, candidates.c.id == Autodoc.id).where(Autodoc.status == "queued")
            .order_by(candidates.c.turn, Autodoc.id).limit(limit - len(ids)),
            of=Autodoc,
        )
    if not ids:
        db.session.commit()
        return []
    token = leases.take(Autodoc, ids, worker, lease_seconds, now, error=None)
    queue_signals.announce_status(ids)  # their pages show "being written"
    rows = db.session.execute(
        select(Autodoc.id, Autodoc.queued_at, Autodoc.request_id, Revision.title, Revision.body)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .where(Autodoc.id.in_(ids)).order_by(Autodoc.id)
    ).all()
    db.session.commit()
    return [Job(row.id, token, row.title, row.body, _aware(row.queued_at), now, row.request_id) for row in rows]


def of_unarchived_documents(statement):
    """`statement` (over autodocs) narrowed to the autodocs of documents not archived: only
    those are written (and hold a place in the queue); the others wait until the document
    is restored."""
    return (statement.join(Revision, Revision.id == Autodoc.revision_id)
            .join(Retention, Retention.document_id == Revision.document_id)
            .where(Retention.archived_at.is_(None)))


def claimable(now):
    """The condition "a real autodoc waits for a writer at `now`": one queued for a document
    not archived, or one whose writer's lease ran out (claim_jobs takes both). Work that
    must give way to real autodocs (shadow drafts) is claimed only under its negation,
    evaluated in the claiming statement itself."""
    return or_(of_unarchived_documents(select(Autodoc.id).where(Autodoc.status == "queued")).exists(),
               select(Autodoc.id).where(*leases.expired(Autodoc, now)).exists())


def _queued_with_turns():
    """Every waiting or running autodoc's id, status and turn: 1 for its sponsor's oldest,
    2 for the next... A job being written counts as its sponsor's turn, so a sponsor whose
    job is on the writer goes behind those still waiting for their first. Claims and places
    in the queue both take the queued ones by (turn, id). The autodocs of archived documents
    are left out: they wait, unwritten and holding no place, until the document is restored."""
    return of_unarchived_documents(
        select(Autodoc.id.label("id"), Autodoc.status.label("status"),
               func.row_number().over(partition_by=Retention.sponsor_id, order_by=Autodoc.id).label("turn"))
    ).where(Autodoc.status.in_(("queued", "running"))).subquery("turns")


def _fail_exhausted_expired_jobs(now, max_attempts):
    failed = fail_exhausted_expired(Autodoc, now, max_attempts, DIED_MESSAGE)
    notifications.autodocs_finished(failed, notifications.AUTODOC_FAILED)
    queue_signals.announce_status(failed)


def fail_exhausted_expired(model, now, max_attempts, died_message):
    """Mark failed the rows of `model` (autodocs, shadow drafts: the writer's queues) whose
    lease ran out after their last attempt, with `died_message` (formatted with `attempts`);
    returns their ids."""
    return db.session.scalars(
        update(model)
        .where(*leases.expired(model, now), model.attempts >= max_attempts)
        .values(status="failed", finished_at=now, lease_expires_at=None, attempt_token=None,
                error=died_message.format(attempts=max_attempts))
        .returning(model.id)
    ).all()


def extend_leases(jobs, lease_seconds, deadline_seconds=None):
    """Heartbeat: push the lease of jobs still held by this attempt; returns how many.

    With `deadline_seconds`, a job claimed longer ago than that is not extended: a writer
    hung inside generate then loses it when its lease runs out (another attempt claims it
    and the hung writer's late result is refused by the attempt token)."""
    if not jobs:
        return 0
    return leases.extend(Autodoc, [job.autodoc_id for job in jobs], jobs[0].attempt_token, lease_seconds,
                         deadline_seconds)


def complete_job(job, prompt, continuation, stamp, model_id=None):
    """Store the writer's text and the registry's model that wrote it (`model_id`); False
    (nothing written) when this attempt lost its claim."""
    result = db.session.execute(
        _own(job).values(status="done", prompt=prompt, continuation=continuation, stamp=stamp, model_id=model_id,
                         finished_at=func.now(), lease_expires_at=None, error=None)
    )
    written = result.rowcount == 1
    if written:
        reviews.autodoc_written(job.autodoc_id)
        notifications.autodocs_finished([job.autodoc_id], notifications.AUTODOC_READY)
        queue_signals.announce_status([job.autodoc_id])  # delivered with the commit: pages show it at once
    db.session.commit()
    return written


def fail_job(job, reason, max_attempts):
    """Give the job back to the queue, or mark it failed once its attempts are used up
    (then its sponsor is told); returns its new status ("queued" or "failed"), False
    (nothing written) when this attempt lost its claim."""
    status = give_back(Autodoc, job, reason, max_attempts)
    if status == "failed":
        notifications.autodocs_finished([job.autodoc_id], notifications.AUTODOC_FAILED)
    elif status == "queued":
        queue_signals.announce_queued()  # another writer may take the retry at once
    if status:
        queue_signals.announce_status([job.autodoc_id])
    db.session.commit()
    return status or False


def give_back(model, job, reason, max_attempts):
    """The conditional write that gives a claimed row of `model` (autodocs, shadow drafts: the
    writer's queues) back to its queue with `reason`, or marks it failed once its attempts are
    used up; returns its new status, None when this attempt lost its claim. The caller commits."""
    exhausted = model.attempts >= max_attempts
    return db.session.scalar(
        leases.own(model, [job.id], job.attempt_token).values(
            status=case((exhausted, "failed"), else_="queued"),
            finished_at=case((exhausted, func.now()), else_=None),
            error=reason[:2000], attempt_token=None, lease_expires_at=None,
        ).returning(model.status)
    )


def _own(job):
    return leases.own(Autodoc, [job.autodoc_id], job.attempt_token)


class AlreadyQueued(Exception):
    """A regenerate asked for while the revision's newest autodoc is still waiting or being written."""


def queue_regeneration(revision, by=None):
    """A new attempt at the revision's autodoc, asked for `by` a user (None: the system);
    older attempts and their text are kept, and the request is audited.

    Two requests at the same moment take turns on the revision's row lock (held until
    commit), so the second sees the first's queued autodoc and gets AlreadyQueued, as a
    later click does, instead of both passing the check and the second hitting the
    unique (revision, generation) constraint. NO KEY UPDATE: saves and writers that only
    reference the revision are not held up by it."""
    db.session.execute(select(Revision.id).where(Revision.id == revision.id).with_for_update(key_share=True))
    latest = db.session.execute(
        select(Autodoc.generation, Autodoc.status).where(Autodoc.revision_id == revision.id)
        .order_by(Autodoc.generation.desc()).limit(1)
    ).first()
    if latest and latest.status in ("queued", "running"):
        raise AlreadyQueued("This version's autodoc is already waiting for the writer.")
    autodoc = Autodoc(revision_id=revision.id, generation=(latest.generation if latest else 0) + 1, status="queued")
    db.session.add(autodoc)
    db.session.flush()
    queue_signals.announce_queued()
    audit.record(by, "autodoc.regenerate", "autodoc", autodoc.id, document_id=revision.document_id,
                 title=revision.title, version=revision.version, generation=autodoc.generation)
    return autodoc


def queue_positions(autodoc_ids):
    """{autodoc id: 1-based place in the queue} for the queued ones among `autodoc_ids`,
    in the order the writers claim them (sponsors' turns), in one query whatever their number."""
    if not autodoc_ids:
        return {}
    turns = _queued_with_turns()
    places = (select(turns.c.id, func.row_number().over(order_by=(turns.c.turn, turns.c.id)).label("place"))
              .where(turns.c.status == "queued").subquery())
    rows = db.session.execute(select(places.c.id, places.c.place).where(places.c.id.in_(autodoc_ids))).all()
    return dict(rows)


def queue_by_sponsor(limit=10):
    """The sponsors with the most autodocs waiting or being written (archived documents'
    aside: they wait for nobody), for the admin's watch over the queue's fairness: (sponsor
    id, name, queued, running, oldest queued_at) rows, one query."""
    waiting = Autodoc.status.in_(("queued", "running"))
    return db.session.execute(
        of_unarchived_documents(
            select(Retention.sponsor_id, User.name,
                   func.count().filter(Autodoc.status == "queued").label("queued"),
                   func.count().filter(Autodoc.status == "running").label("running"),
                   func.min(Autodoc.queued_at).filter(Autodoc.status == "queued").label("oldest")))
        .join(User, User.id == Retention.sponsor_id)
        .where(waiting)
        .group_by(Retention.sponsor_id, User.name)
        .order_by(func.count().desc(), Retention.sponsor_id).limit(limit)
    ).all()


@dataclass(frozen=True)
class Progress:
    """Where a queued autodoc stands: its place in the queue and, once the writer has a
    track record, the expected wait in seconds."""

    position: int
    eta_seconds: float | None


def progress_of(autodocs, batch_size):
    """{autodoc id: Progress} for the queued ones among `autodocs`: two queries in all.
    The writer takes `batch_size` jobs per generate call, so the wait is the number of
    batches ahead times the recent time of one batch."""
    positions = queue_positions([autodoc.id for autodoc in autodocs if autodoc.status == "queued"])
    if not positions:
        return {}
    seconds = recent_seconds_per_autodoc()
    return {
        autodoc_id: Progress(position, None if seconds is None else math.ceil(position / batch_size) * seconds)
        for autodoc_id, position in positions.items()
    }


def recent_seconds_per_autodoc(sample=20):
    """Median wall time of the last finished autodocs (claim to finish), or None."""
    rows = db.session.execute(
        select(Autodoc.started_at, Autodoc.finished_at)
        .where(Autodoc.status == "done", Autodoc.started_at.is_not(None), Autodoc.finished_at.is_not(None))
        .order_by(Autodoc.finished_at.desc()).limit(sample)
    ).all()
    durations = [(_aware(done) - _aware(started)).total_seconds() for started, done in rows]
    return statistics.median(durations) if durations else None


def recent_failures(limit=10):
    """The newest failed autodocs that no later attempt has replaced, with their document's
    title and revision version, for the admin's watch over the writer (one query)."""
    newer = aliased(Autodoc)
    replaced = select(newer.id).where(newer.revision_id == Autodoc.revision_id, newer.generation > Autodoc.generation)
    return db.session.execute(
        select(Autodoc.id, Autodoc.error, Autodoc.finished_at, Revision.version, Document.id.label("document_id"),
               Document.title)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Document, Document.id == Revision.document_id)
        .where(Autodoc.status == "failed", ~replaced.exists())
        .order_by(Autodoc.finished_at.desc(), Autodoc.id.desc()).limit(limit)
    ).all()


def queue_figures():
    """{queued, running, waiting, retrying, oldest_age} of the autodocs, for /metrics, in one
    query over the queued and running rows only (ix_autodocs_status_id): its cost follows the
    queue, not the history. `waiting` (and `retrying`, the waiting ones that had an attempt
    already) and `oldest_age` leave out archived documents' autodocs, as the claim does: they
    wait for nobody, and would otherwise age forever."""
    waiting = and_(Autodoc.status == "queued", Retention.archived_at.is_(None))
    row = db.session.execute(
        select(func.count().filter(Autodoc.status == "queued").label("queued"),
               func.count().filter(Autodoc.status == "running").label("running"),
               func.count().filter(waiting).label("waiting"),
               func.count().filter(waiting, Autodoc.attempts > 0).label("retrying"),
               func.extract("epoch", func.now() - func.min(Autodoc.queued_at).filter(waiting)).label("oldest_age"))
        .select_from(Autodoc)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Retention, Retention.document_id == Revision.document_id)
        .where(Autodoc.status.in_(("queued", "running")))
    ).one()
    return {"queued": row.queued, "running": row.running, "waiting": row.waiting, "retrying": row.retrying,
            "oldest_age": max(0.0, float(row.oldest_age or 0))}


def queue_depth():
    """{status: count} over all autodocs, one grouped query."""
    return dict(db.session.execute(select(Autodoc.status, func.count()).group_by(Autodoc.status)).all())


def _aware(moment):
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
