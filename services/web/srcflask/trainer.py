"""The trainer's runtime: `flask model train` (one run, with a progress bar) and `flask model
train --queued` (the trainer service: every queued run, forever).

The queue, the lease and the rules of a run's life are in services/training.py; the machine
learning is in static/src/pipeline/finetune.py, which knows nothing of the database. This
module joins them:

- It claims a run, removes the folders trainers killed while writing left behind, and checks
  the parent's files and the training set's file against their hashes before loading anything.
- It trains at a lower CPU priority (TRAINER_NICE; TensorFlow's threads inherit it), so the
  writer and the pages keep the cores they need. Only one run is trained at a time.
- A heartbeat thread renews the run's lease every third of it, whatever a training step takes
  (loading and compiling GPT-2-small, or one of its steps, can outlast a short lease); progress
  is stored at most every PROGRESS_SECONDS, and each report also says whether to stop
  (cancelled, or the lease was lost).
- The model is written into a hidden folder of the attempt's own; finish_run renames it into
  place and registers it in one transaction. A trainer killed at any point leaves nothing
  registered, only that hidden folder, which the next run removes.
"""
import json
import logging
import math
import os
import platform
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy.exc import SQLAlchemyError

from .services import leases, training
from .writer import lower_priority

log = logging.getLogger("srcflask.trainer")

# Progress is written to the database at most this often (a step of the tiny test model takes
# milliseconds; one of GPT-2-small, seconds): enough for the page's live view and for a cancel
# to be heard within a second or a step.
PROGRESS_SECONDS = 1.0
EVALUATION_BATCH_SIZE = 8


class Trainer:
    """Runs training runs in this process, one at a time."""

    def __init__(self):
        self._stop = threading.Event()

    def stop(self):
        """Stop waiting for runs (a run being trained goes on until it ends)."""
        self._stop.set()

    def run(self, app, *, until_idle=False, run_id=None, on_progress=None):
        """Train queued runs until stopped; with `until_idle`, return once none is queued; with
        `run_id`, train that run only (when it is still queued) and return its outcome (see
        `train`; None when it was not queued).
        `on_progress(progress)` hears every progress report (the command's progress bar)."""
        config = app.config
        worker = f"{socket.gethostname()}:{os.getpid()}:trainer"
        lower_priority(config["TRAINER_NICE"])
        while not self._stop.is_set():
            try:
                with app.app_context():
                    claim = training.claim_run(worker, config["TRAINER_LEASE_SECONDS"], run_id=run_id)
            except SQLAlchemyError as error:
                log.warning("trainer cannot claim a run: %s", type(error).__name__,
                            extra={"event": "trainer_database_unavailable", "error": str(error).splitlines()[0]})
                claim = None
            outcome = self.train(app, claim, on_progress) if claim is not None else None
            if run_id is not None:
                return outcome
            if claim is None and until_idle:
                return None
            if claim is None:
                self._stop.wait(config["TRAINER_POLL_SECONDS"])

    def train(self, app, claim, on_progress=None):
        """Train the claimed run to its end and return how it ended: "succeeded" (a candidate
        registered), "cancelled", "failed" (with its reason on the run) or "lost" (this attempt's
        lease ran out and the run was ended without it). Never raises for a failure of the run."""
        log.info("training run %s claimed (attempt %s)", claim.run_id, claim.attempts,
                 extra={"event": "training_started", "run_id": claim.run_id, "settings": claim.settings,
                        "request_id": claim.request_id})
        with app.app_context():
            removed = training.remove_leftovers()
            folder = training.incomplete_folder(claim)
        if removed:
            log.info("removed folders left by killed trainers: %s", ", ".join(removed),
                     extra={"event": "training_leftovers_removed", "folders": removed})
        try:
            with _heartbeat(app, claim) as lost:
                outcome = self._train(app, claim, folder, lost, on_progress)
        except Exception as error:  # the run fails with its reason; the trainer goes on
            log.exception("training run %s failed", claim.run_id,
                          extra={"event": "training_failed", "run_id": claim.run_id, "error": leases.describe(error),
                                 "request_id": claim.request_id})
            shutil.rmtree(folder, ignore_errors=True)
            try:
                with app.app_context():
                    training.fail_run(claim, leases.describe(error))
            except SQLAlchemyError:  # the lease runs out and the next claim marks it failed
                log.exception("training run %s could not be marked failed", claim.run_id)
            return "failed"
        log.info("training run %s %s", claim.run_id, outcome,
                 extra={"event": f"training_{outcome}", "run_id": claim.run_id, "request_id": claim.request_id})
        return outcome

    def _train(self, app, claim, folder, lost, on_progress):
        from .static.src.pipeline import finetune

        with app.app_context():
            inputs = training.prepare(claim)
        settings = claim.settings
        reporter = _Reporter(app, claim, lost, on_progress)
        try:
            result = finetune.fine_tune(inputs.parent["folder"], inputs.train_pairs, inputs.validation_pairs,
                                        folder, on_progress=reporter, **settings)
        except finetune.TrainingCancelled:  # cancelling was asked, or the run was lost
            shutil.rmtree(folder, ignore_errors=True)
            with app.app_context():
                return "cancelled" if training.end_cancelled(claim) else "lost"
        evaluations = {
            inputs.parent["id"]: (result.parent_validation_loss, result.parent_validation_perplexity,
                                  result.validation_tokens),
            "candidate": (result.validation_loss, result.validation_perplexity, result.validation_tokens),
        }
        active = None
        if inputs.active is not None:
            loss, perplexity, tokens = finetune.evaluate(inputs.active["folder"], inputs.validation_pairs,
                                                         batch_size=min(settings["batch_size"], EVALUATION_BATCH_SIZE),
                                                         max_tokens=settings["max_tokens"])
            evaluations[inputs.active["id"]] = (loss, perplexity, tokens)
            active = {"id": inputs.active["id"], "label": inputs.active["label"], **_figures(loss, perplexity)}
        metadata = _metadata(claim, inputs, result, active)
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if lost.is_set():
            shutil.rmtree(folder, ignore_errors=True)
            return "lost"
        with app.app_context():
            model = training.finish_run(claim, folder, metadata=metadata, evaluations=evaluations)
        if model is None:  # cancelled at the last moment, or the run was lost
            shutil.rmtree(folder, ignore_errors=True)
            return "cancelled"
        return "succeeded"


def _figures(loss, perplexity):
    """Loss and perplexity as JSON can hold them (an infinite perplexity becomes null)."""
    return {"loss": loss if math.isfinite(loss) else None,
            "perplexity": perplexity if math.isfinite(perplexity) else None}


def _metadata(claim, inputs, result, active):
    """metadata.json: what it takes to know where a retrained model came from and how good it is."""
    import tensorflow
    import tf_keras
    import transformers

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_id": claim.run_id,
        "parent": {key: inputs.parent[key] for key in ("id", "label", "weights_sha256")},
        "training_set": inputs.training_set,
        "counts": {"train_pairs": result.train_pairs, "validation_pairs": result.validation_pairs,
                   "train_tokens": result.train_tokens, "validation_tokens": result.validation_tokens},
        "hyperparameters": dict(claim.settings),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": result.seconds,
        "validation": {
            "parent": _figures(result.parent_validation_loss, result.parent_validation_perplexity),
            "model": _figures(result.validation_loss, result.validation_perplexity),
            "active": active,
            "loss_by_epoch": [loss if math.isfinite(loss) else None for loss in result.history],
        },
        "libraries": {"tensorflow": tensorflow.__version__, "transformers": transformers.__version__,
                      "tf-keras": tf_keras.__version__, "python": platform.python_version()},
    }


class _Reporter:
    """fine_tune's on_progress: stores progress at most every PROGRESS_SECONDS (and at each
    epoch's last step) and answers False once the run must stop."""

    def __init__(self, app, claim, lost, on_progress):
        self._app, self._claim, self._lost, self._on_progress = app, claim, lost, on_progress
        self._last = None

    def __call__(self, progress):
        if self._on_progress is not None:
            self._on_progress(progress)
        if self._lost.is_set():
            return False
        now = time.monotonic()
        if self._last is not None and now - self._last < PROGRESS_SECONDS and progress["step"] < progress["steps"]:
            return True
        self._last = now
        try:
            with self._app.app_context():
                return training.report_progress(self._claim, progress)
        except SQLAlchemyError as error:  # training goes on; the heartbeat keeps the lease while it can
            log.warning("trainer cannot report progress: %s", type(error).__name__,
                        extra={"event": "trainer_database_unavailable", "run_id": self._claim.run_id})
            return True


@contextmanager
def _heartbeat(app, claim):
    """Renew the run's lease every third of it while the block runs; yields an Event set once
    a renewal finds the run no longer held by this attempt (its lease ran out and it was ended)."""
    stop, lost = threading.Event(), threading.Event()

    def beat():
        while not stop.wait(claim.lease_seconds / 3):
            try:
                with app.app_context():
                    if not training.renew(claim):
                        lost.set()
                        return
            except SQLAlchemyError as error:  # a missed beat is harmless while the lease lasts
                log.warning("trainer heartbeat cannot reach the database: %s", type(error).__name__,
                            extra={"event": "trainer_database_unavailable", "step": "heartbeat"})

    thread = threading.Thread(target=beat, name="trainer-heartbeat", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join()


trainer = Trainer()
