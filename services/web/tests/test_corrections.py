"""Corrections: an editor who sends an autodoc back or rejects it may write how it should
have read. The correction is kept with that verdict, refused when it is empty, unchanged,
too long or given with an approval (pages, service and API alike), and shown to the
sponsor — and on every page that shows the verdict — as a word diff against the writer's text."""
import re
from html import unescape

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import AuditEvent, User, Verdict
from srcflask.services import reviews
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, write_autodocs
from .helpers import XSS, XSS_ESCAPED, html
from .test_api import api, assert_error, people  # noqa: F401  (fixtures)

WRITTEN = " and then it rained all day."
CORRECTED = " and then the sun came out."


@pytest.fixture
def review(app, login_as):
    """(editor's browser, sponsor's browser, document id, autodoc id): a written autodoc
    waiting for the editor's verdict."""
    browser, editor = login_as("editor", name="Eve Editor")
    sponsor_browser, sponsor = login_as("sponsor", name="Sam Sponsor")
    with app.app_context():
        document = make_document(db.session.get_one(User, sponsor.id), db.session.get_one(User, editor.id),
                                 title="Plan", body="The plan is simple")
        (autodoc_id,) = write_autodocs(WRITTEN)
        return browser, sponsor_browser, document.id, autodoc_id


def post_verdict(browser, autodoc_id, decision="request_changes", comment="Say what happened next.", **fields):
    return browser.post(f"/editor/autodocs/{autodoc_id}/review", {"decision": decision, "comment": comment, **fields})


def verdicts(app, autodoc_id):
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Verdict.decision, Verdict.correction, Verdict.current).where(Verdict.autodoc_id == autodoc_id)
            .order_by(Verdict.id))]


def textarea(page, name):
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>\r?\n?(.*?)</textarea>', page, re.S)
    assert match, f"no {name} textarea"
    return unescape(match.group(1))


def test_the_form_offers_a_correction_prefilled_with_the_writers_text(review):
    browser, _, _, autodoc_id = review
    page = html(browser.get(f"/editor/autodocs/{autodoc_id}/review"))
    assert re.search(r'<details class="mb-3 correction-disclosure">\s*'
                     r'<summary>Write how it should have read</summary>', page)
    assert textarea(page, "correction") == WRITTEN
    assert re.search(r'<input class="form-check-input" id="correct" name="correct" type="checkbox" value="y">', page)


def test_a_correction_is_kept_with_the_verdict_audited_and_shown_to_the_sponsor_as_a_word_diff(app, review, login_as):
    browser, sponsor_browser, document_id, autodoc_id = review
    response = post_verdict(browser, autodoc_id, "reject", correct="y", correction=CORRECTED + "\r\nThe end.")
    assert response.status_code == 302

    # Kept as written, its leading space too (it joins the prompt), line breaks as "\n".
    assert verdicts(app, autodoc_id) == [("reject", CORRECTED + "\nThe end.", True)]
    with app.app_context():
        details = db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "verdict.reject"))
    assert details["has_correction"] is True

    expected_diff = ('<div class="doc-body border rounded p-2 diff"> and then <del>it rained all day.</del>'
                     '<ins>the sun came out.\nThe end.</ins></div>')
    sponsor_page = html(sponsor_browser.get(f"/sponsor/documents/{document_id}"))
    section = re.search(rf'id="autodoc-{autodoc_id}"(.*?)</section>', sponsor_page, re.S).group(1)
    assert "How it should have read: the writer's words the editor took out are struck through" in unescape(section)
    assert expected_diff in section
    # The same diff in the verdict's history on the editor's and the admin's review pages.
    assert expected_diff in html(browser.get(f"/editor/autodocs/{autodoc_id}/review"))
    admin_browser, _ = login_as("admin")
    assert expected_diff in html(admin_browser.get(f"/admin/autodocs/{autodoc_id}"))


def test_the_correction_counts_only_while_its_box_is_ticked(app, review):
    browser, _, _, autodoc_id = review
    assert post_verdict(browser, autodoc_id, correction=CORRECTED).status_code == 302
    assert verdicts(app, autodoc_id) == [("request_changes", None, True)]
    with app.app_context():
        details = db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "verdict.request_changes"))
    assert details["has_correction"] is False


@pytest.mark.parametrize("decision, correction, message", [
    ("request_changes", "", "The correction is empty"),
    ("reject", "  \r\n\t ", "The correction is empty"),
    ("request_changes", WRITTEN, "The correction is the writer's text unchanged"),
    ("reject", "\r\n  " + WRITTEN.strip() + "  \r\n", "The correction is the writer's text unchanged"),
    ("request_changes", "x" * 101, "The correction is too long (101 characters; at most 100)."),
    ("approve", CORRECTED, "A correction goes with requesting changes or rejecting"),
])
def test_a_bad_correction_is_a_form_error_that_keeps_everything_typed(app, review, monkeypatch, decision, correction,
                                                                      message):
    monkeypatch.setitem(app.config, "DOCUMENT_BODY_MAX_CHARS", 100)
    browser, _, _, autodoc_id = review
    comment = f"My comment {XSS}"
    response = post_verdict(browser, autodoc_id, decision, comment, correct="y", correction=correction)

    assert response.status_code == 200
    page = html(response)
    error = re.search(r'<div id="correction-errors" class="invalid-feedback d-block">([^<]*)</div>', page).group(1)
    assert unescape(error).startswith(message)
    assert 'aria-describedby="correction-errors"' in page
    assert '<details class="mb-3 correction-disclosure" open>' in page
    assert '<input checked class="form-check-input" id="correct" name="correct" type="checkbox" value="y">' in page
    assert textarea(page, "correction") == correction.replace("\r\n", "\n")
    assert textarea(page, "comment") == comment
    assert XSS not in page and XSS_ESCAPED in page
    assert verdicts(app, autodoc_id) == []


def test_the_service_holds_the_same_rules(app, review):
    _, _, _, autodoc_id = review
    with app.app_context():
        autodoc = db.session.get(Autodoc, autodoc_id)
        editor = db.session.get_one(User, autodoc.revision.document.retention.editor_id)
        for decision, correction in [("approve", CORRECTED), ("reject", " "), ("reject", WRITTEN + "\n")]:
            with pytest.raises(reviews.InvalidCorrection):
                reviews.give_verdict(autodoc, editor, decision, "Why.", correction)
        assert reviews.give_verdict(autodoc, editor, "reject", "Why.", CORRECTED).correction == CORRECTED
        db.session.commit()
    assert verdicts(app, autodoc_id) == [("reject", CORRECTED, True)]


def test_the_api_takes_and_returns_a_correction_with_the_pages_rules(app, api, people):  # noqa: F811
    make_document(people["owner"], people["editor"])
    (autodoc_id,) = write_autodocs(WRITTEN)
    # The requests share the test's app context (and session, which does not expire on
    # commit): forget the queued autodoc it holds, as a new request's session would.
    db.session.expire_all()
    path = f"/api/v1/autodocs/{autodoc_id}/verdicts"
    token = people["editor_token"]
    for body, message in [
        ({"decision": "reject", "comment": "Why.", "correction": "  "}, "The correction is empty"),
        ({"decision": "reject", "comment": "Why.", "correction": WRITTEN},
         "The correction is the writer's text unchanged"),
        ({"decision": "approve", "correction": CORRECTED}, "A correction goes with requesting changes or rejecting"),
        ({"decision": "reject", "comment": "Why.", "correction": "x" * (app.config["DOCUMENT_BODY_MAX_CHARS"] + 1)},
         "The correction is too long"),
    ]:
        error = assert_error(api("POST", path, token, json=body), 422, "validation_error")
        assert error["details"]["json"]["correction"][0].startswith(message)
    assert db.session.scalar(select(Verdict.id)) is None

    plain = api("POST", path, token, json={"decision": "request_changes", "comment": "Why.", "correction": None})
    assert plain.status_code == 201 and plain.get_json()["correction"] is None
    # Line breaks are kept as the review page keeps them.
    corrected = api("POST", path, token, json={"decision": "reject", "comment": "Why.", "correction": CORRECTED + "\r\nEnd."})
    assert corrected.status_code == 201 and corrected.get_json()["correction"] == CORRECTED + "\nEnd."
    db.session.expire_all()
    assert verdicts(app, autodoc_id) == [("request_changes", None, False), ("reject", CORRECTED + "\nEnd.", True)]
