"""Shadow drafts: while a candidate model exists, a share of saves also get a draft from it.

A candidate (services/registry.py) is promoted on evidence; shadow drafts give editors the
same revisions written by both models to compare blind. They are work the writers do only
when they have nothing better to do, and they are never the document's autodoc:

- Queued in the save's own transaction (`queue_for`, from services/documents.py), for SHADOW_SHARE
  of creates and edits (drawn at random; regenerations are not shadowed), by the newest
  candidate whose files were not refused. With the share at 0 nothing is drawn or queried.
- Kept in a table of their own (models.ShadowDraft): a list, badge, place in the queue,
  notification, review count or export of autodocs cannot show them by a forgotten filter.
  Nothing here notifies, counts a review or writes the audit log.
- Claimed like the autodocs (services/leases.py: SKIP LOCKED, leases, attempt tokens, a
  conditional write back), one at a time (a writer round claims one after its claim of real
  autodocs found none), and only when no real autodoc waits: the condition
  (autodoc_queue.claimable) sits in the locking statement itself, so every process obeys it
  at the moment it claims, whatever its own round did before. A real autodoc saved after
  that moment waits at most for one single-prompt write.
- Drafts of an archived document wait, unwritten, as its autodocs do. Drafts whose model is
  no longer a candidate (promoted or retired) are marked failed with the reason by the next
  claim: a comparison against the model now active means nothing. When a writer finds a
  candidate's files changed, the reason goes on the model's row (as for the active model),
  the candidate gets no new drafts and its waiting ones fail with that reason.

The writer (writer.py) writes them with the same path as autodocs, holding the candidate
as a second model in memory beside the active one, compiled for batch size 1 only.
"""
import datetime as dt
import random
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from ..extensions import db
from ..models import ShadowDraft, WriterModel
from ..static.data.processeddata.models import Autodoc, Revision
from . import autodoc_queue, leases, registry

DIED_MESSAGE = "The writer stopped {attempts} times while writing this shadow draft."
# Around the model's new state.
NOT_A_CANDIDATE = ("Not written: its model stopped being a candidate (it is ", ") before a writer was free.")


@dataclass(frozen=True)
class Job:
    """One claimed shadow draft: the revision text to write from and the candidate to write it."""

    id: int
    autodoc_id: int
    model_id: int
    attempt_token: str
    title: str
    body: str
    queued_at: dt.datetime
    started_at: dt.datetime
    request_id: str | None = None  # of the request that queued it, for the writer's log lines

    kind = "shadow_draft"


def current_candidate_id():
    """The id of the newest candidate whose files were not refused, or None (one small query)."""
    return db.session.scalar(
        select(WriterModel.id).where(WriterModel.state == "candidate", WriterModel.integrity_error.is_(None))
        .order_by(WriterModel.id.desc()).limit(1)
    )


def queue_for(autodoc):
    """In the save's transaction: for SHADOW_SHARE of saves, while a candidate exists, queue a
    draft of `autodoc`'s revision by it; returns the ShadowDraft or None. Flushes nothing."""
    share = current_app.config["SHADOW_SHARE"]
    if share <= 0 or random.random() >= share:
        return None
    candidate_id = current_candidate_id()
    if candidate_id is None:
        return None
    draft = ShadowDraft(autodoc=autodoc, model_id=candidate_id, status="queued")
    db.session.add(draft)
    return draft


def claim_jobs(worker, limit, lease_seconds, max_attempts):
    """Claim up to `limit` shadow drafts for `worker` when no real autodoc waits; commits and
    returns them (oldest first; drafts whose writer died first of all)."""
    now = leases.database_now()
    autodoc_queue.fail_exhausted_expired(ShadowDraft, now, max_attempts, DIED_MESSAGE)
    _fail_drafts_of_former_candidates(now)
    ids = leases.lock(
        autodoc_queue.of_unarchived_documents(
            select(ShadowDraft.id).join(Autodoc, Autodoc.id == ShadowDraft.autodoc_id))
        .join(WriterModel, WriterModel.id == ShadowDraft.model_id)
        .where(or_(ShadowDraft.status == "queued", and_(*leases.expired(ShadowDraft, now))),
               WriterModel.state == "candidate", WriterModel.integrity_error.is_(None),
               ~autodoc_queue.claimable(now))
        # Drafts whose writer died (running, lease run out) first: False sorts before True.
        .order_by(ShadowDraft.status == "queued", ShadowDraft.id).limit(limit),
        of=ShadowDraft,
    )
    if not ids:
        db.session.commit()
        return []
    token = leases.take(ShadowDraft, ids, worker, lease_seconds, now, error=None)
    rows = db.session.execute(
        select(ShadowDraft.id, ShadowDraft.autodoc_id, ShadowDraft.model_id, ShadowDraft.queued_at,
               ShadowDraft.request_id, Revision.title, Revision.body)
        .join(Autodoc, Autodoc.id == ShadowDraft.autodoc_id).join(Revision, Revision.id == Autodoc.revision_id)
        .where(ShadowDraft.id.in_(ids)).order_by(ShadowDraft.id)
    ).all()
    db.session.commit()
    return [Job(row.id, row.autodoc_id, row.model_id, token, row.title, row.body, row.queued_at, now,
                row.request_id) for row in rows]


def _fail_drafts_of_former_candidates(now):
    """Drafts still waiting (or left by a dead writer) for a model that is no longer a
    candidate will never be compared: failed, saying what the model became (found by the
    index on shadow_drafts.model_id)."""
    former = select(WriterModel.id).where(WriterModel.state != "candidate")
    state = select(WriterModel.state).where(WriterModel.id == ShadowDraft.model_id).scalar_subquery()
    db.session.execute(
        update(ShadowDraft)
        .where(ShadowDraft.model_id.in_(former),
               or_(ShadowDraft.status == "queued", and_(*leases.expired(ShadowDraft, now))))
        .values(status="failed", finished_at=now, lease_expires_at=None, attempt_token=None,
                error=func.concat(NOT_A_CANDIDATE[0], state, NOT_A_CANDIDATE[1]))
        .execution_options(synchronize_session=False)
    )


def extend_leases(jobs, lease_seconds, deadline_seconds=None):
    """Heartbeat, as autodoc_queue.extend_leases."""
    if not jobs:
        return 0
    return leases.extend(ShadowDraft, [job.id for job in jobs], jobs[0].attempt_token, lease_seconds,
                         deadline_seconds)


def complete_job(job, prompt, continuation, stamp, model_id):
    """Store the draft's text, written by `model_id` (which must be the draft's candidate);
    False (nothing written) when this attempt lost its claim."""
    result = db.session.execute(
        _own(job).where(ShadowDraft.model_id == model_id)
        .values(status="done", prompt=prompt, continuation=continuation, stamp=stamp, finished_at=func.now(),
                lease_expires_at=None, error=None)
    )
    db.session.commit()
    return result.rowcount == 1


def fail_job(job, reason, max_attempts):
    """Give the draft back to its queue, or mark it failed once its attempts are used up;
    returns its new status ("queued" or "failed"), False (nothing written) when this attempt
    lost its claim. Nobody is told: it is nobody's autodoc."""
    status = autodoc_queue.give_back(ShadowDraft, job, reason, max_attempts)
    db.session.commit()
    return status or False


def put_back(job):
    """Give a claimed draft back as if it had not been claimed, its attempt not counted: the
    writer claimed it before it knew the draft's candidate had first to be loaded. Commits;
    False when this attempt had lost its claim."""
    result = db.session.execute(_own(job).values(status="queued", attempts=ShadowDraft.attempts - 1,
                                                 attempt_token=None, lease_expires_at=None))
    db.session.commit()
    return result.rowcount == 1


def refuse_candidate(job, reason):
    """The writer found the files of `job`'s candidate changed: keep why on the model's row (no
    new drafts are queued for it, none of its drafts is claimed) and fail this draft and its
    waiting ones with the reason. Commits."""
    registry.record_integrity(job.model_id, reason)
    db.session.execute(_own(job).values(status="failed", finished_at=func.now(), error=reason[:2000],
                                        attempt_token=None, lease_expires_at=None))
    db.session.execute(
        update(ShadowDraft).where(ShadowDraft.model_id == job.model_id, ShadowDraft.status == "queued")
        .values(status="failed", finished_at=func.now(), error=reason[:2000])
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def is_candidate(model_id):
    """Is `model_id` still a candidate whose files were not refused? (The writer keeps its
    model in memory only while it is.)"""
    return db.session.scalar(
        select(WriterModel.id).where(WriterModel.id == model_id, WriterModel.state == "candidate",
                                     WriterModel.integrity_error.is_(None))
    ) is not None


def _own(job):
    return leases.own(ShadowDraft, [job.id], job.attempt_token)
