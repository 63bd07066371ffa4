"""What people see of the writer: live status, place in the queue, regenerate, no model."""
import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.services import autodoc_queue
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, make_user


@pytest.fixture
def sponsor_client(login_as):
    return login_as("sponsor")


@pytest.fixture
def document(app, sponsor_client):
    _, sponsor = sponsor_client
    with app.app_context():
        editor = make_user("editor")
        make_document(sponsor, editor, title="Earlier", body="queued ahead")
        document = make_document(sponsor, editor, title="Mine", body="the body")
        return {"id": document.id, "editor": editor.email, "autodoc_id": _autodoc_ids(document.id)[0]}


def _autodoc_ids(document_id):
    from srcflask.static.data.processeddata.models import Revision

    return db.session.scalars(
        select(Autodoc.id).join(Revision).where(Revision.document_id == document_id).order_by(Autodoc.id)
    ).all()


def _finish_all(app, continuation="written text"):
    with app.app_context():
        for job in autodoc_queue.claim_jobs("test", 100, 60, 3):
            autodoc_queue.complete_job(job, job.body, continuation, {"model": "tiny", "settings": {}})


def test_status_endpoint_gives_place_in_queue_and_the_pages_html(sponsor_client, document):
    browser, _ = sponsor_client
    response = browser.get(f"/autodocs/{document['autodoc_id']}/status")
    assert response.status_code == 200
    state = response.get_json()
    assert (state["status"], state["position"], state["eta_seconds"]) == ("queued", 2, None)
    assert "number 2 in the queue" in state["html"]
    assert "queued" in state["badge"]


def test_document_page_polls_pending_autodocs_and_stops_when_done(app, sponsor_client, document):
    browser, _ = sponsor_client
    url = f"/autodocs/{document['autodoc_id']}/status"
    page = browser.get(f"/sponsor/documents/{document['id']}").get_data(as_text=True)
    assert f'data-autodoc-poll="{url}"' in page
    assert '<script src="/static/js/autodocs.js" defer></script>' in page
    _finish_all(app, continuation="<script>alert(1)</script>")
    state = browser.get(url).get_json()
    assert state["status"] == "done" and state["position"] is None
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in state["html"] and "<script>alert" not in state["html"]
    page = browser.get(f"/sponsor/documents/{document['id']}").get_data(as_text=True)
    assert "data-autodoc-poll" not in page


def test_expected_wait_comes_from_recent_timings(app, sponsor_client, document):
    browser, _ = sponsor_client
    with app.app_context():
        (job,) = autodoc_queue.claim_jobs("test", 1, 60, 3)
        autodoc_queue.complete_job(job, "p", "c", {})
    state = browser.get(f"/autodocs/{document['autodoc_id']}/status").get_json()
    assert state["position"] == 1 and state["eta_seconds"] is not None and state["eta_seconds"] >= 0


def test_status_endpoint_is_only_for_the_people_on_the_document(app, login_as, make_client, document):
    url = f"/autodocs/{document['autodoc_id']}/status"
    other_sponsor, _ = login_as("sponsor")
    unassigned_editor, _ = login_as("editor")
    admin, _ = login_as("admin")
    assert other_sponsor.get(url).status_code == 404
    assert unassigned_editor.get(url).status_code == 404
    assert admin.get(url).status_code == 200
    assert make_client().get(url).status_code == 401
    assert other_sponsor.get("/autodocs/999999/status").status_code == 404


def test_regenerate_queues_a_new_attempt_and_keeps_the_old_text(app, sponsor_client, document):
    browser, _ = sponsor_client
    _finish_all(app, continuation="first attempt")
    response = browser.post(f"/sponsor/autodocs/{document['autodoc_id']}/regenerate")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/sponsor/documents/{document['id']}#revision-1"
    page = browser.follow(response).get_data(as_text=True)
    assert "A new autodoc for version 1 is queued." in page and "first attempt" in page
    with app.app_context():
        rows = db.session.execute(select(Autodoc.generation, Autodoc.status, Autodoc.continuation)
                                  .where(Autodoc.id >= document["autodoc_id"]).order_by(Autodoc.id)).all()
    assert [tuple(row) for row in rows] == [(1, "done", "first attempt"), (2, "queued", None)]

    again = browser.post(f"/sponsor/autodocs/{document['autodoc_id']}/regenerate")
    assert "already waiting for the writer" in browser.follow(again).get_data(as_text=True)
    with app.app_context():
        assert len(_autodoc_ids(document["id"])) == 2


def test_regenerate_is_post_only_and_only_for_the_owner(app, login_as, sponsor_client, document):
    browser, _ = sponsor_client
    url = f"/sponsor/autodocs/{document['autodoc_id']}/regenerate"
    assert browser.get(url).status_code == 405
    assert browser.post(url, csrf=False).status_code == 400
    other, _ = login_as("sponsor")
    assert other.post(url).status_code == 404
    editor, _ = login_as("editor")
    assert editor.post(url).status_code == 403
    with app.app_context():
        assert len(_autodoc_ids(document["id"])) == 1


def test_pages_say_plainly_when_the_writer_has_no_model(app, sponsor_client, document, tmp_path, monkeypatch):
    browser, _ = sponsor_client
    monkeypatch.setitem(app.config, "WRITER_MODEL_DIR", str(tmp_path / "no-model-here"))
    page = browser.get(f"/sponsor/documents/{document['id']}").get_data(as_text=True)
    assert "The writer has no model installed" in page and "flask writer fetch" in page
    _finish_all(app)
    page = browser.get(f"/sponsor/documents/{document['id']}").get_data(as_text=True)
    assert "The writer has no model installed" not in page  # nothing is waiting for it


def test_list_rows_poll_their_latest_autodoc(sponsor_client, document):
    browser, _ = sponsor_client
    page = browser.get("/sponsor/documents").get_data(as_text=True)
    assert f'data-autodoc-poll="/autodocs/{document["autodoc_id"]}/status" data-autodoc-part="badge"' in page


def test_admin_sees_failed_autodocs_and_can_regenerate_them(app, login_as, document):
    with app.app_context():
        for _ in range(3):
            for job in autodoc_queue.claim_jobs("test", 100, 60, 3):
                autodoc_queue.fail_job(job, "RuntimeError: disk full", 3)
    admin, _ = login_as("admin")
    page = admin.get("/admin/").get_data(as_text=True)
    assert page.count("RuntimeError: disk full") == 2 and "Mine" in page
    response = admin.post(f"/admin/autodocs/{document['autodoc_id']}/regenerate")
    assert response.headers["Location"] == "/admin/"
    page = admin.follow(response).get_data(as_text=True)
    assert "is queued" in page and page.count("RuntimeError: disk full") == 1  # replaced by the new attempt
    with app.app_context():
        rows = db.session.execute(select(Autodoc.generation, Autodoc.status)
                                  .where(Autodoc.id >= document["autodoc_id"]).order_by(Autodoc.id)).all()
    assert [tuple(row) for row in rows] == [(1, "failed"), (2, "queued")]
    assert admin.post("/admin/autodocs/999999/regenerate").status_code == 404
    sponsor, _ = login_as("sponsor")
    assert sponsor.post(f"/admin/autodocs/{document['autodoc_id']}/regenerate").status_code == 403
