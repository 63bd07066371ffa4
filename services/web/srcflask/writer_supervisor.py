"""The server's writer in a process of its own, started and watched by gunicorn's master.

Why a process: pages and GPT-2 in one process share one interpreter lock, and at eight
connections with the writer busy the pages missed their targets (bench/RESULTS.md, "Load at
scale"); several workers each with a writer would load the model once per worker. So under
gunicorn (gunicorn.conf.py) with WRITER_IN_PROCESS=1 the page workers run no writer, and
the master runs one `flask writer run` beside them, at WRITER_NICE, whatever GUNICORN_WORKERS
says: one model in memory, the same queue discipline as any other writer
(services/autodoc_queue.py).

Three parts, each used in one kind of process:
- WriterSupervisor, in the master: starts the writer process, waits for it, starts it again
  after a backoff when it ends (WRITER_RESTART_MIN_SECONDS doubling up to
  WRITER_RESTART_MAX_SECONDS, as a writer thread retries a failed round), and stops it when
  gunicorn stops: SIGTERM as soon as the master is told to stop (the writer finishes its
  batch while the workers finish their requests), SIGKILL once graceful_timeout has passed.
  A killed writer's jobs go back to the queue when their lease runs out.
- report_forever, in the writer process: writes the writer's state (WriterRuntime.state(),
  alive, the loaded model, the problem the pages show) to a small JSON file every
  REPORT_SECONDS, replaced whole (never half written).
- WriterBeside, in the page workers: reads that file, so that /readyz, the admin dashboard,
  the pages' notices and srcflask_writer_alive say what the writer process says, and say
  "failed" when it is gone (the supervisor writes why and when it comes back) or has stopped
  reporting (hung) for STALE_SECONDS.

The master imports this module in when_ready (after on_starting has chosen the metrics'
folder) and before it forks the workers: it loads neither the app, prometheus_client nor
TensorFlow, only what the backoff needs.
"""
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

from .services.leases import retry_wait

# Where gunicorn's master tells its workers the report file is (its writer process is told
# by `flask writer run --report-to`).
REPORT_ENV = "SRCFLASK_WRITER_REPORT"
REPORT_SECONDS = 2.0
# A report older than this means the writer process is hung (or stopped): generous, because
# loading and compiling the model may keep its reporting thread from the interpreter for a
# few seconds at a time.
STALE_SECONDS = 30.0
# A writer process that ran this long before it ended is restarted after the shortest
# backoff again: its end is a new failure, not one more of a series.
STEADY_SECONDS = 300.0

log = logging.getLogger("gunicorn.error")  # the master's lines, formatted as gunicorn.conf.py says


# --- the report file ---------------------------------------------------------------------------

def write_report(path, *, pid, state, alive, loaded_info=None, problem=None, valid_seconds=STALE_SECONDS):
    """Replace the report at `path` whole (written aside, then renamed over it): a reader sees
    the previous report or this one, never half of one."""
    folder = os.path.dirname(path) or "."
    now = time.time()
    record = {"pid": pid, "state": state, "alive": alive, "loaded_info": loaded_info, "problem": problem,
              "reported_at": now, "valid_until": now + valid_seconds}
    descriptor, draft = tempfile.mkstemp(dir=folder, prefix=".report-")
    with os.fdopen(descriptor, "w") as file:
        json.dump(record, file, default=str)
    os.replace(draft, path)


def read_report(path):
    """The last report, None when there is none yet."""
    try:
        with open(path) as file:
            return json.load(file)
    except FileNotFoundError:
        return None


def report_forever(app, runtime, path):
    """In the writer process: report `runtime` (its WriterRuntime) to `path` every
    REPORT_SECONDS, from a daemon thread, for as long as the process lives."""

    def report():
        while True:
            try:
                with app.app_context():
                    write_report(path, pid=os.getpid(), state=runtime.state(), alive=runtime.alive,
                                 loaded_info=runtime.loaded_info, problem=runtime.problem())
            except Exception:  # a report missed is harmless while the next one comes; the thread must live
                logging.getLogger("srcflask.writer").exception(
                    "the writer could not report its state to %s", path, extra={"event": "writer_report_failed"})
            time.sleep(REPORT_SECONDS)

    threading.Thread(target=report, name="writer-report", daemon=True).start()


class WriterBeside:
    """The server's writer as a page worker sees it: the process beside it, through its report.
    Answers what WriterRuntime answers about a writer of its own (state, alive, loaded_info,
    problem); each call reads the file (a few hundred bytes in memory, /dev/shm)."""

    def __init__(self, path):
        self.path = path

    def _current(self):
        """(report, why it cannot be trusted or None)."""
        report = read_report(self.path)
        if report is None:
            return None, "The writer process has not started yet."
        if time.time() > report["valid_until"]:
            since = time.strftime("%H:%M:%S", time.gmtime(report["reported_at"]))
            return report, (f"the writer process (pid {report['pid']}) has not reported since {since} UTC: it is "
                            "hung or stopped")
        return report, None

    def state(self):
        report, doubt = self._current()
        if report is None:
            return {"state": "not running", "detail": doubt}
        if doubt:
            return {"state": "failed", "reason": doubt, "detail": self._doubted(doubt), "process": report["pid"]}
        return {**report["state"], "process": report["pid"]}

    @property
    def alive(self):
        report, doubt = self._current()
        return bool(report and not doubt and report["alive"])

    @property
    def loaded_info(self):
        report, doubt = self._current()
        return report["loaded_info"] if report and not doubt else None

    def problem(self):
        report, doubt = self._current()
        if report is None:
            return doubt
        return self._doubted(doubt) if doubt else report["problem"]

    @staticmethod
    def _doubted(doubt):
        return f"The writer failed: {doubt}. Autodocs wait in the queue."


# --- the master's side -----------------------------------------------------------------------

def writer_command(app_uri, niceness, report_path):
    """`flask writer run` for the app gunicorn serves (`wsgi:app`), at `niceness` (the whole
    process, its TensorFlow pools included), reporting to `report_path`."""
    command = [sys.executable, "-m", "flask", "--app", app_uri, "writer", "run", "--report-to", report_path,
               "--stop-with-parent"]
    return ["nice", "-n", str(niceness), *command] if niceness else command


class _Spawned:
    """The writer process as the supervisor knows it: its pid, and its exit code once it ended."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None


def _spawn(command):
    """Start `command` (found on PATH) with the master's environment and standard streams and
    none of its other file descriptors (its listening socket, the workers' pipes).

    Not subprocess.Popen: it waits, after forking, for the child's exec to close a pipe, and a
    gunicorn worker forked by the master's main thread in that moment inherits the pipe and
    keeps it open for its whole life, so the supervisor thread would wait forever (seen when
    the workers boot right after when_ready started the writer). posix_spawn reports a failed
    exec without a pipe. Closing a descriptor that is not open is not an error for it (glibc),
    so the range up to the highest one open now is closed."""
    highest = max((int(name) for name in os.listdir("/proc/self/fd")), default=2) if os.path.isdir("/proc/self/fd") \
        else os.sysconf("SC_OPEN_MAX")
    closes = [(os.POSIX_SPAWN_CLOSE, descriptor) for descriptor in range(3, highest + 1)]
    return _Spawned(os.posix_spawnp(command[0], command, os.environ, file_actions=closes, setsigmask=()))


def describe_exit(status):
    """A waitpid status in words: "killed by SIGKILL (out of memory?)", "exited with status 1"."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}" + (" (out of memory?)" if number == signal.SIGKILL else "")
    return f"exited with status {os.WEXITSTATUS(status)}"


class WriterSupervisor:
    """In gunicorn's master: runs the writer process (writer_command) from start() to stop(),
    started again after a backoff each time it ends. Its reports and the supervisor's own
    (starting; ended, how, and when another starts) go to one file, whose path the workers
    forked afterwards find in REPORT_ENV."""

    # The master's signals that stop gunicorn (SIGTERM: gracefully; SIGINT, SIGQUIT: at once).
    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

    def __init__(self, app_uri, niceness, restart_min_seconds, restart_max_seconds):
        self.app_uri, self.niceness = app_uri, niceness
        self.restart_min_seconds, self.restart_max_seconds = restart_min_seconds, restart_max_seconds
        self.report_path = None
        self._stopping = threading.Event()
        self._asked_at = None  # time.monotonic() of the first request to stop
        self._child = None
        self._thread = threading.Thread(target=self._supervise, name="writer-supervisor", daemon=True)

    @property
    def pid(self):
        child = self._child
        return child.pid if child is not None else None

    def start(self):
        """Make the report's folder (in memory when /dev/shm exists; this master's alone), tell
        the workers to come where it is, have the master's stop signals reach the writer
        first, and start the writer process. In the master's main thread (gunicorn's
        when_ready), before it forks the workers."""
        folder = tempfile.mkdtemp(prefix="srcflask-writer-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.report_path = os.environ[REPORT_ENV] = os.path.join(folder, "report.json")
        for number in self.STOP_SIGNALS:
            self._stop_first_on(number)
        self._report_starting(None)  # before any worker can be asked
        self._thread.start()

    def _report_starting(self, pid):
        """Until the writer process's own first report: twice the usual validity, as a busy
        machine may take a while to start a Python process and import the app."""
        write_report(self.report_path, pid=pid, alive=True, valid_seconds=2 * STALE_SECONDS, state={
            "state": "loading", "detail": "The writer process is starting: it loads and compiles its model."})

    def _stop_first_on(self, number):
        """Have signal `number` tell the writer to stop before gunicorn's own handler (which
        only queues it for the master's loop) runs: the writer's batch and the workers'
        requests then finish at the same time, both within graceful_timeout."""
        gunicorns = signal.getsignal(number)

        def handler(signum, frame):
            self.stop_soon()
            if callable(gunicorns):
                gunicorns(signum, frame)

        signal.signal(number, handler)

    @property
    def stopping(self):
        return self._asked_at is not None

    def stop_soon(self):
        """Tell the writer process to finish its batch and stop, and start no other. Safe in a
        signal handler: no lock, no logging. Once only: a second SIGTERM reaching a Python
        process that is already exiting (its handlers reset) would kill it mid-way."""
        if self._asked_at is None:
            self._asked_at = time.monotonic()
            self._signal(signal.SIGTERM)

    def stop(self, timeout):
        """stop_soon, then wait for the writer process until `timeout` seconds after the first
        request to stop, kill it if it is still there, and remove the report."""
        self.stop_soon()
        self._stopping.set()  # ends a wait before a restart
        if self._thread.is_alive():
            self._thread.join(max(0.0, self._asked_at + timeout - time.monotonic()))
        if self._thread.is_alive():
            log.warning("writer process (pid %s) still busy %.0f s after it was asked to stop: killed; its jobs go back "
                        "to the queue when their lease runs out", self.pid, timeout,
                        extra={"event": "writer_process_killed", "pid": self.pid})
            self._signal(signal.SIGKILL)
            self._thread.join(10)
        if self.report_path:
            shutil.rmtree(os.path.dirname(self.report_path), ignore_errors=True)

    def _signal(self, number):
        child = self._child
        if child is not None and child.returncode is None:
            try:
                os.kill(child.pid, number)
            except ProcessLookupError:
                pass

    def _supervise(self):
        command = writer_command(self.app_uri, self.niceness, self.report_path)
        failures = 0
        while not self.stopping:
            started = time.monotonic()
            try:
                child = self._child = _spawn(command)
            except OSError as error:  # no process could be made (out of memory, a missing program)
                pid, reason = None, f"the writer process could not start: {error}"
            else:
                pid = child.pid
                if self.stopping:  # asked to stop while it was being started
                    self._signal(signal.SIGTERM)
                self._report_starting(pid)
                log.info("writer process started (pid %d)", pid, extra={"event": "writer_process_started", "pid": pid})
                how = self._wait(child)
                if self.stopping:
                    log.info("writer process (pid %d) %s", pid, how,
                             extra={"event": "writer_process_stopped", "pid": pid, "how": how})
                    break
                reason = f"the writer process (pid {pid}) {how}"
            failures = 1 if time.monotonic() - started >= STEADY_SECONDS else failures + 1
            delay = retry_wait(failures, self.restart_min_seconds, self.restart_max_seconds)
            problem = f"The writer failed: {reason}. Another starts in {delay:.0f} s; autodocs wait in the queue."
            log.error("%s; starting another in %.0f s", reason, delay,
                      extra={"event": "writer_process_ended", "pid": pid, "reason": reason, "retry_seconds": delay,
                             "failed_starts": failures})
            write_report(self.report_path, pid=pid, alive=False, valid_seconds=delay + STALE_SECONDS,
                         state={"state": "failed", "reason": reason, "detail": problem}, problem=problem)
            self._stopping.wait(delay)

    @staticmethod
    def _wait(child):
        """Wait for the writer process to end; how it ended, in words. gunicorn's master reaps
        every child it has (waitpid(-1)) when it hears of one ending: when it does so first,
        the status is its own and this says so."""
        try:
            _, status = os.waitpid(child.pid, 0)
        except ChildProcessError:
            child.returncode = -1
            return "ended (its exit status was collected by gunicorn's master)"
        child.returncode = os.waitstatus_to_exitcode(status)
        return describe_exit(status)
