"""gunicorn settings for production (docker-compose.prod.yml).

One worker process with threads: the GPT-2 writer lives in the app process and holds
~2 GB of weights and compiled XLA programs, so every extra worker process would load
another copy. Threads serve pages concurrently while the writer thread works (TensorFlow
releases the GIL inside its kernels). Scale out with more containers or `flask writer run`
processes, all coordinated through the autodocs table.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:5000")
workers = int(os.environ.get("GUNICORN_WORKERS", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker):
    """Start the in-process writer as soon as the worker is up, not on its first request,
    so the queue drains after a restart even when nobody is browsing."""
    from srcflask.writer import writer_runtime

    if worker.wsgi.config["WRITER_IN_PROCESS"]:
        writer_runtime.start(worker.wsgi)
