"""Metrics that stay true with several processes: gunicorn's workers add up (prometheus_client's
multiprocess mode, gunicorn.conf.py), and a `flask writer run` process serves its own on
WRITER_METRICS_PORT. Real gunicorn with the project's config, real writer process, on loopback."""
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from .factories import make_document, make_user
from .prodstack import WEB_ROOT, free_port, gunicorn, gunicorn_workers, production_env, throwaway_database
from .test_writer_runtime import WRITER_SETTINGS
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

TOKEN = secrets.token_urlsafe(16)
HEALTHZ = 'srcflask_http_requests_total{endpoint="ops.healthz",method="GET",status="200"}'
# A bound on waiting for a process to load the tiny model or a worker to come back, not a timing.
WAIT_SECONDS = 240


def browser():
    session = requests.Session()
    session.trust_env = False
    return session


def sample(metrics, series):
    """The value of `series` (name and labels, as written) in a scrape; None when absent."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else None


def healthz_counts_by_worker(folder):
    """{pid: /healthz 200s} from the workers' own counter files of the multiprocess folder."""
    counts = {}
    for name in os.listdir(folder):
        if name.startswith("counter_"):
            pid = int(name.removesuffix(".db").rsplit("_", 1)[1])
            for key, value, _, _ in MmapedDict.read_all_values_from_file(os.path.join(folder, name)):
                metric, sample_name, labels, _ = json.loads(key)
                if sample_name == "srcflask_http_requests_total" and labels.get("endpoint") == "ops.healthz":
                    counts[pid] = counts.get(pid, 0) + value
    return counts


def stale_counter_file(folder):
    """A previous run's counter file, as a worker of it would have left it: 1000 /healthz."""
    path = os.path.join(folder, "counter_1.db")
    stale = MmapedDict(path)
    stale.write_value(mmap_key("srcflask_http_requests", "srcflask_http_requests_total",
                               ["endpoint", "method", "status"], ["ops.healthz", "GET", "200"], "stale"), 1000.0, 0)
    stale.close()


def test_two_gunicorn_workers_add_up(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale_counter_file(folder)
    with ExitStack() as down:
        database_url = down.enter_context(throwaway_database())
        env = production_env(database_url, tmp_path / "no-model", WRITER_IN_PROCESS="0", MAIL_IN_PROCESS="0",
                             GUNICORN_WORKERS="2", METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=folder)
        port = free_port()
        server = down.enter_context(gunicorn(env, port, tmp_path / "gunicorn.log"))
        base = f"http://127.0.0.1:{port}"

        def scrape():
            response = browser().get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            assert response.status_code == 200, server.output()
            return response.text

        # Both workers up: each one's sampler has added its pool (SQLAlchemy's default pool of 5
        # connections per worker) to the sum, the database's figures being there once.
        pool_size, deadline = 2 * 5, time.monotonic() + WAIT_SECONDS
        while sample(metrics := scrape(), "srcflask_database_pool_size") != pool_size and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sample(metrics, "srcflask_database_pool_size") == pool_size, metrics
        assert sample(metrics, "srcflask_database_pool_in_use") is not None
        assert metrics.count("\nsrcflask_writer_queue_depth ") == 1
        assert "srcflask_writer_alive" not in metrics, "web workers of the scaled set-up run no writer"
        before = sample(metrics, HEALTHZ)
        assert before < 1000, "the previous run's counter file was not removed"

        def healthz(_):  # a new connection each time: the workers take turns accepting them
            return requests.get(base + "/healthz", headers={"Connection": "close"}, timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(healthz, range(200))) == {200}
        workers = gunicorn_workers(server.pid)
        by_worker = healthz_counts_by_worker(folder)
        assert len(workers) == 2 and set(by_worker) == workers, (workers, by_worker)
        assert all(count > 0 for count in by_worker.values()), f"one worker answered everything: {by_worker}"
        # Whichever worker answers the scrape, it reports both workers' requests.
        scrapes = [scrape() for _ in range(10)]
        assert sum(by_worker.values()) == before + 200
        assert {sample(metrics, HEALTHZ) for metrics in scrapes} == {before + 200}

        # A worker killed and replaced: its requests stay counted, its pool is no longer summed.
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            metrics = scrape()
            replaced = gunicorn_workers(server.pid)
            if (len(replaced) == 2 and killed not in replaced
                    and sample(metrics, "srcflask_database_pool_size") == pool_size) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert killed not in replaced and len(replaced) == 2, server.output()
        assert sample(metrics, "srcflask_database_pool_size") == pool_size, metrics
        assert sample(metrics, HEALTHZ) >= before + 200


def test_a_writer_process_serves_its_own_metrics(app, database_url, tiny_model_dir):  # noqa: F811
    with app.app_context():
        make_document(make_user("sponsor"), make_user("editor"), title="T", body="Funding for the project comes from")
    port = free_port()
    env = {**os.environ, "SRCFLASK_ENV": "development", "SECRET_KEY": "test", "DATABASE_URL": database_url,
           "WRITER_MODEL_DIR": str(tiny_model_dir), "FLASK_APP": "wsgi", "WRITER_METRICS_PORT": str(port),
           "WRITER_POLL_SECONDS": "0.2", **{key: str(value) for key, value in WRITER_SETTINGS.items()}}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    writer = subprocess.Popen([sys.executable, "-m", "flask", "writer", "run"], cwd=WEB_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    written = 'srcflask_writer_jobs_total{kind="autodoc",outcome="written"}'
    try:
        deadline, metrics = time.monotonic() + WAIT_SECONDS, ""
        while time.monotonic() < deadline and writer.poll() is None:
            try:
                metrics = browser().get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:  # not listening yet
                pass
            if sample(metrics, written) == 1:
                break
            time.sleep(0.5)
    finally:
        writer.send_signal(signal.SIGTERM)
        output = writer.communicate(timeout=60)[0]
    assert sample(metrics, written) == 1, output
    assert sample(metrics, 'srcflask_writer_jobs_total{kind="autodoc",outcome="refused"}') == 0
    assert sample(metrics, "srcflask_writer_generation_seconds_count") == 1
    assert sample(metrics, "srcflask_writer_alive") == 1
    assert sample(metrics, "srcflask_writer_model_loaded") == 1
    assert sample(metrics, "process_resident_memory_bytes") > 0
    # The queue is the web's /metrics figure: every writer would report the same number.
    assert "srcflask_writer_queue_depth" not in metrics
