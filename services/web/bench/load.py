"""Load at scale: page latency and throughput on 100,000 documents, with the writer idle and busy.

    cd services/web && .venv/bin/python -m bench.load [--quick] [--model-dir DIR] [--configs 1x8,nice=10 ...]

Prerequisites: Debian's `wrk` (`apt-get install -y wrk`), PostgreSQL at TEST_DATABASE_URL
(default postgres@127.0.0.1:5432, a superuser: the bench creates and drops its own database).
A full run takes about 20 minutes on 2 vCPUs (plus a few minutes to build GPT-2-small the first
time: pass --model-dir to keep it); --quick (10,000 documents, 3 s runs, the tiny GPT-2
of tests/tinygpt2.py) about 4, for development only.

What it does, in one throwaway database (tests.prodstack.throwaway_database):

1. Queries per request, in-process: bench/datagen.py writes 1,000 documents, bench/querycount.py
   counts the SQL statements of every measured page through Flask's test client; then the data
   set is regenerated at 100,000 documents and the pages are counted again (the counts must be
   equal), with each page's in-process time and its slowest statement (EXPLAINed in the report
   when it takes over EXPLAIN_MS). The sponsor list and the editor's queue are also rendered
   with the original app's N+1 loading, for the ratio.
2. HTTP load: for each configuration, gunicorn exactly as production runs it
   (tests.prodstack.gunicorn: entrypoint.sh, gunicorn.conf.py, .env.prod, in-process writer),
   straight on loopback (nginx is left out: it would take CPU from the two cores being
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

A configuration is `WxT[,nice=N][,intra=N][,inter=N]`: gunicorn workers x threads
(GUNICORN_WORKERS/GUNICORN_THREADS) and the writer's WRITER_NICE, WRITER_TF_INTRA_THREADS and
WRITER_TF_INTER_THREADS; a knob the app does not have yet (srcflask/config.py) is refused.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests

from srcflask.config import BaseConfig
from tests.helpers import CSRF_META
from tests.prodstack import WEB_ROOT, free_port, gunicorn, production_env, throwaway_database

from . import datagen, querycount

LUA = Path(__file__).with_name("wrk") / "measure.lua"
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "\n## Load at scale\n"
MEASURED = "\n### Measured by bench/load.py\n"
USER_AGENT = "srcflask-bench"  # the same for the log-in and wrk: Flask-Login's session protection
EXPLAIN_MS = 20
KNOBS = {"nice": "WRITER_NICE", "intra": "WRITER_TF_INTRA_THREADS", "inter": "WRITER_TF_INTER_THREADS"}
LIST_PAGES = ("sponsor list, first page", "sponsor list, middle page", "sponsor list, last page")
SAVE = "save (new document)"
TARGET_LIST_P95_MS, TARGET_SAVE_MS = 150, 100


@dataclass(frozen=True)
class Config:
    workers: int
    threads: int
    knobs: tuple = ()  # ((env name, value), ...)

    @classmethod
    def parse(cls, text):
        size, *settings = text.split(",")
        workers, threads = (int(n) for n in size.lower().split("x"))
        knobs = []
        for setting in settings:
            key, value = setting.split("=")
            if key not in KNOBS:
                raise argparse.ArgumentTypeError(f"unknown knob {key!r} in {text!r} (known: {', '.join(KNOBS)})")
            knobs.append((KNOBS[key], int(value)))
        return cls(workers, threads, tuple(knobs))

    @property
    def env(self):
        return {"GUNICORN_WORKERS": self.workers, "GUNICORN_THREADS": self.threads, **dict(self.knobs)}

    def __str__(self):
        names = {env: key for key, env in KNOBS.items()}
        return ", ".join([f"{self.workers}×{self.threads}", *(f"{names[k]}={v}" for k, v in self.knobs)])


@dataclass
class Run:
    config: Config
    writer: str  # "idle" | "busy"
    page: str
    connections: int
    wrk: dict
    server_ms: list = field(default_factory=list)


@dataclass
class Phase:
    """The writer's side of one phase: what it wrote while the pages were measured."""

    config: Config
    writer: str
    load_average: float  # the machine's 1-minute load average when the phase began
    seconds: float
    written: int
    batch_seconds: list  # each generate call's time, from the writer's log


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


# --- wrk ---------------------------------------------------------------------------------------

def wrk(url, cookie, connections, seconds, expected, body=None):
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
               "-H", f"Cookie: {cookie}", "-H", f"User-Agent: {USER_AGENT}", url, "--", str(expected)]
    if body is not None:
        command.append(body)
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("BENCH "))
    return json.loads(line[len("BENCH "):])


def log_values(log_path, offset):
    """From gunicorn's output after byte `offset`: (duration_ms of every request the app
    logged, seconds of every generate call the writer logged)."""
    durations, batches = [], {}
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
                durations.append(entry["duration_ms"])
            elif entry.get("event") == "autodoc_written":
                # One line per autodoc; a batch's lines share their worker, start and time.
                batches[(entry["worker"], entry["started_at"])] = entry["seconds"]
    return durations, list(batches.values())


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


def heavy_sponsor_documents(url):
    return sql(url, "SELECT count(*) FROM retentions WHERE sponsor_id = %(id)s", id=datagen.HEAVY_SPONSOR_ID)[0]


def remove_saves(url):
    """Delete the documents the measured saves created (their revisions, autodocs and
    notifications go with them): every phase lists the same documents."""
    sql(url, "DELETE FROM documents WHERE title = %(title)s", title=querycount.SAVE_FORM["title"])


def wait_for(what, check, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


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
    """Step 1: query counts at the small and the large size, the N+1 comparison, EXPLAINs.
    Leaves the large data set in the database."""
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
    """Step 2: wrk against gunicorn for every configuration, idle then busy."""
    runs, phases = [], []
    idle_done = set()
    for number, config in enumerate(configs):
        port = free_port()
        log_path = Path(args.report).with_name(f"{Path(args.report).stem}-gunicorn-{number}.log")
        env = production_env(url, model_dir, **config.env)
        with gunicorn(env, port, log_path, startup_timeout=180):
            base = f"http://127.0.0.1:{port}"
            wait_for("the writer to load its model", lambda: requests.get(base + "/readyz", timeout=5).json()
                     ["writer"]["state"] == "loaded", timeout=600, interval=1)
            sessions = {role: log_in(base, datagen.email_of(user_id, role)) for role, user_id in
                        (("sponsor", datagen.HEAVY_SPONSOR_ID), ("editor", datagen.BUSY_EDITOR_ID),
                         ("admin", datagen.ADMIN_ID))}
            wanted = ["busy"]
            if (config.workers, config.threads) not in idle_done:
                wanted.insert(0, "idle")
                idle_done.add((config.workers, config.threads))
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
        datagen.finish_queue(url)
    return runs, phases


def measure_phase(url, base, config, phase, sessions, large, log_path, args):
    """wrk on every page at every concurrency; (runs, Phase)."""
    paths = querycount.page_paths(large.longest_document, heavy_sponsor_documents(url), BaseConfig.PAGE_SIZE)
    load_average, started, phase_offset = os.getloadavg()[0], time.monotonic(), log_path.stat().st_size
    written_before = _written(url)
    runs = []
    for label, (role, method, path) in paths.items():  # saves last: each one queues an autodoc
        cookie, token = sessions[role]
        body = None
        if method == "POST":
            body = urllib.parse.urlencode({**querycount.SAVE_FORM, "editor": datagen.BUSY_EDITOR_ID,
                                           "csrf_token": token})
        for connections in args.connections:
            offset = log_path.stat().st_size
            result = wrk(base + path, cookie, connections, args.seconds, 302 if method == "POST" else 200, body)
            runs.append(Run(config, phase, label, connections, result, log_values(log_path, offset)[0]))
            if result["unexpected"] or result["failed"]:
                print(f"warning: {label}: {result['unexpected']} unexpected answers, {result['failed']} failed",
                      file=sys.stderr)
    batches = log_values(log_path, phase_offset)[1]
    return runs, Phase(config, phase, load_average, time.monotonic() - started, _written(url) - written_before,
                       batches)


def _written(url):
    """Autodocs the writer has written (the stand-in text of finish_queue is not counted)."""
    return sql(url, "SELECT count(*) FROM autodocs WHERE status = 'done' AND worker IS NOT NULL "
                    "AND finished_at > now() - interval '1 day'")[0]


# --- the report --------------------------------------------------------------------------------

def versions(url):
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    postgres = sql(url, "SHOW server_version")[0].split(" ")[0]
    return (f"Python {platform.python_version()}, PostgreSQL {postgres}, gunicorn "
            f"{importlib.metadata.version('gunicorn')} (gthread), tensorflow-cpu "
            f"{importlib.metadata.version('tensorflow-cpu')}, {wrk_version.strip()}")


def render(steps, runs, phases, args, header):
    lines = [MEASURED.strip(), "", *header, ""]
    small, large = steps["small"], steps["large"]
    lines += [
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
    lines += ["", f"HTTP load with wrk (1 thread, {args.seconds} s per row) against gunicorn on loopback; "
              "latency in ms from wrk, server ms from the app's request log (p50/p95):", "",
              "| configuration | writer | page | conns | req/s | p50 | p95 | p99 | server p50 | server p95 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        w = run.wrk
        problems = f" ({w['unexpected']} wrong status, {w['failed']} failed)" if w["unexpected"] or w["failed"] else ""
        lines.append(f"| {run.config} | {run.writer} | {run.page} | {run.connections} | {w['rps']:.0f}{problems} "
                     f"| {w['p50']:.0f} | {w['p95']:.0f} | {w['p99']:.0f} | {percentile(run.server_ms, 0.5):.0f} "
                     f"| {percentile(run.server_ms, 0.95):.0f} |")
    lines += ["", "The writer meanwhile (load average: the machine's, 1 minute, when the phase began; s per "
              "batch: the median generate call, batches of up to WRITER_BATCH_SIZE=8):", "",
              "| configuration | writer | load average | phase s | autodocs written | per minute | s per batch |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for phase in phases:
        batch = f"{statistics.median(phase.batch_seconds):.1f}" if phase.batch_seconds else "-"
        lines.append(f"| {phase.config} | {phase.writer} | {phase.load_average:.1f} | {phase.seconds:.0f} "
                     f"| {phase.written} | {60 * phase.written / phase.seconds:.1f} | {batch} |")
    lines += ["", *summary(runs)]
    return "\n".join(lines) + "\n"


def summary(runs):
    """Per configuration and concurrency: idle vs busy p95, and the issue's two targets."""
    lines = [f"Targets with the writer busy: list pages' p95 < {TARGET_LIST_P95_MS} ms (wrk), saves' server "
             f"time p95 < {TARGET_SAVE_MS} ms (request log):", "",
             "| configuration | conns | list p95 idle → busy (worst page) | growth | save server p95 idle → busy "
             "| targets |", "| --- | --- | --- | --- | --- | --- |"]
    idle = {(r.config.workers, r.config.threads, r.page, r.connections): r for r in runs if r.writer == "idle"}
    seen = []
    for run in runs:
        key = (run.config, run.connections)
        if run.writer != "busy" or key in seen:
            continue
        seen.append(key)
        busy = {r.page: r for r in runs if r.writer == "busy" and (r.config, r.connections) == key}
        base = {page: idle.get((run.config.workers, run.config.threads, page, run.connections)) for page in busy}
        list_busy = max(busy[p].wrk["p95"] for p in LIST_PAGES if p in busy)
        list_idle = max((base[p].wrk["p95"] for p in LIST_PAGES if base.get(p)), default=float("nan"))
        save_busy = percentile(busy[SAVE].server_ms, 0.95) if SAVE in busy else float("nan")
        save_idle = percentile(base[SAVE].server_ms, 0.95) if base.get(SAVE) else float("nan")
        met = list_busy < TARGET_LIST_P95_MS and save_busy < TARGET_SAVE_MS
        lines.append(f"| {run.config} | {run.connections} | {list_idle:.0f} → {list_busy:.0f} "
                     f"| {list_busy / list_idle:.1f}× | {save_idle:.0f} → {save_busy:.0f} "
                     f"| {'met' if met else 'NOT met'} |")
    return lines


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
                        help="WxT[,nice=N][,intra=N][,inter=N] ... (default: production's 1x8, then tuned)")
    parser.add_argument("--documents", type=int, default=None, help="large data set (default 100,000; quick 10,000)")
    parser.add_argument("--small-documents", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=None, help="length of each wrk run (default 10; quick 3)")
    parser.add_argument("--connections", type=lambda s: [int(n) for n in s.split(",")], default=[1, 8])
    parser.add_argument("--queued", type=int, default=5000, help="depth of the busy writer's queue")
    parser.add_argument("--report", default=str(Path(tempfile.gettempdir()) / "srcflask-load-report.md"),
                        help="the Markdown report with EXPLAINs; gunicorn's logs are kept beside it")
    parser.add_argument("--write-results", action="store_true", help="put the tables in bench/RESULTS.md")
    args = parser.parse_args()
    args.documents = args.documents or (10_000 if args.quick else 100_000)
    args.seconds = args.seconds or (3 if args.quick else 10)
    args.configs = args.configs or [Config.parse(c) for c in DEFAULT_CONFIGS]
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)  # gunicorn's logs go beside it
    if not shutil.which("wrk"):
        parser.error("wrk is missing: apt-get install -y wrk")
    missing = sorted({name for config in args.configs for name, _ in config.knobs if not hasattr(BaseConfig, name)})
    if missing:
        parser.error(f"the app has no {', '.join(missing)} yet (srcflask/config.py)")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="srcflask-load-") as folder, \
            throwaway_database("srcflask_load") as url:
        workdir = Path(folder)
        migrate(url)
        steps = query_step(url, args)
        model_dir, model = model_folder(args, workdir)
        runs, phases = load_step(url, steps["large"], model_dir, args.configs, args)
        header = [
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, `.venv/bin/python -m bench.load "
            f"{' '.join(sys.argv[1:])}`, {(time.monotonic() - started) / 60:.0f} min. Machine: "
            f"{os.cpu_count()} vCPU ({_cpu()}), shared with other work; {versions(url)}.",
            "",
            f"Data (bench/datagen.py): {_counts(steps['large'])}, generated in {steps['large'].seconds:.0f} s; "
            f"{steps['small'].shape.documents:,} documents for the small count. The heavy sponsor has "
            f"{heavy_sponsor_documents(url):,} documents ({BaseConfig.PAGE_SIZE} a page); long history: "
            f"document {steps['large'].longest_document} "
            f"({steps['large'].shape.long_lengths[0]} revisions). Writer model: {model}; busy = "
            f"{args.queued:,} autodocs queued.",
        ]
    report = render(steps, runs, phases, args, header)
    explains = "".join(f"\n#### {label}\n\n```\n{steps['counted_large'][label]['slowest'].sql}\n\n{plan}\n```\n"
                       for label, plan in steps["explains"].items())
    if explains:
        explains = "\n### Slowest statements, EXPLAIN ANALYZE\n" + explains
    Path(args.report).write_text(report + explains)
    print(report)
    print(f"report with the EXPLAINs: {args.report}", file=sys.stderr)
    if args.write_results:
        write_results(report)


DEFAULT_CONFIGS = ("1x8,nice=0", "1x8,nice=10", "1x8,nice=10,intra=1")


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
