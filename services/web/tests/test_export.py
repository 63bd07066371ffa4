"""The admin's export of reviewed autodocs: JSON Lines, streamed, exactly the autodocs
that have a current verdict, with what a team needs to judge or fine-tune the writer."""
import json

import pytest
from sqlalchemy import event, select

from srcflask.extensions import db
from srcflask.models import Document, User
from srcflask.services import reviews
from srcflask.services.documents import update_document
from srcflask.static.data.processeddata.models import Autodoc, Revision

from .factories import make_document, make_user, write_autodocs

FIELDS = {"autodoc_id", "document_id", "revision_version", "revision_title", "revision_body", "generation",
          "prompt", "continuation", "stamp", "model", "written_at", "verdict", "comment", "correction", "reviewed_by",
          "reviewed_at", "stale"}


@pytest.fixture
def reviewed(app, login_as):
    """Three documents; the autodocs of two are reviewed (one twice), one is stale, and one
    is written but not reviewed. Returns (editor's browser, {name: autodoc id})."""
    editor, editor_user = login_as("editor", name="Eve Editor")
    with app.app_context():
        sponsor = make_user("sponsor")
        eve = db.session.get_one(User, editor_user.id)
        plan = make_document(sponsor, eve, title="Plan", body="Grüße aus Köln 🚀")
        make_document(sponsor, eve, title="Notes", body="Short notes.")
        make_document(sponsor, eve, title="Unreviewed", body="Nobody looked.")
        ids = dict(zip(("plan", "notes", "unreviewed"), write_autodocs(lambda job: f" — {job.title} continues.")))
        update_document(plan, 1, "Plan", "Second version", sponsor)
        db.session.commit()
        (ids["plan_v2"],) = write_autodocs(" — the second text.")

    def post(name, decision, comment="", **correction):
        return editor.post(f"/editor/autodocs/{ids[name]}/review",
                           {"decision": decision, "comment": comment, **correction})

    assert post("notes", "approve").status_code == 302
    assert post("plan", "request_changes", "Too short.").status_code == 302
    assert post("plan", "reject", "Written from the old text.", correct="y",
                correction=" — Plan, as it should read.").status_code == 302
    return ids


def lines(response):
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def test_the_export_is_json_lines_of_exactly_the_reviewed_autodocs(app, login_as, reviewed):
    admin, _ = login_as("admin")
    response = admin.get("/admin/reviews.jsonl")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="reviewed-autodocs-')
    assert response.headers["Cache-Control"] == "no-store"  # people's writing: never kept by a cache
    body = response.get_data(as_text=True)
    assert body.endswith("\n") and "\n\n" not in body

    rows = lines(response)
    assert [row["autodoc_id"] for row in rows] == [reviewed["notes"], reviewed["plan"]]  # oldest verdict first
    assert all(set(row) == FIELDS for row in rows)
    notes, plan = rows
    assert (notes["verdict"], notes["comment"], notes["stale"]) == ("approve", "", False)
    with app.app_context():
        autodoc = db.session.get_one(Autodoc, reviewed["plan"])
        assert plan == {
            "autodoc_id": autodoc.id,
            "document_id": autodoc.revision.document_id,
            "revision_version": 1,
            "revision_title": "Plan",
            "revision_body": "Grüße aus Köln 🚀",
            "generation": 1,
            "prompt": "Grüße aus Köln 🚀",
            "continuation": " — Plan continues.",
            "stamp": {"model": "tiny-gpt2", "settings": {"num_beams": 1}},
            "model": None,  # written with no registered model (tests/test_registry.py has one)
            "written_at": autodoc.finished_at.isoformat(),
            "verdict": "reject",  # the current verdict, not the one it replaced
            "comment": "Written from the old text.",
            "correction": " — Plan, as it should read.",  # the editor's text, beside the writer's
            "reviewed_by": "Eve Editor",
            "reviewed_at": plan["reviewed_at"],
            "stale": True,
        }
    assert "Grüße aus Köln 🚀" in response.get_data(as_text=True)  # UTF-8, not \\u escapes


def test_an_export_with_nothing_reviewed_is_empty(app, login_as):
    admin, _ = login_as("admin")
    with app.app_context():
        make_document(make_user("sponsor"), make_user("editor"))
        write_autodocs()
    response = admin.get("/admin/reviews.jsonl")
    assert response.status_code == 200 and response.get_data() == b""


def test_the_export_reads_rows_in_batches_from_a_server_side_cursor(app, reviewed, monkeypatch):
    """yield_per: one query, read through a server-side (named) cursor EXPORT_BATCH rows at
    a time, so a large export never sits in memory."""
    monkeypatch.setattr(reviews, "EXPORT_BATCH", 1)
    fetched = []
    with app.app_context():
        def record(conn, cursor, statement, parameters, context, executemany):
            fetched.append((context.execution_options.get("yield_per"), cursor.name is not None))

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            exported = reviews.export_lines()
            first = next(exported)
            assert fetched == [(1, True)]
            assert json.loads(first)["autodoc_id"] == reviewed["notes"]
            assert len(list(exported)) == 1
        finally:
            event.remove(db.engine, "before_cursor_execute", record)


def test_only_admins_export(login_as, reviewed):
    for role in ("sponsor", "editor"):
        browser, _ = login_as(role)
        assert browser.get("/admin/reviews.jsonl").status_code == 403


def test_the_dashboard_and_the_audit_page_link_to_the_export(login_as):
    admin, _ = login_as("admin")
    for path in ("/admin/", "/admin/audit"):
        assert 'href="/admin/reviews.jsonl"' in admin.get(path).get_data(as_text=True)


def test_every_exported_revision_is_the_text_the_autodoc_was_written_from(app, login_as, reviewed):
    admin, _ = login_as("admin")
    rows = lines(admin.get("/admin/reviews.jsonl"))
    with app.app_context():
        for row in rows:
            revision = db.session.scalar(
                select(Revision).where(Revision.document_id == row["document_id"],
                                       Revision.version == row["revision_version"])
            )
            assert (revision.title, revision.body) == (row["revision_title"], row["revision_body"])
            assert db.session.get_one(Document, row["document_id"]).version >= row["revision_version"]
