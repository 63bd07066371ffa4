"""Logs: one line per request, and the app's own loggers, as JSON in production.

A log collector (docker's json-file driver, journald, Loki...) can only filter and count
what it can parse, so production writes one JSON object per line; development keeps
readable text. Only the `srcflask` logger tree is configured, and Flask-Limiter's warnings
(its storage going down): gunicorn keeps its own loggers (gunicorn.conf.py points them at
the same formatter) and other libraries stay quiet.

Every line written while a request is served carries its id (request.id: nginx's
X-Request-ID, else a new one), and so does the response (its X-Request-ID header, and the
error page). The jobs a request queued (an autodoc, a shadow draft, an email, a training
run) are written later by other processes, which have no request: each job row keeps the
id of the request that inserted it (`request_id`), and the writer's, sender's and trainer's
lines about it carry it, beside the row's own id (`autodoc_id` ...); the request's own line
lists the ids of the job rows it committed (`autodoc_ids` ...). One search for the id a user
quotes follows a save to its autodoc.
"""
import datetime as dt
import json
import logging
import logging.config
import os
import time
from functools import cache

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import event

from .request import REQUEST_ID_HEADER

request_log = logging.getLogger("srcflask.request")

# Attributes every LogRecord has: whatever else a record carries came from `extra=`.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# Known-harmless messages of the ML stack, quieted where they are made (the writer imports
# TensorFlow and transformers lazily, after this runs), so that a warning in the log means
# something. TensorFlow's C++ log reads TF_CPP_MIN_LOG_LEVEL once, at import: 2 keeps its
# errors and drops its start-up notes (CPU features, oneDNN) and warnings; a value in the
# environment wins. transformers' TF model module reports a successful load ("All model
# checkpoint layers were used ...", "All the layers of ... were initialized ...") and its
# deprecation of TensorFlow (our version is pinned) at WARNING level: those messages, and only
# those, are dropped (LIBRARY_NOTES); its real warnings — layers left newly initialized, shapes
# that did not match a checkpoint — still reach the log. Every logger keeps its level.
LIBRARY_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}
LIBRARY_NOTES = {
    "transformers.modeling_tf_utils": ("All model checkpoint layers were used", "All the layers of ",
                                       "TensorFlow and JAX classes are deprecated"),
}


class DropMessages(logging.Filter):
    """Drops a logger's records whose message starts with one of `prefixes`."""

    def __init__(self, prefixes):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record):
        return not record.getMessage().startswith(self.prefixes)


# One filter per logger for the life of the process: configure() runs once per app (tests make many).
_LIBRARY_FILTERS = {name: DropMessages(prefixes) for name, prefixes in LIBRARY_NOTES.items()}


def current_request_id():
    """The id of the request being served in this thread, None outside one."""
    return getattr(request, "id", None) if has_request_context() else None


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, the request's id (in a
    request) and the `extra` fields."""

    def format(self, record):
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        entry.update({key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A readable line, ending with the request's id in a request, or with the id of the request
    that queued the job a line is about (a writer's, sender's or trainer's `request_id`)."""

    def formatMessage(self, record):
        line = super().formatMessage(record)
        request_id = current_request_id() or getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


def formatter(log_format):
    """The dictConfig formatter of a log line, JSON ("json") or text: the app's lines and
    gunicorn's (gunicorn.conf.py) are written alike."""
    if log_format == "json":
        return {"()": JsonFormatter}
    return {"()": TextFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}


def configure(log_format, level="INFO"):
    """Point the `srcflask` loggers (and Flask-Limiter's warnings) at stderr, as JSON ("json") or text, and quiet
    the ML stack's known-harmless messages (LIBRARY_NOTES). dictConfig replaces
    the handler, so calling it again (one app per test) never doubles the lines. Records
    still propagate (pytest's caplog reads them there): neither gunicorn, Flask nor the ML
    stack puts a handler on the root logger, so nothing is printed twice."""
    for name, value in LIBRARY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"srcflask": formatter(log_format)},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "srcflask"}},
        "loggers": {"srcflask": {"handlers": ["stderr"], "level": level, "propagate": True},
                    # Its warnings say when the rate limits' storage (Redis) stops or starts
                    # answering (srcflask/throttle.py); its per-request notes stay quiet.
                    "flask-limiter": {"handlers": ["stderr"], "level": "WARNING", "propagate": True},
                    },
    })
    for name, notes in _LIBRARY_FILTERS.items():
        logging.getLogger(name).addFilter(notes)  # the same object: added once however often this runs


def start_timer():
    g.request_started = time.perf_counter()


def request_seconds():
    """Seconds since this request began (its first before_request hook)."""
    return time.perf_counter() - g.request_started


def log_request(response):
    """The request's one log line: who asked what, the answer and how long it took."""
    user_id = current_user.id if current_user.is_authenticated else None
    request_log.info(
        "%s %s %s", request.method, request.path, response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "endpoint": request.endpoint,
            "status": response.status_code,
            "duration_ms": round(request_seconds() * 1000, 1),
            "user_id": user_id,
            "remote_addr": request.remote_addr,
            **queued_jobs(),
        },
    )
    return response


def send_request_id(response):
    response.headers[REQUEST_ID_HEADER] = request.id
    return response


@cache
def _job_fields():
    """{job model: the request line's field listing the rows of it the request queued}."""
    from .models import OutboxMessage, ShadowDraft, TrainingRun
    from .static.data.processeddata.models import Autodoc

    return {Autodoc: "autodoc_ids", ShadowDraft: "shadow_draft_ids", OutboxMessage: "outbox_message_ids",
            TrainingRun: "training_run_ids"}


def _stamp_new_jobs(session, flush_context, instances):
    """Before a flush in a request: each job row it inserts keeps the request's id
    (`request_id`), so the writer's, sender's and trainer's log lines about it name it too."""
    request_id = current_request_id()
    if request_id:
        fields = _job_fields()
        for row in session.new:
            if type(row) in fields and row.request_id is None:
                row.request_id = request_id


def _note_new_jobs(session, flush_context):
    """After a flush in a request: the job rows it inserted, kept on the session until the
    transaction ends (session.new still lists them here, their ids assigned)."""
    if has_request_context():
        fields = _job_fields()
        session.info.setdefault("new_jobs", []).extend(
            (fields[type(row)], row.id) for row in session.new if type(row) in fields)


def _keep_committed_jobs(session):
    """A commit in a request: its job rows now exist, for the request's log line."""
    new_jobs = session.info.pop("new_jobs", [])
    if new_jobs and has_request_context():
        g.setdefault("queued_jobs", []).extend(new_jobs)


def _forget_rolled_back_jobs(session):
    session.info.pop("new_jobs", None)


def queued_jobs():
    """{field: [ids]} of the job rows this request committed (see the module's docstring)."""
    listed = {}
    for field, row_id in g.get("queued_jobs", ()):
        listed.setdefault(field, []).append(row_id)
    return listed


def init_app(app):
    from .extensions import db

    configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.before_request(start_timer)
    app.after_request(log_request)
    app.after_request(send_request_id)
    # On the session class, shared by every app of the process: registered once.
    for name, listener in (("before_flush", _stamp_new_jobs), ("after_flush", _note_new_jobs),
                           ("after_commit", _keep_committed_jobs),
                           ("after_rollback", _forget_rolled_back_jobs)):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)
