"""gunicorn settings for production (docker-compose.prod.yml); see the README's Production
section for the measurements behind them.

One worker process with threads: the GPT-2 writer lives in the app process and holds
~2 GB of weights and compiled XLA programs, so every extra worker process would load
another copy and run another writer on the same cores. Threads serve pages while the
writer thread works (TensorFlow releases the GIL inside its kernels). Scale out with more
containers or `flask writer run` processes, all coordinated through the autodocs table.
Never set max_requests: each worker restart reloads and recompiles the model.
"""
import os
import sys

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:5000")
workers = int(os.environ.get("GUNICORN_WORKERS", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A page that takes this long is stuck: the worker is restarted (nginx waits a little longer).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# The heartbeat file in memory: a busy or slow container disk must not look like a hung worker.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# The app writes one JSON line per request itself (srcflask/logging_setup.py), with the
# user and the route: gunicorn's access log would only repeat it. gunicorn's own messages
# use the same JSON formatter, so every line on stderr parses the same way.
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False},
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
    "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "formatters": {"json": {"()": "srcflask.logging_setup.JsonFormatter"}},
}


def on_starting(server):
    """Check every setting before any worker starts: settings that must not run stop the
    master with their one-line reasons, instead of each worker failing and being restarted
    in a loop."""
    from srcflask.config import ConfigurationError, load_settings

    try:
        load_settings()
    except ConfigurationError as refused:
        sys.exit(f"srcflask cannot start with these settings:\n{refused}")


def post_worker_init(worker):
    """Start the in-process writer as soon as the worker is up, not on its first request,
    so the queue drains after a restart even when nobody is browsing."""
    from srcflask.writer import writer_runtime

    if worker.wsgi.config["WRITER_IN_PROCESS"]:
        writer_runtime.start(worker.wsgi)
