"""In-app notifications: who is told what (only the people on a document), the bell, the
list, marking read, and account decisions shown at the next log-in."""
import re
import time
from html import unescape

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import Document, Notification, User
from srcflask.services import autodoc_queue, notifications
from srcflask.services.documents import reassign_editor, update_document
from srcflask.static.data.processeddata.models import Autodoc

from .auth_admin_helpers import counted_queries
from .factories import DEFAULT_PASSWORD, make_document, make_user, write_autodocs
from .helpers import html


def inbox(app):
    """{user id: [(kind, message)]}, oldest first, for everyone who was told anything."""
    with app.app_context():
        rows = db.session.execute(
            select(Notification.user_id, Notification.kind, Notification.message).order_by(Notification.id)
        ).all()
    result = {}
    for user_id, kind, message in rows:
        result.setdefault(user_id, []).append((kind, message))
    return result


def kinds(app):
    return {user_id: [kind for kind, _ in items] for user_id, items in inbox(app).items()}


@pytest.fixture
def cast(app):
    """Two sponsors and three editors; Sam's document "Plan" is Eve's, Sue's "Other" is
    Oscar's, and Una is an editor with nothing. Ids, plus the plan's id."""
    with app.app_context():
        sam, sue = make_user("sponsor", name="Sam"), make_user("sponsor", name="Sue")
        eve, oscar, una = make_user("editor", name="Eve"), make_user("editor", name="Oscar"), make_user("editor", name="Una")
        plan = make_document(sam, eve, title="Plan", body="First words")
        make_document(sue, oscar, title="Other", body="Other words")
        return {"sam": sam.id, "sue": sue.id, "eve": eve.id, "oscar": oscar.id, "una": una.id, "plan": plan.id}


def log_in(make_client, app, user_id):
    with app.app_context():
        email = db.session.get_one(User, user_id).email
    browser = make_client()
    assert browser.post("/auth/login", {"email": email, "password": DEFAULT_PASSWORD}).status_code == 302
    return browser


# --- who is told what -----------------------------------------------------------------------

def test_a_new_document_tells_only_its_editor(app, cast):
    assert inbox(app) == {
        cast["eve"]: [("document_assigned", "Sam assigned “Plan” to you.")],
        cast["oscar"]: [("document_assigned", "Sue assigned “Other” to you.")],
    }


def test_a_reassigned_document_tells_only_the_new_editor(app, cast):
    with app.app_context():
        reassign_editor(db.session.get_one(Document, cast["plan"]), cast["una"], db.session.get_one(User, cast["sam"]))
        db.session.commit()
    assert kinds(app) == {cast["eve"]: ["document_assigned"], cast["oscar"]: ["document_assigned"],
                          cast["una"]: ["document_assigned"]}
    assert inbox(app)[cast["una"]] == [("document_assigned", "Sam assigned “Plan” to you.")]


def test_the_writer_finishing_an_autodoc_tells_only_its_editor(app, cast):
    with app.app_context():
        jobs = autodoc_queue.claim_jobs("w", 10, 60, 3)
        plan_job = next(job for job in jobs if job.title == "Plan")
        # Not yet: a claim is not a result.
        assert kinds(app) == {cast["eve"]: ["document_assigned"], cast["oscar"]: ["document_assigned"]}
        assert autodoc_queue.complete_job(plan_job, "First words", " and more", {}) is True
    assert inbox(app)[cast["eve"]][-1] == ("autodoc_ready", "The autodoc of “Plan” (version 1) is ready for your review.")
    assert kinds(app) == {cast["eve"]: ["document_assigned", "autodoc_ready"], cast["oscar"]: ["document_assigned"]}


def test_a_late_write_that_lost_its_claim_tells_nobody(app, cast):
    with app.app_context():
        (stale,) = autodoc_queue.claim_jobs("slow", 1, 1, 3)
        time.sleep(1.2)
        (fresh,) = autodoc_queue.claim_jobs("fresh", 1, 60, 3)
        assert autodoc_queue.complete_job(stale, "p", "late", {}) is False
        assert autodoc_queue.fail_job(stale, "late failure", 1) is False
        assert kinds(app)[cast["eve"]] == ["document_assigned"]
        assert autodoc_queue.complete_job(fresh, "p", "text", {}) is True
        assert autodoc_queue.complete_job(fresh, "p", "text again", {}) is False
    assert kinds(app)[cast["eve"]] == ["document_assigned", "autodoc_ready"]


def test_only_the_final_failure_tells_the_sponsor(app, cast):
    with app.app_context():
        for attempt in (1, 2):
            for job in autodoc_queue.claim_jobs("w", 10, 60, 2):
                autodoc_queue.fail_job(job, "RuntimeError: out of memory", 2)
            told = kinds(app)
            assert cast["sam"] not in told if attempt == 1 else told[cast["sam"]] == ["autodoc_failed"]
    assert inbox(app)[cast["sam"]] == [("autodoc_failed", "The writer could not write the autodoc of “Plan” (version 1).")]
    assert kinds(app)[cast["sue"]] == ["autodoc_failed"]
    assert kinds(app)[cast["eve"]] == ["document_assigned"]
    assert cast["una"] not in kinds(app)


def test_a_writer_that_keeps_dying_ends_with_the_sponsor_told(app, cast):
    with app.app_context():
        autodoc_queue.claim_jobs("dies", 10, 1, 1)
        time.sleep(1.2)
        assert autodoc_queue.claim_jobs("next", 10, 60, 1) == []  # given up: failed, not claimed
        assert db.session.scalars(select(Autodoc.status)).all() == ["failed", "failed"]
    assert kinds(app)[cast["sam"]] == ["autodoc_failed"] and kinds(app)[cast["sue"]] == ["autodoc_failed"]


def test_a_verdict_tells_only_the_documents_sponsor(app, cast, make_client):
    with app.app_context():
        write_autodocs()
        autodoc_id = db.session.scalar(select(Autodoc.id).order_by(Autodoc.id))
    eve = log_in(make_client, app, cast["eve"])
    eve.post(f"/editor/autodocs/{autodoc_id}/review", {"decision": "request_changes", "comment": "Shorter."})
    assert inbox(app)[cast["sam"]] == [("autodoc_reviewed", "Eve asked for changes to the autodoc of “Plan” (version 1).")]
    assert cast["sue"] not in inbox(app) and cast["una"] not in inbox(app)
    assert kinds(app)[cast["oscar"]] == ["document_assigned", "autodoc_ready"]


def test_an_edit_tells_nobody_until_its_autodoc_is_written(app, cast):
    with app.app_context():
        document = db.session.get_one(Document, cast["plan"])
        update_document(document, 1, "Plan", "Second words", db.session.get_one(User, cast["sam"]))
        db.session.commit()
    assert kinds(app)[cast["eve"]] == ["document_assigned"]


@pytest.mark.parametrize("action, start, reason, kind, message", [
    ("approve", "pending", None, "account_approved", "Your account was approved. Welcome!"),
    ("reject", "pending", "Unknown organization.", "account_rejected",
     "Your account was rejected for this reason: Unknown organization."),
    ("suspend", "approved", None, "account_suspended", "Your account was suspended."),
    ("reinstate", "suspended", None, "account_reinstated", "Your account was reinstated: you can use the site again."),
])
def test_account_decisions_tell_the_user(app, login_as, action, start, reason, kind, message):
    admin, _ = login_as("admin")
    with app.app_context():
        user_id, bystander = make_user("editor", status=start).id, make_user("editor", status=start).id
    response = admin.post(f"/admin/users/{user_id}/{action}", {"reason": reason} if reason else {})
    assert response.status_code == 302
    told = inbox(app)
    assert told == {user_id: [(kind, message)]}
    assert bystander not in told


def test_a_refused_decision_tells_nobody(app, login_as):
    admin, _ = login_as("admin")
    with app.app_context():
        user_id = make_user("editor", status="approved").id
    admin.post(f"/admin/users/{user_id}/approve")  # already approved: refused
    assert inbox(app) == {}


@pytest.mark.parametrize("action", ["reject", "suspend"])
def test_rejected_and_suspended_users_see_it_at_their_next_log_in(app, login_as, make_client, action):
    start = "pending" if action == "reject" else "approved"
    browser, user = login_as("sponsor", status=start)
    admin, _ = login_as("admin")
    admin.post(f"/admin/users/{user.id}/{action}", {"reason": "Spam <b>links</b>."})

    with app.app_context():
        assert db.session.scalar(select(Notification.read_at).where(Notification.user_id == user.id)) is None

    first = make_client()
    response = first.post("/auth/login", {"email": user.email, "password": DEFAULT_PASSWORD})
    assert response.headers["Location"] == "/auth/standing"
    page = html(first.follow(response))
    notices = re.search(r'<ul class="list-group account-notices">(.*?)</ul>', page, re.S).group(1)
    assert f"Your account was {action}ed for this reason: Spam &lt;b&gt;links&lt;/b&gt;." in notices
    with app.app_context():
        assert db.session.scalar(select(Notification.read_at).where(Notification.user_id == user.id)) is not None

    # Delivered once: a later log-in shows the standing and its reason, without the notice.
    later = make_client()
    page = html(later.follow(later.post("/auth/login", {"email": user.email, "password": DEFAULT_PASSWORD})))
    assert "Spam &lt;b&gt;links&lt;/b&gt;." in page and "account-notices" not in page


# --- the bell, the list, marking read -------------------------------------------------------

def bell(page):
    match = re.search(r'aria-label="Notifications: (\d+) unread">', page)
    return int(match.group(1)) if match else None


def test_the_bell_counts_unread_notifications_on_every_page(app, cast, make_client):
    eve = log_in(make_client, app, cast["eve"])
    for path in ("/editor/", "/editor/documents", f"/editor/documents/{cast['plan']}", "/notifications/"):
        assert bell(html(eve.get(path))) == 1, path
    assert 'class="badge rounded-pill text-bg-warning unread-count">1<' in html(eve.get("/editor/"))
    una = log_in(make_client, app, cast["una"])
    page = html(una.get("/editor/"))
    assert bell(page) == 0 and "unread-count" not in page


def test_the_bell_stops_counting_at_its_cap(app, cast, make_client, monkeypatch):
    """Every page shows the bell, so its count stops at BADGE_CAP (100) unread and says
    "99+"; with a cap of 3, four unread show as "2+" while the inbox lists all four."""
    with app.app_context():
        for number in range(3):
            make_document(db.session.get_one(User, cast["sam"]), db.session.get_one(User, cast["eve"]),
                          title=f"More {number}")
    monkeypatch.setattr(notifications, "BADGE_CAP", 3)
    eve = log_in(make_client, app, cast["eve"])
    page = html(eve.get("/notifications/"))
    assert 'aria-label="Notifications: 2+ unread"' in page
    assert 'unread-count">2+</span>' in page
    assert page.count("notification-unread") == 4


def test_pending_users_have_no_bell_and_no_inbox(login_as):
    browser, _ = login_as("sponsor", status="pending")
    assert bell(html(browser.get("/auth/standing"))) is None
    assert browser.get("/notifications/").headers["Location"] == "/auth/standing"


def test_the_list_links_each_notification_and_marks_them_read(app, cast, make_client):
    with app.app_context():
        write_autodocs()
        autodoc_id = db.session.scalar(select(Autodoc.id).order_by(Autodoc.id))
        ids = db.session.scalars(select(Notification.id).where(Notification.user_id == cast["eve"])
                                 .order_by(Notification.id)).all()
    eve = log_in(make_client, app, cast["eve"])
    page = html(eve.get("/notifications/"))
    assert unescape(page).index("is ready for your review") < unescape(page).index("assigned “Plan” to you")
    assert f'href="/editor/autodocs/{autodoc_id}/review">Open</a>' in page
    assert f'href="/editor/documents/{cast["plan"]}">Open</a>' in page
    assert page.count(">new</span>") == 2 and bell(page) == 2

    response = eve.post(f"/notifications/{ids[0]}/read")
    assert response.status_code == 302 and response.headers["Location"] == "/notifications/"
    page = html(eve.follow(response))
    assert page.count(">new</span>") == 1 and bell(page) == 1
    # Read ones go below the unread ones.
    assert unescape(page).index("ready for your review") < unescape(page).index("assigned “Plan” to you")

    response = eve.post("/notifications/read-all")
    page = html(eve.follow(response))
    assert "1 notification marked read." in page and bell(page) == 0 and ">new</span>" not in page
    assert "Nothing was unread." in html(eve.follow(eve.post("/notifications/read-all")))
    with app.app_context():
        assert db.session.scalars(select(Notification.read_at).where(Notification.user_id == cast["eve"])).all()[0]


def test_the_sponsors_notifications_lead_to_the_autodoc_on_the_document_page(app, cast, make_client):
    with app.app_context():
        for _ in range(3):
            for job in autodoc_queue.claim_jobs("w", 10, 60, 3):
                autodoc_queue.fail_job(job, "boom", 3)
        autodoc_id = db.session.scalar(select(Autodoc.id).order_by(Autodoc.id))
    sam = log_in(make_client, app, cast["sam"])
    assert f'href="/sponsor/autodocs/{autodoc_id}">Open</a>' in html(sam.get("/notifications/"))
    opened = sam.get(f"/sponsor/autodocs/{autodoc_id}")
    assert opened.status_code == 302
    assert opened.headers["Location"] == f"/sponsor/documents/{cast['plan']}#autodoc-{autodoc_id}"
    # Nobody else's autodoc opens, not even to say where it is.
    assert log_in(make_client, app, cast["sue"]).get(f"/sponsor/autodocs/{autodoc_id}").status_code == 404


def test_a_notification_about_an_old_version_opens_the_history_page_that_shows_it(app, cast, make_client):
    """The history shows HISTORY_PAGE_SIZE (20) versions a page, newest first: a verdict on
    version 1 of a document now at version 21 is on page 2."""
    with app.app_context():
        write_autodocs()
        plan = db.session.get_one(Document, cast["plan"])
        first = plan.revisions[-1].autodocs[0].id  # version 1's
        for number in range(2, 22):
            update_document(plan, plan.version, plan.title, f"Version {number}.", db.session.get_one(User, cast["sam"]))
            db.session.commit()
    eve = log_in(make_client, app, cast["eve"])
    eve.post(f"/editor/autodocs/{first}/review", {"decision": "reject", "comment": "Too old."})
    sam = log_in(make_client, app, cast["sam"])
    assert f'href="/sponsor/autodocs/{first}">Open</a>' in html(sam.get("/notifications/"))
    opened = sam.get(f"/sponsor/autodocs/{first}")
    assert opened.headers["Location"] == f"/sponsor/documents/{cast['plan']}?page=2#autodoc-{first}"
    assert f'id="autodoc-{first}"' in html(sam.get(f"/sponsor/documents/{cast['plan']}?page=2"))


def test_nobody_marks_someone_elses_notification(app, cast, make_client):
    with app.app_context():
        eves = db.session.scalar(select(Notification.id).where(Notification.user_id == cast["eve"]))
    oscar = log_in(make_client, app, cast["oscar"])
    assert oscar.post(f"/notifications/{eves}/read").status_code == 404
    assert oscar.post("/notifications/999999/read").status_code == 404
    oscar.post("/notifications/read-all")
    with app.app_context():
        assert db.session.scalar(select(Notification.read_at).where(Notification.id == eves)) is None
    eve = log_in(make_client, app, cast["eve"])
    assert eve.get(f"/notifications/{eves}/read").status_code == 405
    assert eve.post(f"/notifications/{eves}/read", csrf=False).status_code == 400


def test_the_list_and_the_bell_cost_a_constant_number_of_queries(app, cast, make_client, monkeypatch):
    eve = log_in(make_client, app, cast["eve"])
    measured = []
    for _ in range(2):
        with app.app_context():
            for number in range(8):
                db.session.add(Notification(user_id=cast["eve"], kind="document_assigned", message=f"m{number}",
                                            document_id=cast["plan"]))
            db.session.commit()
        eve.get("/notifications/")
        with counted_queries(app) as statements:
            assert eve.get("/notifications/").status_code == 200
        measured.append(len(statements))
        with counted_queries(app) as dashboard:
            eve.get("/editor/")
        # The bell and the review count together are one statement.
        assert sum("notifications" in statement for statement in dashboard) == 1
    assert measured[0] == measured[1] <= 4  # user, navigation counts, count, rows
