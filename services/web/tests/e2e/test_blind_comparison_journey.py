"""The blind comparison in a real browser: an editor opens a review page whose autodoc has
a candidate's shadow draft, sees Draft A and Draft B in an order that changes from one
visit to the next with nothing in the page (its whole HTML, not only what shows) naming a
model or the draft, picks one, and only then sees which model wrote which; the choice is
stored. Then, by keyboard alone, they reject the autodoc with a correction, which the
sponsor sees as a word diff."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import Comparison, User, Verdict
from srcflask.services import autodoc_queue, registry

from ..factories import make_document, make_shadow_pair, make_user, write_autodocs
from ..tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)
from .browser import PHONE
from .test_journeys import log_in

pytestmark = pytest.mark.e2e

BASELINE_TEXT = " and the committee approved the budget."
CANDIDATE_TEXT = " and the results support the hypothesis."
DRAFT_ID = 987654
VISITS = 30  # both orders turn up in 30 visits but once in 2**29 runs


def make_pair(live, monkeypatch, model_dir, editor, owner=None, **fields):
    """A document of `editor` (and `owner`, or a new sponsor) whose autodoc, by the active
    model "zebra", has a written shadow draft by the candidate "quagga"; the autodoc's id.
    Written here, not by the app's writer: it is parked before its next claim, and the real
    claim stands in for the hold meanwhile."""
    live.writer.park()
    with live.app.app_context(), monkeypatch.context() as patch:
        patch.setattr(autodoc_queue, "claim_jobs", live.writer._claim_jobs)
        active = registry.register_folder(model_dir, kind="seed", name="zebra")
        candidate = registry.register_folder(model_dir, kind="seed", name="quagga")
        db.session.commit()
        sponsor = db.session.get(User, owner.id) if owner else make_user("sponsor")
        make_document(sponsor, db.session.get(User, editor.id), title="Budget plan",
                      body="The committee reviewed the budget")
        (autodoc_id,) = write_autodocs(BASELINE_TEXT, model_id=active.id)
        make_shadow_pair(autodoc_id, active.id, candidate.id, CANDIDATE_TEXT, **fields)
        return autodoc_id


def test_an_editor_compares_two_drafts_blind_then_sees_the_models(live, browser, monkeypatch,
                                                                   tiny_model_dir):  # noqa: F811
    editor = live.add_user("editor", name="Eve Editor")
    owner = live.add_user("sponsor", name="Sam Sponsor")
    autodoc_id = make_pair(live, monkeypatch, tiny_model_dir, editor, owner, id=DRAFT_ID)
    review = f"/editor/autodocs/{autodoc_id}/review"

    page = log_in(browser, editor)
    firsts = set()
    for _ in range(VISITS):
        page.goto(review)
        drafts = page.locator(".comparison-draft .doc-body")
        expect(drafts).to_have_count(2)
        firsts.add(drafts.first.inner_text().strip())
        source = page.content().lower()
        assert "zebra" not in source and "quagga" not in source and str(DRAFT_ID) not in source
        expect(page.locator(".comparison-model")).to_have_count(0)
        expect(page.get_by_role("button", name="Save verdict")).to_have_count(0)
        if len(firsts) == 2:
            break
    assert firsts == {BASELINE_TEXT.strip(), CANDIDATE_TEXT.strip()}
    browser.shoot(page, "blind-pair")

    candidate_first = page.locator(".comparison-draft .doc-body").first.inner_text().strip() == CANDIDATE_TEXT.strip()
    page.get_by_role("button", name="A reads better").click()
    expect(page.get_by_role("alert")).to_contain_text("Your choice is saved. Here is which draft was which.")
    expect(page.locator(".comparison-choice")).to_contain_text("You chose: Draft A reads better.")
    expect(page.locator(".comparison-model")).to_have_text(
        ["quagga v1", "zebra v1"] if candidate_first else ["zebra v1", "quagga v1"])
    browser.shoot(page, "revealed")
    with live.app.app_context():
        stored = db.session.execute(select(Comparison.editor_id, Comparison.winner, Comparison.candidate_shown_first,
                                           Comparison.shadow_draft_id)).all()
    assert [tuple(row) for row in stored] == [
        (editor.id, "candidate" if candidate_first else "baseline", candidate_first, DRAFT_ID)]

    # The verdict by keyboard: the disclosure opens, the box ticks and the text is edited
    # without a script.
    page.get_by_role("radio", name="Reject").check()
    page.get_by_label(re.compile(r"^Comment")).fill("The ending is made up.")
    page.locator(".correction-disclosure summary").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Write how it should have read")).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    correction = page.get_by_label(re.compile(r"^How it should have read"))
    expect(correction).to_be_focused()
    expect(correction).to_have_value(BASELINE_TEXT)
    page.keyboard.press("Control+A")
    page.keyboard.type(" and the committee asked for a second budget.")
    page.get_by_role("button", name="Save verdict").click()
    expect(page.get_by_role("alert")).to_contain_text("Verdict saved on “Budget plan” version 1: rejected.")
    with live.app.app_context():
        assert db.session.scalar(select(Verdict.correction)) == " and the committee asked for a second budget."
    sponsor_page = log_in(browser, owner, viewport=PHONE, mobile=True)
    sponsor_page.goto("/sponsor/documents")
    sponsor_page.get_by_role("link", name="Budget plan").click()
    diff = sponsor_page.locator(".verdict-correction .diff")
    expect(diff.locator("del")).to_have_text("approved the")
    expect(diff.locator("ins")).to_have_text("asked for a second")
    browser.shoot(sponsor_page, "sponsor-sees-the-correction")


def test_the_drafts_are_side_by_side_on_a_desktop_and_stacked_on_a_phone(live, browser, monkeypatch,
                                                                         tiny_model_dir):  # noqa: F811
    editor = live.add_user("editor")
    autodoc_id = make_pair(live, monkeypatch, tiny_model_dir, editor)
    for viewport, side_by_side in [({}, True), ({"viewport": PHONE, "mobile": True}, False)]:
        page = log_in(browser, editor, **viewport)
        page.goto(f"/editor/autodocs/{autodoc_id}/review")
        first, second = (page.locator(".comparison-draft").nth(index).bounding_box() for index in (0, 1))
        if side_by_side:
            assert first["y"] == second["y"] and second["x"] >= first["x"] + first["width"]
        else:
            assert second["y"] >= first["y"] + first["height"]
        browser.shoot(page, "desktop" if side_by_side else "phone")
