"""Live status of autodocs for the pages, as server-sent events.

A page with autodocs still queued or being written opens one stream for all of them
(js/autodocs.js); the stream only says "autodoc N changed" (services/queue_signals.py
relays the writer's NOTIFY, sent as its write commits), and the page then reads the
autodoc's state from main.autodoc_status, which renders it and checks access as for a poll.

What a stream costs: under gunicorn's gthread workers an open stream holds one of the
process's request threads (GUNICORN_THREADS) for its whole life, although it holds no
database connection and uses no CPU while quiet. So at most SSE_MAX_STREAMS are open per
process (over that: 503 with Retry-After, and the page polls until it tries again), each
ends after SSE_STREAM_SECONDS (the browser opens the next one) and sends a comment every
SSE_KEEPALIVE_SECONDS while quiet. A page closed gives its thread and its place back within
a quarter of a second: the stream watches its socket (nginx closes its connection to
gunicorn when the browser's goes).
"""
import socket
from functools import partial

from flask import Response, current_app, jsonify, request
from flask_login import current_user

from ..routing import MAX_ROW_ID
from ..services.documents import get_autodoc_or_404
from ..services.queue_signals import event_stream, listener
from . import bp

# A page shows at most a history page's autodocs (20 revisions, a badge and a detail each).
MAX_AUTODOCS_PER_STREAM = 50


def client_socket(environ):
    """The connection the response is written to, where the server exposes it (gunicorn,
    werkzeug's development server); None elsewhere (the test client)."""
    return environ.get("gunicorn.socket") or environ.get("werkzeug.socket")


def closed_by_peer(connection):
    """Whether the other end closed `connection`: a peek that neither waits nor takes
    anything, so a request the client may send next is left for the server to read. No socket
    (the test client), or a TLS socket (gunicorn serving TLS itself), which cannot peek: it
    counts as open, and a closed page is noticed when a keep-alive write fails."""
    if connection is None:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError, ValueError):
        return False
    except OSError:  # reset by the peer, or already shut
        return True


def max_streams(config):
    """How many streams this process may hold open (SSE_MAX_STREAMS; unset: half its threads)."""
    if config["SSE_MAX_STREAMS"] is not None:
        return config["SSE_MAX_STREAMS"]
    return config["GUNICORN_THREADS"] // 2


@bp.get("/autodocs/events")
def autodoc_events():
    """A text/event-stream of `changed` events for the autodocs named by `id` (repeated),
    each of which the user must be allowed to see (404 otherwise, as for its status). A
    script cannot follow a log-in redirect, so refusals are JSON."""
    if not current_user.is_authenticated:
        return jsonify(error="Log in to follow these autodocs."), 401
    if not current_user.is_approved:
        return jsonify(error="Your account is not approved."), 403
    values = request.args.getlist("id")
    if not values or len(values) > MAX_AUTODOCS_PER_STREAM:
        return jsonify(error=f"Name from 1 to {MAX_AUTODOCS_PER_STREAM} autodocs, as ?id=1&id=2."), 400
    autodoc_ids = set()
    for value in values:
        if not (value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ROW_ID))
                and 1 <= int(value) <= MAX_ROW_ID):
            return jsonify(error=f"No autodoc {value!r}."), 404  # cannot name a row, like an unknown id
        autodoc_ids.add(get_autodoc_or_404(int(value), current_user).id)
    config = current_app.config
    if not listener.start(current_app._get_current_object()):
        return jsonify(error="Live status is off on this server (SQLite, or QUEUE_WAKEUPS=0); "
                             "this page polls instead."), 503
    subscription = listener.subscribe(autodoc_ids, max_streams(config))
    if subscription is None:
        # The page polls; a page opened later may find a free stream.
        response = jsonify(error="Too many live pages on this server right now; this page polls instead.")
        response.headers["Retry-After"] = str(round(config["SSE_STREAM_SECONDS"]))
        return response, 503
    stream = event_stream(subscription, config["SSE_STREAM_SECONDS"], config["SSE_KEEPALIVE_SECONDS"],
                          client_gone=partial(closed_by_peer, client_socket(request.environ)))
    # No request context is kept for the stream: its database connection goes back to the
    # pool when this view returns. X-Accel-Buffering: nginx passes each event on at once.
    return Response(stream, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
