"""The editor's pages: only the documents assigned to them, read-only, with every
revision's autodoc."""
import re

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import Document, Revision, User
from srcflask.services.documents import reassign_editor, update_document

from .factories import make_document, make_user
from .helpers import XSS, XSS_ESCAPED, html


@pytest.fixture
def editor(login_as):
    """(browser, user) of a logged-in approved editor."""
    return login_as("editor", name="Eve Editor")


@pytest.fixture
def sponsors(app):
    with app.app_context():
        return [make_user("sponsor", name="Sam Sponsor").id, make_user("sponsor", name="Sue Sponsor").id]


def new_document(app, sponsor_id, editor_id, title="Plan", body="Body"):
    with app.app_context():
        sponsor, editor = db.session.get_one(User, sponsor_id), db.session.get_one(User, editor_id)
        return make_document(sponsor, editor, title=title, body=body).id


def titles(page):
    return re.findall(r'/editor/documents/\d+">([^<]+)</a>', page)


def test_dashboard_counts_only_assigned_documents(app, editor, sponsors):
    browser, user = editor
    with app.app_context():
        other_editor_id = make_user("editor").id
    for n in range(3):
        new_document(app, sponsors[n % 2], user.id, title=f"Mine {n}")
    new_document(app, sponsors[0], other_editor_id, title="Not mine")

    page = html(browser.get("/editor/"))

    assert re.search(r'class="display-6 mb-0 document-count">3<', page)
    assert titles(page) == ["Mine 2", "Mine 1", "Mine 0"]
    assert re.search(r">queued</span> <span class=\"fw-semibold\">3<", page)
    assert "Not mine" not in page


def test_list_shows_only_assigned_documents_with_sponsor_and_status(app, editor, sponsors, monkeypatch):
    browser, user = editor
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    with app.app_context():
        other_editor_id = make_user("editor").id
    new_document(app, sponsors[0], user.id, title="Alpha report")
    new_document(app, sponsors[1], user.id, title="Beta report")
    new_document(app, sponsors[0], user.id, title="Gamma notes")
    new_document(app, sponsors[0], other_editor_id, title="Someone else's report")

    first = html(browser.get("/editor/documents"))
    assert titles(first) == ["Gamma notes", "Beta report"]
    assert "Sam Sponsor" in first and "Sue Sponsor" in first and ">queued</span>" in first
    assert titles(html(browser.get("/editor/documents?page=2"))) == ["Alpha report"]
    assert titles(html(browser.get("/editor/documents?q=REPORT"))) == ["Beta report", "Alpha report"]
    assert "Someone else" not in "".join(
        html(browser.get(path)) for path in ("/editor/documents", "/editor/documents?page=2", "/editor/documents?q=else")
    )


@pytest.mark.parametrize("query", ["page=x", "page=-1", "page=10000000000000000000000", "q=" + "y" * 3000, "q=%00"])
def test_odd_list_parameters_never_fail(app, editor, sponsors, query):
    browser, user = editor
    new_document(app, sponsors[0], user.id)
    assert browser.get(f"/editor/documents?{query}").status_code == 200


def test_document_page_is_read_only_and_shows_each_revisions_autodocs(app, editor, sponsors):
    browser, user = editor
    document_id = new_document(app, sponsors[0], user.id, title="Plan", body="first")
    with app.app_context():
        document = db.session.get(Document, document_id)
        update_document(document, 1, "Plan", "second\nversion", db.session.get(User, sponsors[0]))
        first, second = db.session.scalars(
            select(Revision).where(Revision.document_id == document_id).order_by(Revision.version)
        ).all()
        autodoc = first.autodocs[0]
        autodoc.status, autodoc.prompt, autodoc.continuation = "done", "The prompt", "and the continuation"
        second.autodocs[0].status, second.autodocs[0].error = "failed", "Out of memory"
        db.session.commit()

    page = html(browser.get(f"/editor/documents/{document_id}"))

    assert '<div class="doc-body border rounded p-3 bg-light">second\nversion</div>' in page
    assert "Sam Sponsor" in page and "Eve Editor" in page
    assert re.findall(r"<strong>Version (\d)</strong>", page) == ["2", "1"]
    assert '<span class="autodoc-prompt">The prompt</span><mark class="autodoc-continuation">and the continuation</mark>' in page
    assert "Out of memory" in page
    # Read-only: no form, no edit or reassign controls.
    assert "<form method=\"post\" action=\"/sponsor" not in page
    assert f"/{document_id}/edit" not in page and "Change editor" not in page and "<select" not in page


def test_user_text_is_escaped(app, editor, sponsors):
    browser, user = editor
    document_id = new_document(app, sponsors[0], user.id, title=XSS, body=XSS)
    for path in (f"/editor/documents/{document_id}", "/editor/documents", "/editor/"):
        page = html(browser.get(path))
        assert XSS not in page and XSS_ESCAPED in page, path


def test_unassigned_documents_are_404(app, editor, sponsors):
    browser, user = editor
    with app.app_context():
        other_editor_id = make_user("editor").id
    theirs = new_document(app, sponsors[0], other_editor_id)
    mine = new_document(app, sponsors[0], user.id)

    assert browser.get(f"/editor/documents/{theirs}").status_code == 404
    assert browser.get("/editor/documents/987654").status_code == 404
    assert browser.get(f"/editor/documents/{mine}").status_code == 200

    # Once the sponsor gives the document to someone else, it is gone from this editor.
    with app.app_context():
        document = db.session.get(Document, mine)
        reassign_editor(document, other_editor_id, db.session.get(User, sponsors[0]))
        db.session.commit()
    assert browser.get(f"/editor/documents/{mine}").status_code == 404
    assert titles(html(browser.get("/editor/documents"))) == []


def test_the_owning_sponsor_cannot_use_the_editor_area(app, login_as):
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        editor_id = make_user("editor").id
    document_id = new_document(app, sponsor.id, editor_id)
    for path in ("/editor/", "/editor/documents", f"/editor/documents/{document_id}"):
        assert browser.get(path).status_code == 403


@pytest.mark.parametrize("status", ["pending", "suspended"])
def test_an_editor_without_approval_sees_no_document(app, login_as, sponsors, status):
    browser, user = login_as("editor")
    document_id = new_document(app, sponsors[0], user.id)
    with app.app_context():
        db.session.get(User, user.id).status = status
        db.session.commit()
    response = browser.get(f"/editor/documents/{document_id}")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/standing"


def test_editor_pages_refuse_post(editor):
    browser, _ = editor
    for path in ("/editor/", "/editor/documents", "/editor/documents/1"):
        assert browser.post(path).status_code == 405
