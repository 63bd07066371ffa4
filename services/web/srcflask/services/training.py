"""Training runs: fine-tuning jobs queued in the database and run by a trainer process.

An admin (the Models page, the API, `flask model train`) asks for a run. `request_run` checks
everything that can be checked before any work — the parent model is registered, not retired
and not refused by the writer; the training set's file still matches its hash; the settings
are within bounds — and queues a `training_runs` row, audited. A trainer process
(srcflask/trainer.py: `flask model train --queued`, never the web process, never the writer)
claims it the way the writer claims autodocs (services/leases.py: SKIP LOCKED, a lease on the
database clock, a fresh attempt token, every write back conditional on it) and renews the
lease while it trains.

A run is tried once. A trainer that dies (killed, out of memory, its machine gone) stops
renewing its lease; the next claim marks the run failed with the reason ("The trainer stopped
while training (attempt N).") instead of starting it again: a run that killed its trainer
once would likely do it again, and hours of training are the admin's to spend. The model
folder it was writing is hidden (`.incomplete-<run>-<attempt token>`) and never registered;
the next trainer removes it (`remove_leftovers`).

Cancelling (`cancel_run`): a queued run is cancelled at once; a running one is marked
cancel_requested, its trainer stops at its next progress report (`report_progress` answers
False) and marks it cancelled (`end_cancelled`); a finished run cannot be cancelled
(RunFinished). `finish_run` moves the model folder into place, registers it as a candidate,
records the validation figures the promotion gate compares and marks the run succeeded, in
one transaction: all of it happens, or none (the folder goes back to its hidden name).

request_run and cancel_run flush and leave the commit to their caller (a view, a command);
the trainer's functions (claim, progress, finish, fail) commit, each its own transaction.
"""
import datetime as dt
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from flask import current_app
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import String, case, cast, func, literal, select, update
from sqlalchemy.orm import joinedload

from ..config import Settings
from ..extensions import db
from ..models import TrainingRun, TrainingSet, WriterModel
from . import audit, leases, registry, trainingsets

DIED_MESSAGE = ("The trainer stopped while training (attempt ", ").")
FINISHED = ("succeeded", "failed", "cancelled")
INCOMPLETE_PREFIX = ".incomplete-"
# A run's settings and the settings (config.py) that give their defaults and bounds.
SETTINGS = {
    "epochs": "TRAINING_EPOCHS",
    "batch_size": "TRAINING_BATCH_SIZE",
    "learning_rate": "TRAINING_LEARNING_RATE",
    "weight_decay": "TRAINING_WEIGHT_DECAY",
    "patience": "TRAINING_PATIENCE",
    "seed": "TRAINING_SEED",
    "max_tokens": "TRAINING_MAX_TOKENS",
    "jit_compile": "TRAINING_JIT_COMPILE",
}


class TrainingError(ValueError):
    """A training action refused; the message is a sentence for the person who asked."""


class TrainingRefused(TrainingError):
    """A run that must not start: the reason is known before any work."""


class RunNotFound(TrainingError):
    pass


class RunFinished(TrainingError):
    """The run is over (succeeded, failed or cancelled): nothing about it can change."""


@dataclass(frozen=True)
class RunClaim:
    """One claimed run: what to train and the attempt that holds it."""

    run_id: int
    attempt_token: str
    attempts: int
    lease_seconds: int
    parent_id: int
    training_set_id: int
    settings: dict
    request_id: str | None = None  # of the request that queued it, for the trainer's log lines


@dataclass(frozen=True)
class RunInputs:
    """Everything a claimed run trains and measures on, read and checked before training."""

    parent: dict  # id, label, name, folder, weights_sha256
    active: dict | None  # id, label, folder of the active model when it is not the parent
    training_set: dict  # id, sha256 and the counts made with it
    train_pairs: list
    validation_pairs: list


def default_settings():
    """A run's settings when the admin gives none: the TRAINING_* settings."""
    return {name: current_app.config[key] for name, key in SETTINGS.items()}


def check_settings(settings, parent):
    """`settings` with the defaults filled in, each within the bounds of its TRAINING_* setting
    and max_tokens within the parent's positions; TrainingRefused naming every one that is not."""
    problems = [f"{name}: not a setting of a training run" for name in settings if name not in SETTINGS]
    values = default_settings()
    for name, value in settings.items():
        if name not in SETTINGS or value is None:
            continue
        field = Settings.model_fields[SETTINGS[name]]
        try:
            values[name] = TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
        except ValidationError as invalid:
            problems.append(f"{name}: got {value!r}; {invalid.errors()[0]['msg'].lower()}")
    positions = (parent.shape or {}).get("n_positions")
    if positions and values["max_tokens"] > positions:
        problems.append(f"max_tokens: got {values['max_tokens']}; {parent.label} reads at most {positions} tokens")
    if problems:
        raise TrainingRefused("The training settings are not valid: " + "; ".join(problems) + ".")
    return values


def request_run(parent_id, training_set_id, settings, requested_by):
    """Queue a run fine-tuning model `parent_id` on training set `training_set_id` with
    `settings` (missing ones from the defaults), asked by `requested_by` (a User, or None at
    the console); audited. Raises TrainingRefused before anything is written when the parent
    is not registered, retired or refused by the writer, the set is missing or its file
    changed, or a setting is out of bounds. Flushes; the caller commits."""
    parent = db.session.get(WriterModel, parent_id) if parent_id is not None else None
    if parent is None:
        raise TrainingRefused(f"There is no registered model #{parent_id} to train from.")
    if parent.state == "retired":
        raise TrainingRefused(f"{parent.label} is retired: train from the active model or a candidate.")
    if parent.integrity_error:
        raise TrainingRefused(f"{parent.label} cannot be trained from: {parent.integrity_error}")
    training_set = db.session.get(TrainingSet, training_set_id) if training_set_id is not None else None
    if training_set is None:
        raise TrainingRefused(f"There is no training set #{training_set_id}.")
    try:
        trainingsets.verify_file(training_set)
    except trainingsets.TrainingSetChanged as changed:
        raise TrainingRefused(str(changed)) from None
    values = check_settings(settings or {}, parent)
    run = TrainingRun(parent_id=parent.id, training_set_id=training_set.id, settings=values,
                      requested_by_id=requested_by.id if requested_by is not None else None)
    db.session.add(run)
    db.session.flush()
    audit.record(requested_by, "trainingrun.start", "training_run", run.id, parent=parent.label,
                 parent_id=parent.id, training_set_id=training_set.id, settings=values)
    return run


def cancel_run(run_id, admin):
    """Cancel run `run_id` for `admin`: a queued run is cancelled at once, a running one is
    asked to stop (its trainer marks it cancelled). Audited once. RunNotFound, or RunFinished
    for a run that is over. The run's row is locked, so a trainer finishing at the same moment
    either sees the request or has already finished (then this raises RunFinished). Flushes."""
    run = db.session.scalar(select(TrainingRun).where(TrainingRun.id == run_id).with_for_update()
                            .execution_options(populate_existing=True))
    if run is None:
        raise RunNotFound(f"There is no training run #{run_id}.")
    if run.status in FINISHED:
        raise RunFinished(f"Training run #{run.id} has already {_finished_words(run.status)}: there is nothing "
                          "to cancel.")
    if run.cancel_requested:
        return run  # asked already: its trainer is stopping
    was = run.status
    if was == "queued":
        run.status, run.finished_at = "cancelled", func.now()
    else:
        run.cancel_requested = True
    db.session.flush()
    audit.record(admin, "trainingrun.cancel", "training_run", run.id, status=was, parent_id=run.parent_id,
                 training_set_id=run.training_set_id)
    return run


def _finished_words(status):
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled"}[status]


def runs_query():
    """Every run, newest first, with its parent, result model and requester in the same query."""
    return (select(TrainingRun)
            .options(joinedload(TrainingRun.parent), joinedload(TrainingRun.result_model),
                     joinedload(TrainingRun.requested_by))
            .order_by(TrainingRun.id.desc()))


def claim_run(worker, lease_seconds, run_id=None):
    """Claim the oldest queued run (or run `run_id` when it is queued) for `worker`; commits
    and returns a RunClaim, or None. Runs whose trainer died (lease ran out) are ended first:
    failed with the reason, or cancelled when that was asked."""
    now = leases.database_now()
    _end_abandoned(now)
    query = select(TrainingRun.id).where(TrainingRun.status == "queued")
    if run_id is not None:
        query = query.where(TrainingRun.id == run_id)
    ids = leases.lock(query.order_by(TrainingRun.id).limit(1))
    if not ids:
        db.session.commit()
        return None
    token = leases.take(TrainingRun, ids, worker, lease_seconds, now, progress=None, error=None)
    run = db.session.execute(select(TrainingRun.id, TrainingRun.attempts, TrainingRun.parent_id,
                                    TrainingRun.training_set_id, TrainingRun.settings, TrainingRun.request_id)
                             .where(TrainingRun.id == ids[0])).one()
    db.session.commit()
    return RunClaim(run.id, token, run.attempts, lease_seconds, run.parent_id, run.training_set_id,
                    dict(run.settings), run.request_id)


def _end_abandoned(now):
    died = literal(DIED_MESSAGE[0]) + cast(TrainingRun.attempts, String) + literal(DIED_MESSAGE[1])
    db.session.execute(
        update(TrainingRun).where(*leases.expired(TrainingRun, now))
        .values(status=case((TrainingRun.cancel_requested, "cancelled"), else_="failed"),
                error=case((TrainingRun.cancel_requested, None), else_=died),
                finished_at=now, lease_expires_at=None, attempt_token=None)
        .execution_options(synchronize_session=False)
    )


def prepare(claim):
    """What the claimed run trains on, checked: the parent's folder against its registered
    hashes (registry.ModelIntegrityError) and the training set's file against its hash
    (trainingsets.TrainingSetChanged), both read again now that the work starts."""
    parent = db.session.get(WriterModel, claim.parent_id)
    registry.verify(parent)
    training_set = db.session.get(TrainingSet, claim.training_set_id)
    train_pairs = trainingsets.read_pairs(training_set, "train")
    validation_pairs = trainingsets.read_pairs(training_set, "validation")
    active = registry.active_model()
    if active is not None and active.id != parent.id:
        registry.verify(active)
        active = {"id": active.id, "label": active.label, "folder": str(registry.model_folder(active))}
    else:
        active = None
    return RunInputs(
        parent={"id": parent.id, "label": parent.label, "name": parent.name,
                "folder": str(registry.model_folder(parent)), "weights_sha256": parent.files.get("tf_model.h5")},
        active=active,
        training_set={"id": training_set.id, "sha256": training_set.sha256,
                      **{key: getattr(training_set, key) for key in (
                          "train_documents", "train_pairs", "train_tokens", "validation_documents",
                          "validation_pairs", "validation_tokens")}},
        train_pairs=train_pairs, validation_pairs=validation_pairs,
    )


def renew(claim):
    """Heartbeat: a fresh lease while training goes on; False when this attempt lost the run."""
    return leases.extend(TrainingRun, [claim.run_id], claim.attempt_token, claim.lease_seconds) == 1


def report_progress(claim, progress):
    """Store where training stands (epoch, step, loss, seconds_left...) and renew the lease;
    commits. False when the trainer must stop: cancelling was asked, or this attempt lost the
    run."""
    now = leases.database_now()
    progress = {key: (value if not isinstance(value, float) or math.isfinite(value) else None)
                for key, value in progress.items()}
    cancel_requested = db.session.scalar(
        leases.own(TrainingRun, [claim.run_id], claim.attempt_token)
        .values(progress={**progress, "updated_at": now.isoformat()},
                lease_expires_at=now + dt.timedelta(seconds=claim.lease_seconds))
        .returning(TrainingRun.cancel_requested)
    )
    db.session.commit()
    return cancel_requested is False


def end_cancelled(claim):
    """The trainer stopped because cancelling was asked: mark the run cancelled; commits.
    False when this attempt no longer held the run."""
    return _end(claim, "cancelled", None, TrainingRun.cancel_requested)


def fail_run(claim, reason):
    """The run failed (`reason`, one line for the pages); commits. False when this attempt no
    longer held the run."""
    return _end(claim, "failed", reason[:2000])


def _end(claim, status, error, *conditions):
    result = db.session.execute(
        leases.own(TrainingRun, [claim.run_id], claim.attempt_token).where(*conditions)
        .values(status=status, error=error, finished_at=func.now(), lease_expires_at=None)
    )
    db.session.commit()
    return result.rowcount == 1


def models_dir():
    """The folder retrained models are written to (RETRAINED_MODELS_DIR)."""
    return Path(current_app.config["RETRAINED_MODELS_DIR"])


def incomplete_folder(claim):
    """Where the attempt writes its model: hidden, named by the run and the attempt, so a
    leftover is told from a folder being written (`remove_leftovers`)."""
    return models_dir() / f"{INCOMPLETE_PREFIX}{claim.run_id}-{claim.attempt_token}"


def remove_leftovers():
    """Remove the folders that trainers killed while writing left behind: every incomplete
    folder but those of attempts still running. Returns the names removed."""
    running = {f"{INCOMPLETE_PREFIX}{run_id}-{token}" for run_id, token in db.session.execute(
        select(TrainingRun.id, TrainingRun.attempt_token).where(TrainingRun.status == "running"))}
    db.session.commit()
    folder = models_dir()
    removed = []
    for path in sorted(folder.glob(f"{INCOMPLETE_PREFIX}*")) if folder.is_dir() else ():
        if path.name not in running:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def finish_run(claim, folder, *, metadata, evaluations):
    """Register the model the attempt wrote in `folder` (its incomplete folder) and end the run,
    in one transaction: the folder is renamed to <name>-v<version>, registered as a retrained
    candidate with `metadata` (its metadata.json) and the run's training set, the validation
    figures in `evaluations` ({"candidate" or a model id: (loss, perplexity, tokens)}) are
    recorded, and the run marked succeeded. Returns the new model; None, with nothing
    registered, when this attempt lost the run or cancelling was asked (the run is then
    marked cancelled). On any error the folder goes back to its name and nothing is kept."""
    own = leases.own(TrainingRun, [claim.run_id], claim.attempt_token)
    # Marks the run and locks its row until the commit: a cancel at the same moment waits and
    # then finds the run finished.
    won = db.session.scalar(own.where(~TrainingRun.cancel_requested)
                            .values(status="succeeded", error=None, finished_at=func.now(), lease_expires_at=None)
                            .returning(TrainingRun.id))
    if won is None:
        db.session.rollback()
        end_cancelled(claim)
        return None
    run = db.session.get(TrainingRun, claim.run_id)
    parent = run.parent
    version = registry.next_version(parent.name)
    final = models_dir() / f"{parent.name}-v{version}"
    if final.exists():
        db.session.rollback()
        raise TrainingError(f"{final} already exists, though no {parent.name} v{version} is registered: move it "
                            "away and train again.")
    os.replace(folder, final)
    try:
        model = registry.register_folder(final, kind="retrained", name=parent.name, parent=parent,
                                         created_by=run.requested_by, training=metadata,
                                         training_set=run.training_set)
        if model.version != version:
            raise TrainingError(f"Another {parent.name} model was registered at the same moment; train again.")
        for key, (loss, perplexity, tokens) in evaluations.items():
            measured = model if key == "candidate" else db.session.get(WriterModel, key)
            registry.record_evaluation(measured, run.training_set, loss, perplexity, tokens)
        run.result_model_id = model.id
        db.session.commit()
    except BaseException:
        db.session.rollback()
        os.replace(final, folder)
        raise
    return model
