"""The account page: name and organization, a new password (every other session ends, this
one stays), log-out everywhere, a new email confirmed by a link sent to it (the old address
told), and `flask users set-password`. The access matrix checks who may open each route and
that each POST needs its CSRF token; this file checks what each one does."""
import re
import time
from urllib.parse import urlsplit

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from srcflask import throttle
from srcflask.extensions import db
from srcflask.models import AuditEvent, User
from srcflask.services import accounts, outbox, users

from .auth_admin_helpers import fresh, page_text
from .factories import DEFAULT_PASSWORD, make_user
from .helpers import LEAKS, html, with_signature_changed
from .test_sessions import replay, session_cookie

NEW_PASSWORD = "purple otters juggle quietly 58"
NEW_EMAIL = "ada.new@example.org"
LOGIN = "/auth/login"


def second_browser(app, make_client, user):
    """Another browser logged in as `user` (another device)."""
    browser = make_client()
    assert browser.post(LOGIN, {"email": user.email, "password": DEFAULT_PASSWORD}).status_code == 302
    return browser


def audit_actions(app, user_id):
    with app.app_context():
        return [(event.actor_id, event.action, event.details) for event in db.session.scalars(
            select(AuditEvent).where(AuditEvent.target_type == "user", AuditEvent.target_id == user_id)
            .order_by(AuditEvent.id))]


def queued(app, recipient):
    with app.app_context():
        return [(message.subject, message.text_body, message.html_body) for message in outbox.queued_messages(recipient)]


def field_error(response, field_id):
    match = re.search(rf'id="{field_id}-errors"[^>]*>([^<]*)<', page_text(response))
    return match.group(1) if match else None


def assert_clean(response):
    assert response.status_code != 500 and not any(leak in html(response) for leak in LEAKS)


# --- the page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["sponsor", "editor", "admin"])
def test_every_role_reaches_the_account_page_from_the_navigation(login_as, role):
    browser, user = login_as(role, name="Ada Lovelace", organization="Analytical Engines")
    home = browser.get("/", follow_redirects=True)
    assert 'href="/account/"' in html(home)
    page = page_text(browser.get("/account/"))
    assert 'value="Ada Lovelace"' in page and 'value="Analytical Engines"' in page
    assert user.email in page
    assert 'href="/account/tokens"' in page
    assert 'action="/auth/logout"' in page and "Log out everywhere" in page


def test_profile_changes_with_the_sign_up_rules(app, login_as):
    browser, user = login_as("sponsor")
    response = browser.post("/account/profile", {"name": "  Grace Hopper ", "organization": " Navy "})
    assert response.status_code == 302 and response.headers["Location"] == "/account/"
    assert "Your name and organization were saved." in page_text(browser.follow(response))
    saved = fresh(app, user.id)
    assert (saved.name, saved.organization) == ("Grace Hopper", "Navy")

    for form, field_id, message in [
        ({"name": "   ", "organization": "Kept"}, "name", users.NAME_REQUIRED),
        ({"name": "x" * (users.NAME_MAX_LENGTH + 1), "organization": "Kept"}, "name", "Use at most"),
        ({"name": "Grace", "organization": "o" * 201}, "organization", "200"),
    ]:
        refused = browser.post("/account/profile", form)
        assert refused.status_code == 200
        assert message in field_error(refused, field_id)
        assert (fresh(app, user.id).name, fresh(app, user.id).organization) == ("Grace Hopper", "Navy")


# --- a new password ---------------------------------------------------------------------------


def test_a_new_password_ends_every_other_session_and_keeps_this_one(app, login_as, make_client):
    browser, user = login_as("sponsor")
    other = second_browser(app, make_client, user)
    copied = session_cookie(app, browser)
    before = fresh(app, user.id)
    token = browser.csrf_token()

    response = browser.post("/account/password",
                            {"current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})

    assert response.status_code == 302 and response.headers["Location"] == "/account/"
    assert "Every other session of your account has ended." in page_text(browser.follow(response))
    after = fresh(app, user.id)
    assert after.password_hash != before.password_hash
    assert after.session_generation == before.session_generation + 1
    assert audit_actions(app, user.id)[-1][:2] == (user.id, "user.change_password")
    # This browser goes on, with the same CSRF token (forms open in other tabs still send).
    assert browser.get("/account/").status_code == 200
    assert browser.post("/account/profile", {"name": "Still Here", "organization": "", "csrf_token": token}).status_code == 302
    # The other device, and a copy of this browser's cookie from before, open nothing.
    for gone in (other, replay(app, make_client, copied)):
        refused = gone.get("/account/")
        assert refused.status_code == 302 and refused.headers["Location"].startswith(LOGIN)
    # The new password logs in; the old one does not.
    assert make_client().post(LOGIN, {"email": user.email, "password": DEFAULT_PASSWORD}).status_code == 200
    assert make_client().post(LOGIN, {"email": user.email, "password": NEW_PASSWORD}).status_code == 302


@pytest.mark.parametrize("form, field_id, message", [
    ({"current_password": "not my password at all", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
     "current_password", accounts.WRONG_PASSWORD),
    ({"current_password": DEFAULT_PASSWORD, "password": "password123", "confirm": "password123"},
     "password", "too easy to guess"),
    ({"current_password": DEFAULT_PASSWORD, "password": "short", "confirm": "short"}, "password", "at least 10"),
    ({"current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"},
     "confirm", "do not match"),
    ({"current_password": "", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
     "current_password", "Enter your current password."),
])
def test_a_refused_password_change_says_why_and_changes_nothing(app, login_as, make_client, form, field_id, message):
    browser, user = login_as("sponsor", name="Ada Lovelace")
    other = second_browser(app, make_client, user)
    before = fresh(app, user.id)

    response = browser.post("/account/password", form)

    assert response.status_code == 200
    assert message in field_error(response, field_id)
    assert NEW_PASSWORD not in html(response)  # passwords are never sent back
    after = fresh(app, user.id)
    assert (after.password_hash, after.session_generation) == (before.password_hash, before.session_generation)
    assert other.get("/account/").status_code == 200
    assert audit_actions(app, user.id) == []


def test_the_new_password_must_not_be_the_accounts_own_name(login_as):
    browser, _ = login_as("sponsor", name="Marmaduke Fotheringay")
    response = browser.post("/account/password", {"current_password": DEFAULT_PASSWORD,
                                                  "password": "Marmaduke Fotheringay", "confirm": "Marmaduke Fotheringay"})
    assert response.status_code == 200 and "too easy to guess" in field_error(response, "password")


def test_only_a_wrong_current_password_counts_against_the_allowance(app, login_as, monkeypatch):
    """Someone trying new passwords that are too weak, with their right current password,
    is told why each time and is never locked out of the page."""
    monkeypatch.setitem(app.config, "LOGIN_ACCOUNT_RATE_LIMIT", "3 per hour")
    browser, user = login_as("sponsor")
    weak = {"current_password": DEFAULT_PASSWORD, "password": "password1", "confirm": "password1"}
    for _ in range(5):
        response = browser.post("/account/password", weak)
        assert response.status_code == 200 and field_error(response, "password")
    changed = browser.post("/account/password", {"current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD,
                                                "confirm": NEW_PASSWORD})
    assert changed.status_code == 302


def test_wrong_current_passwords_are_limited_per_account_like_log_ins(app, login_as, monkeypatch):
    """Failed attempts count (on the password and the email forms together); once the
    allowance is spent even the right password is refused, and nothing changes."""
    monkeypatch.setitem(app.config, "LOGIN_ACCOUNT_RATE_LIMIT", "3 per hour")
    browser, user = login_as("sponsor")
    before = fresh(app, user.id)
    wrong = {"current_password": "a wrong guess", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert browser.post("/account/password", wrong).status_code == 200
    assert browser.post("/account/email", {"email": NEW_EMAIL, "current_password": "another guess"}).status_code == 200
    assert browser.post("/account/password", wrong).status_code == 200

    refused = browser.post("/account/password", {**wrong, "current_password": DEFAULT_PASSWORD})
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert throttle.PASSWORD_CHECKS_REFUSED in page_text(refused)
    assert browser.post("/account/email", {"email": NEW_EMAIL, "current_password": DEFAULT_PASSWORD}).status_code == 429
    assert fresh(app, user.id).password_hash == before.password_hash
    assert queued(app, NEW_EMAIL) == []
    assert browser.get("/account/").status_code == 200  # the account itself is not locked


def test_log_out_everywhere_ends_every_session_this_one_too(app, login_as, make_client):
    browser, user = login_as("editor")
    other = second_browser(app, make_client, user)
    page = html(browser.get("/account/"))
    assert 'action="/auth/logout"' in page

    response = browser.post("/auth/logout")

    assert response.status_code == 302 and response.headers["Location"] == LOGIN
    assert "You have logged out." in page_text(browser.follow(response))
    for gone in (browser, other):
        assert gone.get("/account/").headers["Location"].startswith(LOGIN)


# --- a new email ------------------------------------------------------------------------------


def confirmation_link(app, email):
    """The path and query of the confirmation link last emailed to `email`."""
    subject, text, html_body = queued(app, email)[-1]
    assert subject == "Confirm your new email for srcflask"
    link = re.search(r"https?://\S+/account/email/confirm\?token=\S+", text).group(0)
    assert link in html_body
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def ask_for(browser, email, password=DEFAULT_PASSWORD):
    return browser.post("/account/email", {"email": email, "current_password": password})


def token_of(link):
    return link.partition("token=")[2]


def confirm(browser, link):
    """Open the link, then press its button (with the token the page carries)."""
    page = browser.get(link)
    assert page.status_code == 200, page.status_code
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', html(page)).group(1)
    return browser.post("/account/email/confirm", {"token": token})


def test_a_new_email_is_confirmed_from_the_new_mailbox_and_the_old_one_is_told(app, login_as, make_client):
    browser, user = login_as("sponsor", name="Ada Lovelace")
    old_email = user.email

    response = ask_for(browser, "  Ada.New@Example.org ")

    assert response.status_code == 302 and response.headers["Location"] == "/account/"
    assert f"We sent a link to {NEW_EMAIL}" in page_text(browser.follow(response))
    assert fresh(app, user.id).email == old_email  # nothing changes until the link is followed
    link = confirmation_link(app, NEW_EMAIL)
    (notice,) = queued(app, old_email)
    assert notice[0] == "Your srcflask email may change"
    assert NEW_EMAIL in notice[1] and "/auth/forgot" in notice[1] and "token=" not in notice[1]

    page = browser.get(link)
    assert page.status_code == 200 and NEW_EMAIL in page_text(page) and old_email in page_text(page)
    assert fresh(app, user.id).email == old_email  # opening the link changes nothing
    done = confirm(browser, link)

    assert done.status_code == 302 and done.headers["Location"] == "/account/"
    assert f"Your email is now {NEW_EMAIL}." in page_text(browser.follow(done))
    assert fresh(app, user.id).email == NEW_EMAIL
    actor, action, details = audit_actions(app, user.id)[-1]
    assert (actor, action, details["from_email"], details["email"]) == (user.id, "user.change_email", old_email, NEW_EMAIL)
    assert browser.get("/account/").status_code == 200  # the session stays
    assert make_client().post(LOGIN, {"email": NEW_EMAIL, "password": DEFAULT_PASSWORD}).status_code == 302


@pytest.mark.parametrize("email, password, field_id, message", [
    (NEW_EMAIL, "not my password", "email_current_password", accounts.WRONG_PASSWORD),
    ("not an address", DEFAULT_PASSWORD, "email", "Enter a valid email address."),
    ("TAKEN@example.org", DEFAULT_PASSWORD, "email", users.EMAIL_TAKEN),
    ("OWN", DEFAULT_PASSWORD, "email", accounts.SAME_EMAIL),
])
def test_a_refused_email_change_says_why_and_sends_nothing(app, login_as, email, password, field_id, message):
    browser, user = login_as("sponsor")
    with app.app_context():
        make_user("editor", email="taken@example.org")
    email = user.email.upper() if email == "OWN" else email

    response = ask_for(browser, email, password)

    assert response.status_code == 200
    assert message in field_error(response, field_id)
    assert f'value="{email}"' in html(response)  # what was typed is kept
    assert queued(app, email) == [] and queued(app, user.email) == []
    assert fresh(app, user.id).email == user.email


def test_following_the_link_needs_the_accounts_own_session(app, make_client, login_as):
    """Someone who is not logged in logs in first and comes back to the link."""
    browser, user = login_as("editor")
    ask_for(browser, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)

    stranger = make_client()
    response = stranger.get(link)
    assert response.status_code == 302 and response.headers["Location"].startswith(LOGIN)
    back = stranger.post(response.headers["Location"], {"email": user.email, "password": DEFAULT_PASSWORD})
    assert back.status_code == 302 and back.headers["Location"] == link
    assert confirm(stranger, link).status_code == 302
    assert fresh(app, user.id).email == NEW_EMAIL


def refused_page(response, status, message):
    assert_clean(response)
    assert response.status_code == status, response.status_code
    assert message in page_text(response)


def check_refused(app, browser, link, status, message, user_id, email):
    """The link's page and its button are both refused, and the account keeps `email`."""
    refused_page(browser.get(link), status, message)
    refused_page(browser.post("/account/email/confirm", {"token": token_of(link)}), status, message)
    assert fresh(app, user_id).email == email


def test_a_link_works_once(app, login_as):
    browser, user = login_as("sponsor")
    ask_for(browser, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)
    assert confirm(browser, link).status_code == 302
    events = audit_actions(app, user.id)

    check_refused(app, browser, link, 410, accounts.LINK_USED, user.id, NEW_EMAIL)
    assert audit_actions(app, user.id) == events


def test_a_link_stays_used_when_the_account_returns_to_its_old_email(app, login_as):
    browser, user = login_as("sponsor")
    ask_for(browser, NEW_EMAIL)
    first = confirmation_link(app, NEW_EMAIL)
    assert confirm(browser, first).status_code == 302
    ask_for(browser, user.email)
    assert confirm(browser, confirmation_link(app, user.email)).status_code == 302

    check_refused(app, browser, first, 410, accounts.LINK_USED, user.id, user.email)


def test_a_link_dies_when_the_email_changes_another_way(app, login_as):
    browser, user = login_as("sponsor")
    ask_for(browser, NEW_EMAIL)
    ask_for(browser, "second.choice@example.org")
    first = confirmation_link(app, NEW_EMAIL)
    assert confirm(browser, confirmation_link(app, "second.choice@example.org")).status_code == 302

    check_refused(app, browser, first, 410, accounts.LINK_USED, user.id, "second.choice@example.org")


def test_a_new_password_cancels_a_pending_email_change(app, login_as):
    browser, user = login_as("sponsor")
    ask_for(browser, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)
    assert browser.post("/account/password", {"current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD,
                                              "confirm": NEW_PASSWORD}).status_code == 302

    check_refused(app, browser, link, 410, accounts.LINK_USED, user.id, user.email)


def test_an_expired_link_is_refused(app, login_as, monkeypatch):
    browser, user = login_as("sponsor")
    issued = int(time.time()) - app.config["EMAIL_CHANGE_MAX_AGE_SECONDS"] - 60

    class SignedLongAgo(TimestampSigner):
        def get_timestamp(self):
            return issued

    signing = accounts.LINKS._serializer

    def serializer_of_the_past():
        serializer = signing()
        serializer.signer = SignedLongAgo
        return serializer

    # The link alone is signed as if sent over a day ago (not the session cookie, which
    # itsdangerous signs too).
    with monkeypatch.context() as patched:
        patched.setattr(accounts.LINKS, "_serializer", serializer_of_the_past)
        ask_for(browser, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)

    check_refused(app, browser, link, 410, accounts.LINK_EXPIRED, user.id, user.email)


@pytest.mark.parametrize("tamper", [
    with_signature_changed,
    lambda token: token[:10],  # cut short
    lambda token: "x" + token,  # the payload
    lambda token: "",
])
def test_a_tampered_link_is_refused(app, login_as, tamper):
    browser, user = login_as("sponsor")
    ask_for(browser, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)
    tampered = "/account/email/confirm?token=" + tamper(token_of(link))

    check_refused(app, browser, tampered, 400, accounts.LINK_INVALID, user.id, user.email)


def test_a_link_signed_for_another_purpose_is_refused(app, login_as):
    """Another signed value of the site (a password reset link's) never passes for one."""
    from srcflask.services import passwords

    browser, user = login_as("sponsor")
    with app.app_context():
        token = passwords.reset_token(db.session.get(User, user.id))
    check_refused(app, browser, f"/account/email/confirm?token={token}", 400, accounts.LINK_INVALID, user.id, user.email)


def test_another_accounts_link_is_refused(app, login_as):
    owner, user = login_as("sponsor")
    ask_for(owner, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)
    other, someone_else = login_as("editor")

    check_refused(app, other, link, 403, accounts.LINK_OTHER_ACCOUNT, user.id, user.email)
    assert fresh(app, someone_else.id).email == someone_else.email
    assert confirm(owner, link).status_code == 302  # still the owner's to use


def test_an_email_taken_since_the_link_was_sent_is_refused(app, login_as, make_client):
    browser, user = login_as("sponsor")
    ask_for(browser, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)
    signup = make_client().post("/auth/signup", {"name": "Someone Else", "email": NEW_EMAIL, "password": NEW_PASSWORD,
                                                 "confirm": NEW_PASSWORD, "role": "editor", "organization": ""})
    assert signup.status_code == 302

    check_refused(app, browser, link, 409, accounts.EMAIL_TAKEN_NOW, user.id, user.email)


def test_the_unique_index_settles_a_race_with_a_sign_up(app, login_as, monkeypatch):
    """The sign-up commits between the check and the update: the index refuses the second
    holder, the page says so, and nothing changes."""
    browser, user = login_as("sponsor")
    ask_for(browser, NEW_EMAIL)
    link = confirmation_link(app, NEW_EMAIL)
    with app.app_context():
        make_user("editor", email=NEW_EMAIL)
    monkeypatch.setattr(users, "email_taken", lambda email: False)  # as if checked before the sign-up

    response = browser.post("/account/email/confirm", {"token": token_of(link)})

    refused_page(response, 409, accounts.EMAIL_TAKEN_NOW)
    assert fresh(app, user.id).email == user.email
    assert [action for _, action, _ in audit_actions(app, user.id)] == []


def test_the_confirmation_button_needs_a_token(app, login_as):
    browser, user = login_as("sponsor")
    refused_page(browser.post("/account/email/confirm", {}), 400, accounts.LINK_INVALID)
    refused_page(browser.get("/account/email/confirm"), 400, accounts.LINK_INVALID)
    assert fresh(app, user.id).email == user.email


# --- flask users set-password -----------------------------------------------------------------


def set_password(app, email, typed):
    return app.test_cli_runner().invoke(args=["users", "set-password", email], input=typed)


def test_an_operator_sets_a_password_at_the_console(app, login_as, make_client):
    browser, user = login_as("editor")
    copied = session_cookie(app, browser)

    result = set_password(app, user.email.upper(), f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output  # the prompt hides what is typed
    assert f"The password of {user.email} is set" in result.output
    for gone in (browser, replay(app, make_client, copied)):
        assert gone.get("/account/").headers["Location"].startswith(LOGIN)
    assert make_client().post(LOGIN, {"email": user.email, "password": NEW_PASSWORD}).status_code == 302
    actor, action, details = audit_actions(app, user.id)[-1]
    assert (actor, action, details["by"]) == (None, "user.set_password", "console")


@pytest.mark.parametrize("typed, message", [
    ("password123\npassword123\n", "too easy to guess"),
    ("short\nshort\n", "at least 10"),
    (f"{NEW_PASSWORD}\nsomething else entirely\n", "do not match"),
])
def test_set_password_refuses_what_sign_up_refuses(app, typed, message):
    with app.app_context():
        user = make_user("sponsor")
        before = (user.password_hash, user.session_generation)

    result = set_password(app, user.email, typed)

    assert result.exit_code != 0
    assert message in result.output
    assert (fresh(app, user.id).password_hash, fresh(app, user.id).session_generation) == before
    assert audit_actions(app, user.id) == []


def test_set_password_takes_no_password_argument_and_names_unknown_accounts(app):
    with app.app_context():
        user = make_user("sponsor")
    as_argument = app.test_cli_runner().invoke(args=["users", "set-password", user.email, NEW_PASSWORD])
    assert as_argument.exit_code == 2 and "unexpected extra argument" in as_argument.output.lower()

    unknown = set_password(app, "nobody@example.org", f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert unknown.exit_code == 1 and "No account uses the email nobody@example.org." in unknown.output
