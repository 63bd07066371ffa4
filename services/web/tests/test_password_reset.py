"""A forgotten password: the forgot page that tells nobody which emails have accounts, the
emailed link that works once and only while the password it was sent for is unchanged, the
reset that leaves an account's standing alone, the limits on asking, and the admin's
"Email a reset link"."""
import re
import time

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from srcflask.extensions import db
from srcflask.models import AuditEvent, OutboxMessage, User
from srcflask.services import outbox, passwords, users
from srcflask.throttle import RESET_REQUESTS_REFUSED

from .factories import DEFAULT_PASSWORD, make_user
from .helpers import LEAKS, html, with_signature_changed
from .test_throttle import REDIS_URL, counted_in

NEW_PASSWORD = "quiet otter lantern 1987 meadow"
LINK = re.compile(r"https?://\S+/auth/reset/[\w.-]+")
# Each session's own CSRF token, in the page's meta tag and its forms.
CSRF_VALUES = re.compile(r'(?<=name="csrf-token" content=")[^"]+|(?<=name="csrf_token" type="hidden" value=")[^"]+')
SENT = "a link to choose a new password is on its way there"


def forgot(browser, email):
    return browser.post("/auth/forgot", {"email": email})


def emailed_links(app, email):
    """The reset links emailed to `email`, oldest first (each message's text and HTML agree)."""
    with app.app_context():
        links = []
        for message in outbox.queued_messages(email):
            (link,) = set(LINK.findall(message.text_body))
            assert link in message.html_body
            links.append(link)
        return links


def path_of(link):
    return link[link.index("/auth/reset/"):]


def password_hash(app, user_id):
    with app.app_context():
        return db.session.get(User, user_id).password_hash


def audit_actions(app):
    with app.app_context():
        return [(event.actor_id, event.action, event.target_id)
                for event in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def can_log_in(app, email, password):
    with app.app_context():
        return users.authenticate(email, password) is not None


@pytest.fixture
def person(app):
    with app.app_context():
        user = make_user("sponsor", email="known@example.org", name="Known Person")
        return user.id


# --- the forgot page ---------------------------------------------------------------------------


def _answer(app, make_client, email):
    """What a visitor sees for `email`: the POST's status, headers and session (the asked
    email replaced, the CSRF token and the request's own id left out), and the page it leads to."""
    browser = make_client()
    response = forgot(browser, email)
    cookie = browser.raw.get_cookie(app.config["SESSION_COOKIE_NAME"])
    session = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    session.pop("csrf_token")
    page = CSRF_VALUES.sub("", html(browser.follow(response)))
    headers = sorted((name, value) for name, value in response.headers.items()
                     if name not in ("Set-Cookie", "X-Request-ID"))
    return (response.status_code, headers, sorted(response.headers.getlist("Set-Cookie")[0].split("; ")[1:]),
            repr(session).replace(email, "EMAIL"), page.replace(email, "EMAIL"))


def test_the_forgot_page_answers_alike_whether_or_not_an_account_uses_the_email(app, make_client, person):
    known = _answer(app, make_client, "known@example.org")
    unknown = _answer(app, make_client, "nobody@example.org")

    assert known == unknown
    status, headers, _, _, page = known
    assert status == 302 and ("Location", "/auth/login") in headers
    assert SENT in page and "It works once, for 60 minutes." in page
    assert len(emailed_links(app, "known@example.org")) == 1
    with app.app_context():  # the stand-in's link, written for the unknown email, was rolled back
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_the_log_in_page_leads_to_the_forgot_page_which_takes_any_case(app, client, person):
    assert 'href="/auth/forgot"' in html(client.get("/auth/login"))
    page = html(client.get("/auth/forgot"))
    assert "Forgot your password?" in page and 'name="email"' in page

    assert forgot(client, "  KNOWN@Example.org ").status_code == 302
    assert len(emailed_links(app, "known@example.org")) == 1


def test_an_empty_email_is_asked_for_again(app, client, person):
    response = forgot(client, "")
    assert response.status_code == 200
    assert "Enter your email address." in html(response)


# --- the link ----------------------------------------------------------------------------------


def test_the_emailed_link_sets_a_new_password_once(app, client, make_client, person):
    forgot(client, "known@example.org")
    (link,) = emailed_links(app, "known@example.org")
    assert link.startswith(app.config["SITE_URL"].rstrip("/") + "/auth/reset/")
    with app.app_context():
        (message,) = outbox.queued_messages("known@example.org")
        assert message.subject == "Choose a new password for srcflask"
        assert "Hello Known Person" in message.text_body and "within 60 minutes" in message.text_body

    visitor = make_client()
    page = visitor.get(path_of(link))
    assert page.status_code == 200 and 'name="confirm"' in html(page)
    response = visitor.post(path_of(link), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})

    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert "Log in with the new password." in html(visitor.follow(response))
    assert can_log_in(app, "known@example.org", NEW_PASSWORD)
    assert not can_log_in(app, "known@example.org", DEFAULT_PASSWORD)
    assert audit_actions(app) == [(person, "user.reset_password", person)]

    # Used: the link is refused, and changes nothing any more.
    hash_after = password_hash(app, person)
    again = visitor.get(path_of(link))
    assert again.status_code == 410 and "was used already" in html(again)
    assert 'href="/auth/forgot"' in html(again)
    refused = visitor.post(path_of(link), {"password": "another fine long phrase 55", "confirm": "another fine long phrase 55"})
    assert refused.status_code == 410
    assert password_hash(app, person) == hash_after
    assert len(audit_actions(app)) == 1


def test_a_weak_or_unconfirmed_password_is_refused_and_the_link_still_works(app, client, person):
    forgot(client, "known@example.org")
    (link,) = emailed_links(app, "known@example.org")
    before = password_hash(app, person)

    weak = client.post(path_of(link), {"password": "short", "confirm": "short"})
    mismatched = client.post(path_of(link), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})

    assert weak.status_code == 200 and "Use at least 10 characters." in html(weak)
    assert mismatched.status_code == 200 and "The passwords do not match." in html(mismatched)
    assert password_hash(app, person) == before
    assert client.post(path_of(link), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302


def test_a_password_made_of_the_accounts_own_details_is_too_easy(app, client, person):
    forgot(client, "known@example.org")
    (link,) = emailed_links(app, "known@example.org")
    guessable = "known@example.org"

    response = client.post(path_of(link), {"password": guessable, "confirm": guessable})

    assert response.status_code == 200 and "This password is too easy to guess." in html(response)
    assert can_log_in(app, "known@example.org", DEFAULT_PASSWORD)


def _expired(app, monkeypatch, user_id):
    with app.app_context(), monkeypatch.context() as past:
        signed_at = int(time.time()) - app.config["PASSWORD_RESET_MAX_AGE_SECONDS"] - 5
        past.setattr(TimestampSigner, "get_timestamp", lambda signer: signed_at)
        return passwords.reset_token(db.session.get(User, user_id))


def _token(app, user_id):
    with app.app_context():
        return passwords.reset_token(db.session.get(User, user_id))


def _password_changed_since(app, monkeypatch, user_id):
    token = _token(app, user_id)
    with app.app_context():
        db.session.get(User, user_id).set_password(NEW_PASSWORD)
        db.session.commit()
    return token


def _tampered(app, monkeypatch, user_id):
    return with_signature_changed(_token(app, user_id))


def _another_accounts_payload(app, monkeypatch, user_id):
    """Another account's payload under this link's timestamp and signature."""
    with app.app_context():
        other = make_user("sponsor").id
    own, theirs = _token(app, user_id), _token(app, other)
    return theirs.split(".")[0] + "." + ".".join(own.split(".")[1:])


REFUSALS = {
    "expired": (_expired, 410, "has expired"),
    "password changed since": (_password_changed_since, 410, "was used already, or the password was changed"),
    "tampered": (_tampered, 400, "is not valid"),
    "another account's payload": (_another_accounts_payload, 400, "is not valid"),
    "cut short": (lambda app, mp, user_id: _token(app, user_id)[:20], 400, "is not valid"),
    "made up": (lambda app, mp, user_id: "not-a-token", 400, "is not valid"),
    "from another signed value": (
        lambda app, mp, user_id: app.session_interface.get_signing_serializer(app).dumps([user_id, "x"]), 400,
        "is not valid"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_link_that_cannot_be_used_is_refused_with_a_clear_page_and_changes_nothing(
        app, client, monkeypatch, person, case):
    make_token, status, message = REFUSALS[case]
    token = make_token(app, monkeypatch, person)
    before = password_hash(app, person)

    page = client.get(f"/auth/reset/{token}")
    post = client.post(f"/auth/reset/{token}", {"password": "another fine long phrase 55",
                                                "confirm": "another fine long phrase 55"})

    for response in (page, post):
        assert response.status_code == status
        text = html(response)
        assert message in text and 'href="/auth/forgot"' in text
        assert not any(leak in text for leak in LEAKS)
    assert password_hash(app, person) == before
    assert audit_actions(app) == []


def test_a_link_changes_only_the_account_it_was_sent_to(app, client, person):
    with app.app_context():
        other = make_user("sponsor").id
    before = password_hash(app, other)

    client.post(f"/auth/reset/{_token(app, person)}", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})

    assert password_hash(app, other) == before
    assert can_log_in(app, "known@example.org", NEW_PASSWORD)


def test_a_reset_ends_every_session_of_the_account(app, client, login_as):
    browser, user = login_as("sponsor")
    assert browser.get("/sponsor/").status_code == 200

    client.post(f"/auth/reset/{_token(app, user.id)}", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})

    response = browser.get("/sponsor/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")


@pytest.mark.parametrize("status", ["pending", "rejected", "suspended"])
def test_a_reset_leaves_the_accounts_standing_as_it_was(app, client, make_client, status):
    with app.app_context():
        user = make_user("sponsor", status=status, email="waiting@example.org")
        user_id = user.id
    forgot(client, "waiting@example.org")
    (link,) = emailed_links(app, "waiting@example.org")

    response = client.post(path_of(link), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})

    assert response.headers["Location"] == "/auth/login"
    with app.app_context():
        assert db.session.get(User, user_id).status == status
    # Not logged in by the reset; logging in with the new password meets the standing page.
    assert client.get("/auth/standing").headers["Location"] == "/auth/login"
    login = make_client().post("/auth/login", {"email": "waiting@example.org", "password": NEW_PASSWORD})
    assert login.headers["Location"] == "/auth/standing"


def test_a_logged_in_visitor_is_sent_home_and_the_link_keeps_working(app, client, login_as, person):
    browser, _ = login_as("editor")
    token = _token(app, person)

    assert browser.get(f"/auth/reset/{token}").headers["Location"] == "/"
    assert browser.get("/auth/forgot").headers["Location"] == "/"
    assert client.get(f"/auth/reset/{token}").status_code == 200


# --- limits on asking --------------------------------------------------------------------------


def from_address(make_client, address):
    browser = make_client()
    browser.raw.environ_base["REMOTE_ADDR"] = address
    return browser


def test_requests_are_limited_per_address_whatever_the_email(app, make_client, monkeypatch, person):
    monkeypatch.setitem(app.config, "PASSWORD_RESET_RATE_LIMIT", "2 per hour")
    with counted_in(app, REDIS_URL):
        asker = from_address(make_client, "203.0.113.7")
        answers = [forgot(asker, email).status_code
                   for email in ("known@example.org", "nobody@example.org", "third@example.org")]
        refused = forgot(asker, "known@example.org")
        elsewhere = forgot(from_address(make_client, "203.0.113.8"), "known@example.org")

    assert answers == [302, 302, 429]
    assert refused.status_code == 429 and RESET_REQUESTS_REFUSED in html(refused)
    assert refused.headers["Retry-After"]
    assert elsewhere.status_code == 302
    assert len(emailed_links(app, "known@example.org")) == 2


@pytest.mark.parametrize("email", ["known@example.org", "nobody@example.org"])
def test_requests_are_limited_per_email_whatever_the_address(app, make_client, monkeypatch, person, email):
    """An inbox cannot be flooded with links, and the limit is the same for an email with no
    account: a refusal says nothing about who has one."""
    monkeypatch.setitem(app.config, "PASSWORD_RESET_EMAIL_RATE_LIMIT", "2 per hour")
    with counted_in(app, REDIS_URL):
        answers = [forgot(from_address(make_client, f"198.51.100.{number}"), spelling).status_code
                   for number, spelling in enumerate([email, email.upper(), f" {email} "], start=1)]
        other_email = forgot(from_address(make_client, "198.51.100.9"), "someone.else@example.org")

    assert answers == [302, 302, 429]
    assert other_email.status_code == 302
    assert len(emailed_links(app, email)) == (2 if email == "known@example.org" else 0)


# --- the admin's button ------------------------------------------------------------------------


def test_an_admin_emails_a_reset_link_without_ever_seeing_it(app, login_as, client, person):
    admin_browser, admin = login_as("admin")
    listing = html(admin_browser.get("/admin/users"))
    assert f'action="/admin/users/{person}/send-reset' in listing

    response = admin_browser.post(f"/admin/users/{person}/send-reset?next=/admin/users")

    assert response.status_code == 302 and response.headers["Location"] == "/admin/users"
    page = html(admin_browser.follow(response))
    assert "A link to choose a new password was emailed to Known Person." in page
    (link,) = emailed_links(app, "known@example.org")
    assert path_of(link).rpartition("/")[2] not in page
    assert audit_actions(app) == [(admin.id, "user.send_password_reset", person)]
    # The password is the user's own until they follow the link.
    assert can_log_in(app, "known@example.org", DEFAULT_PASSWORD)
    assert client.post(path_of(link), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    assert can_log_in(app, "known@example.org", NEW_PASSWORD)


def test_only_an_admin_may_send_a_reset_link(app, login_as, person):
    editor_browser, _ = login_as("editor")

    assert editor_browser.post(f"/admin/users/{person}/send-reset").status_code == 403
    assert emailed_links(app, "known@example.org") == []


def test_an_erased_accounts_placeholder_address_gets_no_link(app, make_client):
    with app.app_context():
        admin = make_user("admin")
        erased = make_user("sponsor", email="leaving@example.org")
        users.erase(erased, by=admin, reason="asked to be forgotten")
        db.session.commit()
        placeholder = erased.email

    response = forgot(make_client(), placeholder)

    assert response.status_code == 302
    with app.app_context():
        assert outbox.queued_messages(placeholder) == []
