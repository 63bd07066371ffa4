"""Editors review autodocs: the queue, the review page and its diffs, verdicts (comment
rules, stale autodocs, history), what sponsors and admins see of them."""
import re
from html import unescape

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from srcflask.extensions import db
from srcflask.models import Document, User, Verdict
from srcflask.services import notifications, reviews
from srcflask.services.documents import update_document
from srcflask.services.worddiff import word_diff
from srcflask.static.data.processeddata.models import Autodoc, Revision

from .auth_admin_helpers import counted_queries
from .factories import make_document, make_user, write_autodocs
from .helpers import XSS, XSS_ESCAPED, html, wrong_kept_figures


@pytest.fixture
def editor(login_as):
    """(browser, user) of the logged-in editor whose reviews these are."""
    return login_as("editor", name="Eve Editor")


@pytest.fixture
def sponsor(login_as):
    return login_as("sponsor", name="Sam Sponsor")


def new_document(app, sponsor_id, editor_id, title="Plan", body="The plan is simple."):
    with app.app_context():
        document = make_document(db.session.get_one(User, sponsor_id), db.session.get_one(User, editor_id),
                                 title=title, body=body)
        return document.id


def edit(app, document_id, body, title=None):
    with app.app_context():
        document = db.session.get_one(Document, document_id)
        update_document(document, document.version, title or document.title, body,
                        db.session.get_one(User, document.retention.sponsor_id))
        db.session.commit()


def write(app, continuation="and then it rained."):
    with app.app_context():
        return write_autodocs(continuation)


def verdict_rows(app, autodoc_id):
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Verdict.decision, Verdict.comment, Verdict.current)
            .where(Verdict.autodoc_id == autodoc_id).order_by(Verdict.id)
        )]


def give(browser, autodoc_id, decision, comment=""):
    return browser.post(f"/editor/autodocs/{autodoc_id}/review", {"decision": decision, "comment": comment})


def queue_titles(page):
    return [unescape(title) for title in re.findall(r'<td class="text-break-all">([^<]+)</td>', page)]


# --- the queue ------------------------------------------------------------------------------

def test_the_queue_holds_only_the_editors_own_written_unreviewed_autodocs(app, editor, login_as, monkeypatch):
    browser, me = editor
    other_editor, other = login_as("editor")
    with app.app_context():
        sam, sue = make_user("sponsor", name="Sam Sponsor").id, make_user("sponsor", name="Sue Sponsor").id
    first = new_document(app, sam, me.id, title="First")
    new_document(app, sue, me.id, title="Second")
    new_document(app, sam, other.id, title="Someone else's")
    write(app)
    new_document(app, sam, me.id, title="Still queued")  # not written yet: nothing to review

    page = html(browser.get("/editor/reviews"))
    assert queue_titles(page) == ["First", "Second"]  # oldest first
    assert "Sam Sponsor" in page and "Sue Sponsor" in page and "Someone else" not in page
    assert re.search(r'Review queue <span class="badge[^"]*review-count">2</span>', page)
    assert queue_titles(html(other_editor.get("/editor/reviews"))) == ["Someone else's"]

    monkeypatch.setitem(app.config, "PAGE_SIZE", 1)
    assert queue_titles(html(browser.get("/editor/reviews?page=2"))) == ["Second"]
    monkeypatch.setitem(app.config, "PAGE_SIZE", 20)

    with app.app_context():
        autodoc_id = db.session.scalar(select(Autodoc.id).join(Revision).where(Revision.document_id == first))
    give(browser, autodoc_id, "approve")
    page = html(browser.get("/editor/reviews"))
    assert queue_titles(page) == ["Second"]
    assert re.search(r'review-count">1</span>', page)


def test_the_review_badge_says_99_plus_past_its_cap(app, editor, monkeypatch):
    """The badge is a glance: past BADGE_CAP (100) it says "99+"; a cap of 3 shows it with
    four autodocs waiting, while the queue's own total stays exact."""
    browser, me = editor
    with app.app_context():
        sam = make_user("sponsor").id
    for number in range(4):
        new_document(app, sam, me.id, title=f"Doc {number}")
    write(app)
    monkeypatch.setattr(notifications, "BADGE_CAP", 5)
    assert re.search(r'review-count">4</span>', html(browser.get("/editor/reviews")))
    monkeypatch.setattr(notifications, "BADGE_CAP", 3)
    page = html(browser.get("/editor/reviews"))
    assert re.search(r'review-count">2\+</span>', page)
    assert len(queue_titles(page)) == 4  # the queue itself lists every one
    assert "4 autodocs waiting for your verdict" in page


def test_the_queue_shows_version_and_marks_stale_autodocs(app, editor, sponsor):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id, title="Report")
    write(app)
    edit(app, document_id, "A second version.")
    write(app)
    page = html(browser.get("/editor/reviews"))
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)[1:]
    assert len(rows) == 2
    assert "<td>1 " in rows[0] and "stale" in rows[0]
    assert "<td>2</td>" in rows[1] and "stale" not in rows[1]
    assert "just now" in rows[0]
    with app.app_context():  # the age is given in the largest unit that fits
        db.session.execute(update(Autodoc).where(Autodoc.id == 1).values(finished_at=func.now() - text("interval '3 hours'")))
        db.session.execute(update(Autodoc).where(Autodoc.id == 2).values(finished_at=func.now() - text("interval '2 days'")))
        db.session.commit()
    assert re.findall(r"(\d+ \w+ ago)", html(browser.get("/editor/reviews"))) == ["2 d ago", "3 h ago"]


def test_an_empty_queue_says_so(editor):
    browser, _ = editor
    page = html(browser.get("/editor/reviews"))
    assert "Nothing to review" in page and re.search(r'review-count">0</span>', page)


def test_the_queue_runs_a_constant_number_of_queries(app, editor, sponsor):
    browser, me = editor
    measured = []
    for count in (2, 12):
        for number in range(count):
            new_document(app, sponsor[1].id, me.id, title=f"Doc {number}")
        write(app)
        browser.get("/editor/reviews")
        with counted_queries(app) as statements:
            assert browser.get("/editor/reviews").status_code == 200
        measured.append(len(statements))
    assert measured[0] == measured[1] <= 4  # user, navigation counts, count, rows


# --- the review page ------------------------------------------------------------------------

def test_the_review_page_shows_the_revision_beside_the_autodoc(app, editor, sponsor):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id, title="Plan", body=f"Body {XSS}")
    (autodoc_id,) = write(app, continuation=f" then {XSS}")
    page = html(browser.get(f"/editor/autodocs/{autodoc_id}/review"))
    assert f'<div class="doc-body border rounded p-2 bg-light revision-body">Body {XSS_ESCAPED}</div>' in page
    assert (f'<span class="autodoc-prompt">Body {XSS_ESCAPED}</span>'
            f'<mark class="autodoc-continuation"> then {XSS_ESCAPED}</mark>') in page
    assert XSS not in page
    assert "This is the first version: there is nothing to compare it with." in page
    assert 'name="decision"' in page and 'name="comment"' in page
    assert f'href="/editor/documents/{document_id}"' in page


def test_the_review_page_diffs_this_version_and_its_autodoc_against_the_previous(app, editor, sponsor):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id, title="Plan", body="Der Bär schläft gut.")
    write(app, continuation="Er träumt <viel>.")
    edit(app, document_id, "Der Bär träumt gut.\nUnd isst 🍯.")
    (autodoc_id,) = write(app, continuation="Er träumt <wenig>.")
    page = html(browser.get(f"/editor/autodocs/{autodoc_id}/review"))
    body_diff = re.search(r'<div class="revision-body-diff">(.*?)</div>\s*</div>', page, re.S).group(1)
    assert body_diff == ('<div class="doc-body border rounded p-2 diff">Der Bär <del>schläft gut.</del>'
                         '<ins>träumt gut.\nUnd isst 🍯.</ins>')
    autodoc_diff = re.search(r'<div class="autodoc-diff">(.*?)</div>\s*</div>', page, re.S).group(1)
    assert autodoc_diff == ('<div class="doc-body border rounded p-2 diff">Er träumt '
                            '<del>&lt;viel&gt;.</del><ins>&lt;wenig&gt;.</ins>')
    title_diff = re.search(r'<div class="mb-2 revision-title-diff">(.*?)</div>\s*</div>', page, re.S).group(1)
    assert title_diff == '<div class="doc-body border rounded p-2 diff">Plan'


@pytest.mark.parametrize("old, new, expected", [
    ("the cat sat", "the cat sat", [("equal", "the cat sat")]),
    ("the cat sat", "the dog sat", [("equal", "the "), ("delete", "cat "), ("insert", "dog "), ("equal", "sat")]),
    ("", "new words", [("insert", "new words")]),
    ("old words", "", [("delete", "old words")]),
    ("line one\nline two", "line one\nline 2", [("equal", "line one\nline "), ("delete", "two"), ("insert", "2")]),
    ("  indented", "  indented more", [("equal", "  "), ("delete", "indented"), ("insert", "indented more")]),
    # Unicode: accented letters, a decomposed é (e + combining accent), CJK, emoji with a
    # skin tone and a ZWJ family: each stays whole inside its word.
    ("Grüße aus Köln", "Grüße aus Zürich", [("equal", "Grüße aus "), ("delete", "Köln"), ("insert", "Zürich")]),
    ("cafe\u0301 noir", "cafe\u0300 noir", [("delete", "cafe\u0301 "), ("insert", "cafe\u0300 "), ("equal", "noir")]),
    ("日本語 テキスト", "日本語 文章", [("equal", "日本語 "), ("delete", "テキスト"), ("insert", "文章")]),
    ("hi 👋🏽 👨‍👩‍👧 bye", "hi 👨‍👩‍👧 bye", [("equal", "hi "), ("delete", "👋🏽 "), ("equal", "👨‍👩‍👧 bye")]),
])
def test_word_diff_on_small_known_texts(old, new, expected):
    segments = word_diff(old, new)
    assert segments == expected
    assert "".join(text for tag, text in segments if tag != "insert") == old
    assert "".join(text for tag, text in segments if tag != "delete") == new


def test_word_diff_rebuilds_both_texts_of_a_long_edit():
    old = "".join(f"In week {week} the engine ran for 212 hours.\n" for week in range(1, 301))
    new = old.replace("week 7 the engine ran for 212", "week 7 the engine ran for 250") + "Next, a longer test."
    segments = word_diff(old, new)
    assert "".join(text for tag, text in segments if tag != "insert") == old
    assert "".join(text for tag, text in segments if tag != "delete") == new
    assert [(tag, text) for tag, text in segments if tag != "equal"] == [
        ("delete", "212 "), ("insert", "250 "), ("insert", "Next, a longer test."),
    ]


def test_a_review_page_for_an_autodoc_not_written_yet_has_no_form(app, editor, sponsor):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id)
    with app.app_context():
        autodoc_id = db.session.scalar(select(Autodoc.id).join(Revision).where(Revision.document_id == document_id))
    page = html(browser.get(f"/editor/autodocs/{autodoc_id}/review"))
    assert "Not written yet (queued)" in page and 'name="decision"' not in page
    response = give(browser, autodoc_id, "approve")
    assert response.status_code == 409
    assert "This autodoc is queued: there is no text to review yet." in html(response)
    assert verdict_rows(app, autodoc_id) == []


# --- verdicts -------------------------------------------------------------------------------

def test_approving_needs_no_comment_and_leaves_the_queue(app, editor, sponsor):
    browser, me = editor
    new_document(app, sponsor[1].id, me.id, title="Plan")
    (autodoc_id,) = write(app)
    response = give(browser, autodoc_id, "approve")
    assert response.status_code == 302 and response.headers["Location"] == "/editor/reviews"
    assert "Verdict saved on “Plan” version 1: approved." in unescape(html(browser.follow(response)))
    assert verdict_rows(app, autodoc_id) == [("approve", "", True)]


@pytest.mark.parametrize("decision", ["request_changes", "reject"])
@pytest.mark.parametrize("comment", ["", "   \n "])
def test_requesting_changes_or_rejecting_needs_a_comment(app, editor, sponsor, decision, comment):
    browser, me = editor
    new_document(app, sponsor[1].id, me.id)
    (autodoc_id,) = write(app)
    response = give(browser, autodoc_id, decision, comment)
    assert response.status_code == 200
    assert "a comment is required to request changes or to reject" in html(response)
    assert verdict_rows(app, autodoc_id) == []
    response = give(browser, autodoc_id, decision, "  The second half repeats itself.  ")
    assert response.status_code == 302
    assert verdict_rows(app, autodoc_id) == [(decision, "The second half repeats itself.", True)]


def test_an_unknown_decision_or_a_too_long_comment_is_refused(app, editor, sponsor):
    browser, me = editor
    new_document(app, sponsor[1].id, me.id)
    (autodoc_id,) = write(app)
    assert "Not a valid choice" in html(give(browser, autodoc_id, "publish", "x"))
    assert "Choose approve, request changes or reject." in html(give(browser, autodoc_id, "", "x"))
    assert "The comment is too long" in html(give(browser, autodoc_id, "reject", "x" * 5001))
    assert verdict_rows(app, autodoc_id) == []


def test_the_database_itself_refuses_a_rejection_without_a_comment_and_two_current_verdicts(app, editor, sponsor):
    browser, me = editor
    new_document(app, sponsor[1].id, me.id)
    (autodoc_id,) = write(app)
    with app.app_context():
        db.session.add(Verdict(autodoc_id=autodoc_id, editor_id=me.id, decision="reject", comment=" "))
        with pytest.raises(IntegrityError, match="ck_verdicts_comment_required"):
            db.session.flush()
        db.session.rollback()
        db.session.add_all([Verdict(autodoc_id=autodoc_id, editor_id=me.id, decision="approve") for _ in range(2)])
        with pytest.raises(IntegrityError, match="uq_verdicts_current_autodoc"):
            db.session.flush()


def test_a_new_verdict_replaces_the_current_one_and_the_history_is_kept(app, editor, sponsor):
    browser, me = editor
    new_document(app, sponsor[1].id, me.id)
    (autodoc_id,) = write(app)
    give(browser, autodoc_id, "approve")
    give(browser, autodoc_id, "request_changes", "On second thought, too short.")
    give(browser, autodoc_id, "reject", "It invents a date.")
    assert verdict_rows(app, autodoc_id) == [
        ("approve", "", False),
        ("request_changes", "On second thought, too short.", False),
        ("reject", "It invents a date.", True),
    ]
    page = html(browser.get(f"/editor/autodocs/{autodoc_id}/review"))
    history = re.search(r'<ol class="list-unstyled verdict-history">(.*?)</ol>', page, re.S).group(1)
    assert re.findall(r"verdict-(current|past)", history) == ["current", "past", "past"]
    assert history.index("It invents a date.") < history.index("too short") < history.index("Approved")
    assert "Change your verdict" in page


def test_a_stale_autodoc_cannot_be_approved_but_can_be_sent_back(app, editor, sponsor):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id, body="First words.")
    (old_id,) = write(app)
    edit(app, document_id, "Second words.")
    (new_id,) = write(app)

    page = html(browser.get(f"/editor/autodocs/{old_id}/review"))
    assert "This autodoc is stale: it was written from version 1, and the document is now at version 2." in page
    assert f'href="/editor/autodocs/{new_id}/review" class="newest-autodoc"' in page

    response = give(browser, old_id, "approve")
    assert response.status_code == 409
    page = html(response)
    assert ("This autodoc was written from version 1, but the document is now at version 2, "
            "so it cannot be approved.") in unescape(page)
    assert f'<a href="/editor/autodocs/{new_id}/review" class="alert-link">Go to the newest autodoc</a>' in page
    assert verdict_rows(app, old_id) == []

    assert give(browser, old_id, "reject", "Written from the old text.").status_code == 302
    assert verdict_rows(app, old_id) == [("reject", "Written from the old text.", True)]
    assert give(browser, new_id, "approve").status_code == 302


def test_stale_approval_points_to_the_newest_attempt_even_before_it_is_written(app, editor, sponsor):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id)
    (old_id,) = write(app)
    edit(app, document_id, "Changed.")  # its autodoc is still queued
    with app.app_context():
        newest = db.session.scalar(select(func.max(Autodoc.id)))
    response = give(browser, old_id, "approve")
    assert response.status_code == 409 and f"/editor/autodocs/{newest}/review" in html(response)


def test_only_the_assigned_editor_reviews(app, editor, sponsor, login_as):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id)
    (autodoc_id,) = write(app)
    other_editor, _ = login_as("editor")
    assert other_editor.get(f"/editor/autodocs/{autodoc_id}/review").status_code == 404
    assert give(other_editor, autodoc_id, "approve").status_code == 404
    assert sponsor[0].get(f"/editor/autodocs/{autodoc_id}/review").status_code == 403
    assert verdict_rows(app, autodoc_id) == []
    # Once the document goes to another editor, so do its reviews.
    with app.app_context():
        new_editor = make_user("editor")
        from srcflask.services.documents import reassign_editor

        reassign_editor(db.session.get_one(Document, document_id), new_editor.id, db.session.get_one(User, sponsor[1].id))
        db.session.commit()
        with pytest.raises(reviews.NotTheEditor):
            reviews.give_verdict(db.session.get_one(Autodoc, autodoc_id), db.session.get_one(User, me.id), "approve", "")
    assert browser.get(f"/editor/autodocs/{autodoc_id}/review").status_code == 404


# --- what the sponsor and the admin see -----------------------------------------------------

def test_the_sponsor_sees_each_verdict_and_comment_on_the_document_page_and_in_the_list(app, editor, sponsor):
    browser, me = editor
    sponsor_browser, owner = sponsor
    document_id = new_document(app, owner.id, me.id, title="Plan")
    (first,) = write(app)
    give(browser, first, "request_changes", f"Too vague {XSS}")
    edit(app, document_id, "Better words.")
    (second,) = write(app)

    page = html(sponsor_browser.get(f"/sponsor/documents/{document_id}"))
    first_section = re.search(rf'id="autodoc-{first}"(.*?)</section>', page, re.S).group(1)
    assert "Changes requested" in first_section and "Eve Editor" in first_section
    assert f"Too vague {XSS_ESCAPED}" in first_section and "stale" in first_section
    second_section = re.search(rf'id="autodoc-{second}"(.*?)</section>', page, re.S).group(1)
    assert "Not reviewed yet." in second_section and "stale" not in second_section
    assert XSS not in page
    # The list shows the verdict of the current version's newest autodoc.
    assert "verdict-badge" not in html(sponsor_browser.get("/sponsor/documents"))

    give(browser, second, "approve")
    listing = html(sponsor_browser.get("/sponsor/documents"))
    assert re.search(r'<td class="verdict-cell"><span class="badge verdict-badge text-bg-success">Approved</span>', listing)
    give(browser, second, "reject", "Made up a number.")
    listing = html(sponsor_browser.get("/sponsor/documents"))
    assert "Rejected" in listing and "Made up a number." in listing


def test_the_editors_document_page_links_each_written_autodoc_to_its_review(app, editor, sponsor):
    browser, me = editor
    document_id = new_document(app, sponsor[1].id, me.id)
    (autodoc_id,) = write(app)
    page = html(browser.get(f"/editor/documents/{document_id}"))
    assert f'href="/editor/autodocs/{autodoc_id}/review">Review page</a>' in page


def test_admins_see_every_document_and_review_read_only(app, editor, sponsor, login_as):
    browser, me = editor
    admin, _ = login_as("admin")
    with app.app_context():
        other_id = make_user("editor", name="Oscar Other").id
    document_id = new_document(app, sponsor[1].id, me.id, title="Mine")
    new_document(app, sponsor[1].id, other_id, title="Theirs")
    first, _ = write(app)
    give(browser, first, "reject", "Nonsense.")

    listing = html(admin.get("/admin/documents"))
    assert "Mine" in listing and "Theirs" in listing and "Oscar Other" in listing and "Eve Editor" in listing
    assert "Rejected" in listing
    page = html(admin.get(f"/admin/documents/{document_id}"))
    assert "Nonsense." in page and f'href="/admin/autodocs/{first}">Review page</a>' in page
    assert "Regenerate" not in page and "<form method=\"post\" action=\"/sponsor" not in page
    review = html(admin.get(f"/admin/autodocs/{first}"))
    assert "Nonsense." in review and 'name="decision"' not in review
    assert admin.post(f"/admin/autodocs/{first}").status_code == 405
    assert admin.get("/admin/documents/999999").status_code == 404
    assert admin.get("/admin/autodocs/999999").status_code == 404
    assert "/admin/documents" in html(admin.get("/admin/"))


# --- the kept counts (Retention.awaiting_review, Retention.document_updated_at) ---------------

def _assert_kept_figures_are_right():
    """Every editor's queue total (the kept counts) equals the rows the queue lists (counted
    from autodocs and verdicts), every retention's figures agree with the rows, and the
    app's recount finds nothing to mend."""
    for editor in db.session.scalars(select(User).where(User.role == "editor")):
        queue = reviews.review_queue(editor, per_page=1000)
        assert queue.total == len(queue.items), editor.name
    assert wrong_kept_figures(db.session) == []
    assert reviews.recount_awaiting_reviews() == []


def test_kept_counts_follow_every_change_that_moves_an_autodoc_in_or_out_of_a_queue(app, app_context):
    from srcflask.services import autodoc_queue
    from srcflask.services.documents import reassign_editor

    sam = make_user("sponsor", name="Sam")
    eve, oscar = make_user("editor", name="Eve"), make_user("editor", name="Oscar")
    plan, report = make_document(sam, eve, title="Plan"), make_document(sam, eve, title="Report")
    _assert_kept_figures_are_right()

    first_plan, first_report = write_autodocs()  # written: both wait for Eve
    assert [reviews.review_queue(e).total for e in (eve, oscar)] == [2, 0]
    _assert_kept_figures_are_right()

    reviews.give_verdict(db.session.get_one(Autodoc, first_plan), eve, "request_changes", "Shorter.")
    db.session.commit()
    reviews.give_verdict(db.session.get_one(Autodoc, first_plan), eve, "reject", "No.")  # replaces: no change
    db.session.commit()
    assert reviews.review_queue(eve).total == 1
    _assert_kept_figures_are_right()

    update_document(plan, plan.version, plan.title, "A second version.", sam)  # queued: not waiting yet
    db.session.commit()
    autodoc_queue.queue_regeneration(db.session.get_one(Autodoc, first_report).revision, by=sam)
    db.session.commit()
    _assert_kept_figures_are_right()
    (job, retried) = autodoc_queue.claim_jobs("tests", 10, 60, 3)
    assert autodoc_queue.fail_job(job, "out of memory", 3) == "queued"  # back in the queue: not written
    assert autodoc_queue.complete_job(retried, retried.body, "text", {"model": "tiny"})
    _assert_kept_figures_are_right()
    write_autodocs()
    assert reviews.review_queue(eve).total == 3
    _assert_kept_figures_are_right()

    reassign_editor(report, oscar.id, sam)  # the report's two waiting autodocs go to Oscar
    db.session.commit()
    assert [reviews.review_queue(e).total for e in (eve, oscar)] == [1, 2]
    _assert_kept_figures_are_right()


def test_the_queue_total_is_not_counted_from_the_rows(app, app_context):
    """The total is the kept count, one index read whatever the backlog: the page runs two
    statements, and neither is a count over the queue's rows."""
    sam, eve = make_user("sponsor"), make_user("editor")
    for number in range(3):
        make_document(sam, eve, title=f"Doc {number}")
    write_autodocs()
    with counted_queries(app) as statements:
        queue = reviews.review_queue(eve, per_page=2)
    assert (queue.total, queue.pages, len(queue.items)) == (3, 2, 2)
    assert len(statements) == 2
    assert not any("count(*)" in statement.lower() for statement in statements)


def test_flask_reviews_recount_mends_counts_changed_behind_the_apps_back(app):
    with app.app_context():
        sam, eve = make_user("sponsor"), make_user("editor")
        document_id = make_document(sam, eve).id
        write_autodocs()
    runner = app.test_cli_runner()
    assert "was right" in runner.invoke(args=["reviews", "recount"]).output
    with app.app_context():
        db.session.execute(text("UPDATE retentions SET awaiting_review = 7"))
        db.session.commit()
    result = runner.invoke(args=["reviews", "recount"])
    assert result.exit_code == 0
    assert result.output.strip() == f"Mended the count of 1 document: {document_id}."
    with app.app_context():
        assert db.session.scalar(text("SELECT awaiting_review FROM retentions")) == 1
    assert "was right" in runner.invoke(args=["reviews", "recount"]).output
