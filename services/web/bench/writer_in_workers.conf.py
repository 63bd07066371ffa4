"""gunicorn settings for bench/load.py's comparison layouts, where the writer runs as threads
inside the page workers instead of in a process of its own:

- BENCH_WRITER_LAYOUT=thread: every worker runs a writer (production before issue 17: one
  worker × 8 threads; with two workers, two models in memory);
- BENCH_WRITER_LAYOUT=elected: one worker runs it, the first to take the lock file
  BENCH_WRITER_LOCK, the others serve pages only (issue 17's option (b), without the
  take-over a real election would need: enough to measure its pages and its writer).

Everything else is production's gunicorn.conf.py, read from the file and run as it is.
"""
import fcntl
import os
from pathlib import Path

_PRODUCTION = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
exec(compile(_PRODUCTION.read_text(), str(_PRODUCTION), "exec"))

_LAYOUT = os.environ["BENCH_WRITER_LAYOUT"]
assert _LAYOUT in ("thread", "elected"), _LAYOUT
_held = []  # the elected worker's lock file, open for the worker's life


def when_ready(server):
    """No writer process: the workers run the writer."""


def post_worker_init(worker):
    from srcflask import metrics
    from srcflask.mailer import mail_sender
    from srcflask.writer import writer_runtime
    from srcflask.writer_supervisor import WriterBeside

    if _LAYOUT == "thread" or _elected():
        writer_runtime.start(worker.wsgi)
    else:  # a report that never comes: no writer threads here, not even on a first request
        worker.wsgi.extensions["writer"] = WriterBeside(os.environ["BENCH_WRITER_LOCK"] + ".no-report")
    metrics.start_sampler(worker.wsgi)
    if worker.wsgi.config["MAIL_IN_PROCESS"]:
        mail_sender.start(worker.wsgi)


def _elected():
    lock = open(os.environ["BENCH_WRITER_LOCK"], "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return False
    _held.append(lock)
    return True
