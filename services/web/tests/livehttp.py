"""The app served over real HTTP on loopback, for tests whose requests must truly overlap.

Flask's test client runs one request at a time in the caller's thread; races between
browsers (two saves of one document, two sponsors creating at once) need requests that
run in parallel, each in its own server thread with its own database connection, as
under gunicorn. werkzeug's threaded server gives that (as tests/e2e/conftest.py's
live_server does), here without a writer or a browser: the session's `app` itself is
served, on its throwaway database, and `HttpBrowser` plays the browser with `requests`.
"""
import re
import threading

import pytest
import requests
from werkzeug.serving import make_server

from .helpers import CSRF_META

REQUEST_TIMEOUT = 30


class HttpBrowser:
    """One browser: its own cookies (so its own session), the CSRF token read from the
    last page it loaded, and no redirect following (tests assert the redirect itself)."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.session = requests.Session()
        self.csrf = None

    def get(self, path):
        response = self.session.get(self.base_url + path, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        match = CSRF_META.search(response.text)
        if match:
            self.csrf = match.group(1)
        return response

    def post(self, path, data):
        """POST a form with the CSRF token of the last page loaded, as a browser would."""
        assert self.csrf, "load a page before posting a form"
        return self.session.post(self.base_url + path, data={"csrf_token": self.csrf, **data},
                                 allow_redirects=False, timeout=REQUEST_TIMEOUT)

    def login(self, email, password):
        self.get("/auth/login")
        response = self.post("/auth/login", {"email": email, "password": password})
        assert response.status_code == 302, response.text[:500]
        return self

    def close(self):
        self.session.close()


class LiveHttp:
    """Where the app answers, and a way to open browsers on it."""

    def __init__(self, url):
        self.url = url
        self._browsers = []

    def browser(self):
        browser = HttpBrowser(self.url)
        self._browsers.append(browser)
        return browser

    def close_browsers(self):
        for browser in self._browsers:
            browser.close()
        self._browsers.clear()


def hidden_value(page, name):
    """The value of the hidden input `name` in an HTML page (WTForms renders value last)."""
    match = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*value="([^"]*)"', page)
    assert match, f"no hidden input {name!r} on the page"
    return match.group(1)


@pytest.fixture(scope="module")
def live_http_server(app):
    """The session's app served by a threaded werkzeug server on a free loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-http", daemon=True)
    thread.start()
    try:
        yield LiveHttp(f"http://127.0.0.1:{server.port}")
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def live_http(live_http_server):
    """The live server for one test; the browsers it opened are closed after it."""
    yield live_http_server
    live_http_server.close_browsers()
