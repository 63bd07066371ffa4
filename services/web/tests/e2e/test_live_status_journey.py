"""An open document page learns from its event stream that the writer finished, without
polling (js/autodocs.js, main/events.py, services/queue_signals.py).

The page's clock is Playwright's and stands still: the polling fallback, which runs on
setTimeout, cannot fire; and the stream is not reopened meanwhile (which refreshes the page
too). So a page that shows "done" heard it from the stream's event."""
import datetime as dt
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import User
from srcflask.static.data.processeddata.models import Autodoc, Revision

from ..factories import make_document
from .test_journeys import log_in

pytestmark = pytest.mark.e2e

EVENTS = re.compile(r".*/autodocs/events\?id=\d+$")
STATUS = re.compile(r".*/autodocs/\d+/status$")

# A bound on the writer writing the tiny model's autodoc, not a timing.
WRITTEN_MS = 60_000


def queued_document(live, title, body):
    """A sponsor's new document whose autodoc the writer, held, leaves queued: (sponsor, the
    document's id, the autodoc's id)."""
    sponsor = live.add_user("sponsor")
    editor = live.add_user("editor")
    live.writer.hold()
    with live.app.app_context():
        document = make_document(db.session.get(User, sponsor.id), db.session.get(User, editor.id),
                                 title=title, body=body)
        autodoc_id = db.session.scalar(select(Autodoc.id).join(Revision, Revision.id == Autodoc.revision_id)
                                       .where(Revision.document_id == document.id))
        return sponsor, document.id, autodoc_id


def test_an_open_document_page_shows_done_from_its_event_stream(live, browser, monkeypatch):
    # Nor can a new stream's first refresh: the page's one stream outlasts the test.
    monkeypatch.setitem(live.app.config, "SSE_STREAM_SECONDS", 3600)
    sponsor, document_id, _ = queued_document(live, "Budget plan", "The committee reviewed the budget and")
    page = log_in(browser, sponsor)

    page.clock.install()
    with page.expect_request(EVENTS):
        page.goto(f"/sponsor/documents/{document_id}")
    # From here on no timer of the page fires: polling (setTimeout) is out of the picture.
    page.clock.pause_at(dt.datetime.now() + dt.timedelta(hours=1))
    revision = page.locator("#revision-1")
    expect(revision.locator(".card-header .autodoc-status")).to_have_text("queued")

    live.writer.release()
    expect(revision.locator(".autodoc .autodoc-status")).to_have_text("done", timeout=WRITTEN_MS)
    expect(revision.locator(".card-header .autodoc-status")).to_have_text("done")
    browser.shoot(page, "done-from-the-stream")


def test_a_page_refused_a_stream_polls_and_stops_once_it_gets_one(live, browser, monkeypatch):
    """All places taken (SSE_MAX_STREAMS 0): the page polls and asks again (after 10 s on its
    own clock); once a place is free its next ask gets a stream, the polling stops, and the
    stream brings "done"."""
    monkeypatch.setitem(live.app.config, "SSE_STREAM_SECONDS", 3600)
    monkeypatch.setitem(live.app.config, "SSE_MAX_STREAMS", 0)
    sponsor, document_id, autodoc_id = queued_document(live, "Travel plan",
                                                       "The committee reviewed the travel plan and")
    # The refusals are what this test is about; Chromium logs each as a console error.
    browser.watch.expect_failure(f"{live.url}/autodocs/events?id={autodoc_id}", 503)
    page = log_in(browser, sponsor)
    status_reads = []
    page.on("request", lambda request: status_reads.append(request.url) if STATUS.match(request.url) else None)

    # The clock stands still from before the page loads: its timers (the retry's 10 s, the polls'
    # 2 s) are set on the paused clock whenever the refusal arrives, and fire only as the test
    # moves it on. (Paused after the load, the jump could fire a retry set before it.)
    page.clock.install()
    page.clock.pause_at(dt.datetime.now() + dt.timedelta(hours=1))
    with page.expect_response(EVENTS) as refused:
        page.goto(f"/sponsor/documents/{document_id}")
    assert refused.value.status == 503

    def advance(milliseconds, steps):
        """Move the page's clock on in steps, each followed by a moment of real time for the
        reads a step started to come back (a poll schedules its next read only then)."""
        for _ in range(steps):
            page.clock.run_for(milliseconds)
            page.wait_for_timeout(300)

    advance(2_000, 3)
    assert len(status_reads) >= 2, "the refused page did not poll"

    monkeypatch.setitem(live.app.config, "SSE_MAX_STREAMS", 64)
    with page.expect_response(EVENTS) as accepted:  # the retry, 10 s after the refusal
        advance(2_000, 6)
    assert accepted.value.status == 200
    page.wait_for_timeout(300)  # the stream's opening read
    reads = len(status_reads)
    advance(2_000, 6)
    assert len(status_reads) == reads, "the page still polls while it has a stream"

    live.writer.release()
    revision = page.locator("#revision-1")
    expect(revision.locator(".autodoc .autodoc-status")).to_have_text("done", timeout=WRITTEN_MS)
