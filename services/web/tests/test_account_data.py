"""A sponsor's data: the download of everything of theirs, archived documents, and an
admin's erase of an account (issue 14, "Profile and data")."""
import json

import pytest
from sqlalchemy import func, select

from srcflask.extensions import db
from srcflask.models import (
    ApiToken,
    AuditEvent,
    Document,
    Notification,
    NotificationPreference,
    Retention,
    User,
)
from srcflask.services import autodoc_queue, export, outbox, reviews, users
from srcflask.services.documents import update_document
from srcflask.static.data.processeddata.models import Autodoc

from .factories import DEFAULT_PASSWORD, make_document, make_user, write_autodocs
from .helpers import html, wrong_kept_figures
from .test_api import bearer, make_token


def _give_verdict(autodoc_id, editor, decision, comment="", correction=None):
    reviews.give_verdict(db.session.get(Autodoc, autodoc_id), db.session.get(User, editor.id), decision, comment,
                         correction)
    db.session.commit()


# --- download everything -----------------------------------------------------------------------

def test_the_download_holds_every_document_revision_autodoc_and_verdict_of_the_sponsor_only(app, login_as, monkeypatch):
    client, owner = login_as("sponsor")
    owner_id = owner.id
    with app.app_context():
        editor = make_user("editor")
        first = make_document(db.session.get(User, owner_id), editor, title="First", body="One")
        (written,) = write_autodocs("first text")
        _give_verdict(written, editor, "request_changes", "Shorter, please.", "first, shorter")
        _give_verdict(written, editor, "approve")
        autodoc_queue.queue_regeneration(db.session.get(Autodoc, written).revision, by=db.session.get(User, owner_id))
        update_document(db.session.get(Document, first.id), 1, "First", "One, then two", db.session.get(User, owner_id))
        db.session.commit()
        second = make_document(db.session.get(User, owner_id), editor, title="Second", body="Kept aside")
        make_document(make_user("sponsor"), editor, title="Not theirs", body="Someone else's secret")
        first_id, second_id = first.id, second.id
    client.post(f"/sponsor/documents/{second_id}/archive")
    # Small pieces, so that even this small export comes in several.
    monkeypatch.setattr(export, "CHUNK_CHARS", 64)

    response = client.get("/sponsor/export")

    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="srcflask-export-')
    pieces = list(response.response)
    assert len(pieces) > 3
    data = json.loads(b"".join(piece if isinstance(piece, bytes) else piece.encode() for piece in pieces))
    assert "Someone else's secret" not in json.dumps(data) and "Not theirs" not in json.dumps(data)
    assert (data["format"], data["version"]) == ("srcflask-export", 1)
    assert data["account"]["id"] == owner_id and data["account"]["email"] == owner.email
    first_doc, second_doc = data["documents"]
    assert (first_doc["id"], first_doc["title"], first_doc["version"], first_doc["archived_at"]) == (
        first_id, "First", 2, None)
    assert first_doc["editor"]["id"] == editor.id
    assert second_doc["id"] == second_id and second_doc["archived_at"] is not None
    version_1, version_2 = first_doc["revisions"]
    assert (version_1["version"], version_1["body"], version_2["body"]) == (1, "One", "One, then two")
    assert [(a["generation"], a["status"]) for a in version_1["autodocs"]] == [(1, "done"), (2, "queued")]
    judged = version_1["autodocs"][0]
    assert judged["continuation"] == "first text" and judged["stamp"]["model"] == "tiny-gpt2"
    assert [(v["decision"], v["comment"], v["correction"], v["current"]) for v in judged["verdicts"]] == [
        ("request_changes", "Shorter, please.", "first, shorter", False), ("approve", "", None, True)]
    assert judged["verdicts"][0]["editor"] == editor.name
    assert version_1["autodocs"][1]["verdicts"] == []
    assert [a["status"] for a in version_2["autodocs"]] == ["queued"]
    assert [r["body"] for r in second_doc["revisions"]] == ["Kept aside"]


def test_a_sponsor_without_documents_downloads_an_empty_list(client, login_as):
    browser, owner = login_as("sponsor")
    data = json.loads(browser.get("/sponsor/export").get_data())
    assert data["documents"] == [] and data["account"]["name"] == owner.name


def test_the_api_download_is_the_same_file_for_the_token_holder(app):
    with app.app_context():
        owner, editor = make_user("sponsor"), make_user("editor")
        document = make_document(owner, editor, title="By API")
        make_document(make_user("sponsor"), editor, title="Another's")
        token, editor_token = make_token(owner), make_token(editor)

    api = app.test_client()
    response = api.get("/api/v1/me/export", headers=bearer(token))

    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"].startswith("attachment;")
    data = response.get_json()
    assert [d["id"] for d in data["documents"]] == [document.id]
    assert api.get("/api/v1/me/export", headers=bearer(editor_token)).status_code == 403
    spec = api.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/me/export" in spec["paths"]


def test_downloads_share_one_allowance_per_sponsor_between_the_page_and_the_api(app, login_as, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_RATE_LIMIT", "2 per hour")
    browser, owner = login_as("sponsor")
    with app.app_context():
        token = make_token(db.session.get(User, owner.id))
    assert browser.get("/sponsor/export").status_code == 200
    assert app.test_client().get("/api/v1/me/export", headers=bearer(token)).status_code == 200
    assert browser.get("/sponsor/export").status_code == 429
    assert app.test_client().get("/api/v1/me/export", headers=bearer(token)).status_code == 429
    other, _ = login_as("sponsor")
    assert other.get("/sponsor/export").status_code == 200


# --- archive and restore ------------------------------------------------------------------------

def _listed(browser, path):
    return html(browser.get(path))


def test_an_archived_document_leaves_every_list_search_queue_and_badge_and_comes_back(app, login_as, make_client):
    owner_browser, owner = login_as("sponsor")
    editor_browser, editor = login_as("editor")
    admin_browser, _ = login_as("admin")
    with app.app_context():
        archived = make_document(owner, editor, title="Zebra archived", body="v1")
        write_autodocs()  # its first autodoc waits for review...
        update_document(db.session.get(Document, archived.id), 1, "Zebra archived", "v2", db.session.get(User, owner.id))
        db.session.commit()  # ...and its second waits for the writer
        kept = make_document(owner, editor, title="Zebra kept", body="v1")
        waiting = db.session.scalar(select(Autodoc.id).join(Autodoc.revision).where(
            Autodoc.status == "queued", Autodoc.revision.has(document_id=archived.id)))
        kept_job = db.session.scalar(select(Autodoc.id).join(Autodoc.revision).where(
            Autodoc.revision.has(document_id=kept.id)))
        assert autodoc_queue.queue_positions([waiting, kept_job]) == {waiting: 1, kept_job: 2}
        token = make_token(owner)
    assert "Zebra archived" in _listed(editor_browser, "/editor/reviews")

    response = owner_browser.post(f"/sponsor/documents/{archived.id}/archive")

    assert response.status_code == 302 and response.headers["Location"] == "/sponsor/documents"
    assert "is archived" in html(owner_browser.follow(response))
    for browser, path in [(owner_browser, "/sponsor/"), (owner_browser, "/sponsor/documents"),
                          (owner_browser, "/sponsor/documents?q=zebra"), (editor_browser, "/editor/documents"),
                          (editor_browser, "/editor/documents?q=zebra"), (editor_browser, "/editor/reviews"),
                          (editor_browser, "/editor/"), (admin_browser, "/admin/documents"),
                          (admin_browser, "/admin/documents?q=zebra")]:
        page = _listed(browser, path)
        assert "Zebra archived" not in page, path
    assert "Zebra kept" in _listed(owner_browser, "/sponsor/documents?q=zebra")
    assert "Zebra archived" in _listed(owner_browser, "/sponsor/documents/archived")
    assert "Zebra kept" not in _listed(owner_browser, "/sponsor/documents/archived")
    assert "Zebra archived" in _listed(admin_browser, "/admin/documents?archived=1")
    assert editor_browser.get(f"/editor/documents/{archived.id}").status_code == 404
    assert owner_browser.get(f"/sponsor/documents/{archived.id}/edit").status_code == 404
    assert "Restore" in _listed(owner_browser, f"/sponsor/documents/{archived.id}")
    assert "Restore" in _listed(admin_browser, f"/admin/documents/{archived.id}")
    api_list = app.test_client().get("/api/v1/documents", headers=bearer(token)).get_json()
    assert [row["title"] for row in api_list["items"]] == ["Zebra kept"]
    with app.app_context():
        assert db.session.scalar(select(reviews.awaiting_review_count(db.session.get(User, editor.id)))) == 0
        # The writer skips its waiting autodoc, which holds no place in the queue meanwhile.
        assert autodoc_queue.queue_positions([waiting, kept_job]) == {kept_job: 1}
        jobs = autodoc_queue.claim_jobs("tests", 10, 60, 3)
        assert [job.autodoc_id for job in jobs] == [kept_job]
        assert autodoc_queue.claim_jobs("tests", 10, 60, 3) == []
        assert db.session.get(Autodoc, waiting).status == "queued"
        assert wrong_kept_figures(db.session) == []
        assert db.session.get(Retention, archived.id).awaiting_review == 1  # kept, though not shown

    # The admin restores it (a sponsor may ask them to).
    restored = admin_browser.post(f"/admin/documents/{archived.id}/restore")
    assert restored.headers["Location"] == f"/admin/documents/{archived.id}"

    assert "Zebra archived" in _listed(owner_browser, "/sponsor/documents")
    assert "Zebra archived" in _listed(editor_browser, "/editor/reviews")
    with app.app_context():
        assert wrong_kept_figures(db.session) == []
        assert db.session.get(Retention, archived.id).archived_at is None
        assert db.session.scalar(select(reviews.awaiting_review_count(db.session.get(User, editor.id)))) == 1
        assert [job.autodoc_id for job in autodoc_queue.claim_jobs("tests", 10, 60, 3)] == [waiting]
        actions = db.session.execute(
            select(AuditEvent.action, AuditEvent.actor_id).where(AuditEvent.target_id == archived.id,
                                                                 AuditEvent.action.like("document.%"))
            .order_by(AuditEvent.id)).all()
        assert [action for action, _ in actions][-2:] == ["document.archive", "document.restore"]
        assert actions[-2].actor_id == owner.id


def test_archiving_twice_or_restoring_what_is_not_archived_changes_nothing(app, login_as):
    browser, owner = login_as("sponsor")
    with app.app_context():
        document = make_document(owner, make_user("editor"))
    assert browser.post(f"/sponsor/documents/{document.id}/archive").status_code == 302
    again = browser.post(f"/sponsor/documents/{document.id}/archive", follow_redirects=True)
    assert "archived already" in html(again)
    assert browser.post(f"/sponsor/documents/{document.id}/restore").status_code == 302
    again = browser.post(f"/sponsor/documents/{document.id}/restore", follow_redirects=True)
    assert "is not archived" in html(again)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action.in_(("document.archive", "document.restore")))) == 2


def test_another_sponsor_can_neither_archive_nor_restore(app, login_as):
    browser, _ = login_as("sponsor")
    with app.app_context():
        document = make_document(make_user("sponsor"), make_user("editor"))
    assert browser.post(f"/sponsor/documents/{document.id}/archive").status_code == 404
    assert browser.post(f"/sponsor/documents/{document.id}/restore").status_code == 404
    with app.app_context():
        assert db.session.get(Retention, document.id).archived_at is None


# --- erase -------------------------------------------------------------------------------------

def test_an_admin_erases_a_user_who_asks_and_keeps_their_documents_and_the_audit_log(app, login_as, make_client):
    sponsor_browser, sponsor = login_as("sponsor", name="Ada Lovelace", organization="Analytical Engines",
                                        email="ada@example.org")
    admin_browser, _ = login_as("admin")
    with app.app_context():
        document = make_document(sponsor, make_user("editor"), title="Notes")
        token = make_token(sponsor)
        outbox.queue_email("ada@example.org", "account_approved", name="Ada Lovelace", reason=None,
                           link="https://example.org/")
        db.session.add(NotificationPreference(user_id=sponsor.id, kind="autodoc_reviewed", delivery="daily"))
        db.session.commit()
        old_audit = db.session.execute(select(AuditEvent.id, AuditEvent.action, AuditEvent.details)
                                       .order_by(AuditEvent.id)).all()
        assert old_audit
    confirm = admin_browser.get(f"/admin/users/{sponsor.id}/erase")
    assert confirm.status_code == 200 and "What stays" in html(confirm)

    response = admin_browser.post(f"/admin/users/{sponsor.id}/erase",
                                  {"reason": "Asked by email on 1 December.", "confirm": "y"})

    assert response.status_code == 302 and response.headers["Location"] == "/admin/users"
    with app.app_context():
        user = db.session.get(User, sponsor.id)
        assert (user.name, user.email, user.organization) == (
            f"Erased user {sponsor.id}", f"erased-{sponsor.id}@invalid", "")
        assert user.status == "suspended" and user.erased_at is not None and user.decision_reason is None
        assert not user.check_password(DEFAULT_PASSWORD)
        assert db.session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user.id)) == 0
        assert db.session.scalar(select(func.count()).select_from(Notification)
                                 .where(Notification.user_id == user.id)) == 0
        assert db.session.scalar(select(func.count()).select_from(NotificationPreference)
                                 .where(NotificationPreference.user_id == user.id)) == 0
        assert outbox.queued_messages("ada@example.org") == []
        row = db.session.execute(select(User).where(User.id == user.id)).scalar_one()
        leftovers = json.dumps([row.name, row.email, row.organization, row.password_hash, row.decision_reason])
        assert "Ada" not in leftovers and "Analytical" not in leftovers and "ada@" not in leftovers
        # The documents stay, still theirs.
        assert db.session.get(Retention, document.id).sponsor_id == user.id
        # The audit log keeps every row as it was, and the erase adds one without the old name.
        audit = db.session.execute(select(AuditEvent.id, AuditEvent.action, AuditEvent.details)
                                   .order_by(AuditEvent.id)).all()
        assert audit[:len(old_audit)] == old_audit
        (erase,) = audit[len(old_audit):]
        assert erase.action == "user.erase" and erase.details == {"reason": "Asked by email on 1 December."}
    # The old session is refused, the password opens nothing, the token neither.
    assert sponsor_browser.get("/sponsor/").status_code == 302
    login = make_client().post("/auth/login", {"email": "ada@example.org", "password": DEFAULT_PASSWORD})
    assert login.status_code == 200
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 401
    # Nothing more can be decided on it.
    again = admin_browser.post(f"/admin/users/{sponsor.id}/reinstate", follow_redirects=True)
    assert "was erased" in html(again)


def test_an_erase_needs_a_reason_and_a_confirmation(app, login_as):
    admin_browser, _ = login_as("admin")
    with app.app_context():
        target = make_user("editor", name="Grace Hopper")
    for form in ({"reason": "", "confirm": "y"}, {"reason": "Asked."}):
        response = admin_browser.post(f"/admin/users/{target.id}/erase", form)
        assert response.status_code == 200 and "invalid-feedback" in html(response)
    with app.app_context():
        assert db.session.get(User, target.id).name == "Grace Hopper"


def test_an_admin_cannot_erase_themself_nor_the_last_approved_admin(app, login_as):
    admin_browser, admin = login_as("admin")
    response = admin_browser.post(f"/admin/users/{admin.id}/erase", {"reason": "Testing.", "confirm": "y"},
                                  follow_redirects=True)
    assert "cannot erase your own account" in html(response)
    with app.app_context():
        # Another approved admin, left the only one once this admin is suspended.
        other = make_user("admin")
        db.session.get(User, admin.id).status = "suspended"
        db.session.flush()
        with pytest.raises(users.DecisionRefused, match="last approved admin"):
            users.erase(db.session.get(User, other.id), by=db.session.get(User, admin.id), reason="Testing.")
        db.session.rollback()
        assert db.session.get(User, other.id).erased_at is None
