"""The audit log: every admin decision on users, every verdict, every document create,
edit and editor change, every regenerate writes one row (who, what, when, target);
refused actions write none; rows cannot be changed; the admin's page filters them."""
import datetime as dt
import re

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from srcflask.extensions import db
from srcflask.models import AuditEvent, User
from srcflask.services import audit

from .auth_admin_helpers import counted_queries
from .factories import make_document, make_user, write_autodocs
from .helpers import html


def events(app):
    """Every audit row as (actor id, action, target type, target id, details), oldest first."""
    with app.app_context():
        return [
            (event.actor_id, event.action, event.target_type, event.target_id, event.details)
            for event in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def last_event(app):
    return events(app)[-1]


@pytest.fixture
def sponsor(login_as):
    return login_as("sponsor", name="Sam Sponsor")


@pytest.fixture
def editors(app):
    with app.app_context():
        return make_user("editor", name="Eve Editor").id, make_user("editor", name="Una Editor").id


def test_document_create_edit_and_editor_change_are_audited(app, sponsor, editors):
    browser, me = sponsor
    eve, una = editors
    response = browser.post("/sponsor/documents/new", {"title": "Plan", "body": "v1", "editor": eve})
    document_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert events(app) == [(me.id, "document.create", "document", document_id,
                            {"title": "Plan", "editor_id": eve, "editor": "Eve Editor"})]

    browser.post(f"/sponsor/documents/{document_id}/edit", {"title": "Plan B", "body": "v2", "version": 1})
    assert last_event(app) == (me.id, "document.edit", "document", document_id, {"title": "Plan B", "version": 2})

    browser.post(f"/sponsor/documents/{document_id}/editor", {"editor": una})
    assert last_event(app) == (me.id, "document.reassign_editor", "document", document_id, {
        "title": "Plan B", "from_editor_id": eve, "from_editor": "Eve Editor", "editor_id": una, "editor": "Una Editor",
    })
    assert len(events(app)) == 3


def test_refused_document_changes_write_no_audit_row(app, sponsor, editors):
    browser, me = sponsor
    eve, _ = editors
    browser.post("/sponsor/documents/new", {"title": "Plan", "body": "v1", "editor": eve})
    (document_event,) = events(app)
    document_id = document_event[3]
    browser.post(f"/sponsor/documents/{document_id}/edit", {"title": "Plan", "body": "v1", "version": 1})  # no change
    browser.post(f"/sponsor/documents/{document_id}/edit", {"title": "Plan", "body": "v9", "version": 7})  # conflict
    browser.post(f"/sponsor/documents/{document_id}/editor", {"editor": eve})  # already theirs
    browser.post("/sponsor/documents/new", {"title": "", "body": "x", "editor": eve})  # invalid
    assert events(app) == [document_event]


def test_regenerates_by_the_sponsor_and_by_an_admin_are_audited(app, sponsor, editors, login_as):
    browser, me = sponsor
    admin, admin_user = login_as("admin")
    with app.app_context():
        document_id = make_document(db.session.get_one(User, me.id), db.session.get_one(User, editors[0]),
                                    title="Plan").id
        (first,) = write_autodocs()
    browser.post(f"/sponsor/autodocs/{first}/regenerate")
    with app.app_context():
        (second,) = write_autodocs()
    admin.post(f"/admin/autodocs/{second}/regenerate")
    admin.post(f"/admin/autodocs/{second}/regenerate")  # already queued: refused, not audited
    regenerates = [event for event in events(app) if event[1] == "autodoc.regenerate"]
    assert regenerates == [
        (me.id, "autodoc.regenerate", "autodoc", second,
         {"document_id": document_id, "title": "Plan", "version": 1, "generation": 2}),
        (admin_user.id, "autodoc.regenerate", "autodoc", second + 1,
         {"document_id": document_id, "title": "Plan", "version": 1, "generation": 3}),
    ]


def test_every_verdict_is_audited_and_a_refused_one_is_not(app, sponsor, editors, login_as):
    browser, me = sponsor
    editor, editor_user = login_as("editor")
    with app.app_context():
        document_id = make_document(db.session.get_one(User, me.id), db.session.get_one(User, editor_user.id),
                                    title="Plan").id
        (autodoc_id,) = write_autodocs()
    editor.post(f"/editor/autodocs/{autodoc_id}/review", {"decision": "approve", "comment": ""})
    editor.post(f"/editor/autodocs/{autodoc_id}/review", {"decision": "reject", "comment": "Invented facts."})
    browser.post(f"/sponsor/documents/{document_id}/edit", {"title": "Plan", "body": "changed", "version": 1})
    count = len(events(app))
    assert editor.post(f"/editor/autodocs/{autodoc_id}/review", {"decision": "approve"}).status_code == 409
    editor.post(f"/editor/autodocs/{autodoc_id}/review", {"decision": "request_changes", "comment": ""})
    assert len(events(app)) == count

    with app.app_context():
        verdict_ids = [row[0] for row in db.session.execute(text("SELECT id FROM verdicts ORDER BY id"))]
    verdicts = [event for event in events(app) if event[1].startswith("verdict.")]
    assert verdicts == [
        (editor_user.id, "verdict.approve", "autodoc", autodoc_id,
         {"verdict_id": verdict_ids[0], "document_id": document_id, "title": "Plan", "version": 1, "generation": 1,
          "stale": False, "comment": "", "replaces": None, "has_correction": False}),
        (editor_user.id, "verdict.reject", "autodoc", autodoc_id,
         {"verdict_id": verdict_ids[1], "document_id": document_id, "title": "Plan", "version": 1, "generation": 1,
          "stale": False, "comment": "Invented facts.", "replaces": verdict_ids[0], "has_correction": False}),
    ]


@pytest.mark.parametrize("action, start, reason, details", [
    ("approve", "pending", None, {"from_status": "pending", "status": "approved", "reason": None}),
    ("reject", "pending", "Spam.", {"from_status": "pending", "status": "rejected", "reason": "Spam."}),
    ("suspend", "approved", "Abuse.", {"from_status": "approved", "status": "suspended", "reason": "Abuse."}),
    ("reinstate", "suspended", None, {"from_status": "suspended", "status": "approved", "reason": None}),
])
def test_admin_decisions_on_users_are_audited(app, login_as, action, start, reason, details):
    admin, me = login_as("admin")
    with app.app_context():
        target = make_user("editor", status=start, name="Tara Target")
        target_id, email = target.id, target.email
    assert admin.post(f"/admin/users/{target_id}/{action}", {"reason": reason} if reason else {}).status_code == 302
    assert events(app) == [(me.id, f"user.{action}", "user", target_id, {"name": "Tara Target", "email": email, **details})]


def test_role_changes_are_audited_and_refused_decisions_are_not(app, login_as):
    admin, me = login_as("admin")
    with app.app_context():
        target = make_user("editor", name="Tara Target")
        target_id, email = target.id, target.email
    admin.post(f"/admin/users/{target_id}/role", {"role": "sponsor"})
    assert events(app) == [(me.id, "user.change_role", "user", target_id,
                            {"name": "Tara Target", "email": email, "from_role": "editor", "role": "sponsor"})]
    admin.post(f"/admin/users/{target_id}/approve")  # already approved
    admin.post(f"/admin/users/{me.id}/suspend")  # oneself
    admin.post(f"/admin/users/{target_id}/role", {"role": "sponsor"})  # already a sponsor
    assert len(events(app)) == 1


def test_audit_rows_cannot_be_changed_or_deleted(app, login_as):
    admin, me = login_as("admin")
    with app.app_context():
        target_id = make_user("editor", status="pending").id
    admin.post(f"/admin/users/{target_id}/approve")
    with app.app_context():
        for statement in ("UPDATE audit_events SET action = 'user.reject'", "DELETE FROM audit_events"):
            with pytest.raises(DBAPIError, match="audit_events rows are never updated or deleted"):
                db.session.execute(text(statement))
            db.session.rollback()
    assert [event[1] for event in events(app)] == ["user.approve"]


def test_the_service_refuses_an_unknown_action(app_context):
    with pytest.raises(ValueError):
        audit.record(None, "document.delete", "document", 1)


# --- the admin's page -----------------------------------------------------------------------

@pytest.fixture
def logged(app, login_as):
    """An admin's browser, and a log with rows by two people and the system on three days."""
    admin, me = login_as("admin", name="Ada Admin")
    with app.app_context():
        sam = make_user("sponsor", name="Sam Sponsor", email="sam@example.org")
        rows = [
            (me.id, "user.approve", "user", 1, {"name": "Someone"}, "2026-01-10 09:00+00"),
            (me.id, "user.suspend", "user", 2, {"name": "Other <b>one</b>"}, "2026-01-11 23:59+00"),
            (sam.id, "document.create", "document", 5, {"title": "Plan"}, "2026-01-12 00:00+00"),
            (None, "autodoc.regenerate", "autodoc", 9, {"title": "Plan", "generation": 2}, "2026-01-12 08:00+00"),
        ]
        for actor_id, action, target_type, target_id, details, created_at in rows:
            event = audit.record(db.session.get(User, actor_id) if actor_id else None, action, target_type, target_id,
                                 **details)
            event.created_at = dt.datetime.fromisoformat(created_at.replace("+00", "+00:00"))
        db.session.commit()
    return admin


def actions_listed(page):
    return re.findall(r"<td><code>([\w.]+)</code>", page)


@pytest.mark.parametrize("query, expected", [
    ("", ["autodoc.regenerate", "document.create", "user.suspend", "user.approve"]),
    ("?actor=ada", ["user.suspend", "user.approve"]),
    ("?actor=SAM%40example", ["document.create"]),
    ("?actor=system", ["autodoc.regenerate"]),
    ("?action=user.suspend", ["user.suspend"]),
    ("?since=2026-01-11&until=2026-01-11", ["user.suspend"]),
    ("?since=2026-01-12", ["autodoc.regenerate", "document.create"]),
    ("?until=2026-01-10", ["user.approve"]),
    ("?actor=ada&since=2026-01-11", ["user.suspend"]),
    ("?action=nonsense", ["autodoc.regenerate", "document.create", "user.suspend", "user.approve"]),
    ("?since=2026-01-12&until=2026-01-10", ["autodoc.regenerate", "document.create"]),  # the bad end is ignored
    ("?since=not-a-date", ["autodoc.regenerate", "document.create", "user.suspend", "user.approve"]),
])
def test_the_audit_page_filters_by_actor_action_and_days(logged, query, expected):
    response = logged.get("/admin/audit" + query)
    assert response.status_code == 200
    assert actions_listed(html(response)) == expected


def test_the_audit_page_shows_who_what_and_the_target(logged):
    page = html(logged.get("/admin/audit"))
    assert "Ada Admin" in page and "Sam Sponsor" in page and ">system</span>" in page
    assert 'href="/admin/documents/5">document #5</a>' in page and 'href="/admin/autodocs/9">autodoc #9</a>' in page
    assert "Other &lt;b&gt;one&lt;/b&gt;" in page and "<b>one</b>" not in page
    assert "The end date is before the start date." in html(logged.get("/admin/audit?since=2026-01-12&until=2026-01-10"))


def test_the_audit_page_paginates_with_a_constant_number_of_queries(app, logged, monkeypatch):
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    assert actions_listed(html(logged.get("/admin/audit?page=2"))) == ["user.suspend", "user.approve"]
    assert "There is no page 9" in html(logged.get("/admin/audit?page=9"))
    monkeypatch.setitem(app.config, "PAGE_SIZE", 50)
    with counted_queries(app) as few:
        logged.get("/admin/audit")
    with app.app_context():
        for number in range(20):
            audit.record(db.session.get(User, 1 + number % 2), "user.approve", "user", number, name=f"N{number}")
        db.session.commit()
    with counted_queries(app) as many:
        assert len(actions_listed(html(logged.get("/admin/audit")))) == 24
    assert len(few) == len(many) <= 4  # user, navigation, count, rows with their actors
