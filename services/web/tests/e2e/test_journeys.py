"""The product's journeys in a real browser (issue 6): signing up and being approved,
writing a document and watching its autodocs being written, reviewing an autodoc,
suspending an account; and, across the pages, the keyboard, the form errors and a
phone's screen. Every page visited is watched for console errors and CSP violations
(see conftest.browser)."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import Document, User
from srcflask.services.documents import update_document
from srcflask.static.data.processeddata.models import Autodoc, Revision

from ..factories import make_document
from .browser import PHONE

pytestmark = pytest.mark.e2e

# The pages poll a queued or running autodoc every 2 s (static/assets/js/autodocs.js).
LIVE_UPDATE_MS = 8_000


# --- the keyboard -------------------------------------------------------------------------

def tab(page, expect_focus):
    """Press Tab once: the focus must move to `expect_focus` (the natural tab order)."""
    page.keyboard.press("Tab")
    expect(expect_focus).to_be_focused()


def tab_to(page, target, limit=40):
    """Press Tab until `target` has the focus (past links and buttons on the way)."""
    for _ in range(limit):
        if target.evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.outerHTML.slice(0, 120)")
    raise AssertionError(f"{limit} presses of Tab never reached {target}; the focus is on {focused}")


def sign_up_by_keyboard(page, name, email, password, confirm, role_key, organization=""):
    """Fill in the sign-up form with Tab and typing only, in its natural order, and send it
    with Enter. `role_key` picks the role once Tab reaches its radio group (on its first
    choice, sponsor): Space takes it, ArrowRight takes the next one (editor)."""
    page.goto("/auth/signup")
    expect(page.get_by_label("Full name")).to_be_focused()
    page.keyboard.type(name)
    tab(page, page.get_by_label("Email"))
    page.keyboard.type(email)
    tab(page, page.get_by_label("Password", exact=True))
    page.keyboard.type(password)
    tab(page, page.get_by_label("Confirm password"))
    page.keyboard.type(confirm)
    tab(page, page.get_by_label("Write documents (sponsor)"))
    page.keyboard.press(role_key)
    tab(page, page.get_by_label("Organization (optional)"))
    page.keyboard.type(organization)
    page.keyboard.press("Enter")


def log_in_by_keyboard(page, account):
    page.goto("/auth/login")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(account.email)
    tab(page, page.get_by_label("Password"))
    page.keyboard.type(account.password)
    page.keyboard.press("Enter")
    expect(page).not_to_have_url(re.compile(r"/auth/login"))


def log_in(browser, account, **viewport):
    page = browser.new_page(**viewport)
    page.goto("/auth/login")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/auth/login"))
    return page


# --- what a person sees -------------------------------------------------------------------

def expect_error_next_to(field, message):
    """The field says it is invalid, names its error with aria-describedby, and the error
    is shown just below it, with no other control in between."""
    expect(field).to_have_attribute("aria-describedby", re.compile(r"\S"))
    described_by = field.get_attribute("aria-describedby")
    error = field.page.locator(f"#{described_by}")
    expect(error).to_be_visible()
    expect(error).to_contain_text(message)
    between = field.evaluate("""(field, errorId) => {
        const error = document.getElementById(errorId);
        const bottom = field.getBoundingClientRect().bottom, top = error.getBoundingClientRect().top;
        const controls = [...field.form.elements].filter(control => {
            const box = control.getBoundingClientRect();
            return control !== field && !field.contains(control) && box.height && box.top >= bottom && box.bottom <= top;
        });
        return {gap: top - bottom, controls: controls.map(control => control.name || control.tagName)};
    }""", described_by)
    assert 0 <= between["gap"] <= 80 and not between["controls"], (
        f"The error {message!r} is not next to its field: {between}")


def expect_fits(page):
    """Nothing makes the page wider than the screen, so a phone never scrolls it sideways.
    Measured against the screen's width: on a mobile browser window.innerWidth grows with
    the content (the page is zoomed out), so comparing with it proves nothing."""
    screen = page.viewport_size["width"]
    found = page.evaluate("""screen => {
        // What sticks out without a scroller of its own to hold it (absolutely positioned
        // elements escape a scroller that is not their containing block).
        const scrolled = element => {
            for (let parent = element.parentElement; parent; parent = parent.parentElement) {
                if (getComputedStyle(parent).overflowX !== "visible") return true;
            }
            return false;
        };
        const culprits = [...document.querySelectorAll("body *")].filter(element =>
            element.getBoundingClientRect().right > screen + 1
            && (getComputedStyle(element).position === "absolute" || !scrolled(element)));
        return {width: document.documentElement.scrollWidth,
                culprits: culprits.slice(-3).map(element => element.outerHTML.slice(0, 120))};
    }""", screen)
    assert found["width"] <= screen, f"{page.url} is {found['width']} px wide on a {screen} px screen: {found['culprits']}"


def mark_document(page):
    """Mark the loaded document; the mark survives the live updates, not a reload."""
    page.evaluate("window.__sameDocument = true")


def still_same_document(page):
    return page.evaluate("window.__sameDocument === true")


def bell(page):
    return page.locator(".notification-bell")


# --- the journeys -------------------------------------------------------------------------

def test_two_visitors_sign_up_and_an_admin_approves_them(live, browser):
    admin = live.add_user("admin")
    # A first try with a guessable password and a typo in the confirmation (long enough for
    # the browser's own check: these errors are the server's).
    sponsor_page = browser.new_page()
    sign_up_by_keyboard(sponsor_page, "Ada Sponsor", "ada@example.org", "password1234", "password12345",
                        role_key="Space", organization="Analytical Engines Ltd")
    expect(sponsor_page.get_by_role("heading", name="Create an account", exact=True)).to_be_visible()
    expect_error_next_to(sponsor_page.get_by_label("Password", exact=True), "This password is too easy to guess.")
    expect_error_next_to(sponsor_page.get_by_label("Confirm password"), "The passwords do not match.")
    browser.shoot(sponsor_page, "signup-errors")

    # The other fields kept their values: only the passwords need typing again.
    expect(sponsor_page.get_by_label("Email")).to_have_value("ada@example.org")
    expect(sponsor_page.get_by_label("Write documents (sponsor)")).to_be_checked()
    expect(sponsor_page.get_by_label("Full name")).to_be_focused()
    tab(sponsor_page, sponsor_page.get_by_label("Email"))
    tab(sponsor_page, sponsor_page.get_by_label("Password", exact=True))
    sponsor_page.keyboard.type("a long enough passphrase 7")
    tab(sponsor_page, sponsor_page.get_by_label("Confirm password"))
    sponsor_page.keyboard.type("a long enough passphrase 7")
    sponsor_page.keyboard.press("Enter")
    expect(sponsor_page).to_have_url(re.compile(r"/auth/standing$"))
    expect(sponsor_page.get_by_role("status")).to_contain_text("waiting for an admin's approval")
    browser.shoot(sponsor_page, "sponsor-pending")

    editor_page = browser.new_page()
    # The arrows choose within a radio group: from the first choice (sponsor) to editor.
    sign_up_by_keyboard(editor_page, "Edmund Editor", "edmund@example.org", "another long passphrase 8",
                        "another long passphrase 8", role_key="ArrowRight")
    expect(editor_page).to_have_url(re.compile(r"/auth/standing$"))
    expect(editor_page.get_by_role("status")).to_contain_text("waiting for an admin's approval")
    with live.app.app_context():
        assert db.session.scalar(select(User.role).where(User.email == "edmund@example.org")) == "editor"

    admin_page = browser.new_page()
    log_in_by_keyboard(admin_page, admin)
    admin_page.locator("#nav").get_by_role("link", name="Approvals").click()
    expect(admin_page.get_by_role("heading", name="Approvals", exact=True)).to_be_visible()
    for email in ("ada@example.org", "edmund@example.org"):
        expect(admin_page.locator("tr", has_text=email)).to_be_visible()
    browser.shoot(admin_page, "approval-queue")
    admin_page.locator("tr", has_text="ada@example.org").get_by_role("button", name="Approve").click()
    expect(admin_page.get_by_role("alert")).to_contain_text("Ada Sponsor was approved.")
    admin_page.locator("tr", has_text="edmund@example.org").get_by_role("button", name="Approve").click()
    expect(admin_page.get_by_role("alert")).to_contain_text("Edmund Editor was approved.")
    expect(admin_page.get_by_text("No account is waiting for approval.")).to_be_visible()
    browser.shoot(admin_page, "approval-queue-empty")

    with live.app.app_context():
        statuses = dict(db.session.execute(
            select(User.email, User.status).where(User.email.in_(["ada@example.org", "edmund@example.org"]))).all())
    assert statuses == {"ada@example.org": "approved", "edmund@example.org": "approved"}

    # "Come back and reload this page later": now it leads to their own area.
    sponsor_page.reload()
    expect(sponsor_page.get_by_role("heading", name="Your documents", exact=True)).to_be_visible()
    editor_page.reload()
    expect(editor_page.get_by_role("heading", name="Documents assigned to you", exact=True)).to_be_visible()


def test_a_sponsor_writes_a_document_and_watches_its_autodocs_being_written(live, browser):
    sponsor = live.add_user("sponsor", name="Ada Sponsor")
    live.add_user("editor", name="Alan Other")  # listed first: the sponsor must choose
    editor = live.add_user("editor", name="Rosalind Editor")
    page = browser.new_page()
    log_in_by_keyboard(page, sponsor)
    expect(page.get_by_role("heading", name="Your documents", exact=True)).to_be_visible()

    live.writer.hold()
    tab_to(page, page.locator("#nav").get_by_role("link", name="New document"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New document", exact=True)).to_be_visible()
    # Saved empty: the title says what is missing.
    tab_to(page, page.get_by_role("button", name="Save document"))
    page.keyboard.press("Enter")
    expect_error_next_to(page.get_by_label("Title"), "Title is required.")
    browser.shoot(page, "new-document-errors")

    tab_to(page, page.get_by_label("Title"))
    page.keyboard.type("Budget plan")
    tab(page, page.get_by_label("Body"))
    page.keyboard.type("The committee reviewed the budget and approved it for the next year.\nThe project started in")
    tab(page, page.get_by_label("Editor"))
    page.keyboard.type("Rosalind")  # a closed select picks the option typed
    expect(page.get_by_label("Editor")).to_have_value(str(editor.id))
    tab(page, page.get_by_role("button", name="Save document"))
    page.keyboard.press("Enter")

    expect(page.get_by_role("alert")).to_contain_text("Document saved. Its autodoc is queued.")
    first = page.locator("#revision-1")
    expect(first.locator(".card-header .autodoc-status")).to_have_text("queued")
    expect(first.locator(".autodoc-queued")).to_contain_text("Queued: number 1 in the queue")
    mark_document(page)
    browser.shoot(page, "autodoc-queued")

    live.writer.let_claim()
    expect(first.locator(".autodoc")).to_contain_text("Writing… this page updates by itself.", timeout=LIVE_UPDATE_MS)
    expect(first.locator(".card-header .autodoc-status")).to_have_text("running")
    browser.shoot(page, "autodoc-writing")

    live.writer.release()
    expect(first.locator(".autodoc .autodoc-status")).to_have_text("done", timeout=LIVE_UPDATE_MS)
    expect(first.locator(".autodoc-prompt")).to_contain_text("The project started in")
    expect(first.locator(".card-header .autodoc-status")).to_have_text("done")
    assert still_same_document(page), "the page was reloaded; it should have updated by itself"
    browser.shoot(page, "autodoc-done")

    # A second tab opens the editor now, and is left behind while the first one saves.
    document_url = page.url
    stale_tab = page.context.new_page()
    stale_tab.goto(document_url.split("#")[0] + "/edit")
    expect(stale_tab.get_by_label("Body")).to_have_value(re.compile("approved it for the next year"))

    page.get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("Body").fill("The committee reviewed the new budget and approved it.\nThe project started in")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Document saved as version 2. Its autodoc is queued.")
    second = page.locator("#revision-2")
    expect(second.locator(".autodoc .autodoc-status")).to_have_text("done", timeout=LIVE_UPDATE_MS)
    expect(second.locator(".autodoc-prompt")).to_contain_text("The project started in")
    browser.shoot(page, "second-autodoc-done")

    kept = "My change from the other tab, which must not be lost."
    stale_tab.get_by_label("Body").fill(kept)
    browser.watch.expect_failure(stale_tab.url, 409)
    stale_tab.get_by_role("button", name="Save").click()
    expect(stale_tab.locator(".edit-conflict")).to_contain_text(
        "This document was changed since you opened it: it is now at version 2. Your text is kept below")
    expect(stale_tab.get_by_label("Body")).to_have_value(kept)
    expect(stale_tab.locator(".current-version")).to_contain_text("The committee reviewed the new budget")
    expect(stale_tab.get_by_role("button", name="Save over version 2")).to_be_visible()
    browser.shoot(stale_tab, "edit-conflict")

    with live.app.app_context():
        document = db.session.scalars(select(Document)).one()
        autodocs = db.session.execute(
            select(Revision.version, Autodoc.status).join(Autodoc.revision).order_by(Revision.version)).all()
        assert (document.version, document.retention.editor_id) == (2, editor.id)
    assert [tuple(row) for row in autodocs] == [(1, "done"), (2, "done")]


def test_an_editor_reviews_an_autodoc_and_the_sponsor_sees_the_verdict(live, browser):
    sponsor = live.add_user("sponsor", name="Ada Sponsor")
    editor = live.add_user("editor", name="Rosalind Editor")
    with live.app.app_context():
        ada = db.session.get(User, sponsor.id)
        document = make_document(ada, editor, title="Budget plan",
                                 body="The committee reviewed the budget and approved it for the next year.")
        update_document(document, 1, "Budget plan", "The committee reviewed the new budget and approved it.", ada)
        db.session.commit()
        document_id = document.id
    live.wait_until_written()

    page = log_in(browser, editor)
    # Told twice that autodocs are ready, and once that the document was given to them.
    expect(bell(page)).to_have_attribute("aria-label", "Notifications: 3 unread")
    expect(bell(page).locator(".unread-count")).to_have_text("3")
    bell(page).click()
    expect(page.locator(".notification-unread").first).to_contain_text(
        "The autodoc of “Budget plan” (version 2) is ready for your review.")
    browser.shoot(page, "editor-notifications")

    review_link = page.locator("#nav").get_by_role("link", name=re.compile("Review queue"))
    expect(review_link.locator(".review-count")).to_have_text("2")
    review_link.click()
    expect(page.locator(".review-queue tbody tr")).to_have_count(2)
    browser.shoot(page, "review-queue")
    page.locator(".review-queue tr", has=page.get_by_role("cell", name="2", exact=True)) \
        .get_by_role("link", name="Review").click()

    expect(page.get_by_role("heading", name="Review: Budget plan", exact=True)).to_be_visible()
    expect(page.locator(".revision-body-diff ins")).to_have_text(["new", "it."])
    expect(page.locator(".revision-body-diff del")).to_have_text(["it for the next year."])
    browser.shoot(page, "review-with-diff")

    # Requesting changes needs a comment: the form says so next to it.
    page.get_by_role("radio", name="Request changes").check()
    page.get_by_role("button", name="Save verdict").click()
    expect_error_next_to(page.get_by_label(re.compile("^Comment")), "a comment is required to request changes")
    comment = "Say which budget: the new one has no figures yet."
    page.get_by_label(re.compile("^Comment")).fill(comment)
    page.get_by_role("button", name="Save verdict").click()
    expect(page.get_by_role("alert")).to_contain_text("Verdict saved on “Budget plan” version 2: changes requested.")

    sponsor_page = log_in(browser, sponsor)
    expect(bell(sponsor_page)).to_have_attribute("aria-label", "Notifications: 1 unread")
    bell(sponsor_page).click()
    notice = sponsor_page.locator(".notification-unread", has_text="Rosalind Editor asked for changes to the autodoc")
    notice.get_by_role("link", name="Open").click()
    expect(sponsor_page).to_have_url(re.compile(rf"/sponsor/documents/{document_id}#autodoc-\d+$"))
    verdict = sponsor_page.locator("#revision-2 .verdict")
    expect(verdict.locator(".verdict-badge")).to_have_text("Changes requested")
    expect(verdict).to_contain_text("by Rosalind Editor")
    expect(verdict.locator(".verdict-comment")).to_have_text(comment)
    browser.shoot(sponsor_page, "sponsor-sees-verdict")


def test_a_suspended_sponsor_is_sent_to_the_suspended_page_on_the_next_click(live, browser):
    sponsor = live.add_user("sponsor", name="Ada Sponsor")
    admin = live.add_user("admin")
    sponsor_page = log_in(browser, sponsor)
    expect(sponsor_page.get_by_role("heading", name="Your documents", exact=True)).to_be_visible()

    admin_page = log_in(browser, admin)
    admin_page.locator("#nav").get_by_role("link", name="Users").click()
    row = admin_page.locator("tr", has_text=sponsor.email)
    row.locator("summary", has_text="Suspend").click()
    row.get_by_label("Reason (optional, shown to the user)").fill("Shared their account.")
    row.get_by_role("button", name="Suspend Ada Sponsor").click()
    expect(admin_page.get_by_role("alert")).to_contain_text("Ada Sponsor was suspended.")
    expect(admin_page.locator("tr", has_text=sponsor.email)).to_contain_text("suspended")
    browser.shoot(admin_page, "admin-suspended-sponsor")

    sponsor_page.locator("#nav").get_by_role("link", name="My documents").click()
    expect(sponsor_page).to_have_url(re.compile(r"/auth/standing$"))
    expect(sponsor_page.get_by_role("status")).to_contain_text("Your account was suspended for this reason:")
    expect(sponsor_page.get_by_role("status")).to_contain_text("Shared their account.")
    expect(sponsor_page.get_by_role("button", name="Log out")).to_have_count(0)
    browser.shoot(sponsor_page, "sponsor-suspended")
    with live.app.app_context():
        assert db.session.get(User, sponsor.id).status == "suspended"


# --- across the pages ---------------------------------------------------------------------

def test_the_main_pages_fit_a_phone_and_the_menu_opens(live, browser):
    sponsor = live.add_user("sponsor", name="Ada Sponsor")
    editor = live.add_user("editor", name="Rosalind Editor")
    admin = live.add_user("admin")
    live.add_user("editor", status="pending", name="Someone Waiting", organization="An organization with a long name")
    with live.app.app_context():
        ada = db.session.get(User, sponsor.id)
        document = make_document(ada, editor, title="Findings of the spring survey, with every appendix",
                                 body="The results are at https://example.org/surveys/2024/spring/results-with-all-the-tables.csv")
        update_document(document, 1, document.title, "The results of the study show that the method works.", ada)
        db.session.commit()
        document_id = document.id
        autodoc_id = db.session.scalars(select(Autodoc.id).order_by(Autodoc.id.desc())).first()
    live.wait_until_written()

    visitor = browser.new_page(viewport=PHONE, mobile=True)
    for path in ("/", "/auth/login", "/auth/signup"):
        visitor.goto(path)
        expect_fits(visitor)

    page = log_in(browser, sponsor, viewport=PHONE, mobile=True)
    nav_link = page.locator("#nav").get_by_role("link", name="My documents")
    toggler = page.get_by_role("button", name="Toggle navigation")
    expect(nav_link).to_be_hidden()
    toggler.click()
    expect(toggler).to_have_attribute("aria-expanded", "true")
    browser.shoot(page, "phone-menu-open")
    nav_link.click()
    expect(page.get_by_role("heading", name="My documents", exact=True)).to_be_visible()

    pages = {
        sponsor: ["/sponsor/", "/sponsor/documents", f"/sponsor/documents/{document_id}",
                  f"/sponsor/documents/{document_id}/edit", "/sponsor/documents/new", "/notifications/"],
        editor: ["/editor/", "/editor/documents", f"/editor/documents/{document_id}", "/editor/reviews",
                 f"/editor/autodocs/{autodoc_id}/review"],
        admin: ["/admin/", "/admin/approvals", "/admin/users", "/admin/documents", f"/admin/documents/{document_id}",
                f"/admin/autodocs/{autodoc_id}", "/admin/audit"],
    }
    for account, paths in pages.items():
        if account is not sponsor:
            page = log_in(browser, account, viewport=PHONE, mobile=True)
        for path in paths:
            assert page.goto(path).status == 200, path
            expect_fits(page)
            browser.shoot(page, "phone" + path.replace("/", "-").rstrip("-"))


def test_a_csp_violation_fails_the_browser_tests(live, browser):
    """The watch over the pages is what makes the journeys' "no console error" true."""
    page = browser.new_page()
    page.goto("/auth/login")
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "document.title = 'inline code ran';";
        document.body.append(script);
    }""")
    expect(page).to_have_title(re.compile("Log in"))
    page.wait_for_timeout(200)  # the violation's report reaches Python asynchronously
    problems, browser.watch.problems[:] = list(browser.watch.problems), []
    assert any(problem.startswith("CSP violation on") and "script-src" in problem for problem in problems), problems
    assert any(problem.startswith("console error on") for problem in problems), problems
