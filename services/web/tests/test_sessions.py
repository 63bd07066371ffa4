"""Sessions end when they should: a copy of a session cookie taken before log-out, a
password change, a suspension, a reinstatement or a role change opens nothing afterwards;
log-in starts a new session (nothing carries over, the CSRF token included); the lifetime
is a setting; and a new API token's secret never travels in a cookie."""
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
from flask_login.config import COOKIE_NAME
from flask_login.utils import encode_cookie
from sqlalchemy import select

from srcflask import create_app
from srcflask.config import ConfigurationError
from srcflask.extensions import db
from srcflask.models import ApiToken, User
from srcflask.security import load_user
from srcflask.services import tokens, users

from .auth_admin_helpers import fresh, page_text
from .factories import DEFAULT_PASSWORD, make_user
from .helpers import CSRF_META, html

# A page every approved role may open, and where an anonymous visitor is sent instead.
ACCOUNT_PAGE = "/account/tokens"
LOGIN = "/auth/login"


def session_cookie(app, browser):
    return browser.raw.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


def replay(app, make_client, cookie):
    """A fresh browser that sends only `cookie`, as someone who copied it would."""
    thief = make_client()
    thief.raw.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    return thief


def assert_refused(response):
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"].startswith(LOGIN), response.headers["Location"]


def decoded_session(app, cookie):
    return app.session_interface.get_signing_serializer(app).loads(cookie)


def with_user(app, user_id, change):
    """Apply `change(user)` in its own transaction, as a command or another request would."""
    with app.app_context():
        change(db.session.get(User, user_id))
        db.session.commit()


def with_admin(app, user_id, change):
    with app.app_context():
        admin = make_user("admin")
        change(db.session.get(User, user_id), admin)
        db.session.commit()


# --- a copied cookie is refused after each event ----------------------------------------------

EVENTS = {
    "log-out": lambda app, browser, user_id: browser.post("/auth/logout"),
    "password change": lambda app, browser, user_id: with_user(
        app, user_id, lambda user: user.set_password("a brand new passphrase 77")),
    "suspension": lambda app, browser, user_id: with_admin(
        app, user_id, lambda user, admin: users.decide(user, "suspend", by=admin)),
    "reinstatement": lambda app, browser, user_id: with_admin(
        app, user_id, lambda user, admin: (users.decide(user, "suspend", by=admin),
                                           users.decide(user, "reinstate", by=admin))),
    "role change": lambda app, browser, user_id: with_admin(
        app, user_id, lambda user, admin: users.change_role(user, "editor", by=admin)),
}


@pytest.mark.parametrize("event", EVENTS)
def test_a_copied_cookie_is_refused_after(app, login_as, make_client, event):
    browser, user = login_as("sponsor")
    cookie = session_cookie(app, browser)
    assert replay(app, make_client, cookie).get(ACCOUNT_PAGE).status_code == 200  # the copy works until then

    EVENTS[event](app, browser, user.id)

    for _ in range(2):
        thief = replay(app, make_client, cookie)
        first = thief.get(ACCOUNT_PAGE)
        if event == "suspension":
            # The session that was open when the account was suspended is told why it ended.
            assert first.headers["Location"] == "/auth/standing"
            assert "Your account was suspended" in page_text(thief.get("/auth/standing"))
            first = thief.get(ACCOUNT_PAGE)
        assert_refused(first)
    with app.test_request_context():
        assert load_user(decoded_session(app, cookie)["_user_id"]) is None


GENERATION_EVENTS = {
    "log-out": lambda user, admin: users.record_logout(user),
    "password change": lambda user, admin: user.set_password("a brand new passphrase 77"),
    "suspension": lambda user, admin: users.decide(user, "suspend", by=admin),
    "reinstatement": lambda user, admin: users.decide(user, "reinstate", by=admin),
    "rejection": lambda user, admin: users.decide(user, "reject", by=admin),
    "role change": lambda user, admin: users.change_role(user, "editor", by=admin),
}
STATUS_BEFORE = {"reinstatement": "suspended", "rejection": "pending"}


@pytest.mark.parametrize("event", GENERATION_EVENTS)
def test_each_event_moves_the_session_generation_by_itself(app, event):
    with app.app_context():
        admin = make_user("admin")
        user = make_user("sponsor", status=STATUS_BEFORE.get(event, "approved"))
        before = user.session_generation
        GENERATION_EVENTS[event](user, admin)
        db.session.commit()
        assert user.session_generation == before + 1


def test_approval_keeps_the_waiting_session(app, login_as, make_client):
    """A pending user is told to reload the page once approved: their session stays."""
    browser, user = login_as("sponsor", status="pending")
    assert browser.get("/").headers["Location"] == "/auth/standing"
    with_admin(app, user.id, lambda user, admin: users.decide(user, "approve", by=admin))
    assert browser.get(ACCOUNT_PAGE).status_code == 200


def test_log_out_ends_the_other_sessions_of_the_account_too(app, login_as, make_client):
    laptop, user = login_as("sponsor")
    phone = make_client()
    phone.post(LOGIN, {"email": user.email, "password": DEFAULT_PASSWORD})
    assert phone.get(ACCOUNT_PAGE).status_code == 200
    laptop.post("/auth/logout")
    assert_refused(phone.get(ACCOUNT_PAGE))


def test_a_current_cookie_keeps_working_across_requests(app, login_as, make_client):
    browser, user = login_as("sponsor")
    assert browser.get("/").headers["Location"] == "/sponsor/"
    for path in ("/sponsor/", ACCOUNT_PAGE, "/notifications/", "/sponsor/documents", ACCOUNT_PAGE):
        assert browser.get(path).status_code == 200, path
    assert replay(app, make_client, session_cookie(app, browser)).get(ACCOUNT_PAGE).status_code == 200
    assert fresh(app, user.id).session_generation == 0


@pytest.mark.parametrize("user_id", ["{id}", "{id}:", "{id}:x", ":0", "{id}:0:0", "{id}:-1", "{id}:²", "x", "",
                                     f"{2**63}:0"])
def test_a_cookie_with_a_malformed_or_old_style_id_is_anonymous(login_as, user_id):
    browser, user = login_as("sponsor")
    with browser.raw.session_transaction() as stored:
        assert stored["_user_id"] == f"{user.id}:0"
        stored["_user_id"] = user_id.format(id=user.id)
    assert_refused(browser.get(ACCOUNT_PAGE))


def test_the_remember_me_cookie_follows_the_same_rule(app, make_client):
    with app.app_context():
        user = make_user("sponsor")
        stale = encode_cookie(f"{user.id}:{user.session_generation}")
        users.record_logout(user)
        db.session.commit()
        current = encode_cookie(user.get_id())
    name = app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME)
    old = make_client()
    old.raw.set_cookie(name, stale)
    assert_refused(old.get(ACCOUNT_PAGE))
    new = make_client()
    new.raw.set_cookie(name, current)
    assert new.get(ACCOUNT_PAGE).status_code == 200


def test_bearer_tokens_are_not_affected(app, login_as):
    browser, user = login_as("sponsor")
    with app.app_context():
        secret = tokens.create_token(db.session.get(User, user.id), "script").secret
        db.session.commit()
    browser.post("/auth/logout")
    with_admin(app, user.id, lambda user, admin: users.change_role(user, "editor", by=admin))
    response = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200 and response.get_json()["role"] == "editor"


# --- log-in starts a new session ----------------------------------------------------------------


def test_log_in_starts_a_new_session(app, client):
    with app.app_context():
        user = make_user("sponsor")
    before = client.csrf_token()
    with client.raw.session_transaction() as stored:
        stored["planted"] = "set before log-in"
    response = client.raw.post(LOGIN, data={"csrf_token": before, "email": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302

    stored = decoded_session(app, session_cookie(app, client))
    assert "planted" not in stored
    page = client.get(ACCOUNT_PAGE)
    after = CSRF_META.search(html(page)).group(1)
    assert after != before
    # The token from before log-in no longer passes a form after it.
    refused = client.raw.post(ACCOUNT_PAGE, data={"csrf_token": before, "name": "stale form"})
    assert refused.status_code == 400
    assert client.raw.post(ACCOUNT_PAGE, data={"csrf_token": after, "name": "fresh form"}).status_code == 201


def test_sign_up_starts_a_new_session_too(app, client):
    client.csrf_token()
    with client.raw.session_transaction() as stored:
        stored["planted"] = "set before sign-up"
    response = client.post("/auth/signup", {"name": "Ada Lovelace", "email": "ada@example.org",
                                            "password": DEFAULT_PASSWORD, "confirm": DEFAULT_PASSWORD,
                                            "role": "sponsor", "organization": ""})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/standing"
    assert "planted" not in decoded_session(app, session_cookie(app, client))
    assert client.get("/auth/standing").status_code == 200


# --- the lifetime -----------------------------------------------------------------------------


def _expires(response, name):
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            expires = next(part for part in header.split(";") if part.strip().lower().startswith("expires="))
            return parsedate_to_datetime(expires.split("=", 1)[1])
    raise AssertionError(f"no {name} cookie set")


def test_the_session_lifetime_defaults_to_14_days_and_the_session_is_permanent(app, client):
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(days=14)
    assert app.config["REMEMBER_COOKIE_DURATION"] == timedelta(days=14)
    with app.app_context():
        user = make_user("sponsor")
    response = client.post(LOGIN, {"email": user.email, "password": DEFAULT_PASSWORD})
    left = _expires(response, app.config["SESSION_COOKIE_NAME"]) - datetime.now(timezone.utc)
    assert timedelta(days=13) < left <= timedelta(days=14)


def test_the_session_lifetime_is_a_setting(app):
    short = create_app("testing", SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"],
                       SESSION_LIFETIME_DAYS=2)
    assert short.config["PERMANENT_SESSION_LIFETIME"] == timedelta(days=2)
    assert short.config["REMEMBER_COOKIE_DURATION"] == timedelta(days=2)


@pytest.mark.parametrize("value", [0, 400, "two weeks"])
def test_a_bad_session_lifetime_stops_the_start_with_one_line(value):
    with pytest.raises(ConfigurationError) as refused:
        create_app("testing", SESSION_LIFETIME_DAYS=value)
    assert str(refused.value).startswith("SESSION_LIFETIME_DAYS: ") and "\n" not in str(refused.value)


# --- a new API token's secret -----------------------------------------------------------------


def test_a_new_tokens_secret_is_in_the_response_to_the_post_and_never_in_a_cookie(app, login_as):
    browser, user = login_as("editor")
    response = browser.post(ACCOUNT_PAGE, {"name": "nightly export"})
    assert response.status_code == 201
    assert "no-store" in response.headers["Cache-Control"]
    page = html(response)
    assert "nightly export" in page and "Copy it now" in page
    secret = page.split('new-token-secret">')[1].split("<")[0]
    with app.app_context():
        token = db.session.scalar(select(ApiToken))
        assert token.user_id == user.id and secret.startswith(token.prefix)

    for header in response.headers.getlist("Set-Cookie"):
        assert secret not in header
    assert secret not in str(decoded_session(app, session_cookie(app, browser)))
    reload = browser.get(ACCOUNT_PAGE)
    assert reload.status_code == 200
    assert secret not in html(reload) and "new-token-secret" not in html(reload)
    assert secret not in str(decoded_session(app, session_cookie(app, browser)))
    assert app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200

