"""A forgotten password in a real browser: ask for a link on the log-in page, the email
arrives at a real SMTP server on loopback (the outbox delivered by the mail sender), the
link opens the reset page, the new password logs in and the old one no longer does."""
import re

import pytest
from playwright.sync_api import expect

from ..test_mail import mail_app, send_all, smtp, smtp_port  # noqa: F401  (fixtures)
from .test_journeys import log_in

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "quiet otter lantern 1987 meadow"


def test_a_forgotten_password_is_reset_through_the_emailed_link(live, browser, mail_app, smtp,  # noqa: F811
                                                                   monkeypatch):
    # Links in emails point at the site as people reach it: here, the live server.
    monkeypatch.setitem(live.app.config, "SITE_URL", live.url)
    account = live.add_user("sponsor", email="forgetful@example.org", name="Forgetful Fran")

    page = browser.new_page()
    page.goto("/auth/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page).to_have_url(re.compile(r"/auth/forgot$"))
    page.get_by_label("Email").fill(account.email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    expect(page.get_by_role("alert")).to_contain_text("a link to choose a new password is on its way there")
    browser.shoot(page, "link-asked-for")

    send_all(mail_app)
    (received,) = smtp.to(account.email)
    assert received.subject == "Choose a new password for srcflask"
    (link,) = set(re.findall(r"http://\S+/auth/reset/[\w.-]+", received.text))
    assert link.startswith(live.url) and link in received.html

    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    browser.shoot(page, "new-password")
    page.get_by_role("button", name="Set the new password").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    expect(page.get_by_role("alert")).to_contain_text("Log in with the new password.")

    # The link worked once.
    browser.watch.expect_failure(link, 410)
    page.goto(link)
    expect(page.get_by_role("alert")).to_contain_text("was used already")
    browser.shoot(page, "link-used")

    # The old password is refused; the new one logs in.
    page.goto("/auth/login")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Email or password is incorrect.")
    sponsor_page = log_in(browser, type(account)(account.id, account.name, account.email, NEW_PASSWORD))
    expect(sponsor_page).to_have_url(re.compile(r"/sponsor/$"))
