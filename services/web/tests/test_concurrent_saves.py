"""Saves that race: two browsers on one document, two sponsors at one moment, one sponsor's burst.

Every request goes over real HTTP to a threaded server (tests/livehttp.py), so the two
saves of a round run at the same time in two server threads with two database
connections, and a threading.Barrier releases them together. Whatever order PostgreSQL
lets them in, the rules hold: optimistic locking lets exactly one edit of a version win
and shows the other browser a conflict page that keeps its text; every accepted save has
its own revision and queued autodoc, attached to the right document; and a sponsor who
saves a hundred documents at once does not push another sponsor's one save to the back
of the writer's queue.
"""
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from srcflask.extensions import db
from srcflask.models import Document, Retention
from srcflask.services import autodoc_queue
from srcflask.static.data.processeddata.models import Autodoc, Revision
from srcflask.writer import WriterRuntime

from .factories import DEFAULT_PASSWORD, make_document, make_user
from .helpers import wrong_kept_figures
from .livehttp import hidden_value, live_http, live_http_server  # noqa: F401  (fixtures)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

ROUNDS = 100
BURST = 100
BARRIER_TIMEOUT = 30
# Small and quick: what is checked is which text each prompt was built from, not the
# continuation. The bodies are far shorter than the context, so a prompt is its whole body.
WRITER_SETTINGS = {"WRITER_MAX_NEW_TOKENS": 2, "WRITER_CONTEXT_TOKENS": 64, "WRITER_BATCH_SIZE": 50,
                   "WRITER_LEASE_SECONDS": 120, "WRITER_MAX_ATTEMPTS": 2}


def _two_sponsors(app):
    """Two approved sponsors, as [(id, email)], and the id of an approved editor."""
    with app.app_context():
        sponsors = [make_user("sponsor") for _ in range(2)]
        return [(user.id, user.email) for user in sponsors], make_user("editor").id


def _at_once(pool, barrier, calls):
    """Run the calls in the pool's threads, each released by the barrier at the same moment."""

    def released(call):
        barrier.wait(BARRIER_TIMEOUT)
        return call()

    return list(pool.map(released, calls))


def _revisions_with_autodocs(document_id):
    return db.session.scalars(
        select(Revision).where(Revision.document_id == document_id)
        .options(selectinload(Revision.autodocs)).order_by(Revision.version)
    ).all()


def test_two_browsers_saving_one_document_at_once_lose_no_update(app, live_http):  # noqa: F811
    """100 rounds: both browsers load the edit form at the same version and save different
    text at the same moment. One save wins (redirect to the document), the other gets the
    409 conflict page with its own text kept and the winner's shown; nothing is lost."""
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        document_id = make_document(sponsor, editor, title="Shared plan", body="The first version.").id
        sponsor_id, email = sponsor.id, sponsor.email
    # The same sponsor in two browsers (two sessions), as with a laptop and a phone.
    browsers = [live_http.browser().login(email, DEFAULT_PASSWORD) for _ in range(2)]
    edit = f"/sponsor/documents/{document_id}/edit"
    barrier = threading.Barrier(2)
    winners = []
    with ThreadPoolExecutor(2) as pool:
        for number in range(ROUNDS):
            versions = [hidden_value(browser.get(edit).text, "version") for browser in browsers]
            assert versions == [str(number + 1)] * 2
            texts = [(f"Plan {number}.{side}", f"Browser {side} wrote this in round {number}.") for side in "AB"]
            responses = _at_once(pool, barrier, [
                lambda browser=browser, text=text, version=version: browser.post(
                    edit, {"title": text[0], "body": text[1], "version": version})
                for browser, text, version in zip(browsers, texts, versions)
            ])
            statuses = [response.status_code for response in responses]
            assert sorted(statuses) == [302, 409], (number, statuses)
            won, lost = (0, 1) if statuses[0] == 302 else (1, 0)
            assert responses[won].headers["Location"].endswith(f"/sponsor/documents/{document_id}")
            conflict = responses[lost].text
            assert "edit-conflict" in conflict and f"now at version {number + 2}" in conflict
            # The loser's text is in the form, ready to save again; the winner's is shown beside it.
            assert f'value="{texts[lost][0]}"' in conflict and texts[lost][1] in conflict
            assert texts[won][1] in conflict
            assert hidden_value(conflict, "version") == str(number + 2)
            winners.append(texts[won])

    with app.app_context():
        document = db.session.get(Document, document_id)
        assert document.version == 1 + ROUNDS
        assert (document.title, document.body) == winners[-1]
        revisions = _revisions_with_autodocs(document_id)
        assert [(revision.version, revision.title, revision.body) for revision in revisions] == [
            (1, "Shared plan", "The first version."),
            *((version, title, body) for version, (title, body) in enumerate(winners, start=2)),
        ]
        assert all(revision.saved_by_id == sponsor_id for revision in revisions)
        assert [[(autodoc.generation, autodoc.status) for autodoc in revision.autodocs]
                for revision in revisions] == [[(1, "queued")]] * (ROUNDS + 1)
        assert wrong_kept_figures(db.session) == []


def _create_form(browser):
    browser.get("/sponsor/documents/new")
    return browser


@pytest.mark.slow  # the writer loads and compiles the tiny GPT-2
def test_two_sponsors_creating_at_once_get_each_autodoc_on_its_own_document(app, live_http, monkeypatch,  # noqa: F811
                                                                            tiny_model_dir):  # noqa: F811
    """100 rounds of two sponsors saving a new document at the same moment: each document
    has its own sponsor, revision and autodoc, and the real writer builds each autodoc's
    prompt from its own document's text."""
    sponsors, editor_id = _two_sponsors(app)
    browsers = [live_http.browser().login(email, DEFAULT_PASSWORD) for _, email in sponsors]
    barrier = threading.Barrier(2)
    expected = {}  # title -> (sponsor id, body)
    with ThreadPoolExecutor(2) as pool:
        for number in range(ROUNDS):
            texts = [(f"Sponsor {side} document {number}", f"Sponsor {side} wrote document {number} today.")
                     for side in "AB"]
            for (sponsor_id, _), (title, body) in zip(sponsors, texts):
                expected[title] = (sponsor_id, body)
            for browser in browsers:
                _create_form(browser)
            responses = _at_once(pool, barrier, [
                lambda browser=browser, text=text: browser.post(
                    "/sponsor/documents/new", {"title": text[0], "body": text[1], "editor": editor_id})
                for browser, text in zip(browsers, texts)
            ])
            assert [response.status_code for response in responses] == [302, 302], number

    with app.app_context():
        documents = db.session.scalars(
            select(Document).options(selectinload(Document.retention), selectinload(Document.revisions)
                                     .selectinload(Revision.autodocs))
        ).all()
        assert sorted(document.title for document in documents) == sorted(expected)
        for document in documents:
            sponsor_id, body = expected[document.title]
            assert (document.body, document.version, document.retention.sponsor_id) == (body, 1, sponsor_id)
            (revision,) = document.revisions
            assert (revision.version, revision.title, revision.body, revision.saved_by_id) == (
                1, document.title, body, sponsor_id)
            assert [autodoc.status for autodoc in revision.autodocs] == ["queued"]

    for key, value in {**WRITER_SETTINGS, "WRITER_MODEL_DIR": str(tiny_model_dir)}.items():
        monkeypatch.setitem(app.config, key, value)
    WriterRuntime().run(app, until_idle=True)
    with app.app_context():
        written = db.session.execute(
            select(Autodoc.status, Autodoc.prompt, Revision.title, Revision.body, Document.body.label("document_body"))
            .join(Revision, Revision.id == Autodoc.revision_id)
            .join(Document, Document.id == Revision.document_id)
        ).all()
    assert len(written) == 2 * ROUNDS
    for row in written:
        assert row.status == "done", row
        assert row.prompt == row.body == row.document_body == expected[row.title][1], row
    with app.app_context():
        assert wrong_kept_figures(db.session) == []


def _queue_place(page):
    """The place in the queue a document page shows for its queued autodoc."""
    match = re.search(r"number (\d+) in the queue", page)
    assert match, "the page shows no place in the queue"
    return int(match.group(1))


def test_a_burst_of_saves_does_not_starve_another_sponsor(app, live_http):  # noqa: F811
    """One sponsor saves 100 documents back to back; halfway through, another sponsor saves
    one. Claims are fair between sponsors (every sponsor's oldest queued job before anyone's
    second), so the second sponsor's autodoc is in the writer's first batch and its page
    says so; every save of the burst is accepted and queued, and the places in the queue
    the pages show are the order the writer claims in."""
    ((busy_id, busy_email), (other_id, other_email)), editor_id = _two_sponsors(app)
    busy = _create_form(live_http.browser().login(busy_email, DEFAULT_PASSWORD))
    other = _create_form(live_http.browser().login(other_email, DEFAULT_PASSWORD))
    halfway = threading.Event()

    def burst():
        responses = []
        for number in range(BURST):
            responses.append(busy.post("/sponsor/documents/new", {
                "title": f"Burst {number}", "body": f"Saved in a burst, number {number}.", "editor": editor_id}))
            if number == BURST // 2:
                halfway.set()
        return responses

    with ThreadPoolExecutor(1) as pool:
        burst_done = pool.submit(burst)
        assert halfway.wait(BARRIER_TIMEOUT), "the burst did not get halfway"
        saved = other.post("/sponsor/documents/new", {"title": "Just one", "body": "A single save.",
                                                      "editor": editor_id})
        responses = burst_done.result()
    assert [response.status_code for response in responses] == [302] * BURST
    assert saved.status_code == 302
    other_page = other.get(saved.headers["Location"]).text

    with app.app_context():
        rows = db.session.execute(
            select(Autodoc.id, Autodoc.status, Retention.sponsor_id)
            .join(Revision, Revision.id == Autodoc.revision_id)
            .join(Retention, Retention.document_id == Revision.document_id)
            .order_by(Autodoc.id)
        ).all()
        assert sorted((row.sponsor_id, row.status) for row in rows) == sorted(
            [(busy_id, "queued")] * BURST + [(other_id, "queued")])
        (other_autodoc,) = [row.id for row in rows if row.sponsor_id == other_id]
        busy_autodocs = [row.id for row in rows if row.sponsor_id == busy_id]
        positions = autodoc_queue.queue_positions([row.id for row in rows])
        assert sorted(positions.values()) == list(range(1, BURST + 2))
        assert _queue_place(other_page) == positions[other_autodoc] <= 2
        # The burst keeps its own order behind, or around, the other sponsor's one job.
        assert sorted(busy_autodocs, key=positions.get) == busy_autodocs

        batch_size = app.config["WRITER_BATCH_SIZE"]
        in_order = sorted(positions, key=positions.get)
        claimed = []
        while jobs := autodoc_queue.claim_jobs("fairness-test", batch_size, 60, 3):
            claimed.append({job.autodoc_id for job in jobs})
        assert other_autodoc in claimed[0]
        # Each batch the writer claims is the next `batch_size` places of the queue the pages show.
        assert claimed == [set(in_order[start:start + batch_size]) for start in range(0, len(in_order), batch_size)]
