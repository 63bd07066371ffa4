"""services.documents: what each change writes (all in one transaction), what it refuses
(and then writes nothing), and the queries the pages run."""
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import NotFound

from srcflask.extensions import db
from srcflask.models import Autodoc, Document, Retention, Revision, User
from srcflask.services import documents
from srcflask.services.documents import (
    DocumentError,
    EditConflict,
    InvalidDocument,
    NoChanges,
    NotAnApprovedEditor,
)

from .factories import make_document, make_user

TABLES = (Document, Retention, Revision, Autodoc)


def row_counts():
    return {model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) for model in TABLES}


def committed_counts():
    """Row counts as another connection sees them: only what is committed."""
    with db.engine.connect() as other:
        return {model.__tablename__: other.scalar(select(func.count()).select_from(model)) for model in TABLES}


NOTHING = {"documents": 0, "retentions": 0, "revisions": 0, "autodocs": 0}


@pytest.fixture
def sponsor(app_context):
    return make_user("sponsor")


@pytest.fixture
def editor(app_context):
    return make_user("editor")


def revisions_of(document):
    return db.session.scalars(
        select(Revision).where(Revision.document_id == document.id).order_by(Revision.version)
    ).all()


# --- create -------------------------------------------------------------------------------

def test_create_writes_document_retention_revision_and_queued_autodoc_in_one_transaction(sponsor, editor):
    document = documents.create_document(sponsor, editor.id, "  Minutes  ", "first line\r\nsecond line\rthird")

    # Flushed, not committed: another connection sees nothing until the caller commits.
    assert committed_counts() == NOTHING
    db.session.commit()
    assert committed_counts() == {"documents": 1, "retentions": 1, "revisions": 1, "autodocs": 1}

    db.session.expire_all()
    document = db.session.get(Document, document.id)
    assert (document.title, document.body, document.version) == ("Minutes", "first line\nsecond line\nthird", 1)
    assert (document.retention.sponsor_id, document.retention.editor_id) == (sponsor.id, editor.id)
    [revision] = revisions_of(document)
    assert (revision.version, revision.title, revision.body, revision.saved_by_id) == (
        1, "Minutes", "first line\nsecond line\nthird", sponsor.id,
    )
    [autodoc] = revision.autodocs
    assert (autodoc.status, autodoc.generation, autodoc.prompt, autodoc.continuation) == ("queued", 1, None, None)


def test_a_failing_autodoc_insert_leaves_nothing(sponsor, editor, monkeypatch):
    # A status the database's CHECK constraint refuses: the autodoc INSERT, the last one, fails.
    monkeypatch.setattr(documents, "QUEUED", "not-a-status")
    with pytest.raises(IntegrityError):
        documents.create_document(sponsor, editor.id, "Doomed", "body")
    db.session.rollback()
    assert row_counts() == NOTHING
    assert committed_counts() == NOTHING


@pytest.mark.parametrize("who", ["sponsor", "pending editor", "suspended editor", "rejected editor", "admin", "unknown"])
def test_create_refuses_anyone_but_an_approved_editor(sponsor, who):
    if who == "sponsor":
        editor_id = sponsor.id
    elif who == "unknown":
        editor_id = 987654
    elif who == "admin":
        editor_id = make_user("admin").id
    else:
        editor_id = make_user("editor", status=who.split()[0]).id
    with pytest.raises(NotAnApprovedEditor):
        documents.create_document(sponsor, editor_id, "Title", "body")
    db.session.commit()
    assert row_counts() == NOTHING


@pytest.mark.parametrize(
    ("title", "body", "message"),
    [
        ("   ", "body", "Title is required."),
        ("x" * 201, "body", "Title is too long (201 characters; at most 200)."),
        ("Fine", "y" * 20_001, "Body is too long (20,001 characters; at most 20,000)."),
    ],
)
def test_create_refuses_bad_text(sponsor, editor, title, body, message):
    with pytest.raises(InvalidDocument, match=message.replace("(", r"\(").replace(")", r"\)")):
        documents.create_document(sponsor, editor.id, title, body)
    db.session.commit()
    assert row_counts() == NOTHING


def test_body_limit_counts_line_breaks_once_and_allows_an_empty_body(sponsor, editor):
    # 10,000 CRLF pairs are 10,000 line breaks once normalised: exactly at the cap.
    at_cap = documents.create_document(sponsor, editor.id, "At the cap", "\r\n" * 20_000)
    empty = documents.create_document(sponsor, editor.id, "Empty", "")
    assert len(at_cap.body) == 20_000
    assert empty.body == ""


def test_nul_characters_are_dropped_not_sent_to_postgresql(sponsor, editor):
    document = documents.create_document(sponsor, editor.id, "Ti\x00tle", "bo\x00dy")
    db.session.commit()
    assert (document.title, document.body) == ("Title", "body")


# --- update -------------------------------------------------------------------------------

def test_update_bumps_the_version_and_adds_a_revision_and_a_queued_autodoc(sponsor, editor):
    document = make_document(sponsor, editor, title="Plan", body="v1")
    first_change = document.updated_at

    documents.update_document(document, 1, " Plan B ", "v2\r\nmore", sponsor)
    db.session.commit()

    db.session.expire_all()
    document = db.session.get(Document, document.id)
    assert (document.version, document.title, document.body) == (2, "Plan B", "v2\nmore")
    assert document.updated_at > first_change
    revisions = revisions_of(document)
    assert [(r.version, r.title, r.body) for r in revisions] == [(1, "Plan", "v1"), (2, "Plan B", "v2\nmore")]
    assert [a.status for r in revisions for a in r.autodocs] == ["queued", "queued"]


def test_a_stale_update_raises_edit_conflict_and_writes_nothing(sponsor, editor):
    document = make_document(sponsor, editor, title="Plan", body="v1")
    documents.update_document(document, 1, "Plan", "theirs", sponsor)
    db.session.commit()

    with pytest.raises(EditConflict) as conflict:
        documents.update_document(document, 1, "Plan", "mine", sponsor)
    db.session.commit()

    assert conflict.value.document.version == 2
    assert conflict.value.document.body == "theirs"
    assert "it is now at version 2" in str(conflict.value)
    assert row_counts() == {"documents": 1, "retentions": 1, "revisions": 2, "autodocs": 2}
    db.session.expire_all()
    assert db.session.get(Document, document.id).body == "theirs"


def test_a_save_that_changes_nothing_is_refused(sponsor, editor):
    document = make_document(sponsor, editor, title="Plan", body="line\nline")
    with pytest.raises(NoChanges, match="No changes to save"):
        # The same text as a browser sends it (CRLF, padded title) is still no change.
        documents.update_document(document, 1, " Plan ", "line\r\nline", sponsor)
    db.session.commit()
    assert row_counts()["revisions"] == 1
    assert document.version == 1


def test_update_refuses_bad_text_before_writing(sponsor, editor):
    document = make_document(sponsor, editor)
    with pytest.raises(InvalidDocument):
        documents.update_document(document, 1, "", "new body", sponsor)
    db.session.commit()
    assert row_counts()["revisions"] == 1
    assert db.session.get(Document, document.id).version == 1


def test_two_saves_from_the_same_version_exactly_one_wins(app):
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        document_id, sponsor_id = make_document(sponsor, editor, body="v1").id, sponsor.id

    ready = threading.Barrier(2)
    outcomes = []

    def save(body):
        with app.app_context():
            document, user = db.session.get(Document, document_id), db.session.get(User, sponsor_id)
            ready.wait()
            try:
                documents.update_document(document, 1, document.title, body, user)
            except EditConflict:
                db.session.rollback()
                outcomes.append(("conflict", body))
                return
            # Hold the row lock a moment, so that the other save really has to wait for it.
            time.sleep(0.2)
            db.session.commit()
            outcomes.append(("saved", body))

    threads = [threading.Thread(target=save, args=(body,)) for body in ("from A", "from B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(result for result, _ in outcomes) == ["conflict", "saved"]
    [winner] = [body for result, body in outcomes if result == "saved"]
    with app.app_context():
        document = db.session.get(Document, document_id)
        assert (document.version, document.body) == (2, winner)
        assert [(r.version, r.body) for r in revisions_of(document)] == [(1, "v1"), (2, winner)]
        assert row_counts()["autodocs"] == 2


# --- editors ------------------------------------------------------------------------------

def test_approved_editors_lists_only_approved_editors_by_name(app_context):
    zoe = make_user("editor", name="zoe")
    anna = make_user("editor", name="Anna")
    make_user("editor", status="pending")
    make_user("editor", status="suspended")
    make_user("sponsor")
    make_user("admin")
    assert [user.id for user in documents.approved_editors()] == [anna.id, zoe.id]


def test_reassign_editor(sponsor, editor):
    other = make_user("editor", name="Other Editor")
    document = make_document(sponsor, editor)

    documents.reassign_editor(document, other.id, sponsor)
    db.session.commit()

    db.session.expire_all()
    assert db.session.get(Retention, document.id).editor_id == other.id
    assert row_counts()["revisions"] == 1  # a new editor is not a new version of the text


def test_reassign_refuses_and_writes_nothing(sponsor, editor):
    document = make_document(sponsor, editor)
    pending = make_user("editor", status="pending")
    stranger = make_user("sponsor")

    with pytest.raises(NotAnApprovedEditor):
        documents.reassign_editor(document, pending.id, sponsor)
    with pytest.raises(NotAnApprovedEditor):
        documents.reassign_editor(document, stranger.id, sponsor)
    with pytest.raises(NoChanges, match="already this document's editor"):
        documents.reassign_editor(document, editor.id, sponsor)
    with pytest.raises(DocumentError, match="Only the document's sponsor"):
        documents.reassign_editor(document, make_user("editor").id, stranger)
    db.session.commit()

    db.session.expire_all()
    assert db.session.get(Retention, document.id).editor_id == editor.id


# --- reading ------------------------------------------------------------------------------

def test_get_document_or_404_only_for_its_sponsor_and_its_editor(sponsor, editor):
    document = make_document(sponsor, editor)
    assert documents.get_document_or_404(document.id, sponsor).id == document.id
    assert documents.get_document_or_404(document.id, editor).id == document.id
    for outsider in (make_user("sponsor"), make_user("editor"), make_user("admin")):
        with pytest.raises(NotFound):
            documents.get_document_or_404(document.id, outsider)
    with pytest.raises(NotFound):
        documents.get_document_or_404(document.id + 1, sponsor)


def _set_status(document, version, generation, status):
    revision = db.session.scalar(
        select(Revision).where(Revision.document_id == document.id, Revision.version == version)
    )
    autodoc = db.session.scalar(
        select(Autodoc).where(Autodoc.revision_id == revision.id, Autodoc.generation == generation)
    )
    if autodoc is None:
        autodoc = Autodoc(revision_id=revision.id, generation=generation)
        db.session.add(autodoc)
    autodoc.status = status
    db.session.commit()


def test_lists_show_the_latest_revisions_newest_autodoc_and_the_other_party(sponsor, editor):
    plain = make_document(sponsor, editor, title="Plain")
    retried = make_document(sponsor, editor, title="Retried")
    edited = make_document(sponsor, editor, title="Edited")
    _set_status(retried, 1, 1, "failed")
    _set_status(retried, 1, 2, "done")  # a regenerate: the newest attempt counts
    _set_status(edited, 1, 1, "done")
    documents.update_document(edited, 1, "Edited", "again", sponsor)  # its latest revision is queued
    db.session.commit()

    rows = documents.sponsor_documents(sponsor).items
    assert [(row.title, row.version, row.editor_name, row.autodoc_status) for row in rows] == [
        ("Edited", 2, editor.name, "queued"),
        ("Retried", 1, editor.name, "done"),
        ("Plain", 1, editor.name, "queued"),
    ]
    assert [row.id for row in rows] == [edited.id, retried.id, plain.id]
    assert [row.sponsor_name for row in documents.editor_documents(editor).items] == [sponsor.name] * 3
    assert documents.autodoc_counts(sponsor) == {"queued": 2, "running": 0, "done": 2, "failed": 1}


def test_lists_hold_only_the_users_documents_and_search_titles_literally(sponsor, editor):
    other_sponsor, other_editor = make_user("sponsor"), make_user("editor")
    make_document(sponsor, editor, title="Budget 2024")
    make_document(sponsor, editor, title="100% budget_v2")
    make_document(sponsor, other_editor, title="Other editor's")
    make_document(other_sponsor, editor, title="Another sponsor's budget")

    def titles(page):
        return sorted(row.title for row in page.items)

    assert titles(documents.sponsor_documents(sponsor, "BUDGET")) == ["100% budget_v2", "Budget 2024"]
    assert titles(documents.sponsor_documents(sponsor, "%")) == ["100% budget_v2"]
    assert titles(documents.sponsor_documents(sponsor, "t_v")) == ["100% budget_v2"]
    assert titles(documents.sponsor_documents(sponsor, "budget%")) == []
    assert titles(documents.editor_documents(editor, "budget")) == [
        "100% budget_v2", "Another sponsor's budget", "Budget 2024",
    ]
    assert titles(documents.editor_documents(other_editor)) == ["Other editor's"]
    assert documents.sponsor_documents(sponsor).total == 3


def test_pages_are_clamped(sponsor, editor, app):
    for number in range(3):
        make_document(sponsor, editor, title=f"Doc {number}")
    assert documents.sponsor_documents(sponsor, page=0, per_page=2).page == 1
    assert documents.sponsor_documents(sponsor, page=-5, per_page=2).page == 1
    far = documents.sponsor_documents(sponsor, page=10**30, per_page=2)
    assert (far.page, far.items, far.total) == (documents.MAX_PAGE, [], 3)


def test_document_revisions_newest_first_with_savers_and_autodocs(sponsor, editor):
    document = make_document(sponsor, editor, body="v1")
    documents.update_document(document, 1, document.title, "v2", sponsor)
    db.session.commit()
    revisions = documents.document_revisions(document).items
    assert [r.version for r in revisions] == [2, 1]
    assert [r.saved_by.id for r in revisions] == [sponsor.id, sponsor.id]
    assert [r.latest_autodoc.status for r in revisions] == ["queued", "queued"]
