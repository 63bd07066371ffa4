"""When the database cannot be reached, every request gets a clean 503 that says to retry,
never a 500 or a traceback, and a refused save shows its text back.

The outage is real: a second app instance, with the same secret key as the `app` fixture,
points at a loopback port where nothing listens, so every connection attempt is refused
exactly as during a PostgreSQL restart. (tests/test_faults.py restarts a real server.)"""
import pytest
from flask_migrate import upgrade  # noqa: F401  (the app fixture has migrated the live database)
from sqlalchemy.engine import make_url

from srcflask import create_app
from srcflask.errors import DATABASE_RETRY_AFTER_SECONDS
from srcflask.extensions import db

from .factories import make_user
from .helpers import XSS, XSS_ESCAPED, FormClient, html
from .prodstack import free_port
from .test_api import bearer, make_token


@pytest.fixture
def down_app(app):
    """The same app, its database gone."""
    dead = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(host="127.0.0.1", port=free_port())
    down = create_app("testing", SQLALCHEMY_DATABASE_URI=dead.render_as_string(hide_password=False))
    yield down
    with down.app_context():
        db.engine.dispose()


def moved_to(down_app, browser):
    """A browser of `down_app` carrying `browser`'s session (log-in and CSRF token)."""
    moved = FormClient(down_app.test_client())
    moved._token = browser.csrf_token()  # first: reading it may add it to the session
    moved.raw.set_cookie("session", browser.raw.get_cookie("session").value)
    return moved


def assert_unavailable_page(response):
    assert response.status_code == 503
    # On rate-limited routes (log-in) Flask-Limiter raises it to its window's reset.
    assert int(response.headers["Retry-After"]) >= DATABASE_RETRY_AFTER_SECONDS
    page = html(response)
    assert "Service unavailable" in page and "try again" in page
    assert "Traceback" not in page and "OperationalError" not in page
    return page


def test_log_in_while_the_database_is_down_is_503(down_app):
    browser = FormClient(down_app.test_client())
    response = browser.post("/auth/login", {"email": "someone@example.org", "password": "whatever it is"})
    assert_unavailable_page(response)


def test_a_logged_in_page_is_503_that_retries_by_itself(login_as, down_app):
    browser, _ = login_as("sponsor")
    response = moved_to(down_app, browser).get("/sponsor/documents?page=2")
    page = assert_unavailable_page(response)
    assert response.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert f'<meta http-equiv="refresh" content="{DATABASE_RETRY_AFTER_SECONDS}">' in page
    assert 'href="http://localhost/sponsor/documents?page=2"' in page
    assert "Log out" not in page  # the navigation needs the database: left out


def test_a_save_while_the_database_is_down_shows_its_text_back(login_as, down_app):
    browser, _ = login_as("sponsor")
    response = moved_to(down_app, browser).post("/sponsor/documents/new", {
        "title": "Minutes " + XSS, "body": "Every word\nof this " + XSS, "editor": "1"})
    page = assert_unavailable_page(response)
    assert "Minutes " + XSS_ESCAPED in page and "Every word\nof this " + XSS_ESCAPED in page
    assert 'http-equiv="refresh"' not in page  # a POST is never resent by itself


def test_the_api_answers_503_json_while_the_database_is_down(app_context, down_app):
    secret = make_token(make_user("sponsor"))
    response = down_app.test_client().get("/api/v1/documents", headers=bearer(secret))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert response.get_json()["error"]["code"] == "service_unavailable"


def test_health_endpoints_report_the_outage(down_app):
    client = down_app.test_client()
    assert client.get("/healthz").status_code == 200  # the process itself is fine
    assert client.get("/readyz").status_code == 503
