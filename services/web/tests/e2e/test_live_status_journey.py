"""An open document page learns from its event stream that the writer finished, without
polling (js/autodocs.js, main/events.py, services/queue_signals.py).

The page's clock is Playwright's and stands still: the polling fallback, which runs on
setTimeout, cannot fire; and the stream is not reopened meanwhile (which refreshes the page
too). So a page that shows "done" heard it from the stream's event."""
import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from srcflask.extensions import db
from srcflask.models import User

from ..factories import make_document

pytestmark = pytest.mark.e2e

# A bound on the writer writing the tiny model's autodoc, not a timing.
WRITTEN_MS = 60_000


def test_an_open_document_page_shows_done_from_its_event_stream(live, browser, monkeypatch):
    # Nor can a new stream's first refresh: the page's one stream outlasts the test.
    monkeypatch.setitem(live.app.config, "SSE_STREAM_SECONDS", 3600)
    sponsor = live.add_user("sponsor")
    editor = live.add_user("editor")
    live.writer.hold()
    with live.app.app_context():
        document = make_document(db.session.get(User, sponsor.id), db.session.get(User, editor.id),
                                 title="Budget plan", body="The committee reviewed the budget and")
        document_id = document.id

    page = browser.new_page()
    page.goto("/auth/login")
    page.get_by_label("Email").fill(sponsor.email)
    page.get_by_label("Password").fill(sponsor.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/auth/login"))

    page.clock.install()
    with page.expect_request(re.compile(r".*/autodocs/events\?id=\d+$")):
        page.goto(f"/sponsor/documents/{document_id}")
    # From here on no timer of the page fires: polling (setTimeout) is out of the picture.
    page.clock.pause_at(dt.datetime.now() + dt.timedelta(hours=1))
    revision = page.locator("#revision-1")
    expect(revision.locator(".card-header .autodoc-status")).to_have_text("queued")

    live.writer.release()
    expect(revision.locator(".autodoc .autodoc-status")).to_have_text("done", timeout=WRITTEN_MS)
    expect(revision.locator(".card-header .autodoc-status")).to_have_text("done")
    browser.shoot(page, "done-from-the-stream")
