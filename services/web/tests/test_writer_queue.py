"""The autodocs table as a queue: claims, leases, attempt tokens, retries (real PostgreSQL)."""
import time

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.services import autodoc_queue
from srcflask.static.data.processeddata.models import Autodoc, Revision

from .factories import make_document, make_user

LEASE = 60
MAX_ATTEMPTS = 3


@pytest.fixture
def documents(app_context):
    sponsor, editor = make_user("sponsor"), make_user("editor")
    return [make_document(sponsor, editor, title=f"Doc {n}", body=f"Body {n}") for n in range(3)]


def autodocs():
    db.session.expire_all()
    return db.session.scalars(select(Autodoc).order_by(Autodoc.id)).all()


def test_claims_oldest_first_and_marks_running(documents):
    jobs = autodoc_queue.claim_jobs("w1", 2, LEASE, MAX_ATTEMPTS)
    assert [job.title for job in jobs] == ["Doc 0", "Doc 1"]
    assert jobs[0].body == "Body 0"
    first, second, third = autodocs()
    assert (first.status, first.attempts, first.worker) == ("running", 1, "w1")
    assert first.attempt_token == jobs[0].attempt_token and first.lease_expires_at is not None
    assert second.status == "running" and third.status == "queued"
    assert [job.title for job in autodoc_queue.claim_jobs("w2", 5, LEASE, MAX_ATTEMPTS)] == ["Doc 2"]
    assert autodoc_queue.claim_jobs("w3", 5, LEASE, MAX_ATTEMPTS) == []


def test_expired_lease_is_claimed_again_and_the_late_write_is_refused(documents):
    (stale,) = autodoc_queue.claim_jobs("slow-worker", 1, 1, MAX_ATTEMPTS)
    time.sleep(1.2)
    (fresh,) = autodoc_queue.claim_jobs("fresh-worker", 1, LEASE, MAX_ATTEMPTS)
    assert fresh.autodoc_id == stale.autodoc_id and fresh.attempt_token != stale.attempt_token

    assert autodoc_queue.complete_job(stale, "p", "late text", {}) is False
    assert autodoc_queue.extend_leases([stale], LEASE) == 0
    assert autodoc_queue.complete_job(fresh, "p", "fresh text", {}) is True
    assert autodoc_queue.complete_job(fresh, "p", "written twice", {}) is False

    job_row = autodocs()[0]
    assert (job_row.status, job_row.continuation, job_row.attempts) == ("done", "fresh text", 2)
    assert job_row.worker == "fresh-worker"


def test_heartbeat_keeps_the_lease(documents):
    (job,) = autodoc_queue.claim_jobs("w1", 1, 1, MAX_ATTEMPTS)
    for _ in range(3):
        time.sleep(0.5)
        assert autodoc_queue.extend_leases([job], 1) == 1
    # Held all along: nobody else could take it over.
    assert [other.title for other in autodoc_queue.claim_jobs("w2", 5, LEASE, MAX_ATTEMPTS)] == ["Doc 1", "Doc 2"]
    assert autodoc_queue.complete_job(job, "p", "text", {}) is True


def test_failures_are_retried_a_bounded_number_of_times_then_reported(documents):
    for attempt in range(1, MAX_ATTEMPTS + 1):
        (job,) = autodoc_queue.claim_jobs("w1", 1, LEASE, MAX_ATTEMPTS)
        assert job.title == "Doc 0"
        assert autodoc_queue.fail_job(job, f"boom {attempt}", MAX_ATTEMPTS) == ("failed" if attempt == MAX_ATTEMPTS else "queued")
        row = autodocs()[0]
        assert row.attempts == attempt
        assert row.status == ("failed" if attempt == MAX_ATTEMPTS else "queued")
    assert row.error == f"boom {MAX_ATTEMPTS}" and row.finished_at is not None
    assert [job.title for job in autodoc_queue.claim_jobs("w1", 5, LEASE, MAX_ATTEMPTS)] == ["Doc 1", "Doc 2"]


def test_a_job_whose_writer_keeps_dying_ends_failed_not_running_forever(documents):
    for _ in range(MAX_ATTEMPTS):
        autodoc_queue.claim_jobs("dies", 1, 1, MAX_ATTEMPTS)
        time.sleep(1.1)
    # The next claim finds the last lease expired with no attempts left.
    claimed = autodoc_queue.claim_jobs("w2", 1, LEASE, MAX_ATTEMPTS)
    first = autodocs()[0]
    assert first.status == "failed"
    assert first.error == autodoc_queue.DIED_MESSAGE.format(attempts=MAX_ATTEMPTS)
    assert [job.title for job in claimed] == ["Doc 1"]


def test_queue_positions_and_regeneration_keep_older_text(documents):
    first, second, third = autodocs()
    assert autodoc_queue.queue_positions([first.id, third.id]) == {first.id: 1, third.id: 3}
    (job,) = autodoc_queue.claim_jobs("w1", 1, LEASE, MAX_ATTEMPTS)
    autodoc_queue.complete_job(job, "prompt", "old text", {})
    assert autodoc_queue.queue_positions([first.id, second.id, third.id]) == {second.id: 1, third.id: 2}

    again = autodoc_queue.queue_regeneration(first.revision)
    db.session.commit()
    rows = db.session.scalars(select(Autodoc).where(Autodoc.revision_id == first.revision_id)
                              .order_by(Autodoc.generation)).all()
    assert [(row.generation, row.status, row.continuation) for row in rows] == [
        (1, "done", "old text"), (2, "queued", None)]
    assert again.id == rows[1].id
    assert autodoc_queue.queue_depth() == {"done": 1, "queued": 3}


@pytest.fixture
def three_sponsors(app_context):
    """Sponsor A saves five documents, then B two, then C one: {title: autodoc id}."""
    editor = make_user("editor")
    sponsors = {name: make_user("sponsor", name=f"Sponsor {name}") for name in "ABC"}
    saves = [("A", 5), ("B", 2), ("C", 1)]
    for name, count in saves:
        for number in range(1, count + 1):
            make_document(sponsors[name], editor, title=f"{name}{number}")
    return dict(db.session.execute(
        select(Revision.title, Autodoc.id).join(Autodoc.revision)).all())


TURN_ORDER = ["A1", "B1", "C1", "A2", "B2", "A3", "A4", "A5"]


def claimed_titles(worker, limit):
    return {job.title for job in autodoc_queue.claim_jobs(worker, limit, LEASE, MAX_ATTEMPTS)}


def test_sponsors_take_turns_whatever_order_they_saved_in(three_sponsors):
    assert claimed_titles("w1", 3) == {"A1", "B1", "C1"}
    assert claimed_titles("w2", 2) == {"A2", "B2"}
    assert claimed_titles("w3", 10) == {"A3", "A4", "A5"}


def test_a_sponsor_being_written_for_goes_behind_those_still_waiting(three_sponsors):
    assert claimed_titles("w1", 1) == {"A1"}
    # A1 is on the writer: B1 and C1 go before A2, although A2 is older.
    assert claimed_titles("w2", 2) == {"B1", "C1"}


def test_places_in_the_queue_follow_the_turns(three_sponsors):
    places = autodoc_queue.queue_positions(list(three_sponsors.values()))
    assert sorted(three_sponsors, key=lambda title: places[three_sponsors[title]]) == TURN_ORDER
    assert sorted(places.values()) == list(range(1, 9))
    # C1 is third in line although it was saved last.
    assert places[three_sponsors["C1"]] == 3


def test_a_job_whose_writer_died_goes_before_every_turn(three_sponsors):
    (job,) = autodoc_queue.claim_jobs("dead writer", 1, 0, MAX_ATTEMPTS)  # a lease already over
    assert job.title == "A1"
    assert claimed_titles("w2", 2) == {"A1", "B1"}


def test_the_admin_sees_the_queue_by_sponsor(three_sponsors, login_as):
    autodoc_queue.claim_jobs("w1", 1, LEASE, MAX_ATTEMPTS)  # A1 is being written
    rows = {row.name: (row.queued, row.running) for row in autodoc_queue.queue_by_sponsor()}
    assert rows == {"Sponsor A": (4, 1), "Sponsor B": (2, 0), "Sponsor C": (1, 0)}
    admin, _ = login_as("admin")
    page = admin.get("/admin/").get_data(as_text=True)
    table = page[page.index('id="queue-by-sponsor"'):]
    assert table.index("Sponsor A") < table.index("Sponsor B") < table.index("Sponsor C")
