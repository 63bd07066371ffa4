"""Sign-up, log-in, log-out and the standing page, through the real forms (CSRF on)."""
from urllib.parse import quote

import limits
import pytest

from srcflask.extensions import db
from srcflask.services import users

from .auth_admin_helpers import fresh, page_text, user_by_email, user_count
from .factories import DEFAULT_PASSWORD, make_user

GOOD = {
    "name": "Ada Lovelace",
    "email": "Ada@Example.ORG",
    "password": DEFAULT_PASSWORD,
    "confirm": DEFAULT_PASSWORD,
    "role": "sponsor",
    "organization": "Analytical Engines",
}


def signup(client, **changes):
    return client.post("/auth/signup", {**GOOD, **changes})


# --- sign-up -------------------------------------------------------------------------


def test_signup_page_has_labelled_fields_with_autocomplete(client):
    page = client.get("/auth/signup").get_data(as_text=True)
    for field_id in ("name", "email", "password", "confirm", "organization", "role-0", "role-1"):
        assert f'for="{field_id}"' in page
    assert 'autocomplete="email"' in page
    assert page.count('autocomplete="new-password"') == 2
    assert 'id="name"' in page and "autofocus" in page
    assert "<script>" not in page.replace('<script src=', '')  # no inline JS


def test_signup_creates_a_pending_account_and_logs_in(app, client):
    response = signup(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/standing"

    user = user_by_email(app, "ada@example.org")
    assert user.email == "ada@example.org"  # stored lower-cased
    assert (user.name, user.role, user.status, user.organization) == (
        "Ada Lovelace", "sponsor", "pending", "Analytical Engines")
    assert user.check_password(DEFAULT_PASSWORD)

    page = page_text(client.follow(response))
    assert "Your account was created." in page
    assert "waiting for an admin's approval" in page
    # Logged in, but only the standing page is open to a pending account.
    assert client.get("/").headers["Location"] == "/auth/standing"
    assert client.get("/auth/login").headers["Location"] == "/"


def test_signup_as_editor_without_organization(app, client):
    response = signup(client, role="editor", organization="", email="ed@example.org")
    assert response.status_code == 302
    user = user_by_email(app, "ed@example.org")
    assert (user.role, user.organization) == ("editor", "")


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"email": "not-an-email"}, "email", "Enter a valid email address."),
        ({"email": "ada@localhost"}, "email", "Enter a valid email address."),
        ({"password": "Sh0rt!x", "confirm": "Sh0rt!x"}, "password", "Use at least 10 characters."),
        ({"password": "x" * 129, "confirm": "x" * 129}, "password", "Use at most 128 characters."),
        ({"password": "password1234", "confirm": "password1234"}, "password",
         "This password is too easy to guess. This is a very common password."),
        ({"password": "Ada Lovelace1", "confirm": "Ada Lovelace1"}, "password", "too easy to guess"),
        ({"confirm": DEFAULT_PASSWORD + "x"}, "confirm", "The passwords do not match."),
        ({"role": "admin"}, "role", "Choose sponsor or editor."),
        ({"role": ""}, "role", "Choose sponsor or editor."),
        ({"name": "  "}, "name", "Enter your name."),
        ({"name": "n" * 121}, "name", "Use at most 120 characters."),
    ],
)
def test_signup_refuses_with_a_message_next_to_the_field(app, client, changes, field, message):
    response = signup(client, **changes)
    assert response.status_code == 200
    page = page_text(response)
    # The message sits in the field's own error block.
    assert f'id="{field}-errors"' in page
    errors = page.split(f'id="{field}-errors"', 1)[1].split("</div>", 1)[0]
    assert message in errors
    assert user_count(app) == 0


def test_signup_shows_every_problem_at_once(app, client):
    page = page_text(signup(client, email="bad", password="password1234", confirm="other"))
    assert 'id="email-errors"' in page and 'id="password-errors"' in page and 'id="confirm-errors"' in page
    assert user_count(app) == 0


def test_signup_refuses_a_taken_email_whatever_its_case(app, client, app_context):
    make_user(email="ada@example.org")
    response = signup(client, email="ADA@example.org")
    assert response.status_code == 200
    assert users.EMAIL_TAKEN in page_text(response)
    assert user_count(app) == 1


def test_signup_race_on_the_same_email_shows_the_same_message(app, client, app_context, monkeypatch):
    """Two sign-ups with one email at the same moment both pass the "taken?" check; the
    unique index refuses the second, which gets the ordinary message."""
    make_user(email="ada@example.org")
    monkeypatch.setattr(users, "email_taken", lambda email: False)
    response = signup(client)
    assert response.status_code == 200
    assert users.EMAIL_TAKEN in page_text(response)
    assert user_count(app) == 1


def test_signup_without_csrf_token_is_refused(app, client):
    response = client.post("/auth/signup", GOOD, csrf=False)
    assert response.status_code == 400
    assert "This form has expired" in page_text(response)
    assert user_count(app) == 0


def test_signup_is_rate_limited(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SIGNUP_RATE_LIMIT", "2 per hour")
    for attempt in range(2):
        assert signup(client, email="bad").status_code == 200
    assert signup(client, email="bad").status_code == 429
    assert client.get("/auth/signup").status_code == 200  # only POST is limited


def test_logged_in_user_visiting_signup_goes_home(login_as):
    browser, _ = login_as("admin")
    assert browser.get("/auth/signup").headers["Location"] == "/"


# --- log-in --------------------------------------------------------------------------


def login(client, email, password=DEFAULT_PASSWORD, next_url=None):
    path = "/auth/login" + (f"?next={quote(next_url, safe='')}" if next_url else "")
    return client.post(path, {"email": email, "password": password})


def test_login_page_fields(client):
    page = client.get("/auth/login").get_data(as_text=True)
    assert 'for="email"' in page and 'for="password"' in page
    assert 'autocomplete="email"' in page and 'autocomplete="current-password"' in page
    assert "autofocus" in page


def test_login_approved_user_goes_home_and_records_the_time(app, client, app_context):
    user = make_user(role="admin", email="root@example.org")
    assert user.last_login_at is None
    response = login(client, "ROOT@example.org")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    db.session.expire_all()
    assert db.session.get(type(user), user.id).last_login_at is not None
    assert client.get("/").headers["Location"] == "/admin/"


def test_unknown_email_and_wrong_password_get_the_same_message(client, app_context, monkeypatch):
    make_user(email="known@example.org")
    checked = []
    real_check = users.check_password_hash
    monkeypatch.setattr(users, "check_password_hash", lambda *args: checked.append(args) or real_check(*args))

    unknown = login(client, "nobody@example.org")
    wrong = login(client, "known@example.org", "wrong password entirely")
    for response in (unknown, wrong):
        assert response.status_code == 200
        assert "Email or password is incorrect." in page_text(response)
    # The unknown email still paid for one hash check, so timing does not tell them apart.
    assert len(checked) == 1
    assert client.get("/auth/login").status_code == 200  # still anonymous


def test_login_is_rate_limited(app, client):
    allowed = limits.parse(app.config["LOGIN_RATE_LIMIT"]).amount
    for attempt in range(allowed):
        assert login(client, "nobody@example.org", "wrong").status_code == 200
    response = login(client, "nobody@example.org", "wrong")
    assert response.status_code == 429
    assert "Too many attempts" in page_text(response)


def test_login_without_csrf_token_is_refused(app, client, app_context):
    make_user(email="known@example.org")
    response = client.post("/auth/login", {"email": "known@example.org", "password": DEFAULT_PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert client.get("/auth/login").status_code == 200  # not logged in
    assert user_by_email(app, "known@example.org").last_login_at is None


def test_login_follows_an_on_site_next(client, app_context):
    make_user(role="admin", email="root@example.org")
    response = login(client, "root@example.org", next_url="/admin/users?status=pending")
    assert response.headers["Location"] == "/admin/users?status=pending"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil.example",
                                    "http:evil.example", "javascript:alert(1)"])
def test_login_refuses_an_off_site_next(client, app_context, target):
    make_user(role="admin", email="root@example.org")
    page = client.get(f"/auth/login?next={quote(target, safe='')}").get_data(as_text=True)
    assert "evil" not in page and "javascript" not in page
    response = login(client, "root@example.org", next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_pending_user_is_logged_in_and_sent_to_the_standing_page(client, app_context):
    make_user(email="wait@example.org", status="pending")
    response = login(client, "wait@example.org", next_url="/admin/")
    assert response.headers["Location"] == "/auth/standing"
    page = page_text(client.follow(response))
    assert "waiting for an admin's approval" in page
    assert "Log out" in page  # logged in


@pytest.mark.parametrize("status", ["rejected", "suspended"])
def test_blocked_user_is_not_logged_in_and_learns_why(app, client, app_context, status):
    user = make_user(email="gone@example.org", status=status)
    user.decision_reason = "Not a <b>real</b> organization."
    db.session.commit()

    response = login(client, "gone@example.org")
    assert response.headers["Location"] == "/auth/standing"
    standing = client.follow(response)
    page = page_text(standing)
    assert f"Your account was {status}" in page
    assert "Not a <b>real</b> organization." in page
    assert "<b>real</b>" not in standing.get_data(as_text=True)  # escaped
    assert "Your session has ended." in page
    assert client.get("/auth/login").status_code == 200  # anonymous
    assert fresh(app, user.id).last_login_at is None


def test_blocked_user_with_a_wrong_password_gets_the_generic_message(client, app_context):
    make_user(email="gone@example.org", status="suspended")
    response = login(client, "gone@example.org", "wrong password entirely")
    assert response.status_code == 200
    assert "Email or password is incorrect." in page_text(response)


def test_logged_in_user_visiting_login_goes_home(login_as):
    browser, _ = login_as("admin")
    response = browser.get("/auth/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


# --- log-out and standing ------------------------------------------------------------


def test_logout_is_post_only(login_as):
    browser, _ = login_as("admin")
    assert browser.get("/auth/logout").status_code == 405
    assert browser.get("/admin/").status_code == 200  # still logged in

    response = browser.post("/auth/logout")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert "You have logged out." in page_text(browser.follow(response))
    assert browser.get("/admin/").headers["Location"].startswith("/auth/login")


def test_logout_without_csrf_token_is_refused(login_as):
    browser, _ = login_as("admin")
    assert browser.post("/auth/logout", csrf=False).status_code == 400
    assert browser.get("/admin/").status_code == 200


def test_standing_page_for_visitors_and_approved_users(client, login_as):
    assert client.get("/auth/standing").headers["Location"] == "/auth/login"
    browser, _ = login_as("admin")
    assert browser.get("/auth/standing").headers["Location"] == "/"

