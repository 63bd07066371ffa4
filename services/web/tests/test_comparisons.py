"""Blind comparisons on the editor's review page: the autodoc and a candidate's shadow
draft as Draft A and Draft B in a random order, with nothing on the page that tells them
apart; the choice stored once per editor and pair (twice posted, at once or one after the
other, two editors), refused when the form was changed or is too old (400), not the
editor's (404) or the candidate is gone (409); then the models named."""
import re
import threading
from html import unescape

import pytest
from sqlalchemy import func, select

from srcflask.extensions import db
from srcflask.models import AuditEvent, Comparison, Document, ShadowDraft, User
from srcflask.services import comparisons, registry, tokens
from srcflask.services.documents import reassign_editor, update_document
from srcflask.static.data.processeddata.models import Autodoc

from .factories import DEFAULT_PASSWORD, make_document, make_shadow_pair, make_user, write_autodocs
from .helpers import html
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

BASELINE_TEXT = " and the baseline wrote this sentence."
CANDIDATE_TEXT = " and the candidate wrote another one."
# A shadow draft id no other number on the page can be mistaken for.
DRAFT_ID = 987654
DRAFT = re.compile(r'<h3 class="h6" id="draft-(\d)-heading">Draft ([AB])[^<]*(?:<span[^>]*>[^<]*</span>\s*)*</h3>\s*'
                   r'<div class="doc-body">([^<]*)</div>')


@pytest.fixture
def models(app, tiny_model_dir):  # noqa: F811
    """Two registered models with names found nowhere else: "zebra" (the first, active)
    and "quagga" (a candidate)."""
    with app.app_context():
        active = registry.register_folder(tiny_model_dir, kind="seed", name="zebra")
        candidate = registry.register_folder(tiny_model_dir, kind="seed", name="quagga")
        db.session.commit()
        return {"active": active.id, "candidate": candidate.id}


def pair_for(app, sponsor_id, editor_id, models, title="Plan", draft_id=DRAFT_ID):
    """A document of the editor whose autodoc (by the active model) has a written shadow
    draft (by the candidate); the autodoc's id."""
    with app.app_context():
        make_document(db.session.get_one(User, sponsor_id), db.session.get_one(User, editor_id), title=title,
                      body="The plan is simple")
        (autodoc_id,) = write_autodocs(BASELINE_TEXT, model_id=models["active"])
        make_shadow_pair(autodoc_id, models["active"], models["candidate"], CANDIDATE_TEXT, id=draft_id)
        return autodoc_id


@pytest.fixture
def world(app, login_as, models):
    """(editor's browser, editor, sponsor, autodoc id) of a pair waiting for the editor's choice."""
    browser, editor = login_as("editor", name="Eve Editor")
    with app.app_context():
        sponsor = make_user("sponsor", name="Sam Sponsor")
    return browser, editor, sponsor, pair_for(app, sponsor.id, editor.id, models)


def review_page(browser, autodoc_id):
    response = browser.get(f"/editor/autodocs/{autodoc_id}/review")
    assert response.status_code == 200
    return html(response)


def drafts(page):
    """[(letter, text)] of the page's comparison, in the order shown."""
    return [(letter, unescape(text)) for _, letter, text in DRAFT.findall(page)]


def token_of(page):
    return unescape(re.search(r'<input type="hidden" name="token" value="([^"]+)">', page).group(1))


def choose(browser, autodoc_id, token, choice):
    return browser.post(f"/editor/autodocs/{autodoc_id}/comparison", {"token": token, "choice": choice})


def rows(app):
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Comparison.editor_id, Comparison.winner, Comparison.candidate_shown_first).order_by(Comparison.id))]


# --- blind before the choice ------------------------------------------------------------------

def test_the_order_is_random_and_nothing_on_the_page_tells_the_drafts_apart(app, world, models):
    browser, _, _, autodoc_id = world
    orders, payloads = set(), []
    for _ in range(40):
        page = review_page(browser, autodoc_id)
        shown = drafts(page)
        assert [letter for letter, _ in shown] == ["A", "B"]
        orders.add(tuple(text for _, text in shown))
        # No model name, no draft id, and the autodoc's own text only as one of the drafts:
        # neither its column, nor its diff, nor the verdict form's correction shows it.
        lowered = page.lower()
        assert "zebra" not in lowered and "quagga" not in lowered and str(DRAFT_ID) not in page
        assert page.count(BASELINE_TEXT.strip()) == 1 and page.count(CANDIDATE_TEXT.strip()) == 1
        assert 'name="correction"' not in page and "It is one of the two drafts of the blind comparison" in page
        with app.app_context():
            payloads.append(comparisons.TOKENS.payload(token_of(page)))
    assert orders == {(CANDIDATE_TEXT, BASELINE_TEXT), (BASELINE_TEXT, CANDIDATE_TEXT)}
    # What a token carries in the clear is the same whatever the order, but its random nonce.
    assert {tuple(payload[:3]) for payload in payloads} == {(DRAFT_ID, autodoc_id, world[1].id)}
    assert len({payload[3] for payload in payloads}) == len(payloads)


def test_a_verdict_sent_back_with_errors_keeps_its_form_in_front_of_the_comparison(app, world):
    """A draft written between the page's load and the verdict's post hides nothing typed."""
    browser, _, _, autodoc_id = world
    response = browser.post(f"/editor/autodocs/{autodoc_id}/review",
                            {"decision": "reject", "comment": "", "correct": "y", "correction": " Typed words."})
    page = html(response)
    assert response.status_code == 200 and "a comment is required" in page
    assert drafts(page) == [] and " Typed words.</textarea>" in page
    assert drafts(review_page(browser, autodoc_id)) != []


@pytest.mark.parametrize("choice", comparisons.CHOICES)
def test_the_choice_is_stored_then_the_models_are_named(app, world, models, choice):
    browser, editor, _, autodoc_id = world
    page = review_page(browser, autodoc_id)
    candidate_first = drafts(page)[0][1] == CANDIDATE_TEXT

    response = choose(browser, autodoc_id, token_of(page), choice)

    assert response.status_code == 302
    assert response.headers["Location"] == f"/editor/autodocs/{autodoc_id}/review#comparison"
    winner = "tie" if choice == "same" else "candidate" if (choice == "first") == candidate_first else "baseline"
    with app.app_context():
        row = db.session.scalar(select(Comparison))
        revision_id = db.session.get(Autodoc, autodoc_id).revision_id
        audited = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "comparison.choose"))
    assert (row.autodoc_id, row.shadow_draft_id, row.revision_id, row.editor_id) == \
        (autodoc_id, DRAFT_ID, revision_id, editor.id)
    assert (row.candidate_model_id, row.baseline_model_id) == (models["candidate"], models["active"])
    assert (row.winner, row.candidate_shown_first) == (winner, candidate_first)
    assert (audited.actor_id, audited.target_id, audited.details["winner"]) == (editor.id, autodoc_id, winner)

    revealed = html(browser.follow(response))
    assert "Your choice is saved. Here is which draft was which." in revealed
    said = {"first": "Draft A reads better", "second": "Draft B reads better", "same": "they read about the same"}
    assert f"You chose: <strong>{said[choice]}</strong>." in revealed
    names = re.findall(r'Draft ([AB]): <span class="comparison-model">([^<]+)</span>', revealed)
    shown = [("quagga v1", "zebra v1"), ("zebra v1", "quagga v1")][0 if candidate_first else 1]
    assert names == list(zip("AB", shown))
    assert [text for _, text in drafts(revealed)] == [text for _, text in drafts(page)]
    # Now the autodoc's text shows, and the verdict form, its correction starting as that text.
    assert 'name="correction"' in revealed and 'name="token"' not in revealed
    assert f'<mark class="autodoc-continuation">{BASELINE_TEXT}</mark>' in revealed


# --- one clear outcome --------------------------------------------------------------------------

def test_a_choice_posted_twice_counts_once_and_the_first_stands(app, world):
    browser, editor, _, autodoc_id = world
    token = token_of(review_page(browser, autodoc_id))
    assert choose(browser, autodoc_id, token, "same").status_code == 302
    again = choose(browser, autodoc_id, token, "first")
    assert again.status_code == 302
    assert "You had already chosen on this pair: your first choice stands." in html(browser.follow(again))
    assert rows(app) == [(editor.id, "tie", rows(app)[0][2])]
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(AuditEvent.action == "comparison.choose")) == 1


def test_two_posts_at_the_same_moment_record_one_choice(app, world, make_client):
    browser, editor, _, autodoc_id = world
    token = token_of(review_page(browser, autodoc_id))
    cookie = browser.raw.get_cookie(app.config["SESSION_COOKIE_NAME"])
    csrf_token = browser.csrf_token()
    start, answers = threading.Barrier(4), []

    def post():
        twin = make_client()
        twin.raw.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie.value)
        start.wait()
        answers.append(twin.post(f"/editor/autodocs/{autodoc_id}/comparison",
                                 {"token": token, "choice": "first", "csrf_token": csrf_token}).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [302] * 4
    assert len(rows(app)) == 1


def test_two_editors_on_one_pair_count_once_each(app, world, login_as):
    browser, first_editor, sponsor, autodoc_id = world
    first_token = token_of(review_page(browser, autodoc_id))
    assert choose(browser, autodoc_id, first_token, "first").status_code == 302
    second_browser, second_editor = login_as("editor", name="Ed Second")
    with app.app_context():
        document_id = db.session.get(Autodoc, autodoc_id).revision.document_id
        reassign_editor(db.session.get(Document, document_id), second_editor.id, db.session.get(User, sponsor.id))
        db.session.commit()

    # The new editor judges the same pair blind; the old one may no longer see it.
    page = review_page(second_browser, autodoc_id)
    assert len(drafts(page)) == 2 and "quagga" not in page
    assert choose(second_browser, autodoc_id, token_of(page), "second").status_code == 302
    assert [editor_id for editor_id, *_ in rows(app)] == [first_editor.id, second_editor.id]
    assert choose(browser, autodoc_id, first_token, "first").status_code == 404
    assert len(rows(app)) == 2


# --- refusals -----------------------------------------------------------------------------------

def test_a_changed_or_too_old_form_or_an_unknown_choice_is_400_and_offers_the_pair_again(app, world, monkeypatch):
    browser, _, _, autodoc_id = world
    token = token_of(review_page(browser, autodoc_id))
    for sent, choice, message in [
        (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "first", "This comparison form was changed"),
        ("", "first", "This comparison form was changed"),
        (token, "both", "Choose Draft A, Draft B or “About the same”."),
    ]:
        response = choose(browser, autodoc_id, sent, choice)
        assert response.status_code == 400
        page = unescape(html(response))
        assert message in page and len(drafts(html(response))) == 2
    monkeypatch.setitem(app.config, "BLIND_CHOICE_MAX_AGE_SECONDS", -1)
    response = choose(browser, autodoc_id, token, "first")
    assert response.status_code == 400 and "This comparison form is too old" in html(response)
    assert rows(app) == []


def test_a_pair_the_editor_may_not_judge_is_404(app, world, models, login_as):
    browser, editor, sponsor, autodoc_id = world
    other = pair_for(app, sponsor.id, editor.id, models, title="Other plan", draft_id=DRAFT_ID + 1)
    token = token_of(review_page(browser, autodoc_id))
    # A token of another of their autodocs, and their own token on someone else's document.
    assert choose(browser, other, token, "first").status_code == 404
    stranger, _ = login_as("editor")
    assert choose(stranger, autodoc_id, token, "first").status_code == 404
    assert rows(app) == []


@pytest.mark.parametrize("how", ["promoted", "retired"])
def test_a_pair_whose_candidate_is_gone_is_closed_409(app, world, models, how):
    browser, _, _, autodoc_id = world
    token = token_of(review_page(browser, autodoc_id))
    with app.app_context():
        if how == "promoted":
            registry.promote(models["candidate"], make_user("admin"), reason="Tests.", override=True)
        else:
            db.session.get(registry.WriterModel, models["candidate"]).state = "retired"
        db.session.commit()

    response = choose(browser, autodoc_id, token, "first")

    assert response.status_code == 409
    assert "This comparison is closed" in unescape(html(response))
    assert rows(app) == []
    # The review page is the ordinary one again: the autodoc's text and the verdict form.
    page = review_page(browser, autodoc_id)
    assert drafts(page) == [] and 'name="correction"' in page and BASELINE_TEXT.strip() in page


@pytest.mark.parametrize("change", ["queued", "same_model", "no_model"])
def test_no_comparison_without_a_written_draft_of_another_model(app, world, models, change):
    browser, _, _, autodoc_id = world
    with app.app_context():
        draft = db.session.get(ShadowDraft, DRAFT_ID)
        if change == "queued":
            draft.status, draft.continuation = "queued", None
        elif change == "same_model":
            draft.model_id = models["active"]
            db.session.get(Autodoc, autodoc_id).model_id = models["active"]
        else:
            db.session.get(Autodoc, autodoc_id).model_id = None
        db.session.commit()
    page = review_page(browser, autodoc_id)
    assert drafts(page) == [] and 'name="correction"' in page


def test_the_admins_read_only_review_page_has_no_comparison(app, world, login_as):
    admin, _ = login_as("admin")
    page = html(admin.get(f"/admin/autodocs/{world[3]}"))
    assert drafts(page) == [] and BASELINE_TEXT.strip() in page and CANDIDATE_TEXT.strip() not in page


# --- the autodoc's text elsewhere while the pair waits --------------------------------------------
# Read on the document page, the live status or the API before the review page, the autodoc's
# text would tell which draft is the autodoc: every place that shows its editor that text
# withholds it until the choice, and says where the comparison waits.

WITHHELD = "one of the two drafts of a blind comparison waiting for you"


def editor_views(browser, app, editor, autodoc_id):
    """What the editor reads of the autodoc outside its review page: the document page,
    the live status's HTML and the API's answer."""
    with app.app_context():
        document_id = db.session.get(Autodoc, autodoc_id).revision.document_id
        secret = tokens.create_token(db.session.get(User, editor.id), "script").secret
        db.session.commit()
    api = app.test_client().get(f"/api/v1/autodocs/{autodoc_id}", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200
    return {"document page": html(browser.get(f"/editor/documents/{document_id}")),
            "live status": browser.get(f"/autodocs/{autodoc_id}/status").get_json()["html"],
            "api": api.get_json()}


def test_the_editor_reads_the_autodocs_text_nowhere_until_the_choice(app, world):
    browser, editor, _, autodoc_id = world
    before = editor_views(browser, app, editor, autodoc_id)
    for place in ("document page", "live status"):
        assert BASELINE_TEXT.strip() not in before[place], place
        assert WITHHELD in before[place] and f'href="/editor/autodocs/{autodoc_id}/review"' in before[place], place
    assert (before["api"]["continuation"], before["api"]["withheld"]) == (None, True)
    assert before["api"]["prompt"] is not None  # the document's own words are no secret

    assert choose(browser, autodoc_id, token_of(review_page(browser, autodoc_id)), "same").status_code == 302
    after = editor_views(browser, app, editor, autodoc_id)
    for place in ("document page", "live status"):
        assert BASELINE_TEXT in unescape(after[place]) and WITHHELD not in after[place], place
    assert (after["api"]["continuation"], after["api"]["withheld"]) == (BASELINE_TEXT, False)


def test_the_sponsor_and_the_admin_read_the_text_while_the_editor_has_not_chosen(app, world, login_as,
                                                                                    make_client):
    _, _, sponsor, autodoc_id = world
    with app.app_context():
        document_id = db.session.get(Autodoc, autodoc_id).revision.document_id
    own = make_client()
    assert own.post("/auth/login", {"email": sponsor.email, "password": DEFAULT_PASSWORD}).status_code == 302
    admin, _ = login_as("admin")
    for browser, document_page in ((own, f"/sponsor/documents/{document_id}"),
                                   (admin, f"/admin/documents/{document_id}")):
        status = browser.get(f"/autodocs/{autodoc_id}/status").get_json()["html"]
        for page in (html(browser.get(document_page)), status):
            assert BASELINE_TEXT in unescape(page) and WITHHELD not in page


def test_the_next_versions_review_page_shows_no_diff_against_a_withheld_text(app, world, models):
    browser, editor, sponsor, autodoc_id = world
    with app.app_context():
        document = db.session.get(Autodoc, autodoc_id).revision.document
        update_document(document, document.version, document.title, "The plan is simple, and cheap",
                        db.session.get(User, sponsor.id))
        db.session.commit()
        (next_id,) = write_autodocs(" and the next version's text.", model_id=models["active"])
    page = review_page(browser, next_id)
    assert BASELINE_TEXT.strip() not in page and "autodoc-diff" not in page and WITHHELD in page

    choose(browser, autodoc_id, token_of(review_page(browser, autodoc_id)), "first")
    assert "autodoc-diff" in review_page(browser, next_id)
