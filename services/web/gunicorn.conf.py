"""gunicorn settings for production (docker-compose.prod.yml); see the README's Production
section for the measurements behind them.

Page workers with threads, and the GPT-2 writer in one process of its own beside them:
the master starts `flask writer run` once it is ready (when_ready), at WRITER_NICE, starts
it again after a backoff when it ends, and stops it with the workers
(srcflask/writer_supervisor.py). The writer holds ~2 GB of weights and compiled XLA
programs, so it is one process whatever GUNICORN_WORKERS says: one model in memory, and the
workers' pages no longer share an interpreter lock with it (bench/RESULTS.md, "Load at
scale"). With WRITER_IN_PROCESS=0 no writer is started: `flask writer run` processes
elsewhere write the autodocs (docker-compose.scale.yml), all coordinated through the
autodocs table. A worker's restart no longer reloads the model; none is asked for
(no max_requests).

Metrics hold with any number of workers: prometheus_client's multiprocess mode, in a
folder made fresh when the master starts (on_starting) and forgotten worker by worker as
they exit (child_exit); the writer process counts its jobs in the same folder, and the
workers report its state (alive, model loaded) from its report; srcflask/metrics.py says
what each figure is.
"""
import glob
import os
import shutil
import sys
import tempfile

from srcflask.config import ConfigurationError, load_settings
from srcflask.logging_setup import formatter

# Every setting is checked before gunicorn starts anything: settings that must not run stop
# the master with their one-line reasons (not a worker failing and restarted in a loop).
try:
    settings = load_settings()
except ConfigurationError as refused:
    sys.exit(f"srcflask cannot start with these settings:\n{refused}")

bind = settings.GUNICORN_BIND
workers = settings.GUNICORN_WORKERS
worker_class = "gthread"
threads = settings.GUNICORN_THREADS
# What bounds a request under gthread. `timeout` does NOT: the worker's heartbeat is its
# main loop (gunicorn/workers/gthread.py, run()), which keeps beating while request threads
# are stuck, so the arbiter restarts the worker only when the whole process hangs (the main
# loop itself blocked for this long). A request is bounded by: the database's
# statement_timeout (DATABASE_STATEMENT_TIMEOUT_SECONDS, 30 s: a query or lock wait is
# cancelled and the request answers 503), the connect timeout (5 s), and nginx's
# proxy_read_timeout (65 s: the client gets a 504, the thread runs on). Python code stuck
# in a thread is killed by nothing: it holds one of `threads` until the process restarts.
timeout = settings.GUNICORN_TIMEOUT
graceful_timeout = 30
keepalive = 5
# The heartbeat file in memory: a busy or slow container disk must not look like a hung worker.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
forwarded_allow_ips = settings.FORWARDED_ALLOW_IPS
# gunicorn 27's control socket (one fixed path per user) is not used: several gunicorns on
# one machine (replicas, the test suite) would take it from each other.
control_socket_disable = True

# The app writes one line per request itself (srcflask/logging_setup.py), with the user
# and the route: gunicorn's access log would only repeat it. gunicorn's own messages use
# the app's formatter, so every line on stderr reads the same way: JSON in production,
# text where LOG_FORMAT says so (the quick start, scripts/run).
errorlog = "-"
loglevel = settings.LOG_LEVEL.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "srcflask", "stream": "ext://sys.stderr"}},
    "formatters": {"srcflask": formatter(settings.LOG_FORMAT)},
}


def on_starting(server):
    """Give the workers an empty folder for their metrics, before any of them starts (and
    before anything imports prometheus_client, which reads the variable once): an operator's
    PROMETHEUS_MULTIPROC_DIR is emptied of metric files (a previous run's figures would be
    added to this one's), else one is made in memory for this master alone, so that several
    gunicorns on one machine never share it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for leftover in glob.glob(os.path.join(folder, "*.db")):
            os.remove(leftover)
    else:
        memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = server.srcflask_metrics_dir = tempfile.mkdtemp(
            prefix="srcflask-metrics-", dir=memory)


def child_exit(server, worker):
    """A worker's counters stay (they are totals); its gauges of the moment go with it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server):
    """Start the server's writer process as soon as the master listens, not on a first
    request, so the queue drains after a restart even when nobody is browsing."""
    if settings.WRITER_IN_PROCESS:
        from srcflask.writer_supervisor import WriterSupervisor

        server.srcflask_writer = WriterSupervisor(server.app.app_uri, settings.WRITER_NICE,
                                                  settings.WRITER_RESTART_MIN_SECONDS,
                                                  settings.WRITER_RESTART_MAX_SECONDS)
        server.srcflask_writer.start()


def on_exit(server):
    """The workers are gone: the writer, told to stop with them, gets what is left of
    graceful_timeout to finish its batch."""
    if getattr(server, "srcflask_writer", None):
        server.srcflask_writer.stop(graceful_timeout)
    if getattr(server, "srcflask_metrics_dir", None):
        shutil.rmtree(server.srcflask_metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    """Start the mail sender as soon as the worker is up, not on its first request, so the
    outbox drains after a restart even when nobody is browsing (one sender per worker: its
    claims are leases); the sampler of the worker's own metrics; and, where the master runs
    the writer process, point this worker's writer state at that process's report."""
    from srcflask import metrics
    from srcflask.mailer import mail_sender
    from srcflask.writer_supervisor import REPORT_ENV, WriterBeside

    if worker.wsgi.config["WRITER_IN_PROCESS"]:
        worker.wsgi.extensions["writer"] = WriterBeside(os.environ[REPORT_ENV])
    metrics.start_sampler(worker.wsgi)
    if worker.wsgi.config["MAIL_IN_PROCESS"]:
        mail_sender.start(worker.wsgi)
