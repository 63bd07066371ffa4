"""Fault injection for the writer's queue and the database, shared by tests/test_faults.py
(small runs in the suite) and bench/faults.py (the long runs, with their figures).

Everything here acts on real processes: `flask writer run` processes that are killed with
SIGKILL or frozen with SIGSTOP, a private PostgreSQL cluster (tests/pgserver.py) that is
restarted under the production stack (gunicorn with its in-process writer, behind nginx)
while browsers keep saving. Each scenario returns a report of what it did; what must hold
afterwards is read from the database by `audit_queue`, the same way for both callers.
"""
import hashlib
import itertools
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from .factories import DEFAULT_PASSWORD
from .helpers import CSRF_META, wrong_kept_figures
from .prodstack import (WEB_ROOT, Process, Stack, free_port, gunicorn, gunicorn_workers, json_lines, nginx, nginx_site,
                        production_env, self_signed_certificate)
from .tinygpt2 import CORPUS

# The writers of the scenarios: a short lease so that a dead or frozen writer's job is
# taken over within seconds; attempts enough that twenty deaths cannot use them up; long
# continuations (the tiny model's 256 positions allow 24 + 200), so that a batch takes
# long enough for a signal to land in the middle of it; no niceness (production's lets
# requests win the cores; here it would only let other work on the machine starve the
# writers' start).
WRITER_SETTINGS = {"WRITER_LEASE_SECONDS": 3, "WRITER_MAX_ATTEMPTS": 50, "WRITER_MAX_NEW_TOKENS": 200,
                   "WRITER_CONTEXT_TOKENS": 24, "WRITER_BATCH_SIZE": 4, "WRITER_POLL_SECONDS": 0.1,
                   "WRITER_NICE": 0}
HOST = socket.gethostname()


def wait_until(condition, timeout, what, interval=0.05):
    """Poll `condition` until it gives something true, and return that; TimeoutError naming
    `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def queue_engine(database_url):
    """An engine for watching the queue from outside the app: autocommit, so that polling
    never holds a transaction (and its locks) open, and pre-ping, so that it survives a
    database restart like the app does."""
    return create_engine(database_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def status_counts(engine):
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT status, count(*) FROM autodocs GROUP BY status")).all())


def queue_drained(engine):
    """True once no autodoc is queued or running."""
    counts = status_counts(engine)
    return not counts.get("queued") and not counts.get("running")


# --- writer processes -------------------------------------------------------------------------


def xla_cache(folder):
    """Settings that keep TensorFlow's compiled XLA programs in `folder` and reuse them:
    a writer process then starts with about half the CPU (~10 s instead of ~20 s for the
    tiny model), which is most of what a scenario that starts twenty writers costs. The
    programs are found by their fingerprint, so a writer runs exactly what it would have
    compiled. (TensorFlow logs an "Error parsing text-format" line when it reads an entry:
    it tries the text format before the binary one.)"""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    return {"TF_XLA_FLAGS": f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()}


def log_events(output, name=None):
    """The JSON log records in a process's output so far (a line still being written is
    left out), those of event `name` only if given."""
    records = json_lines(output[:output.rfind("\n") + 1])
    return [record for record in records if name is None or record.get("event") == name]


def writer_env(database_url, model_dir, cache_dir, **settings):
    """A writer container's environment (docker-compose.scale.yml runs `flask writer run`
    with the web container's settings), with the scenario's writer settings."""
    return production_env(database_url, model_dir, **{**WRITER_SETTINGS, **xla_cache(cache_dir), **settings})


class WriterProcess(Process):
    """One `flask writer run`, its JSON log in a file."""

    def __init__(self, env, log_path):
        super().__init__("flask writer run", [sys.executable, "-m", "flask", "writer", "run"], log_path,
                         cwd=WEB_ROOT, env=env)
        self.started = time.monotonic()
        self.killed = False

    @property
    def worker_prefix(self):
        """What the `worker` column of this process's jobs starts with (host:pid:thread)."""
        return f"{HOST}:{self.pid}:"

    @property
    def alive(self):
        return self.popen.poll() is None

    def events(self, name=None):
        return log_events(self.output(), name)

    @property
    def ready(self):
        return bool(self.events("writer_ready"))

    def signal(self, number):
        os.kill(self.pid, number)

    @property
    def crashed(self):
        """Exited without being told to (a SIGTERM from stop() ends it with status 0)."""
        return not self.alive and not self.killed and self.popen.returncode != 0

    def kill(self):
        """SIGKILL: no handler, no cleanup, no last write."""
        self.killed = True
        self.signal(signal.SIGKILL)
        self.popen.wait()


class WriterPool:
    """The writer processes of a scenario: started on demand, all ended by `close()`.
    Starting one costs ~20 s of CPU (TensorFlow, the model, XLA compilation), so a pool
    is kept across scenarios when it can be."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir = env, log_dir
        self.processes = []

    def spawn(self):
        writer = WriterProcess(self.env, self.log_dir / f"writer-{len(self.processes) + 1}.log")
        self.processes.append(writer)
        return writer

    @property
    def alive(self):
        return [writer for writer in self.processes if writer.alive]

    def keep(self, count):
        """Start writers until `count` are alive."""
        for _ in range(count - len(self.alive)):
            self.spawn()

    def wait_ready(self, count, timeout=240):
        """`count` live writers with their model loaded (starting the missing ones)."""
        self.keep(count)

        def ready():
            crashed = [writer for writer in self.processes if writer.crashed]
            if crashed:
                raise RuntimeError(f"a writer exited by itself:\n{crashed[0].output()[-3000:]}")
            writers = [writer for writer in self.alive if writer.ready]
            return writers[:count] if len(writers) >= count else None

        return wait_until(ready, timeout, f"{count} writers ready", interval=0.2)

    def holding(self, worker):
        """The live writer whose thread `worker` (a row's worker column) names, or None."""
        return next((writer for writer in self.alive if worker and worker.startswith(writer.worker_prefix)), None)

    def events(self, name):
        return [record for writer in self.processes for record in writer.events(name)]

    def close(self):
        for writer in self.processes:
            writer.stop()


# --- data ------------------------------------------------------------------------------------


@dataclass
class People:
    sponsors: list  # (id, email) of each sponsor
    editor_id: int


def migrated_app(database_url, sponsors=1):
    """The app (testing settings) on `database_url`, migrated, with `sponsors` approved
    sponsors and an approved editor made by the factories (password DEFAULT_PASSWORD)."""
    from flask_migrate import upgrade

    from srcflask import create_app
    from srcflask.extensions import db

    from .factories import make_user

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    with app.app_context():
        upgrade()
        people = People([(user.id, user.email) for user in (make_user("sponsor") for _ in range(sponsors))],
                        make_user("editor").id)
        db.engine.dispose()  # no connection of ours may outlive a database restart
    return app, people


class JobFeeder:
    """Saves arriving while the writers work: new documents and new versions of them, made
    through services.documents as the views make them; every save queues one autodoc.
    `run(rate)` keeps saving in a thread until `stop()`."""

    def __init__(self, app, sponsor_id, editor_id, rng):
        self.app, self.sponsor_id, self.editor_id, self.rng = app, sponsor_id, editor_id, rng
        self.saves = 0
        self._document_ids = []
        self._numbers = itertools.count(1)
        self._stop = threading.Event()
        self._thread = None

    def add(self, count):
        """Save `count` times (a third are edits of earlier documents); the ids of the
        autodocs queued."""
        from sqlalchemy import select

        from srcflask.extensions import db
        from srcflask.models import Document, User
        from srcflask.services.documents import create_document, update_document
        from srcflask.static.data.processeddata.models import Autodoc, Revision

        queued = []
        with self.app.app_context():
            sponsor = db.session.get(User, self.sponsor_id)
            for _ in range(count):
                number = next(self._numbers)
                body = f"{self.rng.choice(CORPUS)} Note {number} says that"
                if self._document_ids and self.rng.random() < 1 / 3:
                    document = db.session.get(Document, self.rng.choice(self._document_ids))
                    update_document(document, document.version, document.title, body, sponsor)
                else:
                    document = create_document(sponsor, self.editor_id, f"Document {number}", body)
                    db.session.flush()
                    self._document_ids.append(document.id)
                db.session.commit()
                queued.append(db.session.scalar(select(Autodoc.id).join(Revision).where(
                    Revision.document_id == document.id, Revision.version == document.version)))
                self.saves += 1
        return queued

    def run(self, rate):
        def feed():
            while not self._stop.wait(1 / rate):
                self.add(1)

        self._thread = threading.Thread(target=feed, name="job-feeder", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join()


# --- what must hold afterwards -----------------------------------------------------------------


def load_tokenizer(model_dir):
    """The writer's tokenizer (as headmodel loads it), without TensorFlow."""
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(model_dir))


@dataclass
class QueueAudit:
    """The queue as the database holds it after a scenario, and what is wrong with it."""

    documents: int
    revisions: int
    autodocs: int
    by_status: dict
    retried: int  # done autodocs that took more than one attempt
    max_attempts: int
    missing: list = field(default_factory=list)  # revision ids without an autodoc
    duplicates: list = field(default_factory=list)  # revision ids with more than one
    not_done: list = field(default_factory=list)  # autodoc ids not (yet) done
    wrong_prompt: list = field(default_factory=list)  # autodoc ids not written from their revision
    broken_documents: list = field(default_factory=list)  # document ids whose versions 1..n are not all there
    wrong_kept_figures: list = field(default_factory=list)  # document ids (helpers.wrong_kept_figures)

    def problems(self):
        names = ("missing", "duplicates", "not_done", "wrong_prompt", "broken_documents", "wrong_kept_figures")
        return [f"{name}: {getattr(self, name)[:20]}" for name in names if getattr(self, name)]


def audit_queue(engine, tokenizer, context_tokens):
    """Check every document, revision and autodoc: each document has one revision for each
    version 1..version, each revision exactly one autodoc, done, whose prompt is the one
    the writer builds from that revision's own title and body (and whose stamp's
    prompt_sha256 and worker agree with the row)."""
    from srcflask.static.src.features.doctokenization import build_prompt

    with engine.connect() as conn:
        documents = conn.execute(text(
            "SELECT d.id, d.version, array_agg(r.version ORDER BY r.version) FILTER (WHERE r.id IS NOT NULL)"
            " FROM documents d LEFT JOIN revisions r ON r.document_id = d.id GROUP BY d.id")).all()
        rows = conn.execute(text(
            "SELECT r.id AS revision_id, r.title, r.body, a.id, a.status, a.prompt, a.stamp, a.worker, a.attempts"
            " FROM revisions r LEFT JOIN autodocs a ON a.revision_id = r.id ORDER BY r.id, a.id")).all()
        wrong_figures = wrong_kept_figures(conn)
    audit = QueueAudit(documents=len(documents), revisions=len({row.revision_id for row in rows}),
                       autodocs=sum(row.id is not None for row in rows), by_status={}, retried=0,
                       max_attempts=max((row.attempts or 0 for row in rows), default=0))
    audit.broken_documents = [doc_id for doc_id, version, versions in documents
                              if versions != list(range(1, version + 1))]
    audit.wrong_kept_figures = wrong_figures
    for revision_id, autodocs in itertools.groupby(rows, key=lambda row: row.revision_id):
        autodocs = [row for row in autodocs if row.id is not None]
        if not autodocs:
            audit.missing.append(revision_id)
        elif len(autodocs) > 1:
            audit.duplicates.append(revision_id)
        for row in autodocs:
            audit.by_status[row.status] = audit.by_status.get(row.status, 0) + 1
            if row.status != "done":
                audit.not_done.append(row.id)
                continue
            audit.retried += row.attempts > 1
            prompt = build_prompt(tokenizer, row.title, row.body, context_tokens)
            expected = prompt.text if prompt else ""
            if (row.prompt != expected or row.stamp["prompt_sha256"] != hashlib.sha256(expected.encode()).hexdigest()
                    or row.stamp["worker"] != row.worker):
                audit.wrong_prompt.append(row.id)
    return audit


# --- SIGKILL -----------------------------------------------------------------------------------


@dataclass
class Kill:
    pid: int
    aim: str  # "mid-job": when it held a job; "any time": at a random moment of its life
    alive_seconds: float
    was_ready: bool  # False: it died while still starting (loading, compiling)
    orphaned: list  # autodoc ids it held when it died: the kill landed mid-job


def running_jobs(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT id, worker, attempt_token FROM autodocs WHERE status = 'running'")).all()


def kill_writers(pool, engine, kills, rng, replace=True, any_time_share=0.0, any_time_seconds=20.0,
                 timeout=300):
    """SIGKILL `kills` writers of `pool`. With `replace`, each victim is replaced at once by
    a new writer, as a supervisor would restart it; without, the writers alive at the start
    must outnumber the kills. Most kills wait until the victim holds a job, then strike at a
    random moment of the next few tens of milliseconds (a tiny-model batch lasts 0.05-0.2 s);
    a share `any_time_share` strike at a random moment of the next `any_time_seconds`,
    whatever the victim is doing (starting, idle, writing). Returns one Kill per victim;
    those whose `orphaned` is not empty died holding jobs."""
    done = []
    for _ in range(kills):
        if rng.random() < any_time_share:
            victim = rng.choice(pool.alive)
            time.sleep(rng.uniform(0, any_time_seconds))
            aim = "any time"
        else:
            def a_holder():
                return next(filter(None, (pool.holding(job.worker) for job in running_jobs(engine))), None)

            victim = wait_until(a_holder, timeout, "a writer holding a job", interval=0.005)
            time.sleep(rng.uniform(0, 0.05))
            aim = "mid-job"
        victim.kill()
        orphaned = [job.id for job in running_jobs(engine) if job.worker.startswith(victim.worker_prefix)]
        done.append(Kill(victim.pid, aim, round(time.monotonic() - victim.started, 1), victim.ready, orphaned))
        if replace:
            pool.spawn()
    return done


# --- SIGSTOP -----------------------------------------------------------------------------------


@dataclass
class Stop:
    autodoc_id: int
    tries: int  # jobs it took for the stop to land while the job was running
    stopped: WriterProcess  # the writer frozen past its lease
    token: str  # its attempt token, as it was when it froze
    written: object  # the row once the other writer wrote it
    final: object  # the row after the frozen writer woke up and tried to write
    refusals: list  # the frozen writer's autodoc_refused log records for the job


def autodoc_row(engine, autodoc_id):
    with engine.connect() as conn:
        return conn.execute(text("SELECT id, status, worker, attempt_token, attempts, continuation, stamp"
                                 " FROM autodocs WHERE id = :id"), {"id": autodoc_id}).one()


def row_when(engine, autodoc_id, condition, timeout, what, interval=0.05):
    """The autodoc's row once `condition(row)` holds."""
    def matching():
        row = autodoc_row(engine, autodoc_id)
        return row if condition(row) else None

    return wait_until(matching, timeout, f"autodoc {autodoc_id} {what}", interval=interval)


def _unlocked_row(engine, autodoc_id):
    """The row, or None when a transaction holds it: a writer frozen inside its write (or
    inside a heartbeat) would keep every other writer off the job until it wakes up."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT status, worker, attempt_token FROM autodocs WHERE id = :id"
                                     " FOR UPDATE NOWAIT"), {"id": autodoc_id}).one()
        except OperationalError:  # lock_not_available
            return None


def stop_past_lease(pool, engine, make_job, lease_seconds, max_tries=20, timeout=120):
    """Freeze a writer (SIGSTOP) while it writes a job, keep it frozen until another writer
    has taken the job over (its lease ran out: the frozen process cannot beat) and written
    it, then wake it (SIGCONT): it finishes its generation and tries to write too late.
    `make_job()` queues one job and returns its autodoc id; the stop is tried on new jobs
    until one lands while its job is running, unwritten and unlocked."""
    pool.wait_ready(2)
    for tries in range(1, max_tries + 1):
        autodoc_id = make_job()
        claimed = row_when(engine, autodoc_id, lambda row: row.status != "queued", timeout, "claimed", interval=0.002)
        victim = pool.holding(claimed.worker)
        if claimed.status != "running" or victim is None:
            continue
        victim.signal(signal.SIGSTOP)
        frozen = _unlocked_row(engine, autodoc_id)
        if frozen and frozen.status == "running" and frozen.attempt_token == claimed.attempt_token:
            break
        victim.signal(signal.SIGCONT)  # too late (written) or mid-write: try another job
        row_when(engine, autodoc_id, lambda row: row.status == "done", timeout, "written")
    else:
        raise TimeoutError(f"no SIGSTOP landed while a job was being written in {max_tries} tries")
    try:
        written = row_when(engine, autodoc_id, lambda row: row.status == "done", lease_seconds + timeout,
                           "taken over and written")
    finally:
        victim.signal(signal.SIGCONT)

    def refusals():
        return [record for record in victim.events("autodoc_refused") if record["autodoc_id"] == autodoc_id]

    wait_until(refusals, timeout, f"the woken writer's refusal of autodoc {autodoc_id}", interval=0.1)
    return Stop(autodoc_id, tries, victim, claimed.attempt_token, written, autodoc_row(engine, autodoc_id), refusals())


# --- PostgreSQL restarts under the production stack -------------------------------------------


@contextmanager
def production_stack(database_url, model_dir, workdir, **settings):
    """gunicorn as in production (entrypoint.sh, gunicorn.conf.py, .env.prod: page workers and
    the writer process the master runs) behind nginx over TLS, as tests/test_production.py runs
    it; yields its Stack."""
    with ExitStack() as down:
        env = production_env(database_url, model_dir, **settings)
        web_port, http_port, https_port = free_port(), free_port(), free_port()
        web = down.enter_context(gunicorn(env, web_port, workdir / "gunicorn.log"))
        cert, key = self_signed_certificate(workdir)
        proxy = down.enter_context(nginx(nginx_site(web_port, http_port, https_port, cert, key)))
        yield Stack(https=f"https://127.0.0.1:{https_port}", http=f"http://127.0.0.1:{http_port}", ca=str(cert),
                    database_url=database_url, web=web, proxy=proxy, migrate_output="")


# The restart scenario's writer: the kill scenarios' settings with a lease that outlasts a
# restart (its jobs are not handed over meanwhile) and full batches.
# The savers save as fast as the stack answers, far past a person's pace: what is tested is
# restarts, not the save limit (tests/test_throttle.py).
RESTART_SETTINGS = {**WRITER_SETTINGS, "WRITER_LEASE_SECONDS": 10, "WRITER_BATCH_SIZE": 8,
                    "SAVE_RATE_LIMIT": "100000 per minute"}


@contextmanager
def saving_stack(database_url, model_dir, workdir, cache_dir, people, load_timeout):
    """production_stack with its writer loaded and one logged-in Saver per sponsor of
    `people`: yields (the Stack, its gunicorn processes, the savers)."""
    with production_stack(database_url, model_dir, workdir, **RESTART_SETTINGS, **xla_cache(cache_dir)) as stack:
        wait_until(lambda: writer_loaded(stack), load_timeout, "the writer loaded", interval=0.5)
        savers = [Saver(stack, email, people.editor_id, f"s{number}")
                  for number, (_, email) in enumerate(people.sponsors)]
        for saver in savers:
            saver.log_in()
        yield stack, gunicorn_processes(stack), savers


@dataclass
class Answer:
    """One response a browser got."""

    what: str  # "form", "create", "edit", "log in"
    status: int  # 0: no HTTP answer at all
    at: float  # time.monotonic() when it arrived
    retry_after: str | None
    clean: bool  # no traceback; a 503 says to try again
    body: str  # the start of the page, for failure messages


VERSION_FIELD = re.compile(r'<input[^>]*name="version"[^>]*>')


class Saver:
    """A sponsor's browser on the stack that keeps saving (new documents, and new versions
    of its own) until stopped, and keeps every answer. A 503 is retried after a short
    pause, as a person would, a little sooner than Retry-After to keep the pressure on."""

    def __init__(self, stack, email, editor_id, tag):
        self.stack, self.email, self.editor_id, self.tag = stack, email, editor_id, tag
        self.browser = stack.session()
        self.answers = []
        self.created = {}  # title -> document id, for each create that was answered 302
        self.edits = []  # (document id, version saved, body) for each edit answered 302
        self.attempted = {}  # title -> the status its create was answered (None: the form page failed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"saver-{tag}", daemon=True)
        self._numbers = itertools.count(1)

    def log_in(self):
        response, _ = self._submit("log in", "/auth/login", {"email": self.email, "password": DEFAULT_PASSWORD})
        assert response is not None and response.status_code == 302, self.answers[-1]

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=120)

    def successes_after(self, moment):
        return sum(answer.status == 302 and answer.at > moment for answer in self.answers
                   if answer.what in ("create", "edit"))

    def _run(self):
        while not self._stop.is_set():
            number = next(self._numbers)
            if self.created and number % 3 == 0:
                response = self._edit(number)
            else:
                response = self._create(number)
            if response is None or response.status_code != 302:
                time.sleep(0.2)

    def _create(self, number):
        title = f"{self.tag} {number}"
        body = f"{CORPUS[number % len(CORPUS)]} Save {number} says that"
        response, _ = self._submit("create", "/sponsor/documents/new",
                                   {"title": title, "body": body, "editor": self.editor_id})
        self.attempted[title] = response.status_code if response is not None else None
        if response is not None and response.status_code == 302:
            self.created[title] = int(re.fullmatch(r"/sponsor/documents/(\d+)", response.headers["Location"]).group(1))
        return response

    def _edit(self, number):
        title, document_id = list(self.created.items())[number % len(self.created)]
        body = f"{CORPUS[-1 - number % len(CORPUS)]} Edit {number} says that"
        path = f"/sponsor/documents/{document_id}/edit"
        response, fields = self._submit("edit", path, {"title": title, "body": body})
        if response is not None and response.status_code == 302:
            self.edits.append((document_id, int(fields["version"]) + 1, body))
        return response

    def _submit(self, what, path, data):
        """GET the form's page and POST the form as a browser does: the page's CSRF token,
        the page as Referer, and the version the page shows (edits). Returns the POST's
        response (None when the page could not be had) and the fields taken from the page."""
        url = self.stack.https + path
        page = self._request("form", "get", url)
        if page is None or page.status_code != 200:
            return None, {}
        fields = {"csrf_token": CSRF_META.search(page.text).group(1)}
        version = VERSION_FIELD.search(page.text)
        if version:
            fields["version"] = re.search(r'value="(\d+)"', version.group(0)).group(1)
        return self._request(what, "post", url, data={**fields, **data}, headers={"Referer": url}), fields

    def _request(self, what, method, url, **kwargs):
        try:
            response = self.browser.request(method, url, allow_redirects=False, timeout=60, **kwargs)
        except requests.RequestException as error:
            self.answers.append(Answer(what, 0, time.monotonic(), None, False, repr(error)))
            return None
        body = response.text
        clean = "Traceback" not in body and (response.status_code != 503 or "try again" in body)
        self.answers.append(Answer(what, response.status_code, time.monotonic(), response.headers.get("Retry-After"),
                                   clean, body[:1500]))
        return response


@dataclass
class Restart:
    mode: str
    jobs_running: int  # jobs the writer held when the server went down
    down_seconds: float  # from the stop command until the server answered again
    recovered_seconds: float  # from the server answering until the next accepted save


def restart_during_saves(server, stack, engine, savers, modes, down_seconds=1.0, saves_between=5, timeout=120):
    """With `savers` saving and the writer writing, restart `server` once per mode in
    `modes`: each time only once a job is being written (so the restart meets a write in
    flight when it can) and only once `saves_between` saves were accepted since the
    previous one. Returns one Restart per mode; the savers are stopped at the end."""
    def accepted(since, count, what):
        wait_until(lambda: sum(saver.successes_after(since) for saver in savers) >= count, timeout,
                   f"{count} saves accepted {what}")

    for saver in savers:
        saver.start()
    restarts = []
    try:
        accepted(time.monotonic(), saves_between, "before the first restart")
        for mode in modes:
            try:
                running = len(wait_until(lambda: running_jobs(engine), 10, "a job being written", interval=0.01))
            except TimeoutError:
                running = 0  # the writer kept up: restart anyway, saves are still in flight
            down = server.restart(mode, down_seconds=down_seconds)
            back = time.monotonic()
            accepted(back, 1, f"after the {mode} restart")
            restarts.append(Restart(mode, running, round(down, 2), round(time.monotonic() - back, 2)))
            accepted(back, saves_between, f"after the {mode} restart")
    finally:
        for saver in savers:
            saver.stop()
    return restarts


# Every answer a saving browser may get, with the database restarting under the app.
EXPECTED_ANSWERS = {("log in", 302), ("form", 200), ("create", 302), ("edit", 302),
                    ("form", 503), ("create", 503), ("edit", 503)}


@dataclass
class SaveAudit:
    """What the browsers were answered, checked against what the database holds."""

    answers: Counter  # (what, status) -> how many
    unexpected: list  # answers that are neither a success nor a clean 503 with Retry-After
    accepted: int  # saves answered 302
    lost: list  # accepted saves not in the database as sent
    unconfirmed: list  # (title, status) of documents saved although their browser was answered an error
    unknown: list  # documents that no browser tried to save

    @property
    def unavailable(self):
        return sum(count for (_, status), count in self.answers.items() if status == 503)


def audit_saves(engine, savers):
    answers = [answer for saver in savers for answer in saver.answers]
    unexpected = [answer for answer in answers if (answer.what, answer.status) not in EXPECTED_ANSWERS
                  or not answer.clean or (answer.status == 503 and not (answer.retry_after or "").isdigit())]
    with engine.connect() as conn:
        documents = dict(conn.execute(text("SELECT title, id FROM documents")).all())
        revisions = {(row.document_id, row.version): row.body
                     for row in conn.execute(text("SELECT document_id, version, body FROM revisions"))}
    created = {title: document_id for saver in savers for title, document_id in saver.created.items()}
    edits = [edit for saver in savers for edit in saver.edits]
    attempted = {title: status for saver in savers for title, status in saver.attempted.items()}
    lost = [("create", title) for title, document_id in created.items() if documents.get(title) != document_id]
    lost += [("edit", document_id, version) for document_id, version, body in edits
             if revisions.get((document_id, version)) != body]
    return SaveAudit(Counter((answer.what, answer.status) for answer in answers), unexpected,
                     len(created) + len(edits), lost,
                     sorted((title, attempted[title]) for title in set(documents) & set(attempted) - set(created)),
                     sorted(set(documents) - set(attempted)))


def writer_loaded(stack):
    """Whether the stack's in-process writer has loaded its model (False while the app
    does not answer)."""
    try:
        response = stack.get("/readyz")
    except requests.RequestException:
        return False
    return response.status_code == 200 and response.json()["writer"]["state"] == "loaded"


def gunicorn_processes(stack):
    """The gunicorn master, its workers and its writer process: the same set after the faults
    means nothing was restarted to recover."""
    return {stack.web.pid, *gunicorn_workers(stack.web.pid), stack.get("/readyz").json()["writer"]["process"]}
