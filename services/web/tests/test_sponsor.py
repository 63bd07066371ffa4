"""The sponsor's pages: dashboard, list, writing, editing and reassigning documents.

Each test drives the real pages through a logged-in browser (CSRF on) and checks the
response, the flashed message on the page it leads to, and the rows in the database.
"""
import re
from contextlib import contextmanager
from html import escape

import pytest
from sqlalchemy import event, func, select

from srcflask.extensions import db
from srcflask.models import Autodoc, Document, Retention, Revision, User
from srcflask.services.documents import update_document

from .factories import make_document, make_user, write_autodocs
from .helpers import XSS, XSS_ESCAPED, html

CONFLICT = "This document was changed since you opened it: it is now at version {}."
KEPT = "Your text is kept below; review the current version and save again."


def counts(app):
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Document, Retention, Revision, Autodoc)
        )


def document_row(app, document_id):
    with app.app_context():
        document = db.session.get(Document, document_id)
        return document.version, document.title, document.body, document.retention.editor_id


@contextmanager
def count_queries(app):
    """The SQL statements the app runs inside the block."""
    with app.app_context():
        engine = db.engine
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def sponsor(login_as):
    """(browser, user) of a logged-in approved sponsor."""
    return login_as("sponsor", name="Sam Sponsor")


@pytest.fixture
def editors(app):
    """Two approved editors, plus a pending and a suspended one who must never be offered."""
    with app.app_context():
        users = [
            make_user("editor", name="Eve Editor"),
            make_user("editor", name="Fred Editor"),
            make_user("editor", status="pending", name="Pending Editor"),
            make_user("editor", status="suspended", name="Suspended Editor"),
        ]
        return [user.id for user in users]


def new_document(app, sponsor_user, editor_id, title="Plan", body="Body text"):
    with app.app_context():
        return make_document(sponsor_user, db.session.get_one(User, editor_id), title=title, body=body).id


# --- dashboard ----------------------------------------------------------------------------

def test_dashboard_counts_and_latest_documents(app, sponsor, editors):
    browser, user = sponsor
    ids = [new_document(app, user, editors[0], title=f"Doc {n}") for n in range(7)]
    with app.app_context():
        revision = db.session.scalar(select(Revision).where(Revision.document_id == ids[0]))
        revision.autodocs[0].status = "done"
        db.session.commit()

    page = html(browser.get("/sponsor/"))

    assert re.search(r'class="display-6 mb-0 document-count">7<', page)
    assert 'href="/sponsor/documents/new"' in page and "New document" in page
    # The five latest changes, newest first.
    assert re.findall(r">(Doc \d)</a>", page) == ["Doc 6", "Doc 5", "Doc 4", "Doc 3", "Doc 2"]
    assert re.search(r">queued</span> <span class=\"fw-semibold\">6<", page)
    assert re.search(r">done</span> <span class=\"fw-semibold\">1<", page)


# --- create -------------------------------------------------------------------------------

def test_create_a_document(app, sponsor, editors):
    browser, user = sponsor
    form = html(browser.get("/sponsor/documents/new"))
    assert "Eve Editor" in form and "Fred Editor" in form
    assert "Pending Editor" not in form and "Suspended Editor" not in form

    response = browser.post(
        "/sponsor/documents/new", {"title": "  Field notes ", "body": "one\r\ntwo", "editor": editors[1]}
    )

    assert response.status_code == 302
    with app.app_context():
        document = db.session.scalar(select(Document))
        assert (document.title, document.body, document.version) == ("Field notes", "one\ntwo", 1)
        assert (document.retention.sponsor_id, document.retention.editor_id) == (user.id, editors[1])
        [revision] = document.revisions
        assert (revision.body, revision.saved_by_id, revision.autodocs[0].status) == ("one\ntwo", user.id, "queued")
    assert response.headers["Location"] == f"/sponsor/documents/{document.id}"
    page = html(browser.follow(response))
    assert "Document saved. Its autodoc is queued." in page
    assert "Field notes" in page and "Fred Editor" in page


@pytest.mark.parametrize("choice", ["sponsor", "pending", "suspended", "unknown", "not a number", "missing"])
def test_create_refuses_a_tampered_editor(app, sponsor, editors, choice):
    browser, user = sponsor
    editor = {
        "sponsor": user.id, "pending": editors[2], "suspended": editors[3],
        "unknown": 999_999_999_999, "not a number": "abc", "missing": None,
    }[choice]
    data = {"title": "Plan", "body": "Body"}
    if editor is not None:
        data["editor"] = editor

    response = browser.post("/sponsor/documents/new", data)

    assert response.status_code == 200
    assert re.search(r'id="editor-errors" class="invalid-feedback d-block">[^<]*(Not a valid choice|Invalid Choice)', html(response))
    assert counts(app) == (0, 0, 0, 0)


def test_create_without_any_approved_editor_explains_and_shows_no_form(app, sponsor):
    browser, _ = sponsor
    with app.app_context():
        make_user("editor", status="pending")

    page = html(browser.get("/sponsor/documents/new"))
    assert "There is no approved editor yet" in page
    assert 'name="title"' not in page and "<select" not in page

    response = browser.post("/sponsor/documents/new", {"title": "Plan", "body": "Body", "editor": 1})
    assert response.status_code == 200
    assert "There is no approved editor yet" in html(response)
    assert counts(app) == (0, 0, 0, 0)


def test_create_refuses_a_body_over_the_cap_and_a_missing_title(app, sponsor, editors):
    browser, _ = sponsor

    response = browser.post("/sponsor/documents/new", {"title": "Long", "body": "x" * 20_001, "editor": editors[0]})
    assert response.status_code == 200
    assert "Body is too long (20,001 characters; at most 20,000)." in html(response)

    response = browser.post("/sponsor/documents/new", {"title": "   ", "body": "", "editor": editors[0]})
    assert "Title is required." in html(response)
    assert counts(app) == (0, 0, 0, 0)


def test_a_body_at_the_cap_with_browser_line_breaks_is_accepted(app, sponsor, editors):
    browser, _ = sponsor
    body = ("x" * 98 + "\r\n") * 200  # 99 characters a line once saved: 19,800
    response = browser.post("/sponsor/documents/new", {"title": "Full", "body": body, "editor": editors[0]})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Document.body)) == body.replace("\r\n", "\n")


# --- document page ------------------------------------------------------------------------

def test_document_page_shows_text_editor_history_and_autodocs(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0], title="Plan", body="first text")
    with app.app_context():
        document = db.session.get(Document, document_id)
        update_document(document, 1, "Plan", "second\ntext", user)
        update_document(document, 2, "Plan", "third text", user)
        first, second, third = sorted(document.revisions, key=lambda r: r.version)
        first.autodocs[0].status, first.autodocs[0].prompt, first.autodocs[0].continuation = "done", "PROMPT-1", "CONT-1"
        second.autodocs[0].status, second.autodocs[0].error = "failed", "ERR-2"
        third.autodocs[0].status = "running"
        db.session.commit()

    page = html(browser.get(f"/sponsor/documents/{document_id}"))

    assert '<div class="doc-body border rounded p-3 bg-light">third text</div>' in page
    assert "Eve Editor" in page and "Version</dt><dd" in page
    assert re.findall(r"<strong>Version (\d)</strong>", page) == ["3", "2", "1"]
    assert '<span class="autodoc-prompt">PROMPT-1</span><mark class="autodoc-continuation">CONT-1</mark>' in page
    assert "ERR-2" in page and "Writing…" in page
    assert f'href="/sponsor/documents/{document_id}/edit"' in page
    assert f'action="/sponsor/documents/{document_id}/editor"' in page
    # The reassign form offers approved editors only, the current one selected.
    assert re.search(rf'<option selected value="{editors[0]}">Eve Editor', page)
    assert "Pending Editor" not in page


def test_user_text_is_escaped_everywhere(app, sponsor, editors):
    browser, user = sponsor
    response = browser.post("/sponsor/documents/new", {"title": XSS, "body": XSS, "editor": editors[0]})
    document_id = int(response.headers["Location"].rsplit("/", 1)[1])

    for path in (f"/sponsor/documents/{document_id}", f"/sponsor/documents/{document_id}/edit",
                 "/sponsor/documents", f"/sponsor/documents?q={XSS}", "/sponsor/"):
        page = html(browser.get(path))
        assert XSS not in page, path
        assert XSS_ESCAPED in page, path


# --- edit ---------------------------------------------------------------------------------

def test_edit_a_document(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0], title="Plan", body="old")

    form = html(browser.get(f"/sponsor/documents/{document_id}/edit"))
    assert 'name="version" type="hidden" value="1"' in form
    assert 'value="Plan"' in form and ">\r\nold</textarea>" in form

    response = browser.post(
        f"/sponsor/documents/{document_id}/edit", {"title": "Plan 2", "body": "new\r\ntext", "version": 1}
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"/sponsor/documents/{document_id}"
    assert "Document saved as version 2. Its autodoc is queued." in html(browser.follow(response))
    assert document_row(app, document_id) == (2, "Plan 2", "new\ntext", editors[0])
    assert counts(app) == (1, 1, 2, 2)


def test_a_stale_edit_is_refused_with_409_and_keeps_the_users_text(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0], title="Plan", body="original")
    # Someone else saves while our form (version 1) is open.
    with app.app_context():
        update_document(db.session.get(Document, document_id), 1, "Plan", "their text", user)
        db.session.commit()

    response = browser.post(
        f"/sponsor/documents/{document_id}/edit", {"title": "My title", "body": "my text", "version": 1}
    )

    assert response.status_code == 409
    page = html(response)
    assert CONFLICT.format(2) in page and KEPT in page
    assert 'value="My title"' in page and ">\r\nmy text</textarea>" in page
    assert '<div class="doc-body border rounded p-3 bg-light">their text</div>' in page
    assert 'name="version" type="hidden" value="2"' in page
    assert document_row(app, document_id) == (2, "Plan", "their text", editors[0])
    assert counts(app) == (1, 1, 2, 2)

    # Saving again, deliberately over version 2, goes through.
    response = browser.post(
        f"/sponsor/documents/{document_id}/edit", {"title": "My title", "body": "my text", "version": 2}
    )
    assert response.status_code == 302
    assert document_row(app, document_id) == (3, "My title", "my text", editors[0])


def test_a_save_that_changes_nothing_writes_nothing(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0], title="Plan", body="same\ntext")

    response = browser.post(
        f"/sponsor/documents/{document_id}/edit", {"title": "Plan", "body": "same\r\ntext", "version": 1}
    )

    assert response.status_code == 302
    assert "No changes to save" in html(browser.follow(response))
    assert counts(app) == (1, 1, 1, 1)


@pytest.mark.parametrize("version", [None, "", "abc", "0", str(2**40)])
def test_an_edit_with_a_tampered_version_is_refused(app, sponsor, editors, version):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0], body="old")
    data = {"title": "Plan", "body": "new"}
    if version is not None:
        data["version"] = version

    response = browser.post(f"/sponsor/documents/{document_id}/edit", data)

    assert response.status_code == 200
    assert "Reload the page and try again." in html(response)
    assert document_row(app, document_id)[:3] == (1, "Plan", "old")


def test_edit_refuses_a_body_over_the_cap(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0], body="old")
    response = browser.post(
        f"/sponsor/documents/{document_id}/edit", {"title": "Plan", "body": "y" * 20_001, "version": 1}
    )
    assert response.status_code == 200
    assert "Body is too long (20,001 characters; at most 20,000)." in html(response)
    assert counts(app) == (1, 1, 1, 1)


# --- reassign -----------------------------------------------------------------------------

def test_reassign_the_editor(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0])

    response = browser.post(f"/sponsor/documents/{document_id}/editor", {"editor": editors[1]})

    assert response.status_code == 302
    assert response.headers["Location"] == f"/sponsor/documents/{document_id}"
    assert "Fred Editor is now the editor of this document." in html(browser.follow(response))
    assert document_row(app, document_id)[3] == editors[1]

    response = browser.post(f"/sponsor/documents/{document_id}/editor", {"editor": editors[1]})
    assert "is already this document" in html(browser.follow(response))


@pytest.mark.parametrize("choice", ["sponsor", "pending", "suspended", "unknown", "not a number"])
def test_reassign_refuses_a_tampered_editor(app, sponsor, editors, choice):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0])
    editor = {"sponsor": user.id, "pending": editors[2], "suspended": editors[3],
              "unknown": 424242, "not a number": "x"}[choice]

    response = browser.post(f"/sponsor/documents/{document_id}/editor", {"editor": editor})

    assert response.status_code == 200
    assert 'id="editor-errors" class="invalid-feedback d-block"' in html(response)
    assert document_row(app, document_id)[3] == editors[0]


# --- list ---------------------------------------------------------------------------------

def test_list_pages_newest_change_first(app, sponsor, editors, monkeypatch):
    browser, user = sponsor
    monkeypatch.setitem(app.config, "PAGE_SIZE", 3)
    ids = [new_document(app, user, editors[0], title=f"Report {n}") for n in range(1, 6)]
    with app.app_context():  # a later change brings Report 1 to the top
        update_document(db.session.get(Document, ids[0]), 1, "Report 1", "changed", user)
        db.session.commit()

    def titles(path):
        return re.findall(r">(Report \d)</a>", html(browser.get(path)))

    assert titles("/sponsor/documents") == ["Report 1", "Report 5", "Report 4"]
    assert titles("/sponsor/documents?page=2") == ["Report 3", "Report 2"]
    page = html(browser.get("/sponsor/documents?page=2"))
    assert "5 documents." in page and 'href="/sponsor/documents?page=1"' in page
    assert "Eve Editor" in page and ">queued</span>" in page


def test_list_search_is_case_insensitive_and_paginated(app, sponsor, editors, monkeypatch):
    browser, user = sponsor
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    for title in ("Alpha notes", "Beta NOTES", "Gamma", "notes, delta", "100% done"):
        new_document(app, user, editors[0], title=title)

    def titles(path):
        return re.findall(r'documents/\d+">([^<]+)</a>', html(browser.get(path)))

    assert titles("/sponsor/documents?q=Notes") == ["notes, delta", "Beta NOTES"]
    page_two = html(browser.get("/sponsor/documents?q=Notes&page=2"))
    assert re.findall(r'documents/\d+">([^<]+)</a>', page_two) == ["Alpha notes"]
    assert 'href="/sponsor/documents?q=Notes&amp;page=1"' in page_two
    assert 'value="Notes"' in page_two
    assert titles("/sponsor/documents?q=%25") == ["100% done"]
    assert "No document title matches" in html(browser.get("/sponsor/documents?q=zzz"))


@pytest.mark.parametrize("query", ["page=abc", "page=0", "page=-3", "page=99999999999999999999999", "page=4",
                                   "q=" + "x" * 5000, "q=%00", "page=1.5&q=%25_%5C"])
def test_odd_list_parameters_never_fail(app, sponsor, editors, query):
    browser, user = sponsor
    new_document(app, user, editors[0], title="Only one")
    response = browser.get(f"/sponsor/documents?{query}")
    assert response.status_code == 200


def test_a_page_past_the_end_says_so(app, sponsor, editors):
    browser, user = sponsor
    new_document(app, user, editors[0], title="Only one")
    page = html(browser.get("/sponsor/documents?page=4"))
    assert "There is no page 4." in page and "Only one" not in page


def _populate(app, user, editor_id, n):
    """n documents; the first one edited until it has n revisions."""
    with app.app_context():
        editor = db.session.get_one(User, editor_id)
        ids = [make_document(user, editor, title=f"Doc {i}").id for i in range(n)]
        document = db.session.get(Document, ids[0])
        for version in range(1, n):
            update_document(document, version, document.title, f"text {version}", user)
        db.session.commit()
        return ids[0]


def test_list_and_document_page_run_a_constant_number_of_queries(app, login_as, editors):
    measured = {}
    for n in (3, 30):
        browser, user = login_as("sponsor")
        document_id = _populate(app, user, editors[0], n)
        browser.get("/sponsor/")  # warm up: the session and everything cached per process
        with count_queries(app) as list_queries:
            assert browser.get("/sponsor/documents").status_code == 200
        with count_queries(app) as page_queries:
            assert browser.get(f"/sponsor/documents/{document_id}").status_code == 200
        with count_queries(app) as dashboard_queries:
            assert browser.get("/sponsor/").status_code == 200
        measured[n] = (len(list_queries), len(page_queries), len(dashboard_queries))
    assert measured[3] == measured[30]
    list_count, page_count, _ = measured[3]
    # Each page also runs the navigation's one query (the bell's unread count, issue 4).
    assert list_count <= 5  # user, count, the page's ids, its rows, navigation
    # user, document, the history's count and page, its autodocs (with their verdicts,
    # joined), editors for the form, queue places, recent timings, navigation
    assert page_count <= 9


def revisions_shown(page):
    return [int(version) for version in re.findall(r'id="revision-(\d+)"', page)]


def test_a_long_history_is_shown_a_page_at_a_time(app, sponsor, editors):
    browser, user = sponsor
    document_id = _populate(app, user, editors[0], 25)
    first = html(browser.get(f"/sponsor/documents/{document_id}"))
    assert revisions_shown(first) == list(range(25, 5, -1))
    assert "Versions 1–20 of 25, newest first." in first
    assert f'href="/sponsor/documents/{document_id}?page=2"' in first
    second = html(browser.get(f"/sponsor/documents/{document_id}?page=2"))
    assert revisions_shown(second) == [5, 4, 3, 2, 1]

    with app.app_context():
        write_autodocs()
        third = db.session.scalar(select(Autodoc.id).join(Revision)
                                  .where(Revision.document_id == document_id, Revision.version == 3))
    response = browser.post(f"/sponsor/autodocs/{third}/regenerate")
    # Back to the page of the history that shows version 3.
    assert response.headers["Location"] == f"/sponsor/documents/{document_id}?page=2#revision-3"


# --- who may do what ----------------------------------------------------------------------

def test_another_sponsor_gets_404_and_changes_nothing(app, sponsor, login_as, editors):
    _, owner = sponsor
    document_id = new_document(app, owner, editors[0], title="Private", body="secret")
    intruder, _ = login_as("sponsor")
    before = (document_row(app, document_id), counts(app))

    assert intruder.get(f"/sponsor/documents/{document_id}").status_code == 404
    assert intruder.get(f"/sponsor/documents/{document_id}/edit").status_code == 404
    assert intruder.post(
        f"/sponsor/documents/{document_id}/edit", {"title": "Mine", "body": "mine", "version": 1}
    ).status_code == 404
    assert intruder.post(f"/sponsor/documents/{document_id}/editor", {"editor": editors[1]}).status_code == 404
    assert "Private" not in html(intruder.get("/sponsor/documents"))
    assert (document_row(app, document_id), counts(app)) == before


def test_an_editor_cannot_use_sponsor_pages(app, sponsor, login_as, editors):
    """Editors never reach the sponsor area (403 for the whole area, whatever the id), so
    the sponsor's URLs reveal nothing; their own document URL answers 404 (test_editor)."""
    _, owner = sponsor
    document_id = new_document(app, owner, editors[0])
    outsider, _ = login_as("editor")
    before = (document_row(app, document_id), counts(app))
    for path in (f"/sponsor/documents/{document_id}", f"/sponsor/documents/{document_id}/edit", "/sponsor/documents/999"):
        assert outsider.get(path).status_code == 403
    assert outsider.post(f"/sponsor/documents/{document_id}/editor", {"editor": editors[1]}).status_code == 403
    assert outsider.get(f"/editor/documents/{document_id}").status_code == 404
    assert (document_row(app, document_id), counts(app)) == before


def test_unknown_ids_are_404(sponsor):
    browser, _ = sponsor
    for path in ("/sponsor/documents/999999", "/sponsor/documents/99999999999999/edit"):
        assert browser.get(path).status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/sponsor/documents/new")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


def test_post_only_routes_refuse_get_and_forms_refuse_other_methods(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0])
    assert browser.get(f"/sponsor/documents/{document_id}/editor").status_code == 405
    assert browser.raw.put("/sponsor/documents/new").status_code == 405
    assert browser.raw.delete(f"/sponsor/documents/{document_id}/edit").status_code == 405
    assert browser.raw.post(f"/sponsor/documents/{document_id}").status_code == 405
    assert browser.raw.post("/sponsor/").status_code == 405


def test_forms_without_csrf_token_are_refused(app, sponsor, editors):
    browser, user = sponsor
    document_id = new_document(app, user, editors[0], body="old")
    before = (document_row(app, document_id), counts(app))

    posts = [
        ("/sponsor/documents/new", {"title": "T", "body": "B", "editor": editors[0]}),
        (f"/sponsor/documents/{document_id}/edit", {"title": "T", "body": "B", "version": 1}),
        (f"/sponsor/documents/{document_id}/editor", {"editor": editors[1]}),
    ]
    for path, data in posts:
        response = browser.post(path, data, csrf=False)
        assert response.status_code == 400, path
        assert "This form has expired" in html(response)
    assert (document_row(app, document_id), counts(app)) == before


def test_flash_messages_are_escaped(app, sponsor, editors):
    browser, user = sponsor
    with app.app_context():
        editor_id = make_user("editor", name=XSS).id
    document_id = new_document(app, user, editors[0])
    response = browser.post(f"/sponsor/documents/{document_id}/editor", {"editor": editor_id})
    page = html(browser.follow(response))
    assert escape(XSS, quote=False) in page and XSS not in page
