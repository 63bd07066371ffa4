"""Faults the writer's queue and the app must survive (issue 7), injected into real processes.

- A writer process killed with SIGKILL in the middle of its jobs loses nothing and
  duplicates nothing: its jobs' leases run out and other writers write them, once each.
- A writer frozen with SIGSTOP past its lease and woken with SIGCONT finds its job taken
  over and written by another writer: its late result is refused and logged as such.
- PostgreSQL restarted (a clean fast shutdown, then a crash: `-m immediate`) while browsers
  save through nginx and gunicorn and the in-process writer writes: requests that meet the
  outage get a clean 503 with Retry-After, nothing is half-written, and the app and its
  writer carry on by themselves once the server is back.

The scenarios live in tests/faultkit.py; bench/faults.py runs their long versions (twenty
kills, several freezes and restarts) and reports the figures in bench/RESULTS.md.
"""
import random
from collections import Counter

import pytest
from sqlalchemy import text

from .factories import make_user
from .faultkit import (HOST, WRITER_SETTINGS, JobFeeder, WriterPool, audit_queue, audit_saves, gunicorn_processes,
                       kill_writers, load_tokenizer, log_events, migrated_app, queue_drained, queue_engine,
                       restart_during_saves, saving_stack, stop_past_lease, wait_until, writer_env)
from .pgserver import pg_server  # noqa: F401  (fixture)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
# Each kill costs a writer start (~10 s of CPU): four keep the module near two minutes.
KILLS = 4
CONTEXT_TOKENS = WRITER_SETTINGS["WRITER_CONTEXT_TOKENS"]


@pytest.fixture(scope="module")
def xla_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("xla-cache")


@pytest.fixture(scope="module")
def writers(app, database_url, tiny_model_dir, xla_cache_dir, tmp_path_factory):  # noqa: F811
    """`flask writer run` processes on the session's database, shared by the module's tests:
    each costs ~10-20 s of CPU to start."""
    pool = WriterPool(writer_env(database_url, tiny_model_dir, xla_cache_dir), tmp_path_factory.mktemp("writers"))
    yield pool
    pool.close()


@pytest.fixture
def queue(database_url):
    engine = queue_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def people(app_context):
    return make_user("sponsor"), make_user("editor")


def test_a_writer_frozen_past_its_lease_has_its_late_result_refused(app, writers, queue, people,
                                                                    tiny_model_dir):  # noqa: F811
    sponsor, editor = people
    feeder = JobFeeder(app, sponsor.id, editor.id, random.Random(1))
    stop = stop_past_lease(writers, queue, lambda: feeder.add(1)[0], WRITER_SETTINGS["WRITER_LEASE_SECONDS"])

    # Taken over: claimed a second time, by the other writer, and written by it.
    winner = writers.holding(stop.written.worker)
    assert winner is not None and winner is not stop.stopped
    assert (stop.written.status, stop.written.attempts) == ("done", 2)
    assert stop.written.attempt_token != stop.token and stop.written.stamp["worker"] == stop.written.worker
    # The frozen writer woke, finished its generation and was refused: the row is unchanged.
    assert stop.final == stop.written
    (refusal,) = stop.refusals
    assert refusal["worker"].startswith(stop.stopped.worker_prefix)
    assert not [record for record in stop.stopped.events("autodoc_written") if record["autodoc_id"] == stop.autodoc_id]
    audit = audit_queue(queue, load_tokenizer(tiny_model_dir), CONTEXT_TOKENS)
    assert audit.problems() == []
    assert audit.by_status == {"done": stop.tries}


def test_writers_killed_mid_job_lose_nothing_and_write_each_job_once(app, writers, queue, people,
                                                                      tiny_model_dir):  # noqa: F811
    sponsor, editor = people
    feeder = JobFeeder(app, sponsor.id, editor.id, random.Random(1))
    feeder.add(20)
    feeder.run(rate=4)  # saves keep arriving while writers die
    # All the victims start at once (the two of the test before are there already), and one
    # more that survives to drain the queue: one round of starts instead of one per kill.
    writers.keep(KILLS + 1)
    try:
        kills = kill_writers(writers, queue, KILLS, random.Random(2), replace=False)
    finally:
        feeder.stop()
    wait_until(lambda: queue_drained(queue), 120, "the queue drained after the kills")

    audit = audit_queue(queue, load_tokenizer(tiny_model_dir), CONTEXT_TOKENS)
    assert audit.problems() == []
    assert audit.revisions == audit.autodocs == feeder.saves
    assert audit.by_status == {"done": feeder.saves}
    landed = [kill for kill in kills if kill.orphaned]
    assert landed, f"no kill landed while a writer held a job: {kills}"
    with queue.connect() as conn:
        orphans = conn.execute(text("SELECT id, worker, attempts FROM autodocs WHERE id = ANY(:ids)"),
                               {"ids": [job for kill in landed for job in kill.orphaned]}).all()
    killed = {f"{HOST}:{kill.pid}:" for kill in kills}
    assert all(row.attempts >= 2 and not row.worker.startswith(tuple(killed)) for row in orphans), orphans
    # Each job was reported written by at most one writer (ids restart with each test's
    # tables: a job is its id and queue time).
    written = Counter((record["autodoc_id"], record["queued_at"]) for record in writers.events("autodoc_written"))
    assert max(written.values()) == 1


@pytest.fixture
def served_database(pg_server):  # noqa: F811
    """A migrated database on the private server, with three sponsors and an editor:
    (its URL, the people, an engine to watch it)."""
    database_url = pg_server.create_database("srcflask_faults")
    engine = queue_engine(database_url)
    yield database_url, migrated_app(database_url, sponsors=3)[1], engine
    engine.dispose()


def test_postgresql_restarts_under_saves_and_generation(pg_server, served_database, tiny_model_dir,  # noqa: F811
                                                        xla_cache_dir, tmp_path):
    database_url, people, queue = served_database
    with saving_stack(database_url, tiny_model_dir, tmp_path, xla_cache_dir, people, 180) as (stack, processes, savers):
        restarts = restart_during_saves(pg_server, stack, queue, savers, ("fast", "immediate"))
        wait_until(lambda: queue_drained(queue), 120, "the queue drained after the restarts")

        # Nothing was restarted to recover: the same gunicorn master, workers and writer process, ready.
        assert gunicorn_processes(stack) == processes
        assert stack.get("/readyz").status_code == 200
        writer_pid = stack.get("/readyz").json()["writer"]["process"]
        outages_seen = log_events(stack.web.output(), "writer_database_unavailable")
    assert [restart.mode for restart in restarts] == ["fast", "immediate"]

    # Every request was answered with its page, or a clean 503 asking to retry; every
    # accepted save is there, whole. A save may have been committed just before its
    # connection was cut (its browser was answered 503): it is whole too, never half there.
    saves = audit_saves(queue, savers)
    assert saves.unexpected == []
    assert saves.unavailable, "no request met the restarts"
    assert saves.lost == [] and saves.unknown == []
    with queue.connect() as conn:
        writers_seen = set(conn.execute(text("SELECT DISTINCT worker FROM autodocs")).scalars())
    audit = audit_queue(queue, load_tokenizer(tiny_model_dir), CONTEXT_TOKENS)
    assert audit.problems() == []
    assert audit.by_status == {"done": audit.revisions}
    # One writer thread wrote everything, before and after the restarts: it met the
    # outages (and said so) and outlived them.
    assert writers_seen == {f"{HOST}:{writer_pid}:writer-0"}
    assert outages_seen
