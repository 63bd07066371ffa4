"""Browser tests: the real app served on loopback, driven by Debian's Chromium.

The app served is a second instance on the session's throwaway PostgreSQL database
(tests/conftest.py), configured as for testing (CSRF on) except that its writer runs
in-process on the tiny GPT-2 (tests/tinygpt2.py): autodocs are really claimed, written and
stored while a page watches. Factories only prepare what a journey starts from; everything
a journey checks goes through the pages.

Every browser context is watched (browser.PageWatch): a console error, an uncaught script
error or a CSP violation on any page fails the test. Screenshots of each journey's key
pages go to services/web/test-artifacts/e2e/<test>/ (not committed).
"""
import shutil
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select
from werkzeug.serving import make_server

from srcflask import create_app
from srcflask.extensions import db
from srcflask.services import autodoc_queue
from srcflask.static.data.processeddata.models import Autodoc

from ..factories import DEFAULT_PASSWORD, make_user
from ..tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)
from .browser import DESKTOP, ChromiumUnavailable, PageWatch, launch_chromium, open_page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
# Small and quick: what is tested is the path from a save to the page, not the text.
WRITER_SETTINGS = {"WRITER_MAX_NEW_TOKENS": 12, "WRITER_CONTEXT_TOKENS": 24, "WRITER_BATCH_SIZE": 4,
                   "WRITER_POLL_SECONDS": 0.2, "WRITER_THREADS": 1}
# Loading and compiling the model (once per process) is the slowest thing the writer does.
WRITER_READY_SECONDS = 120
ACTION_TIMEOUT_MS = 10_000


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, so that fixtures know whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass(frozen=True)
class Account:
    """Who a journey logs in as (the factories' users, detached from any session)."""

    id: int
    name: str
    email: str
    password: str = DEFAULT_PASSWORD


class WriterHold:
    """Holds the app's real writer at the two moments a page can show: before it claims the
    queued autodocs, and after it claimed them (they are `running`) but before it writes.

    It stands in for autodoc_queue.claim_jobs, the call the writer threads make on each
    round, and otherwise calls the real one: statuses change only as the writer changes
    them. Open by default, so the writer runs as in production."""

    def __init__(self, claim_jobs):
        self._claim_jobs = claim_jobs
        self._may_claim = threading.Event()
        self._may_write = threading.Event()
        self._parked = threading.Event()
        self.release()

    def claim_jobs(self, *args, **kwargs):
        if not self._may_claim.is_set():
            self._parked.set()
            self._may_claim.wait()
        jobs = self._claim_jobs(*args, **kwargs)
        if jobs:
            self._may_write.wait()
        return jobs

    def hold(self):
        """Stop the writer before its next claim and wait until it stands there (the first
        time, after it loaded and compiled its model); what it claims later is not written
        until let go."""
        self._may_write.clear()
        self.park()

    def park(self):
        """Stop the writer before its next claim, once it has written what it holds, and
        wait until it stands there: it runs no query until let go."""
        self._parked.clear()
        self._may_claim.clear()
        if not self._parked.wait(WRITER_READY_SECONDS):
            raise AssertionError(f"The in-process writer did not come round to claim within {WRITER_READY_SECONDS} s.")

    def let_claim(self):
        """Let the writer claim what is queued (their status becomes `running`), not write it."""
        self._may_claim.set()

    def release(self):
        self._may_claim.set()
        self._may_write.set()


class LiveServer:
    """The app served on a free loopback port, with its writer and database at hand."""

    def __init__(self, app, url, writer):
        self.app = app
        self.url = url
        self.writer = writer

    def add_user(self, role, status="approved", **fields):
        with self.app.app_context():
            user = make_user(role=role, status=status, **fields)
            return Account(user.id, user.name, user.email)

    def wait_until_written(self, timeout=WRITER_READY_SECONDS):
        """Wait until the writer has finished every queued autodoc (it may be loading)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.app.app_context():
                waiting = db.session.scalar(
                    select(func.count()).select_from(Autodoc).where(Autodoc.status.in_(("queued", "running"))))
            if not waiting:
                return
            time.sleep(0.2)
        raise AssertionError(f"The in-process writer left autodocs unwritten after {timeout} s.")


@pytest.fixture(scope="package")
def live_server(app, database_url, tiny_model_dir):  # noqa: F811
    """Serve the app on 127.0.0.1 (werkzeug, threaded) for the browser tests of this
    package. `app` is requested for its migrations; this instance shares its database."""
    live_app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WRITER_IN_PROCESS=True,
                          WRITER_MODEL_DIR=str(tiny_model_dir), **WRITER_SETTINGS)
    hold = WriterHold(autodoc_queue.claim_jobs)
    runtime = live_app.extensions["writer"]
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-server", daemon=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(autodoc_queue, "claim_jobs", hold.claim_jobs)
        thread.start()
        url = f"http://127.0.0.1:{server.port}"
        # The first request starts the writer threads, as it does under `flask run`.
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            assert response.status == 200
        try:
            yield LiveServer(live_app, url, hold)
        finally:
            hold.release()
            server.shutdown()
            thread.join(10)
            runtime.stop()
            # The runtime is the process's own (srcflask.writer.writer_runtime): forget the
            # model, so that the tests after these meet it as in a fresh process.
            runtime.forget_model()


@pytest.fixture
def live(live_server):
    """The live server for one test, its writer running. Afterwards the writer is parked
    before its next claim: the tables are emptied after each test (tests/conftest.py), and a
    TRUNCATE racing the writer's claim query for their locks ended in a deadlock."""
    live_server.writer.release()
    yield live_server
    live_server.writer.release()
    live_server.writer.park()


@pytest.fixture(scope="session")
def chromium():
    """One Chromium for the session. The browser tests fail, never skip, without it."""
    with sync_playwright() as playwright:
        try:
            browser = launch_chromium(playwright)
        except ChromiumUnavailable as error:
            pytest.fail(f"The browser tests need Chromium: {error}", pytrace=False)
        yield browser
        browser.close()


class Browser:
    """Opens one browser context per person in a test, all watched, and saves screenshots."""

    def __init__(self, chromium, base_url, artifacts):
        self._chromium = chromium
        self._base_url = base_url
        self.artifacts = artifacts
        self.watch = PageWatch()
        self.contexts = []
        self._shots = 0

    def new_page(self, viewport=DESKTOP, mobile=False):
        page = open_page(self._chromium, self.watch, self._base_url, viewport, mobile)
        page.context.set_default_timeout(ACTION_TIMEOUT_MS)
        self.contexts.append(page.context)
        return page

    def shoot(self, page, name):
        """Save the whole page as NN-name.png, numbered in the order the journey took."""
        self._shots += 1
        self.artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.artifacts / f"{self._shots:02d}-{name}.png"), full_page=True,
                        animations="disabled", caret="hide")

    def open_pages(self):
        return [page for context in self.contexts for page in context.pages]


@pytest.fixture
def browser(request, chromium, live):
    """Browser contexts for one test. Afterwards: on failure, every open page is saved;
    then any console error, script error or CSP violation seen on any page fails it."""
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    session = Browser(chromium, live.url, artifacts)
    yield session
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for number, page in enumerate(session.open_pages(), 1):
            session.shoot(page, f"at-failure-{number}")
    for context in session.contexts:
        context.close()
    if session.watch.problems:
        pytest.fail("The pages logged errors:\n  " + "\n  ".join(session.watch.problems), pytrace=False)
