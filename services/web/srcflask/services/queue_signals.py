"""Wake-ups over PostgreSQL LISTEN/NOTIFY: writers learn at once that work was queued, and
open pages that an autodoc they show changed its status.

Without them a writer notices a new job only at its next poll (WRITER_POLL_SECONDS) and a
page learns that its autodoc is done only at its next poll (2 s). Polling stays as the
fallback of both: a notification lost (the listener reconnecting, the database restarting)
costs at most one poll interval, never a job.

Two channels, each notification sent with pg_notify inside the transaction that makes the
change, so PostgreSQL delivers it when that transaction commits, and never for one rolled
back:
- QUEUED_CHANNEL, no payload: "writer work was queued" (a save, a regenerate, a job given
  back for another attempt, an archived document's waiting autodocs restored). The same
  notification sent twice in one transaction is delivered once.
- STATUS_CHANNEL, an autodoc's id: its status changed (a writer claimed, wrote or failed it).

One Listener per process: a daemon thread with one dedicated psycopg2 connection (never one
of the pool's, never one per page) that LISTENs on both channels. It rings the Doorbell the
writer threads idle on, and hands changed ids to the Subscriptions of the process's event
streams that show them. The connection is checked when the channels are quiet; lost (a
database restart, pg_terminate_backend), it is opened again after a doubling wait, and then
everyone is woken once, since what was sent meanwhile was lost: writers claim again, streams
tell their pages to refresh.

The embedded SQLite of the quick start has no NOTIFY: nothing is sent, no listener runs,
writers poll and pages poll. QUEUE_WAKEUPS=0 does the same on PostgreSQL (behind a pooler
in transaction mode, where LISTEN does not work); the notifications are still sent, and
cost nothing with nobody listening.
"""
import json
import logging
import os
import select
import threading
import time

import psycopg2
from flask import current_app
from psycopg2.extensions import ISOLATION_LEVEL_AUTOCOMMIT
from sqlalchemy import text

from ..extensions import db
from . import leases

log = logging.getLogger("srcflask.queue_signals")

QUEUED_CHANNEL = "srcflask_queued"
STATUS_CHANNEL = "srcflask_autodoc_status"
# The listener's connection is checked (SELECT 1) after this long without a notification: a
# server gone without closing the socket (a failover, a cut network) is noticed in seconds.
CHECK_SECONDS = 5.0
# Waits before opening the listener's connection again after it failed, doubling up to the maximum.
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# How often an open event stream looks whether its page was closed (event_stream).
CLIENT_CHECK_SECONDS = 0.25


def has_notify(app):
    """Whether the app's database has LISTEN/NOTIFY: PostgreSQL, not the quick start's SQLite."""
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")


def announce_queued():
    """Wake the writers when the current transaction commits (the caller commits)."""
    if has_notify(current_app):
        db.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": QUEUED_CHANNEL})


def announce_status(autodoc_ids):
    """Tell the pages showing `autodoc_ids` that their status changed, when the current
    transaction commits (the caller commits)."""
    if autodoc_ids and has_notify(current_app):
        db.session.execute(text("SELECT pg_notify(:channel, id::text) FROM unnest(CAST(:ids AS integer[])) AS id"),
                           {"channel": STATUS_CHANNEL, "ids": list(autodoc_ids)})


class Doorbell:
    """What idle writer threads wait on. Rings are counted, and a thread's wait returns at
    once when a ring came after its previous wait returned: a notification that arrives while
    the thread is busy (between its empty claim and its wait) is never slept through; at worst
    it costs one extra claim."""

    def __init__(self):
        self._condition = threading.Condition()
        self._rings = 0
        self._seen = threading.local()
        self.waiters = 0  # threads waiting now (tests and the benchmark wait for an idle writer)

    def ring(self):
        with self._condition:
            self._rings += 1
            self._condition.notify_all()

    def wait(self, timeout):
        """Block until a ring (or one since this thread's last wait) or `timeout` seconds;
        True when rung."""
        with self._condition:
            seen = getattr(self._seen, "rings", 0)
            self.waiters += 1
            try:
                rung = self._condition.wait_for(lambda: self._rings != seen, timeout)
            finally:
                self.waiters -= 1
            self._seen.rings = self._rings
            return rung


class Subscription:
    """One event stream's share of the listener: the autodoc ids its page shows, and those of
    them that changed since the stream last looked."""

    def __init__(self, listener, autodoc_ids):
        self.autodoc_ids = frozenset(autodoc_ids)
        self._listener = listener
        self._condition = threading.Condition()
        self._changed = set()
        self.ended = False

    def deliver(self, autodoc_ids):
        with self._condition:
            self._changed |= autodoc_ids
            self._condition.notify_all()

    def end(self):
        """End the stream at its next wake-up (the worker is stopping)."""
        with self._condition:
            self.ended = True
            self._condition.notify_all()

    def changes(self, timeout):
        """The ids that changed, waiting up to `timeout` seconds for one; an empty set when
        none did (or the stream was ended)."""
        with self._condition:
            self._condition.wait_for(lambda: self._changed or self.ended, timeout)
            changed, self._changed = self._changed, set()
            return changed

    def close(self):
        """Give the stream's place back (idempotent)."""
        self._listener._unsubscribe(self)


class Listener:
    """This process's LISTEN connection and what waits on it (see the module docstring)."""

    def __init__(self):
        self.doorbell = Doorbell()
        self._lock = threading.Lock()
        self._thread = None
        self._subscriptions = set()
        self._stopping = threading.Event()
        self._interrupt_read, self._interrupt_write = None, None
        # Set while LISTEN is in force; tests and the benchmark wait on it.
        self.listening = threading.Event()
        self.backend_pid = None  # the connection's server process (tests terminate it)

    def start(self, app):
        """Start the listener once per process (idempotent, cheap when it runs); False when
        the database has no NOTIFY (SQLite) or wake-ups are off (QUEUE_WAKEUPS=0): the
        callers poll."""
        if not (app.config["QUEUE_WAKEUPS"] and has_notify(app)):
            return False
        if self._thread is not None:
            return True
        with self._lock:
            if self._thread is None:
                self._stopping.clear()
                self._interrupt_read, self._interrupt_write = os.pipe()
                self._thread = threading.Thread(target=self._run, args=(app,), name="queue-listener", daemon=True)
                self._thread.start()
        return True

    def stop(self, timeout=5):
        """Stop listening and end every open stream (the process is stopping)."""
        with self._lock:
            thread, self._thread = self._thread, None
            for subscription in list(self._subscriptions):
                subscription.end()
            if thread is None:
                return
            self._stopping.set()
            os.write(self._interrupt_write, b"x")
        thread.join(timeout)
        os.close(self._interrupt_read)
        os.close(self._interrupt_write)

    def subscribe(self, autodoc_ids, limit):
        """A Subscription to `autodoc_ids`, or None when `limit` streams are open already."""
        with self._lock:
            if len(self._subscriptions) >= limit:
                return None
            subscription = Subscription(self, autodoc_ids)
            self._subscriptions.add(subscription)
            return subscription

    @property
    def open_streams(self):
        return len(self._subscriptions)

    def _unsubscribe(self, subscription):
        with self._lock:
            self._subscriptions.discard(subscription)

    def _run(self, app):
        failures = 0
        while not self._stopping.is_set():
            try:
                connection = self._connect(app)
            except psycopg2.Error as error:
                failures += 1
                delay = leases.retry_wait(failures, RETRY_MIN_SECONDS, RETRY_MAX_SECONDS)
                log.warning("queue listener cannot connect (%s); again in %.1f s", leases.describe(error), delay,
                            extra={"event": "queue_listener_unavailable", "retry_seconds": delay})
                self._stopping.wait(delay)
                continue
            failures = 0
            try:
                self._listen(connection)
            except Exception as error:  # an outage most often; whatever it is, the thread must outlive it
                log.warning("queue listener lost its connection (%s); reconnecting", leases.describe(error),
                            exc_info=not isinstance(error, (psycopg2.Error, OSError)),
                            extra={"event": "queue_listener_lost"})
                self._stopping.wait(RETRY_MIN_SECONDS)
            finally:
                self.listening.clear()
                connection.close()

    @staticmethod
    def _connect(app):
        """A connection of its own, with the pool's address and credentials: LISTEN holds it
        for the life of the process. TCP keepalives so that a silent peer is noticed."""
        with app.app_context():
            engine = db.engine
        args, params = engine.dialect.create_connect_args(engine.url)
        connection = psycopg2.connect(*args, **params, application_name="srcflask-queue-listener",
                                      connect_timeout=app.config["DATABASE_CONNECT_TIMEOUT_SECONDS"],
                                      keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
        connection.set_isolation_level(ISOLATION_LEVEL_AUTOCOMMIT)
        return connection

    def _listen(self, connection):
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {QUEUED_CHANNEL}; LISTEN {STATUS_CHANNEL}; SELECT pg_backend_pid()")
            self.backend_pid = cursor.fetchone()[0]
        # Whatever was sent before this connection listened is lost: everyone looks again.
        self._wake_everyone()
        self.listening.set()
        log.info("queue listener listening", extra={"event": "queue_listener_listening"})
        while not self._stopping.is_set():
            ready, _, _ = select.select([connection, self._interrupt_read], [], [], CHECK_SECONDS)
            if not ready:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            connection.poll()
            self._dispatch(connection.notifies)
            connection.notifies.clear()

    def _dispatch(self, notifications):
        queued, changed = False, set()
        for notification in notifications:
            if notification.channel == QUEUED_CHANNEL:
                queued = True
            elif notification.payload.isdigit():
                changed.add(int(notification.payload))
        if queued:
            self.doorbell.ring()
        if changed:
            with self._lock:
                subscriptions = list(self._subscriptions)
            for subscription in subscriptions:
                mine = subscription.autodoc_ids & changed
                if mine:
                    subscription.deliver(mine)

    def _wake_everyone(self):
        self.doorbell.ring()
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.deliver(subscription.autodoc_ids)


listener = Listener()


def wait_for_work(app, stop, seconds):
    """A writer's idle wait: until work is queued (a notification), `stop` is set (the
    writer's stop rings the doorbell) or `seconds` pass, whichever comes first. On a database
    without NOTIFY, a plain wait of `seconds` (polling)."""
    if not listener.start(app):
        stop.wait(seconds)
    elif not stop.is_set():
        listener.doorbell.wait(seconds)


def event_stream(subscription, lifetime, keepalive, client_gone):
    """The text/event-stream of one subscription: a `changed` event (data: the autodoc's id)
    each time one of its autodocs changes status, a comment line when quiet for `keepalive`
    seconds, until `lifetime` seconds pass, the process stops (the browser then opens a new
    stream) or `client_gone()` says the page was closed. Holds no database connection. Closes
    the subscription however it ends.

    A server learns that a reader left only by looking at its socket or by a write failing:
    the stream asks `client_gone` every CLIENT_CHECK_SECONDS, so the place is free for the next
    page at once — a page closed and another opened (a save's redirect, a reload) no longer
    finds every place taken. Where the server does not expose its socket, `client_gone` can
    only say no, and a closed page is noticed when a keep-alive write fails."""
    try:
        # The browser reopens an ended stream after half a second (and refreshes its autodocs).
        yield "retry: 500\n\n"
        now = time.monotonic()
        deadline, next_keepalive = now + lifetime, now + keepalive
        while not subscription.ended:
            now = time.monotonic()
            if now >= deadline or client_gone():
                return
            changed = subscription.changes(min(next_keepalive - now, deadline - now, CLIENT_CHECK_SECONDS))
            now = time.monotonic()
            if changed:
                yield "".join(f"event: changed\ndata: {json.dumps(autodoc_id)}\n\n" for autodoc_id in sorted(changed))
                next_keepalive = now + keepalive
            elif not subscription.ended and next_keepalive <= now < deadline:
                yield ": keep-alive\n\n"
                next_keepalive = now + keepalive
    finally:
        subscription.close()
