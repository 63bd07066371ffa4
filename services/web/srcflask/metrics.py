"""Prometheus metrics: requests by route, the writer's queue, generation and model load times.

Request metrics are labelled by endpoint (the view's name), never by raw path, so that
/sponsor/documents/1, /2 ... stay one series; every request label takes its values from a
fixed set (record_request), so no client can make the registry grow. The queue figures
are read from the database when Prometheus scrapes (one grouped query), not counted in
this process: every web replica and `flask writer run` process shares that one queue, so
any replica reports the same truth. Generation seconds are observed by the writer threads of this process.

Metrics live in this process's registry: with one gunicorn worker per container (see
gunicorn.conf.py) a scrape sees everything the process did.
"""
import hmac
import ipaddress
import logging
from http import HTTPStatus

from flask import abort, current_app, request
from prometheus_client import (CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector,
                               disable_created_metrics)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from .logging_setup import request_seconds

log = logging.getLogger(__name__)
registry = CollectorRegistry()
ProcessCollector(registry=registry)
PlatformCollector(registry=registry)

# The label values a request can take; anything else is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
KNOWN_STATUSES = frozenset(status.value for status in HTTPStatus)

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


class _StateCollector:
    """Figures read at scrape time: the autodocs by status (the queue), the unsent emails
    and this process's writer model. Runs inside the /metrics request, so it has the app and its session."""

    def collect(self):
        from .services.autodoc_queue import queue_depth
        from .services.outbox import UNSENT_STATUSES, outbox_depth
        from .static.data.processeddata.models import AUTODOC_STATUSES
        from .writer import writer_runtime

        database_up = GaugeMetricFamily("srcflask_database_up", "1 when the last scrape could read the database.")
        try:
            depth = queue_depth()
            unsent = outbox_depth()
        except SQLAlchemyError as error:
            from .extensions import db

            db.session.rollback()
            log.warning("metrics: the database cannot be read: %s", error, extra={"event": "metrics_database_error"})
            database_up.add_metric([], 0)
        else:
            database_up.add_metric([], 1)
            by_status = GaugeMetricFamily("srcflask_autodocs", "Autodocs by status (the whole queue, all writers).",
                                          labels=["status"])
            for status in AUTODOC_STATUSES:
                by_status.add_metric([status], depth.get(status, 0))
            yield by_status
            yield GaugeMetricFamily("srcflask_writer_queue_depth", "Autodocs waiting for a writer.",
                                    value=depth.get("queued", 0))
            outbox_state = GaugeMetricFamily(
                "srcflask_outbox_messages", "Emails not sent yet, by status: queued (waiting, or retrying after a "
                "failure), running (being sent), failed (given up: alert on it).", labels=["status"])
            for status in UNSENT_STATUSES:
                outbox_state.add_metric([status], unsent.get(status, 0))
            yield outbox_state
        yield database_up

        from .throttle import storage_up

        ratelimit_up = storage_up()
        if not ratelimit_up:
            log.error("metrics: the rate limits' storage does not answer; each process counts on its own",
                      extra={"event": "ratelimit_storage_down"})
        yield GaugeMetricFamily("srcflask_ratelimit_storage_up", "1 when the rate limits' storage (Redis) answers; "
                                "0: each process counts on its own until it does (srcflask/throttle.py).",
                                value=1 if ratelimit_up else 0)

        info = writer_runtime.loaded_info
        yield GaugeMetricFamily("srcflask_writer_model_loaded", "1 when this process's writer has loaded its model.",
                                value=1 if info else 0)
        if info:
            yield GaugeMetricFamily("srcflask_writer_model_load_seconds", "Seconds this process took to load the model.",
                                    value=info["load_seconds"])
        # Only where a writer is meant to run: a web process of the scaled set-up
        # (WRITER_IN_PROCESS=0) would otherwise report a dead writer forever.
        if current_app.config["WRITER_IN_PROCESS"]:
            yield GaugeMetricFamily("srcflask_writer_alive", "1 while this process's writer threads run and none is "
                                    "failing (a corrupt model, out of memory, a bug); 0 otherwise: alert on it.",
                                    value=1 if writer_runtime.alive else 0)


registry.register(_StateCollector())


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
