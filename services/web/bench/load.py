"""Load at scale: page latency and throughput on 100,000 documents, the writer idle, busy, and in a burst.

    cd services/web && .venv/bin/python -m bench.load [--quick] [--model-dir DIR] [--configs 2x4 1x8,writer=thread ...]

Prerequisites: Debian's `wrk` (`apt-get install -y wrk`), PostgreSQL at TEST_DATABASE_URL
(default postgres@127.0.0.1:5432, a superuser: the bench creates and drops its own database).
A full run takes about 25 minutes on 2 vCPUs, of which the bursts (step 3) take about 5 (plus a
few minutes to build GPT-2-small the first time: pass --model-dir to keep it); --quick (10,000
documents, 3 s runs, a 20 s burst, the tiny GPT-2 of tests/tinygpt2.py) about 6, for
development only.

What it does, in one throwaway database (tests.prodstack.throwaway_database):

1. Queries per request, in-process: bench/datagen.py writes 1,000 documents, bench/querycount.py
   counts the SQL statements of every measured page through Flask's test client; then the data
   set is regenerated at 100,000 documents and the pages are counted again (the counts must be
   equal), with each page's in-process time and its slowest statement (EXPLAINed in the report
   when it takes over EXPLAIN_MS). The sponsor list and the editor's queue are also rendered
   with the original app's N+1 loading, for the ratio.
2. HTTP load: for each configuration, gunicorn exactly as production runs it
   (entrypoint.sh, gunicorn.conf.py, .env.prod: page workers and the writer process the master
   runs beside them; or a comparison layout, below), straight on loopback (nginx is left out: it would take CPU from the two cores being
   measured). The heavy sponsor, the busy editor and an admin log in through the real form
   (requests, CSRF token from the page); wrk runs bench/wrk/measure.lua against each page and
   against saves (POST of a new document with the session's CSRF token), every answer
   checked for its status. Each page runs with the writer idle (its queue empty; measured
   once per workers x threads) and busy: the newest --queued (5,000) unreviewed autodocs go
   back to the queue (datagen.requeue_newest) so the writer generates all through the
   measurement with the random GPT-2-small of bench/writer_bench.py. Saves run last in each
   phase (each one queues an autodoc), and the documents they made are deleted after it, so
   every phase lists the same documents. Server time comes from the app's JSON request log on gunicorn's
   stderr (duration_ms: first before_request to after_request); wrk's latency adds the
   loopback connection and gunicorn's own queueing.
3. A burst (issue 7: "100 saves in a minute from one sponsor: pages stay responsive, one
   sponsor cannot starve others"), last in each configuration (--no-burst skips it): the
   writer's queue is emptied (datagen.finish_queue) and the bench waits until gunicorn's
   processes are quiet, since a batch claimed before that is still being generated (its text
   will be refused) and would take the cores from the "before" figures. Then the heavy
   sponsor saves BURST_SAVES new documents through the form, one every --burst-seconds /
   BURST_SAVES (0.6 s), so the burst's own autodocs are the queue; every answer must be a 302
   to the new document. Meanwhile wrk measures two pages of other users at one connection,
   one after the other, each for half the burst: the list of the approved sponsor with the
   most documents after the heavy one, and the busy editor's review queue. One connection,
   because the question is whether a user still gets their page quickly: at 8 the two cores
   are saturated by the pages alone (see the 8-connection rows) and wrk would slow the burst
   it measures. The same two pages are measured for as long just before the burst (writer
   idle, once per workers x threads, as the idle phase). Halfway through, the other sponsor
   saves one document: its place in the queue is read from its document page right after
   the save (what the sponsor sees), and the bench waits for its autodoc through the pages'
   status endpoint (/autodocs/<id>/status); its wait (queued_at to finished_at, database
   clock) is set beside the burst's autodocs written by then. The burst is not drained:
   its documents (SAVE_FORM's title, as every save here) are deleted by remove_saves.

A configuration is `WxT[,writer=LAYOUT][,nice=N][,intra=N][,inter=N]`: gunicorn workers x
threads (GUNICORN_WORKERS/GUNICORN_THREADS), where the writer runs, and the writer's
WRITER_NICE, WRITER_TF_INTRA_THREADS and WRITER_TF_INTER_THREADS; a knob the app does not
have yet (srcflask/config.py) is refused. The layouts: `process` (production's: one writer
process beside the workers, gunicorn.conf.py), `thread` (a writer inside every worker, as
production ran before: one model per worker) and `elected` (a writer inside one worker only,
the others serving pages; bench/writer_in_workers.conf.py runs both of these). Each
configuration also reports its processes' memory: the peak of their summed resident sizes
(sampled every MEMORY_SAMPLE_SECONDS), each one's own peak, and how many load TensorFlow
(copies of the model).

For a comparison of layouts alone, leave out what does not change between them: `--phases
busy --connections 8 --no-burst --no-query-counts` (the data set is still generated).

The Markdown report goes to stdout and to --report; --write-results puts its tables in
bench/RESULTS.md under "## Load at scale" (the section's hand-written reading is kept).
"""
import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests

from srcflask.config import Settings
from tests.helpers import CSRF_META
from tests.prodstack import WEB_ROOT, Process, free_port, gunicorn_workers, production_env, throwaway_database

from . import datagen, querycount

LUA = Path(__file__).with_name("wrk") / "measure.lua"
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "\n## Load at scale\n"
MEASURED = "\n### Measured by bench/load.py\n"
USER_AGENT = "srcflask-bench"  # the same for the log-in and wrk: Flask-Login's session protection
EXPLAIN_MS = 20
KNOBS = {"nice": "WRITER_NICE", "intra": "WRITER_TF_INTRA_THREADS", "inter": "WRITER_TF_INTER_THREADS"}
# Where the writer runs: {layout: (gunicorn config file, words for the report)}.
LAYOUTS = {"process": ("gunicorn.conf.py", "writer process"),
           "thread": ("bench/writer_in_workers.conf.py", "writer in each worker"),
           "elected": ("bench/writer_in_workers.conf.py", "writer in one worker")}
MEMORY_SAMPLE_SECONDS = 0.5
LIST_PAGES = ("sponsor list, first page", "sponsor list, middle page", "sponsor list, last page")
SAVE = "save (new document)"
TARGET_LIST_P95_MS, TARGET_SAVE_MS = 150, 100
# Autodocs a minute the busy writer must keep while the pages are measured (issue 17: production
# wrote 20 a minute under that load before).
TARGET_WRITER_PER_MINUTE = 20
BURST_SAVES, BURST_SECONDS = 100, 60
# The other users' pages measured before and during a burst: {label: (session, path)}.
OTHER_LIST = "other sponsor's list, first page"
BURST_PAGES = {OTHER_LIST: ("other sponsor", "/sponsor/documents?page=1"),
               "editor review queue": ("editor", "/editor/reviews")}
# gunicorn's processes count as quiet below this share of one core: an idle writer polls the
# queue once a second (a few ms); one generating takes one core or more.
QUIET_CPU_SHARE = 0.1
SAVED = re.compile(r"/sponsor/documents/(\d+)$")  # where a save's 302 must point
QUEUE_PLACE = re.compile(r"number (\d+) in the queue")  # what a document page shows for a queued autodoc
AUTODOC_SECTION = re.compile(r'id="autodoc-(\d+)"')


@dataclass(frozen=True)
class Config:
    workers: int
    threads: int
    knobs: tuple = ()  # ((env name, value), ...)
    layout: str = "process"  # a key of LAYOUTS

    @classmethod
    def parse(cls, text):
        size, *settings = text.split(",")
        workers, threads = (int(n) for n in size.lower().split("x"))
        knobs, layout = [], "process"
        for setting in settings:
            key, value = setting.split("=")
            if key == "writer":
                if value not in LAYOUTS:
                    raise argparse.ArgumentTypeError(f"unknown writer layout {value!r} in {text!r} "
                                                     f"(known: {', '.join(LAYOUTS)})")
                layout = value
            elif key in KNOBS:
                knobs.append((KNOBS[key], int(value)))
            else:
                raise argparse.ArgumentTypeError(f"unknown knob {key!r} in {text!r} (known: writer, {', '.join(KNOBS)})")
        return cls(workers, threads, tuple(knobs), layout)

    @property
    def env(self):
        return {"GUNICORN_WORKERS": self.workers, "GUNICORN_THREADS": self.threads, **dict(self.knobs)}

    @property
    def writers(self):
        """How many writers (model copies) the layout runs."""
        return self.workers if self.layout == "thread" else 1

    def __str__(self):
        names = {env: key for key, env in KNOBS.items()}
        return ", ".join([f"{self.workers}×{self.threads}", LAYOUTS[self.layout][1],
                          *(f"{names[k]}={v}" for k, v in self.knobs)])


@dataclass
class Run:
    config: Config
    writer: str  # "idle" | "busy" | "burst"
    page: str
    connections: int
    wrk: dict
    server_ms: list = field(default_factory=list)
    written: int = 0  # autodocs the writer logged as written during this run


@dataclass
class Phase:
    """The writer's side of one phase: what it wrote while the pages were measured."""

    config: Config
    writer: str
    load_average: float  # the machine's 1-minute load average when the phase began
    seconds: float
    written: int  # autodocs the writer logged as written during the phase (a batch counts when it ends)
    batch_seconds: list  # each generate call's time, from the writer's log


@dataclass
class Memory:
    """One configuration's processes (gunicorn's master and everything under it) while it was
    measured: the peak of their summed resident sizes, sampled; each process's own peak
    (VmHWM), by role; and how many of them had TensorFlow loaded (copies of the model)."""

    config: Config
    peak_total_mb: float
    process_peaks_mb: dict  # {"master" | "worker <pid>" | "writer <pid>": MB}
    model_copies: int


@dataclass
class Burst:
    """One configuration's burst: the other users' pages around it, its saves, and how the
    other sponsor's one save fared in the writer's queue against the burst's own."""

    config: Config
    other_sponsor: int  # the user id whose list is measured and who saves once halfway
    runs: list  # Run per page: writer "idle" just before (once per workers x threads), "burst" during
    saves: list  # (status, client ms, answer's Location) of each of the heavy sponsor's saves
    save_server_ms: list  # their duration_ms from the request log
    other_place: int | None  # the place its document page showed right after the save; None: already claimed
    queued_then: int  # autodocs waiting at that moment
    other_status: str  # its autodoc's status once the writer was done with it
    other_wait: float  # its autodoc's seconds from queued to finished
    written: int  # the burst's autodocs written once the other one was and the burst over
    waiting: int  # the burst's autodocs still queued or being written then
    median_wait: float  # queued to finished, seconds, of the burst's written autodocs
    last_wait: float  # the same, of the last one written

    @property
    def saved(self):
        return sum(1 for status, _, location in self.saves if saved_document(status, location))


# --- sessions ----------------------------------------------------------------------------------

class Browser:
    """A logged-in browser over plain HTTP. Production's session cookie is Secure (nginx speaks
    TLS) and requests would never send it to http://127.0.0.1, where gunicorn is reached here as
    nginx reaches it; so this one keeps its cookies itself and sends them in the Cookie header."""

    def __init__(self, base):
        self.base = base
        self.cookies = {}
        self.http = requests.Session()
        self.http.trust_env = False

    @property
    def cookie_header(self):
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def request(self, method, path, follow=True, **kwargs):
        for _ in range(5):
            response = self.http.request(method, self.base + path, allow_redirects=False, **kwargs, headers={
                "Cookie": self.cookie_header, "User-Agent": USER_AGENT})
            self.cookies.update(response.cookies.get_dict())
            if not (follow and response.is_redirect):
                return response
            method, path, kwargs = "GET", urllib.parse.urlsplit(response.headers["Location"]).path, {}
        raise RuntimeError(f"too many redirects from {path}")


def log_in(base, email):
    """Log in through the real form; (cookie header of the session, its CSRF token)."""
    browser = Browser(base)
    token = CSRF_META.search(browser.request("GET", "/auth/login").text).group(1)
    response = browser.request("POST", "/auth/login", follow=False,
                               data={"email": email, "password": datagen.PASSWORD, "csrf_token": token})
    if response.status_code != 302 or "/auth/" in response.headers.get("Location", ""):
        raise RuntimeError(f"log-in of {email} answered {response.status_code}: {response.text[:300]}")
    page = browser.request("GET", "/")
    return browser.cookie_header, CSRF_META.search(page.text).group(1)


def save_form(token):
    """The form of every save here: SAVE_FORM (its title lets remove_saves delete them), the
    busy editor as the document's editor, and the session's CSRF token."""
    return {**querycount.SAVE_FORM, "editor": datagen.BUSY_EDITOR_ID, "csrf_token": token}


def request_in_session(http, base, session, method, path, **kwargs):
    """A request in a logged-in session (log_in's), sent as wrk sends them: always the
    log-in's cookie and no redirect followed. Keeping the cookie a save answers would carry
    its flash message into the next request, and a hundred of them into the hundredth."""
    cookie, _ = session
    return http.request(method, base + path, allow_redirects=False, timeout=30,
                        headers={"Cookie": cookie, "User-Agent": USER_AGENT}, **kwargs)


# --- wrk ---------------------------------------------------------------------------------------

def wrk(url, cookie, connections, seconds, expected, body=None):
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
               "-H", f"Cookie: {cookie}", "-H", f"User-Agent: {USER_AGENT}", url, "--", str(expected)]
    if body is not None:
        command.append(body)
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("BENCH "))
    return json.loads(line[len("BENCH "):])


def warn_of_wrong_answers(label, result):
    if result["unexpected"] or result["failed"]:
        print(f"warning: {label}: {result['unexpected']} unexpected answers, {result['failed']} failed",
              file=sys.stderr)


def log_values(log_path, offset, **request_fields):
    """From gunicorn's output after byte `offset` (the writer process's lines included):
    (duration_ms of every request the app logged, or of those whose log line has
    `request_fields`, e.g. path="/editor/reviews" when other requests ran at the same time;
    seconds of every generate call the writer logged; how many autodocs it wrote)."""
    durations, batches, written = [], {}, 0
    with open(log_path, "rb") as log:
        log.seek(offset)
        for raw in log:
            if b'"srcflask.request"' not in raw and b'"autodoc_written"' not in raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("logger") == "srcflask.request":
                if all(entry.get(name) == value for name, value in request_fields.items()):
                    durations.append(entry["duration_ms"])
            elif entry.get("event") == "autodoc_written":
                # One line per autodoc; a batch's lines share their worker, start and time.
                batches[(entry["worker"], entry["started_at"])] = entry["seconds"]
                written += 1
    return durations, list(batches.values()), written


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# --- the database ------------------------------------------------------------------------------

def migrate(database_url):
    from flask_migrate import upgrade

    from srcflask import create_app

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, LOG_LEVEL="WARNING")
    with app.app_context():
        upgrade()
        from srcflask.extensions import db
        db.engine.dispose()


def sql(database_url, statement, **params):
    conn = psycopg2.connect(datagen._libpq(database_url))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchone() if cursor.description else None
    finally:
        conn.close()


def busiest_other_sponsor(url):
    """The approved sponsor with the most documents after the heavy one: the other user whose
    list a burst must not slow down, and who saves once in the middle of it."""
    return sql(url, """
        SELECT u.id FROM users u JOIN retentions r ON r.sponsor_id = u.id
        WHERE u.role = 'sponsor' AND u.status = 'approved' AND u.id <> %(heavy)s
        GROUP BY u.id ORDER BY count(*) DESC, u.id LIMIT 1
        """, heavy=datagen.HEAVY_SPONSOR_ID)[0]


def heavy_sponsor_documents(url):
    return sql(url, "SELECT count(*) FROM retentions WHERE sponsor_id = %(id)s", id=datagen.HEAVY_SPONSOR_ID)[0]


def remove_saves(url):
    """Delete the documents the measured saves created (their revisions, autodocs and
    notifications go with them): every phase lists the same documents. The writer may be writing
    one of their autodocs meanwhile: a deadlock between the two is tried again."""
    for attempt in range(5):
        try:
            sql(url, "DELETE FROM documents WHERE title = %(title)s", title=querycount.SAVE_FORM["title"])
            return
        except psycopg2.errors.DeadlockDetected:
            if attempt == 4:
                raise


def wait_for(what, check, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


# --- gunicorn and its processes -----------------------------------------------------------------

@contextmanager
def serve(config, env, port, log_path, workdir):
    """gunicorn with `config`'s layout (entrypoint.sh first, as the container runs it) on
    127.0.0.1:`port`, its output and its writer's in `log_path`; yields the master's Process
    once /healthz answers, and a MemoryWatch of its processes."""
    config_file, _ = LAYOUTS[config.layout]
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "BENCH_WRITER_LAYOUT": config.layout,
           "BENCH_WRITER_LOCK": str(workdir / f"writer-{port}.lock")}
    server = Process("gunicorn", [str(WEB_ROOT / "entrypoint.sh"), "gunicorn", "--config", config_file, "wsgi:app"],
                     log_path, cwd=WEB_ROOT, env=env)
    try:
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz", timeout=180)
        with MemoryWatch(config, server.pid) as memory:
            yield server, memory
    finally:
        # As docker stops it (stop_grace_period): the writer's batch and the requests get
        # gunicorn's graceful_timeout (30 s), and its on_exit removes its folders in /dev/shm.
        server.stop(timeout=45)


def descendants(pid):
    """Every process under `pid` (children of any of its threads: gunicorn's master starts its
    workers from its main thread and the writer process from another)."""
    found = []
    try:
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return found
    for child in children:
        found += [child, *descendants(child)]
    return found


def _status_kb(pid, field_name):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


class MemoryWatch:
    """Samples the summed resident size of gunicorn's master and every process under it while
    the configuration is measured; .result() (before the processes end) adds each one's own
    peak and counts those with TensorFlow loaded."""

    def __init__(self, config, master):
        self.config, self.master = config, master
        self.peak_kb = 0
        self.seen = {}  # {pid: role}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="memory-watch", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _processes(self):
        workers = gunicorn_workers(self.master)
        return {self.master: "master", **{pid: f"{'worker' if pid in workers else 'writer'} {pid}"
                                          for pid in descendants(self.master)}}

    def _sample(self):
        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            total = 0
            for pid, role in self._processes().items():
                try:
                    total += _status_kb(pid, "VmRSS")
                except (FileNotFoundError, ProcessLookupError):
                    continue
                self.seen.setdefault(pid, role)
            self.peak_kb = max(self.peak_kb, total)

    def result(self):
        peaks, copies = {}, 0
        for pid, role in self._processes().items():
            try:
                peaks[role] = _status_kb(pid, "VmHWM") / 1024
                copies += "_pywrap_tensorflow" in Path(f"/proc/{pid}/maps").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
        return Memory(self.config, self.peak_kb / 1024, peaks, copies)


def writers_ready(log_path):
    """How many writers have loaded and compiled their model so far (their writer_ready lines)."""
    return log_path.read_bytes().count(b'"event": "writer_ready"')


# --- the model ---------------------------------------------------------------------------------

def model_folder(args, workdir):
    """The writer's model: --model-dir's (built there by bench/writer_bench.build on first
    use, then reused), else the tiny GPT-2 with --quick, else GPT-2-small built in the temp
    folder. Built in a child process, so this one never imports TensorFlow."""
    if args.model_dir:
        root = Path(args.model_dir).resolve()
        if not (root / "model" / "config.json").is_file():
            root.mkdir(parents=True, exist_ok=True)
            _child("from bench.writer_bench import build; build(Path(sys.argv[1]))", root)
        return root / "model", "random GPT-2-small (bench/writer_bench.py)"
    if args.quick:
        _child("from tests.tinygpt2 import build_tiny_gpt2; build_tiny_gpt2(Path(sys.argv[1]))", workdir / "tiny")
        return workdir / "tiny", "tiny GPT-2 (tests/tinygpt2.py)"
    _child("from bench.writer_bench import build; build(Path(sys.argv[1]))", workdir)
    return workdir / "model", "random GPT-2-small (bench/writer_bench.py)"


def _child(code, path):
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import sys; from pathlib import Path; {code}", str(path)],
                   cwd=WEB_ROOT, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    print(f"model built in {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


# --- the steps ---------------------------------------------------------------------------------

def query_step(url, args):
    """Step 1: query counts at the small and the large size, the N+1 comparison, EXPLAINs
    (with --no-query-counts, only the large data set). Leaves the large data set in the database."""
    if not args.query_counts:
        large = datagen.generate(url, datagen.Shape(documents=args.documents, revisions=3 * args.documents),
                                 reset=True, log=_log)
        remove_saves(url)
        return {"large": large}
    small = datagen.generate(url, datagen.Shape(documents=args.small_documents, revisions=3 * args.small_documents),
                             reset=True, log=_log)
    app = querycount.make_app(url)
    repeats = 3 if args.quick else 5
    counted_small = querycount.count_queries(app, small.longest_document, repeats)
    large = datagen.generate(url, datagen.Shape(documents=args.documents, revisions=3 * args.documents),
                             reset=True, log=_log)
    counted_large = querycount.count_queries(app, large.longest_document, repeats)
    explains = {label: querycount.explain(app, figures["slowest"]) for label, figures in counted_large.items()
                if figures["slowest"].ms > EXPLAIN_MS}
    compared = querycount.compare_n_plus_one(app, repeats=3 if args.quick else 10)
    from srcflask.extensions import db
    with app.app_context():
        db.engine.dispose()
    remove_saves(url)  # and their queued autodocs: the writer must start idle
    return {"small": small, "large": large, "counted_small": counted_small, "counted_large": counted_large,
            "explains": explains, "compared": compared}


def load_step(url, large, model_dir, configs, args):
    """Steps 2 and 3: wrk against gunicorn for every configuration, idle then busy, then
    the burst (unless --no-burst). The writer idle is measured once per workers x threads
    (its knobs change nothing while it waits); returns (runs, phases, bursts)."""
    runs, phases, bursts, memories = [], [], [], []
    measured_sizes = set()
    other_sponsor = busiest_other_sponsor(url) if args.burst else None
    users = [("sponsor", "sponsor", datagen.HEAVY_SPONSOR_ID), ("editor", "editor", datagen.BUSY_EDITOR_ID),
             ("admin", "admin", datagen.ADMIN_ID)]  # (session, role, user id)
    if args.burst:
        users.append(("other sponsor", "sponsor", other_sponsor))
    for number, config in enumerate(configs):
        port = free_port()
        log_path = Path(args.report).with_name(f"{Path(args.report).stem}-gunicorn-{number}.log")
        # The saves are wrk's, as fast as the server answers: far past a person's pace, which the
        # save limit is for (tests/test_throttle.py); its count still goes through Redis.
        env = production_env(url, model_dir, SAVE_RATE_LIMIT="1000000 per minute", **config.env)
        with serve(config, env, port, log_path, Path(args.report).parent) as (server, memory):
            base = f"http://127.0.0.1:{port}"
            wait_for("the writers to load their model", lambda: writers_ready(log_path) >= config.writers,
                     timeout=900, interval=1)
            sessions = {session: log_in(base, datagen.email_of(user_id, role)) for session, role, user_id in users}
            first_of_size = (config.workers, config.threads) not in measured_sizes
            measured_sizes.add((config.workers, config.threads))
            wanted = [phase for phase in args.phases if phase == "busy" or first_of_size]
            for phase in wanted:
                if phase == "busy":
                    datagen.requeue_newest(url, args.queued, exclude_documents=[large.longest_document])
                    wait_for("the writer to claim a job", lambda: sql(
                        url, "SELECT count(*) FROM autodocs WHERE status = 'running'")[0], timeout=60)
                measured, writer = measure_phase(url, base, config, phase, sessions, large, log_path, args)
                runs += measured
                phases.append(writer)
                remove_saves(url)
                print(f"measured {config}, writer {phase}", file=sys.stderr)
            if args.burst:
                bursts.append(burst_phase(url, base, server, config, sessions, other_sponsor, log_path,
                                          first_of_size, args))
                remove_saves(url)  # the burst's autodocs still waiting go with their documents
                print(f"measured {config}, burst", file=sys.stderr)
            memories.append(memory.result())
        datagen.finish_queue(url)
    return runs, phases, bursts, memories


def measure_phase(url, base, config, phase, sessions, large, log_path, args):
    """wrk on every page at every concurrency; (runs, Phase)."""
    paths = querycount.page_paths(large.longest_document, heavy_sponsor_documents(url), Settings.model_fields["PAGE_SIZE"].default)
    paths = {label: path for label, path in paths.items() if not args.pages or any(word in label for word in args.pages)}
    load_average, started, phase_offset = os.getloadavg()[0], time.monotonic(), log_path.stat().st_size
    runs = []
    for label, (role, method, path) in paths.items():  # saves last: each one queues an autodoc
        cookie, token = sessions[role]
        body = urllib.parse.urlencode(save_form(token)) if method == "POST" else None
        for connections in args.connections:
            offset = log_path.stat().st_size
            result = wrk(base + path, cookie, connections, args.seconds, 302 if method == "POST" else 200, body)
            server_ms, _, written = log_values(log_path, offset)
            runs.append(Run(config, phase, label, connections, result, server_ms, written))
            warn_of_wrong_answers(label, result)
    _, batches, written = log_values(log_path, phase_offset)
    return runs, Phase(config, phase, load_average, time.monotonic() - started, written,
                       batches)


def burst_phase(url, base, server, config, sessions, other_sponsor, log_path, measure_before, args):
    """Step 3 in one configuration (the module's docstring says how and why); a Burst."""
    datagen.finish_queue(url)
    wait_for_quiet_worker(server)
    runs = measure_other_pages(base, config, "idle", sessions, log_path, args.burst_seconds) if measure_before else []
    http = requests.Session()
    http.trust_env = False
    offset = log_path.stat().st_size
    with ThreadPoolExecutor(1) as pool:
        burst = pool.submit(post_burst, url, http, base, sessions, args.burst_seconds)
        runs += measure_other_pages(base, config, "burst", sessions, log_path, args.burst_seconds)
        saves, (other_autodoc, other_place, queued_then) = burst.result()
    save_server_ms = log_values(log_path, offset, method="POST", endpoint="sponsor.new_document",
                                user_id=datagen.HEAVY_SPONSOR_ID)[0]
    # As the document page's script polls it; the burst's own autodocs are not waited for.
    wait_for("the other sponsor's autodoc to be written", lambda: request_in_session(
        http, base, sessions["other sponsor"], "GET", f"/autodocs/{other_autodoc}/status").json()["status"]
        not in ("queued", "running"), timeout=300, interval=1)
    other_status, other_wait = sql(url, "SELECT status, extract(epoch FROM finished_at - queued_at)::float8 "
                                        "FROM autodocs WHERE id = %(id)s", id=other_autodoc)
    documents = [saved_document(status, location) for status, _, location in saves]
    written, waiting, median_wait, last_wait = sql(url, """
        SELECT count(*) FILTER (WHERE a.status = 'done'),
               count(*) FILTER (WHERE a.status IN ('queued', 'running')),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.finished_at - a.queued_at)::float8)
                   FILTER (WHERE a.status = 'done'),
               (array_agg(extract(epoch FROM a.finished_at - a.queued_at)::float8 ORDER BY a.finished_at DESC)
                   FILTER (WHERE a.status = 'done'))[1]
        FROM autodocs a JOIN revisions r ON r.id = a.revision_id WHERE r.document_id = ANY(%(documents)s)
        """, documents=[document for document in documents if document])
    return Burst(config, other_sponsor, runs, saves, save_server_ms, other_place, queued_then, other_status,
                 other_wait, written, waiting, median_wait, last_wait)


def wait_for_quiet_worker(server):
    """Wait until gunicorn's processes (the workers, the writer process) use less than
    QUIET_CPU_SHARE of a core. An emptied queue is not yet an idle writer: the batch it
    claimed before is generated to the end (and its text refused). The app logs no claim, so
    the processes' CPU time is the sign."""
    workers = descendants(server.pid)

    def quiet():
        before = _cpu_seconds(workers)
        time.sleep(1)
        return _cpu_seconds(workers) - before < QUIET_CPU_SHARE

    wait_for("gunicorn's processes to be quiet", quiet, timeout=600, interval=0)


def _cpu_seconds(pids):
    """User and system CPU seconds of these processes (all their threads) so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def measure_other_pages(base, config, writer, sessions, log_path, seconds):
    """wrk at one connection on each of BURST_PAGES in turn, `seconds` in all; their Runs.
    Server times are picked from the log by path: saves run at the same time."""
    runs = []
    for label, (session, path) in BURST_PAGES.items():
        offset = log_path.stat().st_size
        result = wrk(base + path, sessions[session][0], 1, seconds // len(BURST_PAGES), 200)
        warn_of_wrong_answers(label, result)
        server_ms = log_values(log_path, offset, method="GET", path=urllib.parse.urlsplit(path).path)[0]
        runs.append(Run(config, writer, label, 1, result, server_ms))
    return runs


def post_burst(url, http, base, sessions, seconds):
    """The heavy sponsor's BURST_SAVES saves spread evenly over `seconds` (a late answer is
    caught up on, never skipped) and, halfway through, the other sponsor's one save;
    ([(status, client ms, Location)], other_save's answer)."""
    session, interval, started = sessions["sponsor"], seconds / BURST_SAVES, time.monotonic()
    saves, other = [], None
    for number in range(BURST_SAVES):
        time.sleep(max(0.0, started + number * interval - time.monotonic()))
        sent = time.perf_counter()
        response = request_in_session(http, base, session, "POST", "/sponsor/documents/new", data=save_form(session[1]))
        saves.append((response.status_code, (time.perf_counter() - sent) * 1000, response.headers.get("Location", "")))
        if number + 1 == BURST_SAVES // 2:
            other = other_save(url, http, base, sessions["other sponsor"])
    return saves, other


def other_save(url, http, base, session):
    """The other sponsor saves one document and opens its page, as the form's redirect
    does: (its autodoc's id, the place in the queue the page shows, None when the writer
    already has it, and how many autodocs were waiting then)."""
    response = request_in_session(http, base, session, "POST", "/sponsor/documents/new", data=save_form(session[1]))
    location = response.headers.get("Location", "")
    if not saved_document(response.status_code, location):
        raise RuntimeError(f"the other sponsor's save answered {response.status_code} {location!r}")
    page = request_in_session(http, base, session, "GET", urllib.parse.urlsplit(location).path).text
    queued = sql(url, "SELECT count(*) FROM autodocs WHERE status = 'queued'")[0]
    place = QUEUE_PLACE.search(page)
    return int(AUTODOC_SECTION.search(page).group(1)), int(place.group(1)) if place else None, queued


def saved_document(status, location):
    """The id of the document a save created, None unless it answered a 302 to its page
    (a redirect to the log-in page is a 302 too)."""
    match = SAVED.search(location) if status == 302 else None
    return int(match.group(1)) if match else None


# --- the report --------------------------------------------------------------------------------

def versions(url):
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    postgres = sql(url, "SHOW server_version")[0].split(" ")[0]
    return (f"Python {platform.python_version()}, PostgreSQL {postgres}, gunicorn "
            f"{importlib.metadata.version('gunicorn')} (gthread), tensorflow-cpu "
            f"{importlib.metadata.version('tensorflow-cpu')}, {wrk_version.strip()}")


def render(steps, runs, phases, bursts, memories, args, header):
    lines = [MEASURED.strip(), "", *header, ""]
    if "counted_large" in steps:
        lines += [*render_queries(steps, args), ""]
    lines += [*render_load(runs, phases, memories, args)]
    if bursts:
        lines += ["", *render_bursts(bursts, args)]
    lines += ["", *summary(runs, phases, bursts)]
    return "\n".join(lines) + "\n"


def render_queries(steps, args):
    """Step 1's two tables: queries per page at both sizes, and the N+1 comparison."""
    small, large = steps["small"], steps["large"]
    lines = [
        f"Queries per request (in-process, Flask test client; the second of {3 if args.quick else 5} requests "
        f"counted), at {small.shape.documents:,} and {large.shape.documents:,} documents; ms is the median time "
        "of the page in-process on the large data set, and of its slowest statement:", "",
        f"| page | queries, {small.shape.documents:,} docs | queries, {large.shape.documents:,} docs | constant "
        "| page ms | slowest statement ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, figures in steps["counted_large"].items():
        before = steps["counted_small"][label]["queries"]
        lines.append(f"| {label} | {before} | {figures['queries']} | {'yes' if before == figures['queries'] else 'NO'} "
                     f"| {figures['median_ms']:.0f} | {figures['slowest'].ms:.0f} |")
    lines += ["", f"The original app's query pattern (one query or more per listed row), rendered into the same "
              f"template in-process on {large.shape.documents:,} documents, medians of "
              f"{3 if args.quick else 10} runs:", "",
              "| page | queries, ours | queries, N+1 | ms, ours | ms, N+1 | N+1 / ours | same rows |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, figures in steps["compared"].items():
        (q_ours, ms_ours), (q_naive, ms_naive) = figures["ours"], figures["naive"]
        lines.append(f"| {label} | {q_ours:.0f} | {q_naive:.0f} | {ms_ours:.0f} | {ms_naive:.0f} "
                     f"| {ms_naive / ms_ours:.1f}× | {'yes' if figures['same_rows'] else 'NO'} |")
    return lines


def render_load(runs, phases, memories, args):
    """Step 2's tables: the pages under wrk, the writer meanwhile, the processes' memory."""
    lines = [f"HTTP load with wrk (1 thread, {args.seconds} s per row) against gunicorn on loopback; "
              "latency in ms from wrk, server ms from the app's request log (p50/p95):", "",
              "| configuration | writer | page | conns | req/s | p50 | p95 | p99 | server p50 | server p95 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        w = run.wrk
        lines.append(f"| {run.config} | {run.writer} | {run.page} | {run.connections} | {w['rps']:.0f}{_problems(w)} "
                     f"| {w['p50']:.0f} | {w['p95']:.0f} | {w['p99']:.0f} | {percentile(run.server_ms, 0.5):.0f} "
                     f"| {percentile(run.server_ms, 0.95):.0f} |")
    lines += ["", "The writer meanwhile (load average: the machine's, 1 minute, when the phase began; autodocs "
              "written: its log lines during the phase, a batch counting when it ends; s per batch: the median "
              "generate call, batches of up to WRITER_BATCH_SIZE=8):", "",
              "| configuration | writer | load average | phase s | autodocs written | per minute | s per batch |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for phase in phases:
        batch = f"{statistics.median(phase.batch_seconds):.1f}" if phase.batch_seconds else "-"
        lines.append(f"| {phase.config} | {phase.writer} | {phase.load_average:.1f} | {phase.seconds:.0f} "
                     f"| {phase.written} | {60 * phase.written / phase.seconds:.1f} | {batch} |")
    lines += ["", f"Memory: gunicorn's master and every process under it, from its start to the end of its "
              f"measurements. Peak = the largest sum of their resident sizes (sampled every "
              f"{MEMORY_SAMPLE_SECONDS} s); each process's own peak (VmHWM), MB; model copies = processes with "
              "TensorFlow loaded:", "",
              "| configuration | peak, all processes MB | model copies | each process's peak MB |",
              "| --- | --- | --- | --- |"]
    for memory in memories:
        each = ", ".join(f"{role.split()[0]} {mb:,.0f}" for role, mb in sorted(
            memory.process_peaks_mb.items(), key=lambda item: ("master", "worker", "writer").index(item[0].split()[0])))
        lines.append(f"| {memory.config} | {memory.peak_total_mb:,.0f} | {memory.model_copies} | {each} |")
    return lines


def render_bursts(bursts, args):
    """The burst's two tables: the other users' pages before and during it, then its saves
    and the other sponsor's one save in the queue."""
    seconds = args.burst_seconds
    lines = [f"A burst of saves (issue 7): the heavy sponsor saves {BURST_SAVES} new documents through the form "
             f"in {seconds} s (one every {seconds / BURST_SAVES:.1f} s), the writer's queue empty and the writer "
             f"idle when it starts. Meanwhile wrk (1 connection) measures other users' pages, one after the other, "
             f"{seconds // len(BURST_PAGES)} s each: the first page of sponsor {bursts[0].other_sponsor}'s list "
             f"and the busy editor's review queue; before = the same just before the burst (writer idle, once per "
             f"workers × threads). Latency in ms from wrk (p50 / p95 / p99), server p95 from the request log:", "",
             "| configuration | page | before p50 / p95 / p99 | during p50 / p95 / p99 | p95 growth "
             "| server p95 before → during |", "| --- | --- | --- | --- | --- | --- |"]
    before = {(run.config.workers, run.config.threads, run.page): run
              for burst in bursts for run in burst.runs if run.writer == "idle"}
    for burst in bursts:
        for run in (run for run in burst.runs if run.writer == "burst"):
            was = before[(run.config.workers, run.config.threads, run.page)]
            lines.append(f"| {run.config} | {run.page} | {_spread(was.wrk)} | {_spread(run.wrk)} "
                         f"| {run.wrk['p95'] / was.wrk['p95']:.1f}× | {percentile(was.server_ms, 0.95):.0f} → "
                         f"{percentile(run.server_ms, 0.95):.0f} |")
    lines += ["", f"The saves: each must answer a 302 to its new document; server ms from the request log, client "
              f"ms from the bench's own request. Halfway through, sponsor {bursts[0].other_sponsor} saves one "
              "document: its place in the queue as its document page showed it right after the save (of all the "
              "autodocs waiting then), and its autodoc's time from queued to written (database clock). The "
              "burst's autodocs are counted once that one is written and the burst is over (the rest are not "
              "waited for: they go with their documents), with the median and the last written one's wait:", "",
              "| configuration | saves answered 302 | save server p50 / p95 | save client p95 "
              "| other sponsor's place in the queue | its autodoc written after | burst autodocs written / waiting "
              "| burst waits, median / last |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for burst in bursts:
        place = (f"{burst.other_place} of {burst.queued_then}" if burst.other_place
                 else f"already being written ({burst.queued_then} waiting)")
        written = f"{burst.other_wait:.1f} s" + ("" if burst.other_status == "done" else f" ({burst.other_status})")
        waits = f"{burst.median_wait:.1f} s / {burst.last_wait:.1f} s" if burst.written else "-"
        lines.append(f"| {burst.config} | {burst.saved} of {len(burst.saves)} "
                     f"| {percentile(burst.save_server_ms, 0.5):.0f} / {percentile(burst.save_server_ms, 0.95):.0f} "
                     f"| {percentile([ms for _, ms, _ in burst.saves], 0.95):.0f} | {place} | {written} "
                     f"| {burst.written} / {burst.waiting} | {waits} |")
    return lines


def _spread(w):
    return f"{w['p50']:.0f} / {w['p95']:.0f} / {w['p99']:.0f}{_problems(w)}"


def _problems(w):
    return f" ({w['unexpected']} wrong status, {w['failed']} failed)" if w["unexpected"] or w["failed"] else ""


def summary(runs, phases, bursts):
    """Per configuration and concurrency: idle vs busy p95, the writer's rate meanwhile, and
    the issue's three targets; the list target during each burst."""
    lines = [f"Targets with the writer busy: list pages' p95 < {TARGET_LIST_P95_MS} ms (wrk), saves' server "
             f"time p95 < {TARGET_SAVE_MS} ms (request log), the writer at least {TARGET_WRITER_PER_MINUTE} "
             "autodocs a minute over the busy phase (all its pages and concurrencies):", "",
             "| configuration | conns | list p95 idle → busy (worst page) | growth | save server p95 idle → busy "
             "| autodocs / min, phase (these conns) | targets |", "| --- | --- | --- | --- | --- | --- | --- |"]
    rates = {phase.config: 60 * phase.written / phase.seconds for phase in phases if phase.writer == "busy"}
    idle = {(r.config.workers, r.config.threads, r.page, r.connections): r for r in runs if r.writer == "idle"}
    seen = []
    for run in runs:
        key = (run.config, run.connections)
        if run.writer != "busy" or key in seen:
            continue
        seen.append(key)
        busy = {r.page: r for r in runs if r.writer == "busy" and (r.config, r.connections) == key}
        base = {page: idle.get((run.config.workers, run.config.threads, page, run.connections)) for page in busy}
        list_busy = max((busy[p].wrk["p95"] for p in LIST_PAGES if p in busy), default=float("nan"))
        list_idle = max((base[p].wrk["p95"] for p in LIST_PAGES if base.get(p)), default=float("nan"))
        save_busy = percentile(busy[SAVE].server_ms, 0.95) if SAVE in busy else float("nan")
        save_idle = percentile(base[SAVE].server_ms, 0.95) if base.get(SAVE) else float("nan")
        rate = rates[run.config]
        # The writer's rate while these pages ran at this concurrency alone: batches end in
        # whichever run they end in, so it is coarse over a few runs; the phase's is the target's.
        rate_here = 60 * sum(r.written for r in busy.values()) / sum(r.wrk["seconds"] for r in busy.values())
        met = list_busy < TARGET_LIST_P95_MS and save_busy < TARGET_SAVE_MS and rate >= TARGET_WRITER_PER_MINUTE
        growth = f"{list_busy / list_idle:.1f}×" if list_idle == list_idle else "–"  # NaN: idle not measured
        lines.append(f"| {run.config} | {run.connections} | {_ms(list_idle)} → {list_busy:.0f} | {growth} "
                     f"| {_ms(save_idle)} → {_ms(save_busy)} | {rate:.1f} ({rate_here:.1f}) "
                     f"| {'met' if met else 'NOT met'} |")
    if bursts:
        during = [(burst.config, next(run.wrk["p95"] for run in burst.runs
                                      if run.writer == "burst" and run.page == OTHER_LIST)) for burst in bursts]
        lines += ["", f"During the burst, another sponsor's list p95 < {TARGET_LIST_P95_MS} ms (wrk, 1 connection): "
                  + "; ".join(f"{config} {p95:.0f} ms, {'met' if p95 < TARGET_LIST_P95_MS else 'NOT met'}"
                              for config, p95 in during) + "."]
    return lines


def _ms(value):
    return "–" if value != value else f"{value:.0f}"  # NaN: not measured


def write_results(section):
    """Put `section` in RESULTS.md: replace what an earlier run measured (everything after
    MEASURED in the "Load at scale" section), keep the hand-written text above it; append
    the section if it is not there yet."""
    current = RESULTS.read_text()
    start = current.find(SECTION)
    if start < 0:
        RESULTS.write_text(current.rstrip("\n") + "\n" + SECTION + "\n" + section)
        return
    measured = current.find(MEASURED, start)
    following = current.find("\n## ", start + len(SECTION))
    end = following if following >= 0 else len(current)
    cut = measured if 0 <= measured < end else end
    RESULTS.write_text(current[:cut].rstrip("\n") + "\n\n" + section + current[end:])


def _log(message):
    print(message, file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, short runs, tiny model: for development")
    parser.add_argument("--model-dir", help="where GPT-2-small is built once (DIR/model) and reused")
    parser.add_argument("--configs", nargs="+", type=Config.parse, default=None,
                        help="WxT[,writer=process|thread|elected][,nice=N][,intra=N][,inter=N] ... (default: "
                             f"{' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--documents", type=int, default=None, help="large data set (default 100,000; quick 10,000)")
    parser.add_argument("--small-documents", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=None, help="length of each wrk run (default 10; quick 3)")
    parser.add_argument("--connections", type=lambda s: [int(n) for n in s.split(",")], default=[1, 8])
    parser.add_argument("--phases", type=lambda s: s.split(","), default=["idle", "busy"],
                        help="idle,busy (default both): the writer's phases measured in each configuration")
    parser.add_argument("--pages", type=lambda s: s.split(","), default=None,
                        help="only the pages whose label holds one of these words (e.g. list,save; default all)")
    parser.add_argument("--query-counts", action=argparse.BooleanOptionalAction, default=True,
                        help="step 1 (queries per page, the N+1 comparison); without it only the data is generated")
    parser.add_argument("--queued", type=int, default=5000, help="depth of the busy writer's queue")
    parser.add_argument("--burst", action=argparse.BooleanOptionalAction, default=True,
                        help=f"measure a burst of {BURST_SAVES} saves in each configuration (step 3)")
    parser.add_argument("--burst-seconds", type=int, default=None,
                        help=f"the burst's length (default {BURST_SECONDS}; quick 20)")
    parser.add_argument("--report", default=str(Path(tempfile.gettempdir()) / "srcflask-load-report.md"),
                        help="the Markdown report with EXPLAINs; gunicorn's logs are kept beside it")
    parser.add_argument("--write-results", action="store_true", help="put the tables in bench/RESULTS.md")
    args = parser.parse_args()
    args.documents = args.documents or (10_000 if args.quick else 100_000)
    args.seconds = args.seconds or (3 if args.quick else 10)
    args.burst_seconds = args.burst_seconds or (20 if args.quick else BURST_SECONDS)
    args.configs = args.configs or [Config.parse(c) for c in DEFAULT_CONFIGS]
    if not set(args.phases) <= {"idle", "busy"}:
        parser.error(f"--phases takes idle and busy, not {','.join(args.phases)}")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)  # gunicorn's logs go beside it
    if not shutil.which("wrk"):
        parser.error("wrk is missing: apt-get install -y wrk")
    missing = sorted({name for config in args.configs for name, _ in config.knobs if not name in Settings.model_fields})
    if missing:
        parser.error(f"the app has no {', '.join(missing)} yet (srcflask/config.py)")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="srcflask-load-") as folder, \
            throwaway_database("srcflask_load") as url:
        workdir = Path(folder)
        migrate(url)
        steps = query_step(url, args)
        model_dir, model = model_folder(args, workdir)
        runs, phases, bursts, memories = load_step(url, steps["large"], model_dir, args.configs, args)
        header = [
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, `.venv/bin/python -m bench.load "
            f"{' '.join(sys.argv[1:])}`, {(time.monotonic() - started) / 60:.0f} min. Machine: "
            f"{os.cpu_count()} vCPU ({_cpu()}), shared with other work; {versions(url)}.",
            "",
            f"Data (bench/datagen.py): {_counts(steps['large'])}, generated in {steps['large'].seconds:.0f} s"
            + (f"; {steps['small'].shape.documents:,} documents for the small count" if "small" in steps else "")
            + ". The heavy sponsor has "
            f"{heavy_sponsor_documents(url):,} documents ({Settings.model_fields['PAGE_SIZE'].default} a page); long history: "
            f"document {steps['large'].longest_document} "
            f"({steps['large'].shape.long_lengths[0]} revisions). Writer model: {model}; busy = "
            f"{args.queued:,} autodocs queued.",
        ]
    report = render(steps, runs, phases, bursts, memories, args, header)
    explains = "".join(f"\n#### {label}\n\n```\n{steps['counted_large'][label]['slowest'].sql}\n\n{plan}\n```\n"
                       for label, plan in steps.get("explains", {}).items())
    if explains:
        explains = "\n### Slowest statements, EXPLAIN ANALYZE\n" + explains
    Path(args.report).write_text(report + explains)
    print(report)
    print(f"report with the EXPLAINs: {args.report}", file=sys.stderr)
    if args.write_results:
        write_results(report)


# Production's layout (.env.prod: 2 workers x 4 threads, the writer process at WRITER_NICE 7) and
# the same at other niceness (the writer's share of the cores against the pages: nice 7 gives its
# two TensorFlow threads the weight the two writers of "2x4,writer=thread" had together);
# then the layouts it replaced or was weighed against: a writer inside the one worker
# (production until issue 17), one inside each of two workers (two models), one inside one of
# two workers.
DEFAULT_CONFIGS = ("2x4", "2x4,nice=10", "2x4,nice=4", "1x8,writer=thread", "2x4,writer=thread", "2x4,writer=elected")


def _counts(generated):
    return ", ".join(f"{n:,} {table}" for table, n in generated.counts.items())


def _cpu():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
