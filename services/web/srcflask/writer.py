"""The autodoc writer's runtime: threads inside the app process, or `flask writer run`.

The model, its tokenizer and the compiled XLA programs are loaded once per process, in the
writer thread, never at import time and never on a request. The queue itself (claims,
leases, attempt tokens) lives in services/autodoc_queue.py; this module only runs it.
With no model installed the writer waits and retries, so queued autodocs stay queued and
drain once a model is put in place.

Each writer thread supervises itself: any unexpected error of a round (a corrupt weights
file, out of memory while loading or compiling, a bug in building prompts) is logged with
its traceback, gives the jobs the round held back to the queue at once, is reported as the
writer's state (`failure`: /readyz, the dashboard, `srcflask_writer_alive`) and is retried
after a backoff that doubles from WRITER_RESTART_MIN_SECONDS to WRITER_RESTART_MAX_SECONDS.
The first round that goes through clears it.
"""
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from .errors import is_database_outage
from .metrics import GENERATION_SECONDS
from .services import autodoc_queue, leases

log = logging.getLogger("srcflask.writer")

# What became of a finished job's text, by what writing it back returned: None when the
# writer stopped while the database was unreachable (the lease runs out and another
# attempt writes the job).
JOB_OUTCOMES = {
    True: ("written", "autodoc_written"),
    False: ("refused: its lease was taken over", "autodoc_refused"),
    None: ("not saved", "autodoc_not_saved"),
}
NO_WRITER_HERE = "This process runs no writer (WRITER_IN_PROCESS=0): `flask writer run` processes write the autodocs."
NO_MODEL_HELP = "Install one with `flask writer fetch` (needs internet) or set WRITER_MODEL_DIR to a GPT-2 folder."


def model_installed(model_dir):
    """Cheap check (no loading): does the folder hold a save_pretrained GPT-2?"""
    return (Path(model_dir) / "config.json").is_file()


class WriterRuntime:
    """init_app-style holder of this process's writer threads and model state."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threads = []
        self._stop = threading.Event()
        self._autodoc_writer = None
        self.model_error = None
        # {writer thread's name: why its last round failed}; a round that goes through
        # removes its thread's entry.
        self.failures = {}

    def init_app(self, app):
        app.extensions["writer"] = self
        app.add_template_global(self.problem, "writer_problem")
        if app.config["WRITER_IN_PROCESS"]:
            # Started with the server by gunicorn's post_worker_init (production and the
            # quick start, scripts/run); under `flask run` (docker-compose.yml's development
            # server), which has no such hook, by the first request. Never by create_app
            # itself: CLI commands like `flask db upgrade` stay light.
            app.before_request(lambda: self.start(app))

    def problem(self):
        """What keeps autodocs from being written, in words for the pages; None when the
        writer has (or can load) a model. Cheap: a file check, no loading."""
        if self.failure:
            return f"The writer failed: {self.failure}. It retries by itself; autodocs wait in the queue."
        model_dir = current_app.config["WRITER_MODEL_DIR"]
        if not model_installed(model_dir):
            return f"The writer has no model installed (looked in {model_dir}), so autodocs wait in the queue. {NO_MODEL_HELP}"
        if self.model_error:
            return f"The writer cannot load its model: {self.model_error}"
        return None

    def state(self):
        """This process's writer as /readyz and the dashboard show it: {"state": elsewhere,
        failed, loaded, unavailable, loading or not running, and what goes with it}."""
        if not current_app.config["WRITER_IN_PROCESS"]:
            return {"state": "elsewhere", "detail": NO_WRITER_HERE}
        if self.failure:
            return {"state": "failed", "reason": self.failure, "detail": self.problem()}
        info = self.loaded_info
        if info:
            return {"state": "loaded", "model": info.get("name"), "load_seconds": info.get("load_seconds")}
        problem = self.problem()
        if problem:
            return {"state": "unavailable", "detail": problem}
        if self.running:
            return {"state": "loading", "detail": "The writer is loading and compiling its model."}
        return {"state": "not running", "detail": "The writer threads of this process are not running."}

    @property
    def loaded_info(self):
        """What identifies the loaded model (name, load_seconds ...), None before it is loaded."""
        writer = self._autodoc_writer
        return writer.loaded.info if writer is not None else None

    @property
    def running(self):
        return any(thread.is_alive() for thread in self._threads)

    @property
    def failure(self):
        """Why a writer thread's last round failed (one line), None when none did."""
        return next(iter(self.failures.values()), None)

    @property
    def alive(self):
        """This process's writer threads run and none is failing."""
        return self.running and not self.failures

    def start(self, app, threads=None):
        """Start the writer threads once per process (idempotent, cheap when running)."""
        if self._threads:
            return
        with self._lock:
            if self._threads:
                return
            self._stop.clear()
            for number in range(threads or app.config["WRITER_THREADS"]):
                thread = threading.Thread(target=self.run, args=(app,), name=f"writer-{number}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def stop(self, timeout=30):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def forget_model(self):
        """Drop the loaded writer so the next use loads again, as a fresh process would."""
        with self._lock:
            self._autodoc_writer = None

    def run(self, app, until_idle=False):
        """Drain the queue until stopped, supervised (see the module's docstring); with
        `until_idle`, return once nothing is claimable, no model is installed or a round
        failed — for tests and one-shot commands."""
        name = threading.current_thread().name
        worker = f"{socket.gethostname()}:{os.getpid()}:{name}"
        config = app.config
        lower_priority(config["WRITER_NICE"])
        failed_rounds = 0
        while not self._stop.is_set():
            try:
                pause = self._round(app, worker)
            except Exception as error:  # anything at all: the thread must outlive it
                failed_rounds += 1
                delay = leases.retry_wait(failed_rounds, config["WRITER_RESTART_MIN_SECONDS"],
                                          config["WRITER_RESTART_MAX_SECONDS"])
                reason = self.failures[name] = leases.describe(error)
                log.exception("writer failed (%s); retrying in %.1f s", reason, delay,
                              extra={"event": "writer_failed", "worker": worker, "error": reason,
                                     "retry_seconds": delay, "failed_rounds": failed_rounds})
                if until_idle:
                    return
                self._stop.wait(delay)
                continue
            failed_rounds = 0
            self.failures.pop(name, None)
            if pause is None:
                continue
            if until_idle:
                return
            self._stop.wait(pause)

    def _round(self, app, worker):
        """Load the model if needed, claim a batch and write it; returns the seconds to wait
        before the next round (None: go on at once)."""
        config = app.config
        writer = self.load(config)
        if writer is None:
            return config["WRITER_MODEL_RETRY_SECONDS"]
        jobs = self._with_database(app, "claim", autodoc_queue.claim_jobs, worker, config["WRITER_BATCH_SIZE"],
                                   config["WRITER_LEASE_SECONDS"], config["WRITER_MAX_ATTEMPTS"], give_up=True)
        if not jobs:
            return config["WRITER_POLL_SECONDS"]
        self._write(app, writer, jobs, worker)
        return None

    def _with_database(self, app, what, action, *args, give_up=False):
        """Run `action(*args)` in an app context, waiting out a database outage (a restart, a
        failover): the writer thread must outlive it, and a finished text must not be lost
        to it. Retries until the database answers, or returns None at once when `give_up`
        (a claim is simply tried again on the next round) or when the writer is stopping
        (the job's lease then runs out and another attempt writes it). Any other database
        error is a bug, not an outage: it is logged and not retried (None; the lease rule
        gives the job another attempt)."""
        while True:
            try:
                with app.app_context():
                    return action(*args)
            except SQLAlchemyError as error:
                if not is_database_outage(error):
                    log.exception("writer's %s failed", what, extra={"event": "writer_database_error", "step": what})
                    return None
                log.warning("writer cannot reach the database (%s): %s", what, type(error).__name__,
                            extra={"event": "writer_database_unavailable", "step": what,
                                   "error": str(error).splitlines()[0]})
            if self._stop.wait(app.config["WRITER_POLL_SECONDS"]) or give_up:
                return None

    def load(self, config):
        """The process's AutodocWriter, loading and compiling it on first use; None while no
        model is installed (the reason is kept for `flask writer status` and the pages)."""
        if self._autodoc_writer is not None:
            return self._autodoc_writer
        from .static.mlmodels.seedmlmodels.headmodel import ModelNotInstalled, load_model
        from .static.src.evaluation.autodocwriter import AutodocWriter

        with self._lock:
            if self._autodoc_writer is None:
                try:
                    loaded = load_model(config["WRITER_MODEL_DIR"],
                                        intra_op_threads=config["WRITER_TF_INTRA_THREADS"] or None,
                                        inter_op_threads=config["WRITER_TF_INTER_THREADS"] or None)
                except ModelNotInstalled as error:
                    if self.model_error != str(error):
                        log.warning("writer waiting for a model: %s", error,
                                    extra={"event": "writer_no_model", "reason": str(error)})
                    self.model_error = str(error)
                    return None
                writer = AutodocWriter(loaded, max_new_tokens=config["WRITER_MAX_NEW_TOKENS"],
                                       context_tokens=config["WRITER_CONTEXT_TOKENS"])
                started = time.perf_counter()
                writer.warm_up()
                compile_seconds = round(time.perf_counter() - started, 2)
                log.info("writer ready: model %s, compiled in %.1f s", loaded.info.get("name"), compile_seconds,
                         extra={"event": "writer_ready", "model": loaded.info.get("name"),
                                "load_seconds": loaded.info.get("load_seconds"), "compile_seconds": compile_seconds})
                self.model_error = None
                self._autodoc_writer = writer
        return self._autodoc_writer

    def _write(self, app, writer, jobs, worker):
        """Write the claimed jobs. Whatever fails outside generate (building prompts, a bug),
        the jobs not yet settled are given back at once through the queue's own conditional
        write (each keeps the attempt it used), not left `running` until their lease runs
        out, and the error goes up to run's supervision."""
        settled = set()
        try:
            self._write_claimed(app, writer, jobs, worker, settled)
        except Exception as error:
            for job in jobs:
                if job.autodoc_id not in settled:
                    self._with_database(app, "release", autodoc_queue.fail_job, job, leases.describe(error),
                                        app.config["WRITER_MAX_ATTEMPTS"])
            raise

    def _write_claimed(self, app, writer, jobs, worker, settled):
        from .static.src.features.doctokenization import build_prompt

        config = app.config
        prompts = [build_prompt(writer.tokenizer, job.title, job.body, config["WRITER_CONTEXT_TOKENS"])
                   for job in jobs]
        for job, prompt in zip(jobs, prompts):
            if prompt is None:
                stamp = self._stamp(writer, job, "", 0.0, 0, worker)
                written = self._with_database(app, "write", autodoc_queue.complete_job, job, "", "", stamp)
                settled.add(job.autodoc_id)
                self._log_job(job, written, 0.0, 0, worker)
        pending = [(job, prompt) for job, prompt in zip(jobs, prompts) if prompt is not None]
        if not pending:
            return
        with _Heartbeat(app, [job for job, _ in pending], config["WRITER_LEASE_SECONDS"],
                        config["WRITER_JOB_DEADLINE_SECONDS"]):
            self._generate(app, writer, pending, worker, settled)

    def _generate(self, app, writer, pending, worker, settled):
        """One generate call for the (job, prompt) pairs, each text stored as it is written.
        When a batch fails, its jobs are tried again each alone: one input that makes the
        model fail then uses up only its own attempts, and the others are written."""
        started = time.perf_counter()
        try:
            continuations = writer.write([prompt for _, prompt in pending])
        except Exception as error:  # any failure of generation: retried, then reported
            ids = [job.autodoc_id for job, _ in pending]
            alone = len(pending) == 1
            log.exception("writer failed on autodocs %s%s", ids, "" if alone else "; writing each alone",
                          extra={"event": "autodoc_batch_failed", "autodoc_ids": ids, "worker": worker,
                                 "error": leases.describe(error)})
            if not alone:
                for one in pending:
                    self._generate(app, writer, [one], worker, settled)
                return
            (job, _), = pending
            self._with_database(app, "fail", autodoc_queue.fail_job, job, leases.describe(error),
                                app.config["WRITER_MAX_ATTEMPTS"])
            settled.add(job.autodoc_id)
            return
        seconds = time.perf_counter() - started
        GENERATION_SECONDS.observe(seconds)
        for (job, prompt), continuation in zip(pending, continuations):
            stamp = self._stamp(writer, job, prompt.text, seconds, len(pending), worker)
            written = self._with_database(app, "write", autodoc_queue.complete_job,
                                          job, prompt.text, continuation.text, stamp)
            settled.add(job.autodoc_id)
            self._log_job(job, written, seconds, len(pending), worker)

    @staticmethod
    def _log_job(job, written, seconds, batch_size, worker):
        """The per-job log line: one per autodoc this writer finished (or lost)."""
        outcome, event = JOB_OUTCOMES[written]
        log.info("autodoc %s %s in %.2f s (batch of %d)", job.autodoc_id, outcome, seconds, batch_size,
                 extra={"event": event, "autodoc_id": job.autodoc_id,
                        "seconds": round(seconds, 3), "batch_size": batch_size, "worker": worker,
                        "queued_at": job.queued_at.isoformat(), "started_at": job.started_at.isoformat()})

    @staticmethod
    def _stamp(writer, job, prompt_text, seconds, batch_size, worker):
        """What it takes to reproduce and audit one autodoc."""
        info = writer.loaded.info
        return {
            "model": info.get("name"),
            "weights_sha256": info.get("weights_sha256"),
            "settings": writer.settings,
            "prompt_sha256": hashlib.sha256(prompt_text.encode()).hexdigest(),
            "queued_at": job.queued_at.isoformat(),
            "started_at": job.started_at.isoformat(),
            "generate_seconds": round(seconds, 3),
            "batch_size": batch_size,
            "worker": worker,
        }


def lower_priority(niceness):
    """Give the calling thread (and every thread it starts from now on, TensorFlow's pools
    included: Linux threads inherit their creator's niceness) a lower CPU priority, so that
    request threads of the same process win the cores while the writer keeps the rest."""
    if niceness and hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class _Heartbeat:
    """Extends the jobs' lease every third of it while generation runs, until the jobs'
    deadline (counted by the database from their claim): past it a hung generate loses them."""

    def __init__(self, app, jobs, lease_seconds, deadline_seconds):
        self._app, self._jobs, self._lease, self._deadline = app, jobs, lease_seconds, deadline_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="writer-heartbeat", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _beat(self):
        started, warned = time.monotonic(), False
        while not self._stop.wait(self._lease / 3):
            if not warned and time.monotonic() - started > self._deadline:
                warned = True
                ids = [job.autodoc_id for job in self._jobs]
                log.warning("autodocs %s passed their deadline (%d s) in generate: their leases are no longer "
                            "extended", ids, self._deadline,
                            extra={"event": "autodoc_deadline_passed", "autodoc_ids": ids})
            try:
                with self._app.app_context():
                    autodoc_queue.extend_leases(self._jobs, self._lease, self._deadline)
            except SQLAlchemyError as error:
                # A missed beat is harmless while the lease lasts; keep beating.
                log.warning("writer heartbeat cannot reach the database: %s", type(error).__name__,
                            extra={"event": "writer_database_unavailable", "step": "heartbeat"})


writer_runtime = WriterRuntime()
