"""Logs: one line per request, and the app's own loggers, as JSON in production.

A log collector (docker's json-file driver, journald, Loki...) can only filter and count
what it can parse, so production writes one JSON object per line; development keeps
readable text. Only the `srcflask` logger tree is configured, and Flask-Limiter's warnings
(its storage going down): gunicorn keeps its own loggers (gunicorn.conf.py points them at
the same formatter) and other libraries stay quiet.
"""
import datetime as dt
import json
import logging
import logging.config
import os
import time

from flask import g, request
from flask_login import current_user

request_log = logging.getLogger("srcflask.request")

# Attributes every LogRecord has: whatever else a record carries came from `extra=`.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# Known-harmless messages of the ML stack, quieted where they are made (the writer imports
# TensorFlow and transformers lazily, after this runs), so that a warning in the log means
# something. TensorFlow's C++ log reads TF_CPP_MIN_LOG_LEVEL once, at import: 2 keeps its
# errors and drops its start-up notes (CPU features, oneDNN) and warnings; a value in the
# environment wins. transformers' TF model module reports a successful load ("All model
# checkpoint layers were used ...") and its deprecation of TensorFlow (our version is pinned)
# at WARNING level: that module keeps only its errors. Every other logger keeps its level.
LIBRARY_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}
LIBRARY_LOG_LEVELS = {"transformers.modeling_tf_utils": "ERROR"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message and the `extra` fields."""

    def format(self, record):
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(log_format):
    """The dictConfig formatter of a log line, JSON ("json") or text: the app's lines and
    gunicorn's (gunicorn.conf.py) are written alike."""
    if log_format == "json":
        return {"()": JsonFormatter}
    return {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}


def configure(log_format, level="INFO"):
    """Point the `srcflask` loggers (and Flask-Limiter's warnings) at stderr, as JSON ("json") or text, and quiet
    the ML stack's known-harmless messages (LIBRARY_LOG_LEVELS). dictConfig replaces
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
                    **{name: {"level": quieter} for name, quieter in LIBRARY_LOG_LEVELS.items()}},
    })


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
        },
    )
    return response


def init_app(app):
    configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.before_request(start_timer)
    app.after_request(log_request)
