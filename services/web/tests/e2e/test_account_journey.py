"""The account page in a real browser: a new password ends the session of a second
browser while this one stays, a new email is confirmed through the link written to the
new address, and notification emails are chosen on their page."""
import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from srcflask.extensions import db
from srcflask.models import User
from srcflask.services import notifications, outbox

from ..factories import make_document
from .test_journeys import expect_error_next_to, log_in

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "velvet compass harbour 2291 kite"


def test_a_new_password_ends_a_second_browsers_session(live, browser):
    account = live.add_user("sponsor", name="Ada Sponsor")
    laptop = log_in(browser, account)
    phone = log_in(browser, account)

    laptop.locator("#nav").get_by_role("link", name="Account").click()
    expect(laptop.get_by_role("heading", name="Your account")).to_be_visible()
    password_form = laptop.locator("form", has=laptop.get_by_role("button", name="Change password"))
    password_form.get_by_label("Current password").fill("not the password")
    password_form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    password_form.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    password_form.get_by_role("button", name="Change password").click()
    expect_error_next_to(laptop.locator("form", has=laptop.get_by_role("button", name="Change password"))
                         .get_by_label("Current password"), "This is not your current password.")

    password_form = laptop.locator("form", has=laptop.get_by_role("button", name="Change password"))
    password_form.get_by_label("Current password").fill(account.password)
    password_form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    password_form.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    password_form.get_by_role("button", name="Change password").click()
    expect(laptop.get_by_role("alert")).to_contain_text("Every other session of your account has ended.")
    browser.shoot(laptop, "password-changed")

    # This browser goes on; the other one is sent to log in on its next click.
    laptop.locator("#nav").get_by_role("link", name="My documents").click()
    expect(laptop).to_have_url(re.compile(r"/sponsor/documents$"))
    phone.locator("#nav").get_by_role("link", name="My documents").click()
    expect(phone).to_have_url(re.compile(r"/auth/login\?next="))
    browser.shoot(phone, "other-browser-logged-out")


def test_a_new_email_is_confirmed_through_the_emailed_link(live, browser, monkeypatch):
    monkeypatch.setitem(live.app.config, "SITE_URL", live.url)
    account = live.add_user("editor", name="Eddie Editor")
    page = log_in(browser, account)
    page.goto("/account/")
    email_form = page.locator("form", has=page.get_by_role("button", name="Send the confirmation link"))
    email_form.get_by_label("New email").fill("eddie.new@example.org")
    email_form.get_by_label("Current password").fill(account.password)
    email_form.get_by_role("button", name="Send the confirmation link").click()
    expect(page.get_by_role("alert")).to_contain_text("We sent a link to eddie.new@example.org")

    with live.app.app_context():
        (message,) = outbox.queued_messages("eddie.new@example.org")
        link = re.search(r"http://\S+/account/email/confirm\?token=\S+", message.text_body).group(0)
    assert urlsplit(link).netloc == urlsplit(live.url).netloc
    page.goto(link)
    expect(page.get_by_role("heading", name="Confirm your new email")).to_be_visible()
    browser.shoot(page, "confirm-new-email")
    page.get_by_role("button", name="Use eddie.new@example.org").click()
    expect(page.get_by_role("alert")).to_contain_text("Your email is now eddie.new@example.org.")
    expect(page.locator(".current-email")).to_have_text("eddie.new@example.org")

    # The link worked once.
    browser.watch.expect_failure(link, 410)
    page.goto(link)
    expect(page.get_by_role("alert")).to_contain_text("was used already")


def test_an_editor_chooses_to_have_assignments_emailed_at_once(live, browser, monkeypatch):
    monkeypatch.setitem(live.app.config, "SITE_URL", live.url)
    editor = live.add_user("editor", name="Edna Editor")
    sponsor = live.add_user("sponsor", name="Sid Sponsor")
    page = log_in(browser, editor)
    page.goto("/account/")
    page.get_by_role("link", name="choose your notification emails").click()
    expect(page.get_by_role("heading", name="Notification emails")).to_be_visible()
    page.get_by_role("group", name="A document was assigned to you").get_by_label("At once").check()
    page.get_by_role("group", name="An autodoc is ready for your review").get_by_label("Daily digest").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Your notification emails were saved.")
    expect(page.get_by_role("group", name="A document was assigned to you").get_by_label("At once")).to_be_checked()
    browser.shoot(page, "notification-emails")

    with live.app.app_context():
        document = make_document(db.session.get(User, sponsor.id), db.session.get(User, editor.id), title="Mailed")
        (message,) = outbox.queued_messages(editor.email)
    assert message.subject == notifications.EMAIL_KINDS["document_assigned"]
    link = re.search(r"http://\S+/editor/documents/\d+", message.text_body).group(0)
    assert link == f"{live.url}/editor/documents/{document.id}"
    page.goto(link)
    expect(page.get_by_role("heading", name="Mailed")).to_be_visible()
