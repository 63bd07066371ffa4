"""Latency a user sees: from the writer's commit to "done" on an open page, and from a save's
commit to a writer's claim; with LISTEN/NOTIFY wake-ups and server-sent events, and with
polling only (QUEUE_WAKEUPS=0, as before them).

Run from services/web: `.venv/bin/python -m bench.status_latency [--samples 20]`.

For each mode, the production processes on loopback (tests/prodstack.py: a throwaway
PostgreSQL database, entrypoint.sh, gunicorn with gunicorn.conf.py and .env.prod, Debian's
nginx with services/nginx/nginx.conf over TLS), with no writer in gunicorn's care, then:

1. Page: a sponsor logged in through nginx follows one queued autodoc the way
   static/assets/js/autodocs.js does: with wake-ups, it opens the event stream and, on each
   `changed` event, reads the autodoc's status JSON; without, the stream is refused (503) and
   it polls the status JSON every 2 s. The benchmark itself claims the job and, after a
   random pause (so polling is caught at any phase), completes it through the queue's own
   complete_job; the clock starts when that transaction has committed and stops when the
   client reads status "done".
2. Writer: a `flask writer run` process (the tiny GPT-2 of tests/tinygpt2.py: what is timed
   is when it claims, not how fast it writes) idles with the production WRITER_POLL_SECONDS;
   the benchmark saves a document through the documents service, starts the clock when that
   commit returns and reads the claim's time (autodocs.started_at, the database's clock on
   this same machine) once it is written; a random pause between saves.

Prints a Markdown table: median and p95 of each, in milliseconds.
"""
import argparse
import datetime as dt
import random
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from tests.helpers import CSRF_META
from tests.prodstack import (WEB_ROOT, Process, free_port, gunicorn, nginx, nginx_site, production_env,
                             run_entrypoint, self_signed_certificate, throwaway_database)
from tests.tinygpt2 import build_tiny_gpt2

PASSWORD = "bench password 123456"
POLL_SECONDS = 2.0  # autodocs.js's interval
TARGET_MS = 300


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def figures(values):
    return statistics.median(values) * 1000, percentile(values, 0.95) * 1000


class Site:
    """The stack's database through the app's own services (the benchmark's side), and a
    browser-like HTTP client through nginx (the page's side)."""

    def __init__(self, database_url, https, ca):
        from srcflask import create_app

        self.app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
        self.https, self.ca = https, ca
        with self.app.app_context():
            from srcflask.extensions import db
            from srcflask.models import User

            self.sponsor, self.editor = (User(name=role, email=f"{role}@bench.test", role=role, status="approved")
                                         for role in ("sponsor", "editor"))
            for user in (self.sponsor, self.editor):
                user.set_password(PASSWORD)
                db.session.add(user)
            db.session.commit()
            self.sponsor_id, self.editor_id = self.sponsor.id, self.editor.id

    def browser(self):
        import requests

        session = requests.Session()
        session.trust_env = False
        session.verify = self.ca
        page = self.https + "/auth/login"
        token = CSRF_META.search(session.get(page, timeout=10).text).group(1)
        response = session.post(page, data={"email": "sponsor@bench.test", "password": PASSWORD,
                                             "csrf_token": token}, headers={"Referer": page},
                                allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.status_code
        return session

    def save(self):
        """A new document through the documents service: its queued autodoc's id, and the
        moment its commit returned."""
        from sqlalchemy import select

        from srcflask.extensions import db
        from srcflask.models import User
        from srcflask.services.documents import create_document
        from srcflask.static.data.processeddata.models import Autodoc, Revision

        with self.app.app_context():
            document = create_document(db.session.get(User, self.sponsor_id), self.editor_id, "Bench",
                                       "The committee reviewed the budget and")
            db.session.commit()
            committed = time.time()
            autodoc_id = db.session.scalar(select(Autodoc.id).join(Revision, Revision.id == Autodoc.revision_id)
                                           .where(Revision.document_id == document.id))
        return autodoc_id, committed

    def claim(self):
        from srcflask.services import autodoc_queue

        with self.app.app_context():
            (job,) = autodoc_queue.claim_jobs("bench", 1, 300, 3)
        return job

    def complete(self, job):
        from srcflask.services import autodoc_queue

        with self.app.app_context():
            assert autodoc_queue.complete_job(job, "p", " written by the benchmark", {})
        return time.perf_counter()

    def claimed_at(self, autodoc_id, bound=60):
        """When a writer claimed the autodoc (epoch seconds), waiting until it is written."""
        from sqlalchemy import select

        from srcflask.extensions import db
        from srcflask.static.data.processeddata.models import Autodoc

        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            with self.app.app_context():
                row = db.session.execute(select(Autodoc.status, Autodoc.started_at)
                                         .where(Autodoc.id == autodoc_id)).one()
            if row.status == "done":
                started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=dt.timezone.utc)
                return started.timestamp()
            time.sleep(0.02)
        raise RuntimeError(f"autodoc {autodoc_id} was not written within {bound} s")


class Follower(threading.Thread):
    """One open page following one autodoc, as autodocs.js does; `done_at` is when it read
    status "done" (perf_counter)."""

    def __init__(self, site, browser, autodoc_id):
        super().__init__(daemon=True)
        self.site, self.browser, self.autodoc_id = site, browser, autodoc_id
        self.ready = threading.Event()
        self.done_at = None
        self.streamed = None

    def status(self):
        return self.browser.get(f"{self.site.https}/autodocs/{self.autodoc_id}/status", timeout=10,
                                headers={"Accept": "application/json"}).json()["status"]

    def run(self):
        with self.browser.get(f"{self.site.https}/autodocs/events?id={self.autodoc_id}", stream=True,
                              timeout=(5, 60)) as stream:
            self.streamed = stream.status_code == 200
            if self.streamed:
                chunks = stream.iter_content(chunk_size=None, decode_unicode=True)
                next(chunks)  # retry: the stream is open
                self.ready.set()
                for chunk in chunks:
                    if "event: changed" in chunk and self.status() == "done":
                        self.done_at = time.perf_counter()
                        return
                return
        self.ready.set()
        while True:  # refused: poll, as autodocs.js falls back to
            time.sleep(POLL_SECONDS)
            if self.status() == "done":
                self.done_at = time.perf_counter()
                return


def page_latencies(site, samples):
    browser = site.browser()
    latencies, streamed = [], set()
    for _ in range(samples):
        autodoc_id, _ = site.save()
        job = site.claim()
        follower = Follower(site, browser, autodoc_id)
        follower.start()
        follower.ready.wait(30)
        time.sleep(random.uniform(0, POLL_SECONDS))
        committed = site.complete(job)
        follower.join(60)
        latencies.append(follower.done_at - committed)
        streamed.add(follower.streamed)
    return latencies, streamed


def claim_delays(site, samples, writer):
    site.claimed_at(site.save()[0], bound=300)  # the writer loaded its model and wrote once
    delays = []
    for _ in range(samples):
        time.sleep(random.uniform(0.2, 1.2))  # the writer idles, at any phase of its poll
        autodoc_id, committed = site.save()
        delays.append(max(0.0, site.claimed_at(autodoc_id) - committed))
    assert writer.popen.poll() is None, writer.output()[-3000:]
    return delays


def measure(mode, wakeups, samples, model_dir, workdir):
    with ExitStack() as down:
        database_url = down.enter_context(throwaway_database("srcflask_bench"))
        env = production_env(database_url, model_dir, WRITER_IN_PROCESS=0, QUEUE_WAKEUPS=int(wakeups),
                             WRITER_MAX_NEW_TOKENS=4, WRITER_CONTEXT_TOKENS=16, WRITER_BATCH_SIZE=1)
        run_entrypoint(env, "flask", "db", "upgrade")
        web_port, http_port, https_port = free_port(), free_port(), free_port()
        down.enter_context(gunicorn(env, web_port, workdir / f"gunicorn-{mode}.log"))
        cert, key = self_signed_certificate(workdir)
        down.enter_context(nginx(nginx_site(web_port, http_port, https_port, cert, key)))
        site = Site(database_url, f"https://127.0.0.1:{https_port}", str(cert))
        pages, streamed = page_latencies(site, samples)
        writer = Process("writer", [str(WEB_ROOT / ".venv" / "bin" / "flask"), "writer", "run"],
                         workdir / f"writer-{mode}.log", cwd=WEB_ROOT, env={**env, "WRITER_IN_PROCESS": "1"})
        down.callback(writer.stop)
        claims = claim_delays(site, samples, writer)
        with site.app.app_context():
            from srcflask.extensions import db

            db.engine.dispose()
    return {"pages": pages, "streamed": streamed, "claims": claims}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        model_dir = workdir / "tiny-gpt2"
        build_tiny_gpt2(model_dir)
        results = {mode: measure(mode, wakeups, args.samples, model_dir, workdir)
                   for mode, wakeups in (("wake-ups and events", True), ("polling only", False))}
    from srcflask.config import ProductionSettings

    poll = ProductionSettings.model_fields["WRITER_POLL_SECONDS"].default
    print(f"\n{args.samples} samples each; writer poll {poll:g} s, page poll "
          f"{POLL_SECONDS:g} s; gunicorn.conf.py and .env.prod's workers and threads, nginx over TLS, loopback.\n")
    print("| mode | commit → \"done\" on the page, median ms | p95 ms | save → writer's claim, median ms | p95 ms |")
    print("|---|---|---|---|---|")
    for mode, result in results.items():
        page_median, page_p95 = figures(result["pages"])
        claim_median, claim_p95 = figures(result["claims"])
        how = "stream" if result["streamed"] == {True} else "polling" if result["streamed"] == {False} else "mixed"
        print(f"| {mode} ({how}) | {page_median:.0f} | {page_p95:.0f} | {claim_median:.0f} | {claim_p95:.0f} |")
    events, polling = results["wake-ups and events"], results["polling only"]
    ratio = statistics.median(polling["pages"]) / statistics.median(events["pages"])
    print(f"\nPage: {ratio:.0f}x sooner with events; target p95 ≤ {TARGET_MS} ms: "
          f"{'met' if figures(events['pages'])[1] <= TARGET_MS else 'missed'}. Claim: "
          f"{statistics.median(polling['claims']) / max(statistics.median(events['claims']), 1e-6):.0f}x sooner.")


if __name__ == "__main__":
    main()
