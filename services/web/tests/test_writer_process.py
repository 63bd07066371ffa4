"""The production layout of gunicorn.conf.py: page workers, and the writer in one process of
its own that gunicorn's master starts, restarts and stops (srcflask/writer_supervisor.py).

Real processes on loopback, as tests/test_production.py runs them (entrypoint.sh, gunicorn
with gunicorn.conf.py and .env.prod's workers and threads), with the tiny GPT-2: one writer
process and one model load whatever the number of workers; the pages and the writer's state
(/readyz, srcflask_writer_alive) while it works, after it is killed and once it is back; the
queue drained by its successor; and gunicorn stopping it when told to stop.
"""
import json
import os
import re
import secrets
import signal
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dotenv import dotenv_values
from sqlalchemy import create_engine, text

from srcflask.config import Settings

from .faultkit import HOST, log_events, xla_cache
from .prodstack import REPO_ROOT, Process, free_port, gunicorn, gunicorn_workers, production_env, throwaway_database
from .test_metrics_multiprocess import sample
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

TOKEN = secrets.token_urlsafe(16)
# A bound on waiting for the writer process to load and compile the tiny model, not a timing.
WAIT_SECONDS = 240
# The pause before a dead writer process is replaced (production's): the workers report it
# failed in between.
RESTART_SECONDS = Settings.model_fields["WRITER_RESTART_MIN_SECONDS"].default
PRODUCTION = dotenv_values(REPO_ROOT / ".env.prod")
SETTINGS = {"WRITER_MAX_NEW_TOKENS": 12, "WRITER_CONTEXT_TOKENS": 24, "WRITER_BATCH_SIZE": 2, "WRITER_POLL_SECONDS": 0.2,
            "METRICS_TOKEN": TOKEN}


@dataclass
class Server:
    web: Process
    base: str
    database_url: str
    metrics_dir: Path

    def get(self, path, **kwargs):
        browser = requests.Session()
        browser.trust_env = False
        return browser.get(self.base + path, timeout=10, **kwargs)

    def writer(self):
        return self.get("/readyz").json()["writer"]

    def metrics(self):
        return self.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text

    def loaded_writer(self):
        """The writer process's pid once /readyz reports its model loaded."""
        state = wait_for(lambda: (state := self.writer())["state"] == "loaded" and state, "the writer loaded",
                         self.web)
        return state["process"]


def wait_for(check, what, web, timeout=WAIT_SECONDS, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}:\n{web.output()[-5000:]}")


def children(pid):
    """Every child of process `pid`, whichever of its threads started it (gunicorn_workers
    lists only the main thread's: the workers)."""
    return {int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()}


def stat(pid):
    """(parent pid, niceness) of a process, from /proc/<pid>/stat (fields 4 and 19)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[16])


def uses_tensorflow(pid):
    return "_pywrap_tensorflow" in Path(f"/proc/{pid}/maps").read_text()


def queue_documents(database_url, count):
    """`count` saves' autodocs queued straight in the database (as a save queues them); their ids."""
    from srcflask import create_app
    from srcflask.extensions import db

    from .factories import make_document, make_user

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        for number in range(count):
            make_document(sponsor, editor, title=f"Budget {number}", body="The committee reviewed the budget and")
        db.engine.dispose()
    return autodoc_rows(database_url)


def autodoc_rows(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT id, status, worker FROM autodocs ORDER BY id")).all()
    finally:
        engine.dispose()


def written_by(database_url):
    """{autodoc id: its writer's pid} once every autodoc is done, else None."""
    rows = autodoc_rows(database_url)
    if any(row.status != "done" for row in rows):
        return None
    return {row.id: int(row.worker.rsplit(":", 2)[1]) for row in rows}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):  # noqa: F811
    workdir = tmp_path_factory.mktemp("writer-process")
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()  # the entrypoint's `flask db upgrade` counts in it too, before gunicorn starts
    with ExitStack() as down:
        database_url = down.enter_context(throwaway_database())
        env = production_env(database_url, tiny_model_dir, **SETTINGS, **xla_cache(workdir / "xla-cache"),
                             PROMETHEUS_MULTIPROC_DIR=metrics_dir)
        port = free_port()
        web = down.enter_context(gunicorn(env, port, workdir / "gunicorn.log"))
        yield Server(web, f"http://127.0.0.1:{port}", database_url, metrics_dir)


def test_the_master_runs_one_writer_process_beside_the_page_workers(server):
    writer = server.loaded_writer()
    master = server.web.pid
    workers = gunicorn_workers(master)
    assert len(workers) == int(PRODUCTION["GUNICORN_WORKERS"]) > 1
    assert children(master) == workers | {writer}, "one writer process, whatever the number of workers"
    assert stat(writer) == (master, 7), "the master's child, at production's WRITER_NICE"
    # One model in memory: TensorFlow is loaded in the writer process and in no page worker.
    assert uses_tensorflow(writer) and not any(uses_tensorflow(worker) for worker in workers)
    assert len(log_events(server.web.output(), "writer_ready")) == 1

    (autodoc,) = queue_documents(server.database_url, 1)
    assert wait_for(lambda: written_by(server.database_url), "the autodoc written", server.web) == {autodoc.id: writer}
    assert autodoc_rows(server.database_url)[0].worker == f"{HOST}:{writer}:writer-0"
    # The pages are the workers' (their request counters), the jobs the writer's, all in the
    # master's one metrics folder: a scrape answered by any worker reports both.
    for _ in range(4):
        assert server.get("/").status_code == 200
    counted = {int(name.removesuffix(".db").rsplit("_", 1)[1]): name for name in os.listdir(server.metrics_dir)
               if name.startswith("counter_")}
    assert writer in counted and set(counted) - {writer} <= workers
    assert b"srcflask_http_requests" not in (server.metrics_dir / counted[writer]).read_bytes()
    metrics = wait_for(lambda: sample(m := server.metrics(), "srcflask_writer_model_loaded") == 1 and m,
                       "every worker's sample of the loaded model", server.web)
    assert sample(metrics, 'srcflask_writer_jobs_total{kind="autodoc",outcome="written"}') == 1
    assert sample(metrics, "srcflask_writer_alive") == 1
    assert server.writer()["load_seconds"] >= 0


def test_a_killed_writer_process_is_replaced_and_the_queue_still_drains(server):
    killed = server.loaded_writer()
    os.kill(killed, signal.SIGSTOP)  # it cannot write what is queued now before it dies
    queued = queue_documents(server.database_url, 4)[-4:]
    os.kill(killed, signal.SIGKILL)

    # Until the next one starts, the workers say so: /readyz and the alert's metric.
    failed = wait_for(lambda: (state := server.writer())["state"] == "failed" and state, "the writer failed",
                      server.web, timeout=RESTART_SECONDS)
    # How it died, unless gunicorn's own reaping of its children took the exit status first.
    assert failed["process"] == killed and re.search("killed by SIGKILL|collected by gunicorn", failed["reason"])
    assert sample(server.metrics(), "srcflask_writer_alive") == 0
    assert server.get("/readyz").status_code == 200, "a failed writer does not take the pages out of rotation"

    successor = server.loaded_writer()
    assert successor != killed and children(server.web.pid) == gunicorn_workers(server.web.pid) | {successor}
    writers = wait_for(lambda: written_by(server.database_url), "the queue drained", server.web)
    assert {writers[row.id] for row in queued} == {successor}
    ended = log_events(server.web.output(), "writer_process_ended")
    assert [(event["pid"], event["retry_seconds"]) for event in ended] == [(killed, RESTART_SECONDS)]


def test_stopping_gunicorn_stops_its_writer_process(server):
    writer = server.loaded_writer()
    memory = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    folders = [path for path in memory.glob("srcflask-writer-*") if (path / "report.json").is_file()
               and json.loads((path / "report.json").read_text())["pid"] == writer]
    started = time.monotonic()
    os.kill(server.web.pid, signal.SIGTERM)  # the master alone, as `docker stop` signals it
    server.web.popen.wait(timeout=60)
    assert time.monotonic() - started < 30, "within gunicorn's graceful_timeout"
    assert not Path(f"/proc/{writer}").exists()
    stopped = log_events(server.web.output(), "writer_process_stopped")
    assert [event["pid"] for event in stopped] == [writer] and stopped[0]["how"] == "exited with status 0"
    assert len(folders) == 1 and not folders[0].exists(), "the report's folder is removed"
