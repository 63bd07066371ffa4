"""The autodoc writer's runtime: threads inside the app process, or `flask writer run`.

The model, its tokenizer and the compiled XLA programs are loaded once per process, in the
writer thread, never at import time and never on a request. The queue itself (claims,
leases, attempt tokens) lives in services/autodoc_queue.py; this module only runs it.
With no model installed the writer waits and retries, so queued autodocs stay queued and
drain once a model is put in place.

Which model: the registry's active one (services/registry.py), loaded only from its
registered local folder and only once its files match the hashes recorded at registration
(a changed or corrupt folder is refused, the reason kept on the model's row for the Models
page and /readyz). Before each batch claim a writer thread reads the active model (one small
query) and, when it is another model than the one loaded (compared by id, folder and file
hashes: a registry emptied and filled again gets new ids for the same files), switches:
loads and compiles the new one, then claims. A batch is written by the model its round
started with from start to end, and each autodoc records it (autodocs.model_id, the stamp).
An installation from before the registry has its WRITER_MODEL_DIR registered in place as the
first (active) seed model by the first round that loads it.

Each writer thread supervises itself: any unexpected error of a round (a corrupt weights
file, out of memory while loading or compiling, a bug in building prompts) is logged with
its traceback, gives the jobs the round held back to the queue at once, is reported as the
writer's state (`failure`: /readyz, the dashboard, `srcflask_writer_alive`) and is retried
after a backoff that doubles from WRITER_RESTART_MIN_SECONDS to WRITER_RESTART_MAX_SECONDS.
The first round that goes through clears it.

Shadow drafts (services/shadow_drafts.py) go through the same writing path with their own
queue: a round whose claim of real autodocs finds none claims at most one draft, so a real
autodoc saved meanwhile waits for one single-prompt write at most. The draft's candidate is
held as a second model beside the active one (compiled for batch size 1 only; the active
model's writer serves it when their files are the same) and dropped once it is no longer a
candidate. It is checked and loaded in a thread of its own (CandidateLoad) when a first
draft asks for it: that draft goes back to its queue with no attempt used, no draft is
claimed until the load is over, and real autodocs saved meanwhile are written by the active
model instead of waiting out the load (~24 s for GPT-2-small). Whatever goes wrong with a
draft (a refused or unloadable candidate, an error in generate) is logged and settled on
the draft alone: it never marks the writer failed nor touches real autodocs.
"""
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from flask import current_app, has_app_context
from sqlalchemy.exc import SQLAlchemyError

from .errors import is_database_outage
from .extensions import db
from .models import WriterModel
from .metrics import GENERATION_SECONDS, WRITER_JOBS
from .services import autodoc_queue, leases, queue_signals, registry, shadow_drafts

log = logging.getLogger("srcflask.writer")

# What became of a finished job's text, by what writing it back returned: None when the
# writer stopped while the database was unreachable (the lease runs out and another
# attempt writes the job). The log event is the job's kind (autodoc, shadow_draft) + "_" + this.
JOB_OUTCOMES = {
    True: ("written", "written"),
    False: ("refused: its lease was taken over", "refused"),
    None: ("not saved", "not_saved"),
}
# What became of a job the writer gave back, by what the queue's fail_job returned (None: the
# database did not answer; the lease runs out and the job is tried again).
GIVEN_BACK_OUTCOMES = {"queued": "retried", "failed": "failed", False: "refused", None: "not_saved"}
NO_WRITER_HERE = "This process runs no writer (WRITER_IN_PROCESS=0): `flask writer run` processes write the autodocs."
NO_MODEL_HELP = "Install one with `flask writer fetch` (needs internet) or set WRITER_MODEL_DIR to a GPT-2 folder."


def model_installed(model_dir):
    """Cheap check (no loading): does the folder hold a save_pretrained GPT-2?"""
    return (Path(model_dir) / "config.json").is_file()


@dataclass(frozen=True)
class CurrentModel:
    """The loaded writer and the registry's model it is: what a round writes with."""

    writer: object  # static/src/evaluation/autodocwriter.AutodocWriter
    model_id: int
    label: str
    folder: str  # resolved
    files: dict  # {file: sha256} as registered

    def same_files(self, model):
        return self.folder == _resolved_folder(model) and self.files == model.files


def _resolved_folder(model):
    return str(registry.model_folder(model).resolve())


@dataclass
class CandidateLoad:
    """A candidate for shadow drafts being checked against its hashes and loaded in a thread
    of its own. `label`, `path` and `files` are the registry row's, copied: what
    registry.verify reads, with no database session in the thread. A load that goes through
    hands its writer to `loaded` (the runtime takes it up as its candidate at once); one that
    does not keeps why, for the next draft that asks for this candidate."""

    model_id: int
    label: str
    path: str
    files: dict
    folder: str  # resolved
    thread: threading.Thread | None = None
    refusal: str | None = None  # its files do not match their hashes
    error: BaseException | None = None  # loading or compiling failed

    @classmethod
    def start(cls, model, build, config, loaded):
        load = cls(model.id, model.label, model.path, dict(model.files), _resolved_folder(model))
        load.thread = threading.Thread(target=load._run, args=(build, config, loaded),
                                       name=f"candidate-load-{model.id}", daemon=True)
        load.thread.start()
        return load

    def _run(self, build, config, loaded):
        try:
            registry.verify(self)
        except registry.ModelIntegrityError as error:
            self.refusal = str(error)
            return
        try:
            writer = build(config, self.folder, batch_sizes=(1,))
        except Exception as error:  # settled on the draft that next asks for this candidate
            self.error = error
            return
        loaded(self, writer)

    @property
    def over(self):
        return not self.thread.is_alive()

    def serves(self, model):
        return (self.model_id, self.files, self.folder) == (model.id, model.files, _resolved_folder(model))


class WriterRuntime:
    """init_app-style holder of this process's writer threads and model state."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threads = []
        self._stop = threading.Event()
        self._app = None
        self._current = None
        # The candidate loaded for shadow drafts (a CurrentModel), None while none is; the
        # CandidateLoad under way, or over without a model (refused, failed) until a draft
        # of that candidate is told why; None while there is none.
        self._candidate = None
        self._candidate_load = None
        # The load the last drafts put back wait for: an `until_idle` run waits for it too.
        self._awaited_load = None
        self.model_error = None
        # (label, why) while the registry's active model is refused: its files do not match
        # their hashes. The writer waits (autodocs stay queued) and checks again.
        self.refused = None
        # {writer thread's name: why its last round failed}; a round that goes through
        # removes its thread's entry.
        self.failures = {}

    def init_app(self, app):
        app.extensions["writer"] = self
        self._app = app
        app.add_template_global(lambda: server_writer().problem(), "writer_problem")
        if app.config["WRITER_IN_PROCESS"]:
            # Started with the server by gunicorn's post_worker_init (production and the
            # quick start, scripts/run); under `flask run` (docker-compose.yml's development
            # server), which has no such hook, as soon as the app is made for serving; else by
            # the first request. Never by other CLI commands: `flask db upgrade` stays light.
            app.before_request(lambda: self._start_on_request(app))
            if _serving_with_flask_run():
                self.start(app)

    def problem(self):
        """What keeps autodocs from being written, in words for the pages; None when the
        writer has (or can load) a model. Cheap: a file check, no loading, no query."""
        if self.failure:
            return f"The writer failed: {self.failure}. It retries by itself; autodocs wait in the queue."
        if self.refused:
            label, error = self.refused
            return (f"The writer refuses the active model {label}: {error} Autodocs wait in the queue until its "
                    "files are put back or an admin rolls back to another model.")
        model_dir = current_app.config["WRITER_MODEL_DIR"]
        if self._current is None and not model_installed(model_dir):
            return f"The writer has no model installed (looked in {model_dir}), so autodocs wait in the queue. {NO_MODEL_HELP}"
        if self.model_error:
            return f"The writer cannot load its model: {self.model_error}"
        return None

    def state(self):
        """This process's writer as /readyz and the dashboard show it: {"state": elsewhere,
        failed, refused (the active model's files do not match their hashes), loaded,
        unavailable, loading or not running, and what goes with it}. No query: the Models page
        shows a refusal by writers elsewhere (models.integrity_error)."""
        if not current_app.config["WRITER_IN_PROCESS"]:
            return {"state": "elsewhere", "detail": NO_WRITER_HERE}
        if self.failure:
            return {"state": "failed", "reason": self.failure, "detail": self.problem()}
        if self.refused:  # before `loaded`: the model loaded before may still be in memory, unused
            label, error = self.refused
            return {"state": "refused", "model": label, "reason": error, "detail": self.problem()}
        current = self._current
        if current is not None:
            info = current.writer.loaded.info
            return {"state": "loaded", "model": info.get("name"), "registered_as": current.label,
                    "model_id": current.model_id, "load_seconds": info.get("load_seconds")}
        problem = self.problem()
        if problem:
            return {"state": "unavailable", "detail": problem}
        if self.running:
            return {"state": "loading", "detail": "The writer is loading and compiling its model."}
        return {"state": "not running", "detail": "The writer threads of this process are not running."}

    @property
    def loaded_info(self):
        """What identifies the loaded model (name, load_seconds ...), None before it is loaded."""
        current = self._current
        return current.writer.loaded.info if current is not None else None

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

    def _start_on_request(self, app):
        """A request starts the writer threads, except in a page worker whose server runs the
        writer in a process beside it (server_writer)."""
        if server_writer(app) is self:
            self.start(app)

    def stop(self, timeout=30):
        self._stop.set()
        queue_signals.listener.doorbell.ring()  # idle writer threads wake now, not at their next poll
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def forget_model(self):
        """Drop the loaded writer so the next use loads again, as a fresh process would."""
        with self._lock:
            self._current = self._candidate = self._candidate_load = self.refused = None

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
                load, self._awaited_load = self._awaited_load, None
                if load is not None:  # drafts went back to wait for it: not idle yet
                    load.thread.join()
                    continue
                return
            if self._current is None or self.refused:  # no model to write with: new work changes nothing
                self._stop.wait(pause)
            else:  # idle: until work is queued (LISTEN/NOTIFY, services/queue_signals.py) or `pause` passes
                queue_signals.wait_for_work(app, self._stop, pause)

    def _round(self, app, worker):
        """Make sure the registry's active model is the one loaded (switching if not), claim a
        batch and write it with that model; returns the seconds to wait before the next round
        (None: go on at once)."""
        config = app.config
        current, pause = self._current_model(app)
        if current is None:
            return pause
        # The model is in hand: a failure of an earlier round (most often loading it) is over,
        # and the pages must not report it while this batch is written.
        self.failures.pop(threading.current_thread().name, None)
        # While the larger batch sizes are still compiling, no more than the largest compiled.
        batch = current.writer.batch_limit(config["WRITER_BATCH_SIZE"])
        jobs = self._with_database(app, "claim", autodoc_queue.claim_jobs, worker, batch,
                                   config["WRITER_LEASE_SECONDS"], config["WRITER_MAX_ATTEMPTS"], give_up=True)
        if jobs:
            self._write(app, current, jobs, worker, autodoc_queue)
            return None
        load = self._candidate_load
        if load is not None and not load.over:  # drafts wait for their candidate; real work does not
            return config["WRITER_POLL_SECONDS"]
        # Nothing real to write: one shadow draft at most (batch 1), claimed only if still no
        # real autodoc waits.
        drafts = self._with_database(app, "shadow claim", shadow_drafts.claim_jobs, worker, 1,
                                     config["WRITER_LEASE_SECONDS"], config["WRITER_MAX_ATTEMPTS"], give_up=True)
        if not drafts:
            self._drop_former_candidate(app)
            return config["WRITER_POLL_SECONDS"]
        return self._write_shadow(app, current, drafts, worker)

    def _write_shadow(self, app, current, drafts, worker):
        """Write the claimed shadow drafts with their candidate, or put them back unattempted
        while it loads (then returns the seconds to wait; None: go on at once). Any failure
        stays with them (logged, an attempt used): the writer and the real autodocs go on."""
        try:
            candidate = self._candidate_model(app, current, drafts[0])
        except Exception as error:  # loading or compiling the candidate
            reason = self._log_shadow_failure(drafts, error, worker)
            for draft in drafts:
                self._give_back(app, shadow_drafts, draft, reason, "release")
            return None
        if isinstance(candidate, CandidateLoad):
            for draft in drafts:
                self._with_database(app, "put back", shadow_drafts.put_back, draft)
            self._awaited_load = candidate
            return app.config["WRITER_POLL_SECONDS"]
        if candidate is None:  # refused: the drafts are settled
            return None
        try:
            self._write(app, candidate, drafts, worker, shadow_drafts)
        except Exception as error:  # _write gave the drafts back
            self._log_shadow_failure(drafts, error, worker)
        return None

    @staticmethod
    def _log_shadow_failure(drafts, error, worker):
        reason = leases.describe(error)
        ids = [draft.id for draft in drafts]
        log.exception("writer failed on shadow drafts %s (%s)", ids, reason,
                      extra={"event": "shadow_draft_failed", "shadow_draft_ids": ids, "worker": worker,
                             "error": reason})
        return reason

    def _candidate_model(self, app, current, draft):
        """The CurrentModel that writes `draft`: its candidate, loaded beside the active model
        (or the active model's writer when their files are the same); the CandidateLoad under
        way while it loads (started by this call if need be); None when the candidate's files do not
        match their hashes (the draft and the candidate's waiting drafts are failed with the
        reason, kept on the model's row). A failed load goes up."""
        checked = self._with_database(app, "candidate check", _model_row, draft.model_id)
        if checked is None:
            raise RuntimeError("the database did not answer while looking up the shadow draft's model")
        model, = checked
        if model.files == current.files:  # the same weights: the same text, no second copy in memory
            return CurrentModel(current.writer, model.id, model.label, current.folder, current.files)
        with self._lock:  # the loader takes its model up under it
            candidate = self._candidate
            if candidate is not None and candidate.model_id == model.id and candidate.same_files(model):
                return candidate
            load = self._candidate_load
            if load is not None and not load.over:  # one load at a time: a draft of another candidate waits too
                return load
            if load is None or not load.serves(model):
                self._forget_candidate()  # one candidate in memory at a time, the one drafts ask for
                self._candidate_load = CandidateLoad.start(model, self._build, app.config, self._take_up)
                return self._candidate_load
            self._candidate_load = None  # over, and not taken up: refused or failed
        if load.refusal is not None:
            log.error("writer refuses candidate %s for shadow drafts: %s", model.label, load.refusal,
                      extra={"event": "shadow_model_refused", "model_id": model.id, "reason": load.refusal})
            self._with_database(app, "refusal", shadow_drafts.refuse_candidate, draft, load.refusal)
            return None
        raise load.error

    def _take_up(self, load, writer):
        """In the loader's thread: the candidate `load` loaded is this writer's candidate from
        now on, unless the load was forgotten meanwhile (forget_model); then it is let go."""
        with self._lock:
            if self._candidate_load is not load:
                self._forget_folder(load.folder)
                return
            self._candidate_load = None
            self._forget_candidate()
            self._candidate = CurrentModel(writer, load.model_id, load.label, load.folder, load.files)
        log.info("writer loaded candidate %s for shadow drafts", load.label,
                 extra={"event": "shadow_model_loaded", "model_id": load.model_id})

    def _drop_former_candidate(self, app):
        """Free the candidate's memory once it is no longer a candidate (promoted, retired,
        refused): one small query, only while one is loaded."""
        candidate = self._candidate
        if candidate is None or self._with_database(app, "candidate check", shadow_drafts.is_candidate,
                                                    candidate.model_id, give_up=True) is not False:
            return
        with self._lock:
            if self._candidate is candidate:
                self._forget_candidate()
                log.info("writer dropped candidate %s", candidate.label,
                         extra={"event": "shadow_model_dropped", "model_id": candidate.model_id})

    def _forget_candidate(self):
        candidate, self._candidate = self._candidate, None
        if candidate is not None:
            self._forget_folder(candidate.folder)

    def _forget_folder(self, folder):
        """Let a candidate's model go from memory, unless the active model is loaded from there."""
        current = self._current
        if current is None or current.folder != folder:
            from .static.mlmodels.seedmlmodels.headmodel import forget_model

            forget_model(folder)

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
        """This process's AutodocWriter for the registry's active model, loading (or switching
        to) it first if needed; None while there is no model to load. `config` is the app's."""
        app = current_app._get_current_object() if has_app_context() else self._app
        current, _ = self._current_model(app)
        return current.writer if current is not None else None

    def _current_model(self, app):
        """(CurrentModel, None) for the registry's active model, loaded and compiled; (None,
        seconds to wait) while there is none to load, the database does not answer or the
        active model's folder is refused. A loading error (a corrupt weights file) goes up."""
        checked = self._with_database(app, "model check", _active_model, give_up=True)
        if checked is None:  # the database does not answer; try again on the next round
            return None, app.config["WRITER_POLL_SECONDS"]
        active, = checked
        current = self._current
        if active is not None and current is not None and current.same_files(active):
            if current.model_id != active.id:  # the registry was emptied and refilled: new ids, same files
                self._current = current = replace(current, model_id=active.id, label=active.label)
            return current, None
        with self._lock:
            if active is None:
                current = self._adopt_installed(app)
            else:
                current = self._switch(app, active)
        if current is None:
            return None, app.config["WRITER_MODEL_RETRY_SECONDS"]
        return current, None

    def _adopt_installed(self, app):
        """No model registered yet: load WRITER_MODEL_DIR (an installation from before the
        registry, the quick start, a fetched model) and register it in place; loading first,
        so that a folder that cannot be loaded is never registered."""
        from .static.mlmodels.seedmlmodels.headmodel import ModelNotInstalled

        model_dir = str(Path(app.config["WRITER_MODEL_DIR"]).resolve())
        current = self._current
        if current is None or current.folder != model_dir:
            try:
                writer = self._build(app.config, model_dir)
            except ModelNotInstalled as error:
                self._no_model(str(error))
                return None
        else:
            writer = current.writer
        active = self._with_database(app, "registration", _adopt, model_dir)
        if active is None:  # the database did not answer
            return None
        if str(registry.model_folder(active).resolve()) != model_dir:  # another writer registered another first
            return self._switch(app, active)
        if current is not None and current.folder == model_dir and current.files != active.files:
            writer = self._build(app.config, model_dir)  # its files changed since they were loaded
        return self._use(CurrentModel(writer, active.id, active.label, model_dir, active.files))

    def _switch(self, app, active):
        """Load the registry's active model after checking its files against their hashes;
        None when they do not match (the reason goes on the model's row) or the check could
        not be recorded."""
        current = self._current
        if current is not None and current.same_files(active):  # another thread switched meanwhile
            return current
        folder = str(registry.model_folder(active).resolve())
        try:
            registry.verify(active)
        except registry.ModelIntegrityError as error:
            self._with_database(app, "integrity", _record_integrity, active.id, str(error))
            if self.model_error != str(error):
                log.error("writer refuses model %s: %s", active.label, error,
                          extra={"event": "writer_model_refused", "model_id": active.id, "reason": str(error)})
            self.model_error, self.refused = str(error), (active.label, str(error))
            return None
        if active.integrity_error:
            self._with_database(app, "integrity", _record_integrity, active.id, None)
        writer = self._build(app.config, folder)
        if current is not None and current.folder != folder:
            from .static.mlmodels.seedmlmodels.headmodel import forget_model

            forget_model(current.folder)  # its memory goes once the batches still using it end
        log.info("writer switched to model %s", active.label,
                 extra={"event": "writer_model_switched", "model_id": active.id,
                        "previous_model_id": current.model_id if current is not None else None})
        return self._use(CurrentModel(writer, active.id, active.label, folder, active.files))

    def _use(self, current):
        self.model_error = self.refused = None
        self._current = current
        return current

    def _no_model(self, reason):
        if self.model_error != reason:
            log.warning("writer waiting for a model: %s", reason, extra={"event": "writer_no_model", "reason": reason})
        self.model_error = reason

    @staticmethod
    def _build(config, folder, batch_sizes=None):
        """Load the GPT-2 in `folder` afresh (its files may have changed since it was last
        loaded in this process) and compile the writer's programs (for `batch_sizes`, by
        default AutodocWriter's): the smallest before returning, the others in a thread of
        their own (_compile_rest), so that the first autodoc after a start waits only for the
        program it needs while a queue gets the larger ones soon after (AutodocWriter.write
        uses the sizes compiled so far). Compiled programs are kept in, and loaded from, XLA's
        persistent cache (WRITER_XLA_CACHE_DIR). ModelNotInstalled when the folder lacks what
        a GPT-2 needs."""
        from .static.mlmodels.seedmlmodels.headmodel import forget_model, load_model, xla_cache_folder
        from .static.src.evaluation.autodocwriter import AutodocWriter

        forget_model(folder)
        cache_folder = xla_cache_folder(config.get("WRITER_XLA_CACHE_DIR", ""), config.get("WRITER_MODEL_DIR", folder))
        loaded = load_model(folder, intra_op_threads=config["WRITER_TF_INTRA_THREADS"] or None,
                            inter_op_threads=config["WRITER_TF_INTER_THREADS"] or None, xla_cache_dir=cache_folder)
        writer = AutodocWriter(loaded, max_new_tokens=config["WRITER_MAX_NEW_TOKENS"],
                               context_tokens=config["WRITER_CONTEXT_TOKENS"],
                               **({"batch_sizes": batch_sizes} if batch_sizes else {}))
        background = config.get("WRITER_COMPILE_IN_BACKGROUND", True)
        now, rest = (writer.batch_sizes[:1], writer.batch_sizes[1:]) if background else (writer.batch_sizes, ())
        started = time.perf_counter()
        writer.trace()  # every size, before any writing: the same cache keys in every process
        traced = round(time.perf_counter() - started, 2)
        compiled = {size: _compile(writer, size) for size in now}
        name = loaded.info.get("name")
        log.info("writer ready: model %s, loaded in %.1f s, traced in %.1f s, compiled %s%s", name,
                 loaded.info.get("load_seconds"), traced,
                 ", ".join(f"batch size {size} in {c['seconds']:.1f} s (XLA cache {c['xla_cache']})"
                           for size, c in compiled.items()),
                 f"; compiling batch sizes {', '.join(map(str, rest))} meanwhile" if rest else "",
                 extra={"event": "writer_ready", "model": name, "load_seconds": loaded.info.get("load_seconds"),
                        "trace_seconds": traced,
                        "compile_seconds": round(sum(c["seconds"] for c in compiled.values()), 2),
                        "compiled": compiled, "compiling": list(rest)})
        if rest:
            # Started from the writer thread: it inherits its niceness (WRITER_NICE). Not a daemon:
            # a process that exits while XLA compiles in a daemon thread crashes (SIGSEGV), so an
            # exit waits for the size in flight (_compile_rest skips the others).
            threading.Thread(target=_compile_rest, args=(writer, rest, name), name="writer-compile").start()
        return writer

    def _write(self, app, current, jobs, worker, queue):
        """Write the jobs claimed from `queue` (autodoc_queue or shadow_drafts: both claim,
        extend, complete and fail their jobs the same way). Whatever fails outside generate
        (building prompts, a bug), the jobs not yet settled are given back at once through the
        queue's own conditional write (each keeps the attempt it used), not left `running`
        until their lease runs out, and the error goes up to the caller."""
        settled = set()
        try:
            self._write_claimed(app, current, jobs, worker, settled, queue)
        except Exception as error:
            for job in jobs:
                if job.id not in settled:
                    self._give_back(app, queue, job, leases.describe(error), "release")
            raise

    def _write_claimed(self, app, current, jobs, worker, settled, queue):
        from .static.src.features.doctokenization import build_prompt

        config = app.config
        prompts = [build_prompt(current.writer.tokenizer, job.title, job.body, config["WRITER_CONTEXT_TOKENS"])
                   for job in jobs]
        for job, prompt in zip(jobs, prompts):
            if prompt is None:
                stamp = self._stamp(current, job, "", 0.0, 0, worker)
                written = self._with_database(app, "write", queue.complete_job, job, "", "", stamp,
                                              current.model_id)
                settled.add(job.id)
                self._log_job(job, written, 0.0, 0, worker)
        pending = [(job, prompt) for job, prompt in zip(jobs, prompts) if prompt is not None]
        if not pending:
            return
        with _Heartbeat(app, queue, [job for job, _ in pending], config["WRITER_LEASE_SECONDS"],
                        config["WRITER_JOB_DEADLINE_SECONDS"]):
            self._generate(app, current, pending, worker, settled, queue)

    def _generate(self, app, current, pending, worker, settled, queue):
        """One generate call for the (job, prompt) pairs, each text stored as it is written.
        When a batch fails, its jobs are tried again each alone: one input that makes the
        model fail then uses up only its own attempts, and the others are written."""
        started = time.perf_counter()
        try:
            continuations = current.writer.write([prompt for _, prompt in pending])
        except Exception as error:  # any failure of generation: retried, then reported
            ids = [job.id for job, _ in pending]
            alone = len(pending) == 1
            kind = pending[0][0].kind
            log.exception("writer failed on %ss %s%s", kind.replace("_", " "), ids,
                          "" if alone else "; writing each alone",
                          extra={"event": f"{kind}_batch_failed", f"{kind}_ids": ids, "worker": worker,
                                 "error": leases.describe(error)})
            if not alone:
                for one in pending:
                    self._generate(app, current, [one], worker, settled, queue)
                return
            (job, _), = pending
            self._give_back(app, queue, job, leases.describe(error), "fail")
            settled.add(job.id)
            return
        seconds = time.perf_counter() - started
        if queue is autodoc_queue:  # shadow drafts stay out of every figure of real autodocs
            GENERATION_SECONDS.observe(seconds)
        for (job, prompt), continuation in zip(pending, continuations):
            stamp = self._stamp(current, job, prompt.text, seconds, len(pending), worker)
            written = self._with_database(app, "write", queue.complete_job,
                                          job, prompt.text, continuation.text, stamp, current.model_id)
            settled.add(job.id)
            self._log_job(job, written, seconds, len(pending), worker)

    def _give_back(self, app, queue, job, reason, step):
        """A job the writer could not finish goes back to its queue (or fails, its attempts used
        up) through the queue's conditional write, and is counted by what became of it."""
        status = self._with_database(app, step, queue.fail_job, job, reason, app.config["WRITER_MAX_ATTEMPTS"])
        WRITER_JOBS.labels(job.kind, GIVEN_BACK_OUTCOMES[status]).inc()

    @staticmethod
    def _log_job(job, written, seconds, batch_size, worker):
        """The per-job log line: one per autodoc (or shadow draft, its `kind`) this writer
        finished (or lost)."""
        outcome, event = JOB_OUTCOMES[written]
        WRITER_JOBS.labels(job.kind, event).inc()
        ids = {"autodoc_id": job.autodoc_id} if job.kind == "autodoc" else \
            {"shadow_draft_id": job.id, "autodoc_id": job.autodoc_id, "model_id": job.model_id}
        log.info("%s %s %s in %.2f s (batch of %d)", job.kind.replace("_", " "), job.id, outcome, seconds,
                 batch_size, extra={"event": f"{job.kind}_{event}", **ids, "request_id": job.request_id,
                                    "seconds": round(seconds, 3), "batch_size": batch_size, "worker": worker,
                                    "queued_at": job.queued_at.isoformat(), "started_at": job.started_at.isoformat()})

    @staticmethod
    def _stamp(current, job, prompt_text, seconds, batch_size, worker):
        """What it takes to reproduce and audit one autodoc."""
        info = current.writer.loaded.info
        return {
            "model": info.get("name"),
            "model_id": current.model_id,
            "model_label": current.label,
            "weights_sha256": info.get("weights_sha256"),
            "settings": current.writer.settings,
            "prompt_sha256": hashlib.sha256(prompt_text.encode()).hexdigest(),
            "queued_at": job.queued_at.isoformat(),
            "started_at": job.started_at.isoformat(),
            "generate_seconds": round(seconds, 3),
            "batch_size": batch_size,
            "worker": worker,
        }


def _serving_with_flask_run():
    """True when this app is being made by `flask run` in the process that will serve it: not
    by another command (`flask db upgrade`, `flask writer run`), and not in the reloader's
    watching process of `flask run --debug`, which loads the app too but only restarts the
    serving one (a writer there would load a second copy of the model)."""
    import click
    from flask.cli import get_debug_flag, run_command
    from werkzeug.serving import is_running_from_reloader

    context = click.get_current_context(silent=True)
    if context is None or context.command is not run_command:
        return False
    reload = context.params.get("reload")
    return is_running_from_reloader() or not (get_debug_flag() if reload is None else reload)


def _compile(writer, size):
    """Compile `writer`'s program for batch size `size`: {"seconds", "xla_cache"}, the latter
    "miss" (compiled, and added to XLA's persistent cache), "hit" (loaded from it: nothing
    added), "off" (no cache) or "unused" (nothing added to an empty cache: TensorFlow had
    started before the cache was set up)."""
    from .static.mlmodels.seedmlmodels.headmodel import xla_cache

    cache = xla_cache()
    before = cache.entries()
    started = time.perf_counter()
    writer.warm_up([size])
    seconds = round(time.perf_counter() - started, 2)
    after = cache.entries()
    state = "off" if cache.folder is None else "miss" if after - before else "hit" if after else "unused"
    return {"seconds": seconds, "xla_cache": state}


def _compile_rest(writer, sizes, name):
    """Compile the larger batch sizes one after another, smallest first, while the writer
    thread already writes with the ones compiled (the writer's claims grow with them:
    AutodocWriter.batch_limit). A failure leaves the writer with the sizes it has."""
    for size in sizes:
        if not threading.main_thread().is_alive():  # the process is exiting
            return
        try:
            compiled = _compile(writer, size)
        except Exception as error:  # out of memory, a bug: the smaller sizes still write
            log.exception("writer could not compile batch size %d (%s); writing with batch sizes %s", size,
                          leases.describe(error), ", ".join(map(str, writer.compiled_sizes)),
                          extra={"event": "writer_compile_failed", "model": name, "batch_size": size,
                                 "error": leases.describe(error)})
            return
        log.info("writer compiled batch size %d in %.1f s (XLA cache %s)", size, compiled["seconds"],
                 compiled["xla_cache"], extra={"event": "writer_compiled", "model": name, "batch_size": size,
                                               **compiled})


def lower_priority(niceness):
    """Give the calling thread (and every thread it starts from now on, TensorFlow's pools
    included: Linux threads inherit their creator's niceness) a lower CPU priority, so that
    request threads of the same process win the cores while the writer keeps the rest."""
    if niceness and hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class _Heartbeat:
    """Extends the jobs' lease every third of it while generation runs, until the jobs'
    deadline (counted by the database from their claim): past it a hung generate loses them."""

    def __init__(self, app, queue, jobs, lease_seconds, deadline_seconds):
        self._app, self._queue, self._jobs = app, queue, jobs
        self._lease, self._deadline = lease_seconds, deadline_seconds
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
                ids = [job.id for job in self._jobs]
                kind = self._jobs[0].kind
                log.warning("%ss %s passed their deadline (%d s) in generate: their leases are no longer "
                            "extended", kind.replace("_", " "), ids, self._deadline,
                            extra={"event": f"{kind}_deadline_passed", f"{kind}_ids": ids})
            try:
                with self._app.app_context():
                    self._queue.extend_leases(self._jobs, self._lease, self._deadline)
            except SQLAlchemyError as error:
                # A missed beat is harmless while the lease lasts; keep beating.
                log.warning("writer heartbeat cannot reach the database: %s", type(error).__name__,
                            extra={"event": "writer_database_unavailable", "step": "heartbeat"})


def _active_model():
    """(the active model or None,): a tuple, so that a database that does not answer (None
    from _with_database) is told apart from an empty registry."""
    return (registry.active_model(),)


def _model_row(model_id):
    """(the registry's model `model_id`,): a tuple, as _active_model."""
    return (db.session.get(WriterModel, model_id),)


def _adopt(model_dir):
    active = registry.adopt_installed(model_dir)
    db.session.commit()
    return active


def _record_integrity(model_id, error):
    registry.record_integrity(model_id, error)
    db.session.commit()
    return True


writer_runtime = WriterRuntime()


def server_writer(app=None):
    """The writer this process speaks for (its state on /readyz, the dashboard, the metrics and
    the pages' warning): its own writer_runtime, or, in a gunicorn page worker whose server runs
    the writer in a process beside it, that process as its report shows it
    (writer_supervisor.WriterBeside, put in its place by gunicorn.conf.py). Both answer
    state(), problem(), alive and loaded_info."""
    return (app or current_app).extensions["writer"]
