"""Prometheus metrics: requests, the queues, the writers, the database pool, training runs.

Request metrics are labelled by endpoint (the view's name), never by raw path, so that
/sponsor/documents/1, /2 ... stay one series; every label takes its values from a fixed
set (record_request), so no client can make the registry grow.

Three kinds of figures, each counted where it is true:
- What processes do (requests, generation seconds, writer jobs by outcome): counters and
  histograms of the process that did it. Under gunicorn with PROMETHEUS_MULTIPROC_DIR set
  (gunicorn.conf.py sets it) every worker writes them to files of that folder and a scrape
  of any worker adds up all of them (prometheus_client's multiprocess mode); a `flask
  writer run` process serves its own on WRITER_METRICS_PORT (serve_writer_metrics).
- What a process is (its writer alive, its model loaded, its database connections in
  use): read from the process. Without multiprocess mode at scrape time; in it, each worker
  samples them every SAMPLE_SECONDS into gauges of the shared folder (start_sampler),
  summed, or the worst of all workers, as each gauge says.
- What the database holds (the queue, its oldest job's age, unsent emails, training runs):
  read at scrape time, the same truth from any replica. Each query reads only rows that
  are work still to do, through an index on their status (autodocs queued or running,
  emails not sent, the small training_runs table), never the history: a scrape costs the
  same after ten years of autodocs. Finished autodocs are therefore not counted here: the
  writers' srcflask_writer_jobs_total counts what they wrote, refused or lost, which is
  what a rate or an alert needs (the admin pages have the all-time totals).
"""
import hmac
import ipaddress
import logging
import os
import threading
import time
from functools import cache
from http import HTTPStatus

from flask import abort, current_app, request
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector,
                               disable_created_metrics, generate_latest, multiprocess, start_http_server)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from .logging_setup import request_seconds

log = logging.getLogger(__name__)
registry = CollectorRegistry()
ProcessCollector(registry=registry)
PlatformCollector(registry=registry)

# The label values a request can take; anything else is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
KNOWN_STATUSES = frozenset(status.value for status in HTTPStatus)
# How often a gunicorn worker in multiprocess mode writes down its own state (start_sampler):
# well under Prometheus' usual 15 s scrape interval.
SAMPLE_SECONDS = 5.0

REQUESTS = Counter(
    "srcflask_http_requests", "HTTP requests answered, by endpoint, method and status.",
    ["endpoint", "method", "status"], registry=registry,
)
REQUEST_SECONDS = Histogram(
    "srcflask_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint and method.",
    ["endpoint", "method"], registry=registry,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# One observation per generate call (a batch of up to WRITER_BATCH_SIZE autodocs); GPT-2
# beam search on a CPU takes seconds to minutes.
GENERATION_SECONDS = Histogram(
    "srcflask_writer_generation_seconds", "Time of one writer generate call (one batch of autodocs).",
    registry=registry, buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
# Counted by writer.py's _log_job, the one place a job's outcome is logged, under the
# job's kind and the outcome of its log event (writer.JOB_OUTCOMES).
WRITER_JOB_KINDS = ("autodoc", "shadow_draft")
WRITER_JOB_OUTCOMES = ("written", "retried", "failed", "refused", "not_saved")
WRITER_JOBS = Counter(
    "srcflask_writer_jobs", "Jobs a writer finished or gave back, by kind (autodoc; shadow_draft: a candidate "
    "model's blind draft) and outcome: written; retried (it failed and went back to the queue); failed (it failed "
    "with its attempts used up); refused (its lease had been taken over by another attempt); not_saved (the "
    "database did not answer: the lease runs out and the job is tried again).",
    ["kind", "outcome"], registry=registry,
)
for _kind in WRITER_JOB_KINDS:  # every series from 0, so that rate() and alerts see the first job
    for _outcome in WRITER_JOB_OUTCOMES:
        WRITER_JOBS.labels(_kind, _outcome)


def multiprocess_dir():
    """The folder of prometheus_client's multiprocess mode, None when this process counts alone."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _DatabaseState:
    """The queue, the unsent emails, the training runs and the rate limits' storage: the
    same for every process, read at scrape time inside the /metrics request."""

    def collect(self):
        from .extensions import db
        from .services import autodoc_queue
        from .services.outbox import UNSENT_STATUSES, outbox_depth

        database_up = GaugeMetricFamily("srcflask_database_up", "1 when the last scrape could read the database.")
        try:
            queue = autodoc_queue.queue_figures()
            unsent = outbox_depth()
            runs = training_run_figures()
        except SQLAlchemyError as error:
            db.session.rollback()
            log.warning("metrics: the database cannot be read: %s", error, extra={"event": "metrics_database_error"})
            database_up.add_metric([], 0)
        else:
            database_up.add_metric([], 1)
            by_status = GaugeMetricFamily("srcflask_autodocs", "Autodocs queued or being written (all writers); "
                                          "finished ones are counted by srcflask_writer_jobs_total.", labels=["status"])
            for status in ("queued", "running"):
                by_status.add_metric([status], queue[status])
            yield by_status
            yield GaugeMetricFamily("srcflask_writer_queue_depth", "Autodocs waiting for a writer (queued, "
                                    "archived documents' aside: they wait for nobody).", value=queue["waiting"])
            yield GaugeMetricFamily("srcflask_writer_queue_retrying", "Autodocs waiting for another attempt: an "
                                    "earlier one failed or its writer died (they fail for good after "
                                    "WRITER_MAX_ATTEMPTS).", value=queue["retrying"])
            yield GaugeMetricFamily("srcflask_writer_oldest_queued_age_seconds", "Age of the oldest autodoc "
                                    "waiting for a writer, by the database clock; 0 when none waits.",
                                    value=queue["oldest_age"])
            outbox_state = GaugeMetricFamily(
                "srcflask_outbox_messages", "Emails not sent yet, by status: queued (waiting, or retrying after a "
                "failure), running (being sent), failed (given up: alert on it).", labels=["status"])
            for status in UNSENT_STATUSES:
                outbox_state.add_metric([status], unsent.get(status, 0))
            yield outbox_state
            yield runs
        yield database_up

        from .throttle import storage_up

        ratelimit_up = storage_up()
        if not ratelimit_up:
            log.error("metrics: the rate limits' storage does not answer; each process counts on its own",
                      extra={"event": "ratelimit_storage_down"})
        yield GaugeMetricFamily("srcflask_ratelimit_storage_up", "1 when the rate limits' storage (Redis) answers; "
                                "0: each process counts on its own until it does (srcflask/throttle.py).",
                                value=1 if ratelimit_up else 0)


def training_run_figures():
    """The training runs by status, as a metric family (the table holds a handful of rows
    per model trained: a grouped count stays cheap)."""
    from .extensions import db
    from .models import TRAINING_RUN_STATUSES, TrainingRun

    counts = dict(db.session.execute(select(TrainingRun.status, func.count()).group_by(TrainingRun.status)).all())
    family = GaugeMetricFamily("srcflask_training_runs", "Training runs by status.", labels=["status"])
    for status in TRAINING_RUN_STATUSES:
        family.add_metric([status], counts.get(status, 0))
    return family


# What a process reports about itself: (help, how multiprocess mode combines the workers).
PROCESS_FIGURES = {
    "srcflask_database_pool_in_use": ("Database connections checked out of the pool (all processes).", "livesum"),
    "srcflask_database_pool_size": ("Connections the pool keeps open (all processes).", "livesum"),
    "srcflask_writer_model_loaded": ("1 when this process's writer has loaded its model (every process's, "
                                     "with several).", "livemin"),
    "srcflask_writer_model_load_seconds": ("Seconds this process took to load the model.", "livemax"),
    "srcflask_writer_alive": ("1 while this process's writer threads run and none is failing (a corrupt model, "
                              "out of memory, a bug); 0 otherwise: alert on it. gunicorn's page workers report the "
                              "writer process their master runs (0 too while it is dead or hung).", "livemin"),
}


def process_figures(app, runs_writer):
    """{name: value} of PROCESS_FIGURES for this process: the writer's only where a writer is
    meant to run (a web process of the scaled set-up, WRITER_IN_PROCESS=0, would otherwise
    report a dead writer forever), the pool's where the pool counts its connections."""
    from .extensions import db
    from .writer import server_writer

    writer = server_writer(app)
    figures = {}
    with app.app_context():
        pool = db.engine.pool
    if hasattr(pool, "checkedout"):  # QueuePool (PostgreSQL); SQLite's pools do not count
        figures.update(srcflask_database_pool_in_use=pool.checkedout(), srcflask_database_pool_size=pool.size())
    info = writer.loaded_info
    figures["srcflask_writer_model_loaded"] = 1 if info else 0
    if info:
        figures["srcflask_writer_model_load_seconds"] = info["load_seconds"]
    if runs_writer:
        figures["srcflask_writer_alive"] = 1 if writer.alive else 0
    return figures


class _ProcessState:
    """process_figures at scrape time, for a process that counts alone."""

    def __init__(self, app, runs_writer):
        self.app, self.runs_writer = app, runs_writer

    def collect(self):
        for name, value in process_figures(self.app, self.runs_writer).items():
            yield GaugeMetricFamily(name, PROCESS_FIGURES[name][0], value=value)


@cache
def _shared_gauge(name):
    """The multiprocess gauge of one PROCESS_FIGURES entry, made on its first sample: a gauge
    exists (at 0) in a worker's file from its creation on, so a worker with no writer must
    never make the writer's."""
    documentation, mode = PROCESS_FIGURES[name]
    return Gauge(name, documentation, multiprocess_mode=mode, registry=None)


def sample_process(app, runs_writer):
    for name, value in process_figures(app, runs_writer).items():
        _shared_gauge(name).set(value)


def start_sampler(app):
    """In multiprocess mode, write this worker's process_figures every SAMPLE_SECONDS, so
    that a scrape answered by any worker reports every worker (gunicorn.conf.py starts it)."""
    if not multiprocess_dir():
        return
    runs_writer = app.config["WRITER_IN_PROCESS"]

    def sample_forever():
        while True:
            try:
                sample_process(app, runs_writer)
            except Exception:  # a sample missed is harmless; the thread must outlive it
                log.exception("metrics: sampling this process failed", extra={"event": "metrics_sample_failed"})
            time.sleep(SAMPLE_SECONDS)

    threading.Thread(target=sample_forever, name="metrics-sampler", daemon=True).start()


def exposition():
    """The /metrics body: this process's (or, in multiprocess mode, every worker's) counters
    and state, then the database's figures."""
    app = current_app._get_current_object()
    if multiprocess_dir():
        sample_process(app, app.config["WRITER_IN_PROCESS"])  # this worker's own, fresh
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        body = generate_latest(processes)
    else:
        body = generate_latest(registry) + generate_latest(_ProcessState(app, app.config["WRITER_IN_PROCESS"]))
    return body + generate_latest(_DatabaseState())


def serve_writer_metrics(app, port):
    """A `flask writer run` process's own metrics on `port` (0: none): its jobs, generation
    times, writer state and process figures. The queue's figures are the web's /metrics
    alone: every process would report the same numbers."""
    if not port:
        return
    registry.register(_ProcessState(app, runs_writer=True))
    start_http_server(port, registry=registry)
    log.info("writer metrics on port %d", port, extra={"event": "writer_metrics_serving", "port": port})


def record_request(response):
    """Count and time the request under labels from fixed sets only: each distinct label
    value is a series kept for the life of the process, so nothing a client chooses (an
    invented method, a path, a status a view made up) may become one."""
    endpoint = request.endpoint or "unmatched"  # a rule of the url_map, or none (404, 405)
    method = request.method if request.method in KNOWN_METHODS else "other"
    REQUESTS.labels(endpoint, method, status_label(response.status_code)).inc()
    REQUEST_SECONDS.labels(endpoint, method).observe(request_seconds())
    return response


def status_label(code):
    """The status as a label: a code HTTP defines, else its class ("2xx"), else "other"."""
    if code in KNOWN_STATUSES:
        return str(code)
    return f"{code // 100}xx" if 100 <= code < 600 else "other"


def check_access():
    """Who may scrape: a request with the METRICS_TOKEN bearer token, or from one of
    METRICS_ALLOWED_NETWORKS (the client address as ProxyFix sees it). With neither set,
    as in production by default, the metrics are off and the URL does not exist (404)."""
    token = current_app.config["METRICS_TOKEN"]
    networks = allowed_networks(current_app.config["METRICS_ALLOWED_NETWORKS"])
    if not token and not networks:
        abort(404)
    if token:
        scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode()):
            return
    if networks and _address_in(request.remote_addr, networks):
        return
    abort(403)


def allowed_networks(setting):
    """The networks of a comma-separated setting ("10.0.0.0/8, 127.0.0.1")."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip()]


def _address_in(address, networks):
    try:
        address = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


def init_app(app):
    disable_created_metrics()  # the *_created series only double the output
    app.after_request(record_request)
