"""Wake-ups (services/queue_signals.py) and the pages' event stream (main/events.py), on the
real PostgreSQL: writers woken by a save's NOTIFY instead of their poll, the listener back
after its connection is killed, and the stream's access rules, events, cap and lifetime.

Every wait here is a bound on an event, never a timing: the writer's poll interval is made
far longer than any bound, so an autodoc written within it was written because of a wake-up.
"""
import time

import pytest
from sqlalchemy import create_engine, select, text

from srcflask.extensions import db
from srcflask.services import autodoc_queue, queue_signals
from srcflask.services.queue_signals import listener
from srcflask.static.data.processeddata.models import Autodoc, Revision
from srcflask.writer import WriterRuntime

from .conftest import SERVER_URL
from .factories import DEFAULT_PASSWORD, make_document, make_user
from .livehttp import live_http, live_http_server  # noqa: F401  (fixtures)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

# Far beyond every bound below: only a wake-up can make the writer claim within them.
LONG_POLL_SECONDS = 3600
# Bounds on events (the tiny model loads and compiles in seconds; a busy machine is slower).
WRITER_BOUND_SECONDS = 240
EVENT_BOUND_SECONDS = 30


def until(condition, bound, what):
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {bound} s"
        time.sleep(0.05)


def status_of(autodoc_id):
    db.session.expire_all()
    return db.session.scalar(select(Autodoc.status).where(Autodoc.id == autodoc_id))


def latest_autodoc_id(document):
    return db.session.scalar(select(Autodoc.id).join(Revision, Revision.id == Autodoc.revision_id)
                             .where(Revision.document_id == document.id).order_by(Autodoc.id.desc()))


@pytest.fixture
def listening(app):
    """The process's listener, listening."""
    assert listener.start(app)
    assert listener.listening.wait(EVENT_BOUND_SECONDS), "the queue listener did not connect"
    return listener


def terminate(backend_pid):
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend_pid}).scalar()
    engine.dispose()


# --- writers ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_save_wakes_an_idle_writer_long_before_its_poll(app, app_context, monkeypatch, tiny_model_dir):  # noqa: F811
    for key, value in {"WRITER_MODEL_DIR": str(tiny_model_dir), "WRITER_POLL_SECONDS": LONG_POLL_SECONDS,
                       "WRITER_MAX_NEW_TOKENS": 8, "WRITER_CONTEXT_TOKENS": 24, "WRITER_BATCH_SIZE": 2}.items():
        monkeypatch.setitem(app.config, key, value)
    sponsor, editor = make_user("sponsor"), make_user("editor")
    runtime = WriterRuntime()
    runtime.start(app, threads=1)
    try:
        # The first round loads the model and writes the first autodoc; then the writer idles.
        first = latest_autodoc_id(make_document(sponsor, editor, body="The committee reviewed the budget and"))
        until(lambda: status_of(first) == "done", WRITER_BOUND_SECONDS, "the first autodoc")
        until(lambda: listener.doorbell.waiters == 1, WRITER_BOUND_SECONDS, "the writer's idle wait")

        second = latest_autodoc_id(make_document(sponsor, editor, body="The project started in spring and"))
        until(lambda: status_of(second) == "done", WRITER_BOUND_SECONDS, "the woken writer's autodoc")
    finally:
        # stop() rings too: the idle writer ends now, not after its hour-long poll.
        runtime.stop(timeout=EVENT_BOUND_SECONDS)
    assert not runtime.running


def test_every_way_of_queueing_work_rings_the_writers(app, app_context, listening):
    sponsor, editor = make_user("sponsor"), make_user("editor")
    doorbell = listening.doorbell
    doorbell.wait(0)  # this thread has seen every ring so far
    document = make_document(sponsor, editor)
    assert doorbell.wait(EVENT_BOUND_SECONDS), "a save did not ring"

    (job,) = autodoc_queue.claim_jobs("tests", 1, 60, 3)
    doorbell.wait(0)
    assert autodoc_queue.fail_job(job, "a hiccup", 3) == "queued"
    assert doorbell.wait(EVENT_BOUND_SECONDS), "a job given back for another attempt did not ring"

    (job,) = autodoc_queue.claim_jobs("tests", 1, 60, 3)
    autodoc_queue.complete_job(job, "p", "c", {})
    doorbell.wait(0)
    autodoc_queue.queue_regeneration(db.session.get(Autodoc, job.autodoc_id).revision)
    db.session.commit()
    assert doorbell.wait(EVENT_BOUND_SECONDS), "a regenerate did not ring"
    assert document.id


def test_a_rolled_back_save_rings_nobody(app, app_context, listening):
    sponsor, editor = make_user("sponsor"), make_user("editor")
    subscription = listening.subscribe({1}, limit=1000)  # a marker: events are delivered in order
    try:
        doorbell = listening.doorbell
        doorbell.wait(0)
        from srcflask.services.documents import create_document

        create_document(sponsor, editor.id, "Never saved", "Its body.")
        db.session.rollback()
        queue_signals.announce_status([1])
        db.session.commit()
        assert subscription.changes(EVENT_BOUND_SECONDS) == {1}
        assert not doorbell.wait(0), "a rolled back save rang the writers"
    finally:
        subscription.close()


def test_the_listener_reconnects_after_its_connection_is_terminated(app, app_context, listening):
    killed = listening.backend_pid
    terminate(killed)
    until(lambda: listening.listening.is_set() and listening.backend_pid != killed, EVENT_BOUND_SECONDS,
          "the listener's reconnection")
    subscription = listening.subscribe({41}, limit=1000)
    try:
        queue_signals.announce_status([41])
        db.session.commit()
        assert subscription.changes(EVENT_BOUND_SECONDS) == {41}
    finally:
        subscription.close()


# --- the pages' event stream ------------------------------------------------------------------


@pytest.fixture
def sponsor_with_autodoc(app, login_as, listening):
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        editor = make_user("editor")
        document = make_document(sponsor, editor)
        autodoc_id = latest_autodoc_id(document)
    return browser, autodoc_id


def events_url(*autodoc_ids):
    return "/autodocs/events?" + "&".join(f"id={autodoc_id}" for autodoc_id in autodoc_ids)


class Stream:
    """An open event stream, read chunk by chunk as a browser reads it. A read waits at most
    a keep-alive interval for the next chunk."""

    def __init__(self, response):
        self.response = response
        self._chunks = iter(response.response)
        self.text = ""
        self.ended = False

    def read_until(self, piece, bound=EVENT_BOUND_SECONDS):
        """Read until `piece` arrived (True), the stream ended or `bound` seconds passed."""
        deadline = time.monotonic() + bound
        while piece not in self.text and not self.ended and time.monotonic() < deadline:
            try:
                self.text += next(self._chunks).decode()
            except StopIteration:
                self.ended = True
        return piece in self.text

    def read_to_end(self, bound=EVENT_BOUND_SECONDS):
        self.read_until("\0never sent", bound)
        return self.ended

    def close(self):
        self.response.close()


def test_the_stream_says_when_the_writer_finished_the_autodoc(app, sponsor_with_autodoc):
    browser, autodoc_id = sponsor_with_autodoc
    response = browser.get(events_url(autodoc_id), buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Accel-Buffering"] == "no"
    stream = Stream(response)
    try:
        assert stream.read_until("retry: 500\n\n")
        with app.app_context():
            (job,) = autodoc_queue.claim_jobs("tests", 1, 60, 3)
        assert stream.read_until(f"event: changed\ndata: {autodoc_id}\n\n"), "no event for the claim"
        with app.app_context():
            assert autodoc_queue.complete_job(job, "p", "c", {})
        # The claim's event was read; the completion's comes after it.
        assert stream.read_until(f"event: changed\ndata: {autodoc_id}\n\nevent: changed\ndata: {autodoc_id}\n\n")
        assert browser.get(f"/autodocs/{autodoc_id}/status").get_json()["status"] == "done"
    finally:
        stream.close()


def test_a_stream_for_another_users_autodoc_is_refused(app, login_as, sponsor_with_autodoc):
    _, autodoc_id = sponsor_with_autodoc
    stranger, _ = login_as("sponsor")
    open_streams = listener.open_streams
    assert stranger.get(events_url(autodoc_id)).status_code == 404
    # One of the ids is enough to refuse the whole stream.
    with app.app_context():
        own = latest_autodoc_id(make_document(make_user("sponsor"), make_user("editor")))
    assert stranger.get(events_url(own, autodoc_id)).status_code == 404
    assert listener.open_streams == open_streams


@pytest.mark.parametrize("query, status", [("", 400), ("?id=abc", 404), ("?id=0", 404), ("?id=99999999999", 404),
                                           ("?" + "&".join(f"id={n}" for n in range(1, 52)), 400)])
def test_a_stream_needs_autodocs_it_can_name(sponsor_with_autodoc, query, status):
    browser, _ = sponsor_with_autodoc
    response = browser.get("/autodocs/events" + query)
    assert response.status_code == status and response.get_json()["error"]


def test_refusals_are_json_for_visitors_and_pending_accounts(app, make_client, login_as, sponsor_with_autodoc):
    _, autodoc_id = sponsor_with_autodoc
    assert make_client().get(events_url(autodoc_id)).status_code == 401
    pending, _ = login_as("sponsor", status="pending")
    assert pending.get(events_url(autodoc_id)).status_code == 403


def test_over_the_cap_the_page_is_told_to_poll(app, monkeypatch, sponsor_with_autodoc):
    browser, autodoc_id = sponsor_with_autodoc
    monkeypatch.setitem(app.config, "SSE_MAX_STREAMS", listener.open_streams + 1)
    first = Stream(browser.get(events_url(autodoc_id), buffered=False))
    try:
        assert first.read_until("retry: 500")
        refused = browser.get(events_url(autodoc_id))
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "25"
        assert "polls instead" in refused.get_json()["error"]
    finally:
        first.close()
    # The closed stream's place is free again.
    assert browser.get(events_url(autodoc_id), buffered=False).status_code == 200


def test_a_closed_page_gives_its_place_back_before_any_keep_alive(app, monkeypatch, listening, live_http):  # noqa: F811
    """Over real HTTP (the test client has no socket to close): the page reads the stream's
    first line and goes; its place is free again long before a keep-alive write (here an
    hour away) could have shown the server that nobody reads."""
    monkeypatch.setitem(app.config, "SSE_KEEPALIVE_SECONDS", 3600)
    monkeypatch.setitem(app.config, "SSE_STREAM_SECONDS", 3600)
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        autodoc_id = latest_autodoc_id(make_document(sponsor, editor))
        email = sponsor.email
    browser = live_http.browser().login(email, DEFAULT_PASSWORD)
    open_streams = listener.open_streams
    response = browser.session.get(live_http.url + events_url(autodoc_id), stream=True, timeout=EVENT_BOUND_SECONDS)
    assert response.status_code == 200
    assert next(response.iter_content(chunk_size=None)) == b"retry: 500\n\n"
    assert listener.open_streams == open_streams + 1
    response.close()
    until(lambda: listener.open_streams == open_streams, EVENT_BOUND_SECONDS, "the closed page's place coming back")


def test_a_stream_ends_after_its_lifetime_with_keep_alives_meanwhile(app, monkeypatch, sponsor_with_autodoc):
    browser, autodoc_id = sponsor_with_autodoc
    monkeypatch.setitem(app.config, "SSE_STREAM_SECONDS", 1.0)
    monkeypatch.setitem(app.config, "SSE_KEEPALIVE_SECONDS", 0.3)
    open_streams = listener.open_streams
    stream = Stream(browser.get(events_url(autodoc_id), buffered=False))
    assert stream.read_to_end(), "the stream did not end"
    body = stream.text
    assert body.startswith("retry: 500\n\n") and ": keep-alive\n\n" in body and "event:" not in body
    assert listener.open_streams == open_streams


def test_stopping_the_listener_ends_open_streams(app, sponsor_with_autodoc):
    browser, autodoc_id = sponsor_with_autodoc
    stream = Stream(browser.get(events_url(autodoc_id), buffered=False))
    assert stream.read_until("retry: 500")
    listener.stop()
    try:
        assert stream.read_to_end(), "the stream outlived its process's listener"
    finally:
        listener.start(app)


def test_without_wake_ups_the_page_is_told_to_poll(app, monkeypatch, sponsor_with_autodoc):
    """QUEUE_WAKEUPS=0 (a pooler where LISTEN does not work), as on SQLite: no stream, and the
    writers' idle wait is their poll."""
    browser, autodoc_id = sponsor_with_autodoc
    monkeypatch.setitem(app.config, "QUEUE_WAKEUPS", False)
    refused = browser.get(events_url(autodoc_id))
    assert refused.status_code == 503 and "polls instead" in refused.get_json()["error"]
    assert not listener.start(app)


def test_the_default_cap_is_half_the_threads(app, monkeypatch):
    from srcflask.main.events import max_streams

    monkeypatch.setitem(app.config, "SSE_MAX_STREAMS", None)
    monkeypatch.setitem(app.config, "GUNICORN_THREADS", 8)
    assert max_streams(app.config) == 4
