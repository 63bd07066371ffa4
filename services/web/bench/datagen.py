"""Fill a migrated PostgreSQL database with a large, skewed srcflask data set, fast.

    cd services/web && .venv/bin/python -m bench.datagen --database-url URL [--documents 100000 ...]

The database must be migrated (`flask db upgrade`) and empty (or pass --reset). By default it
writes what issue 7 asks for: 1,000 users, 100,000 documents with their retentions, 300,000
revisions with one autodoc each, verdicts on most written autodocs, and the notifications the
app would have sent for all of it (assignments, autodocs ready, verdicts). The audit log is
left empty: no measured page reads it.

The shape is skewed the way a real site is, so that list pages and histories are worth measuring:

- one heavy sponsor owns 5 % of the documents (5,000: 250 list pages) and one busy editor is
  assigned 5 % (5,000), with a backlog of written autodocs waiting for their verdict;
- the other documents go to the other sponsors and editors with Zipf-like weights;
- most documents have 1 to 5 revisions, and a few have long histories (100 to 300 revisions);
  the longest belongs to the heavy sponsor and is assigned to the busy editor;
- ids grow with time (documents by creation, revisions and autodocs by save), as the app's would;
- a few accounts are pending, suspended or rejected; about 0.1 % of autodocs failed;
- with --queued N, the newest N unreviewed autodocs are waiting for the writer (a deep queue).

Every account's password is PASSWORD (hashed once with werkzeug), emails are
`<role><id>@bench.example`; user 1 is an admin, user 2 the heavy sponsor, user 3 the busy editor.

Rows go in with COPY from a stream generated while PostgreSQL consumes it, with every
constraint, index and foreign key of the migrations in place (so the data is proven valid);
then the sequences are moved past the ids used and VACUUM ANALYZE leaves the tables as
autovacuum would (statistics, visibility map) so that no background vacuum disturbs a
benchmark that follows.
"""
import argparse
import datetime as dt
import hashlib
import io
import itertools
import random
import sys
import time
from dataclasses import dataclass, field

import psycopg2
from werkzeug.security import generate_password_hash

PASSWORD = "bench password 2026"
ADMIN_ID, HEAVY_SPONSOR_ID, BUSY_EDITOR_ID = 1, 2, 3
# The tables datagen writes, in foreign-key order, and every table --reset empties.
APP_TABLES = ("users", "documents", "retentions", "revisions", "autodocs", "verdicts", "notifications",
              "audit_events", "api_tokens")
SERIAL_TABLES = ("users", "documents", "revisions", "autodocs", "verdicts", "notifications", "audit_events",
                 "api_tokens")
HEAVY_SPONSOR_SHARE = 0.05
BUSY_EDITOR_SHARE = 0.05
DAYS_OF_HISTORY = 730
NULL = "\\N"  # COPY's text format
DIED_MESSAGE = "The writer stopped 3 times while writing this autodoc."

_WORDS = (
    "the committee budget plan review annual report project design research study results data "
    "analysis proposal grant funding milestone team partner schedule risk quality process model "
    "system network service customer market strategy growth revenue cost policy community health "
    "education energy climate water transport housing safety security privacy archive library "
    "museum history science method evidence survey interview sample estimate forecast target "
    "approved revised submitted drafted extended reduced increased reviewed published presented "
    "discussed agreed delayed completed planned measured tested compared improved documented "
    "north south regional national local municipal university hospital school council board office "
    "first second final new current previous next quarterly monthly weekly technical financial "
    "and of to in for with on by from at as an a is was are were be will would should could may"
).split()
_TITLE_WORDS = (
    "Annual Quarterly Regional Draft Final Revised Technical Financial Community Research Project "
    "Budget Strategy Policy Review Report Plan Proposal Study Survey Assessment Summary Update Brief "
    "Notes Guidelines Framework Roadmap Evaluation Audit Charter Memo Outline"
).split()
_FIRST = ("Ada Alan Grace Edsger Barbara Donald Margaret Ken Dennis Frances Claude John Radia Tim Sophie "
          "Niklaus Leslie Shafi Hedy Katherine Dorothy Mary Linus Guido Anita Jean Karen Carol Lynn Ruth").split()
_LAST = ("Lovelace Turing Hopper Dijkstra Liskov Knuth Hamilton Thompson Ritchie Allen Shannon McCarthy "
         "Perlman Berners-Lee Wilson Wirth Lamport Goldwasser Lamarr Johnson Vaughan Jackson Torvalds "
         "Rossum Borg Sammet Jones Shaw Conway Teitelman").split()
_ORGANIZATIONS = ("Acme Research", "Northwind Institute", "Globex University", "Initech Labs", "Umbrella Health",
                  "Hooli Foundation", "Stark Energy", "Wayne Trust", "Cyberdyne Systems", "")
_COMMENTS = ("The summary misses the budget figures.", "Too vague: name the milestones.",
             "Wrong tone for the board.", "It repeats the first paragraph.", "Please cite the survey.")


@dataclass
class Shape:
    """What to generate: sizes, and the skew derived from them."""

    users: int = 1000
    documents: int = 100_000
    revisions: int = 300_000
    queued: int = 0
    seed: int = 7

    def __post_init__(self):
        if self.users < 10:
            raise ValueError("at least 10 users (admins, the heavy sponsor, the busy editor and some others)")
        if self.revisions < self.documents:
            raise ValueError("every document has at least one revision: revisions >= documents")
        scale = self.documents / 100_000
        # A few long histories: 10 of 100-300 revisions at full size, at least 2 of 20-60 when small.
        self.long_histories = max(2, round(10 * scale))
        longest = min(300, max(60, round(300 * scale)))
        budget = self.revisions - self.documents  # revisions beyond each document's first
        self.long_lengths = [round(longest / 3 + (longest - longest / 3) * i / max(self.long_histories - 1, 1))
                             for i in range(self.long_histories)][::-1]
        while sum(self.long_lengths) - self.long_histories > budget // 2:  # never more than half the extra
            self.long_lengths = [max(2, n // 2) for n in self.long_lengths]


@dataclass
class Generated:
    """What the benchmark needs to know about a generated data set."""

    shape: Shape
    seconds: float
    counts: dict
    long_documents: list = field(default_factory=list)  # ids, longest history first
    password: str = PASSWORD

    @property
    def longest_document(self):
        return self.long_documents[0]


def email_of(user_id, role):
    return f"{role}{user_id}@bench.example"


# --- COPY plumbing -----------------------------------------------------------------------------

def _escape(text):
    """A value in COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _ts(moment):
    return moment.isoformat()


class _Stream(io.RawIOBase):
    """A file whose content is generated while COPY reads it: rows are produced while the
    server consumes the previous ones (two processes, two cores), and never all held in memory."""

    def __init__(self, lines):
        self._chunks = (("".join(batch)).encode() for batch in _batched(lines, 2000))
        self._buffer = b""

    def readable(self):
        return True

    def read(self, size=-1):
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _batched(iterable, size):
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _copy(cursor, table, columns, lines):
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", _Stream(lines), size=1 << 20)
    return cursor.rowcount


# --- the plan ----------------------------------------------------------------------------------

def _text_pool(rng, count, low, high, paragraphs=True):
    """`count` English-looking texts of low..high characters, already escaped for COPY."""
    pool = []
    for _ in range(count):
        target = rng.randint(low, high)
        words, length = [], 0
        while length < target:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        sentences = " ".join(words).capitalize() + "."
        if paragraphs and len(words) > 40:
            cut = sentences.find(" ", len(sentences) // 2)
            sentences = sentences[:cut] + ".\n\n" + sentences[cut + 1:].capitalize()
        pool.append(sentences)
    return pool


def _weights(rng, count, exponent=0.5):
    """Zipf-like weights in random order: a few prolific accounts, many quiet ones."""
    weights = [1 / (rank + 1) ** exponent for rank in range(count)]
    rng.shuffle(weights)
    return weights


def _plan_users(shape, rng, now):
    """(id, name, role, status, organization, created_at, decided) for every user."""
    admins = max(3, shape.users // 200)
    editor_share = 0.2
    users = []
    for user_id in range(1, shape.users + 1):
        if user_id == ADMIN_ID or BUSY_EDITOR_ID < user_id < BUSY_EDITOR_ID + admins:
            role = "admin"
        elif user_id == BUSY_EDITOR_ID or (user_id != HEAVY_SPONSOR_ID and rng.random() < editor_share):
            role = "editor"
        else:
            role = "sponsor"
        roll = rng.random()
        special = user_id in (ADMIN_ID, HEAVY_SPONSOR_ID, BUSY_EDITOR_ID) or role == "admin"
        status = ("approved" if special or roll < 0.95 else "pending" if roll < 0.98
                  else "suspended" if roll < 0.993 else "rejected")
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        created = now - dt.timedelta(days=DAYS_OF_HISTORY + 30) + dt.timedelta(seconds=rng.uniform(0, 86400 * 60))
        if status == "pending":
            created = now - dt.timedelta(seconds=rng.uniform(3600, 86400 * 14))
        users.append((user_id, name, role, status, rng.choice(_ORGANIZATIONS), created))
    return users


def _user_lines(users, password_hash, now, rng):
    for user_id, name, role, status, organization, created in users:
        decided = status != "pending" and user_id != ADMIN_ID
        decided_at = _ts(created + dt.timedelta(hours=rng.uniform(1, 48))) if decided else NULL
        reason = NULL
        if status in ("suspended", "rejected"):
            reason = "Not a member of a partner organization." if status == "rejected" else "Shared their account."
        last_login = _ts(now - dt.timedelta(seconds=rng.uniform(0, 86400 * 30))) if status == "approved" else NULL
        yield (f"{user_id}\t{_escape(name)}\t{email_of(user_id, role)}\t{password_hash}\t{role}\t{status}\t"
               f"{organization}\t{_ts(created)}\t{last_login}\t{decided_at}\t{ADMIN_ID if decided else NULL}\t"
               f"{reason}\n")


@dataclass
class _Document:
    sponsor_id: int
    editor_id: int
    created: dt.datetime
    title: str
    revisions: int = 1
    id: int = 0
    saves: list = field(default_factory=list)  # saved_at of each version


def _plan_documents(shape, users, rng, now):
    """Every document with its owner, editor, creation time and number of revisions; ids in
    creation order. Returns (documents sorted by id, indexes of the long histories)."""
    sponsors = [u[0] for u in users if u[2] == "sponsor" and u[3] in ("approved", "suspended")
                and u[0] != HEAVY_SPONSOR_ID]
    editors = [u[0] for u in users if u[2] == "editor" and u[3] == "approved" and u[0] != BUSY_EDITOR_ID]
    sponsor_weights, editor_weights = _weights(rng, len(sponsors)), _weights(rng, len(editors))
    heavy = max(3 * 20, round(shape.documents * HEAVY_SPONSOR_SHARE))
    busy = max(3 * 20, round(shape.documents * BUSY_EDITOR_SHARE))
    owners = [HEAVY_SPONSOR_ID] * heavy + rng.choices(sponsors, sponsor_weights, k=shape.documents - heavy)
    assigned = [BUSY_EDITOR_ID] * busy + rng.choices(editors, editor_weights, k=shape.documents - busy)
    rng.shuffle(owners)
    rng.shuffle(assigned)
    span = DAYS_OF_HISTORY * 86400
    documents = [
        _Document(sponsor_id=owner, editor_id=editor,
                  created=now - dt.timedelta(seconds=span * rng.random() ** 0.7),  # more recent than old
                  title=f"{rng.choice(_TITLE_WORDS)} {rng.choice(_TITLE_WORDS).lower()} {rng.choice(_WORDS)} "
                        f"{rng.choice(_WORDS)} {rng.randint(1, 9999)}")
        for owner, editor in zip(owners, assigned)
    ]
    documents.sort(key=lambda d: d.created)
    for number, document in enumerate(documents, 1):
        document.id = number

    # Long histories among the older half (they had time to grow); the longest one is the
    # heavy sponsor's and the busy editor's, the next few are the heavy sponsor's too.
    candidates = rng.sample(range(len(documents) // 2), shape.long_histories)
    for rank, (index, length) in enumerate(zip(candidates, shape.long_lengths)):
        document = documents[index]
        document.revisions = length
        if rank == 0:
            document.sponsor_id, document.editor_id = HEAVY_SPONSOR_ID, BUSY_EDITOR_ID
        elif rank < 3:
            document.sponsor_id = HEAVY_SPONSOR_ID
    extra = shape.revisions - shape.documents - sum(n - 1 for n in shape.long_lengths)
    long_set = set(candidates)
    others = [i for i in range(len(documents)) if i not in long_set]
    # Skewed: most documents are saved a few times, some a dozen.
    activity = [rng.lognormvariate(0, 1) for _ in others]
    for index in rng.choices(others, activity, k=extra):
        documents[index].revisions += 1
    for document in documents:
        seconds = (now - document.created).total_seconds()
        step = seconds / document.revisions
        document.saves = [document.created + dt.timedelta(seconds=step * (v + (rng.random() * 0.9 if v else 0)))
                          for v in range(document.revisions)]
    return documents, [documents[i].id for i in candidates]


def generate(database_url, shape=None, reset=False, log=print):
    """Write the data set described by `shape` (default: issue 7's sizes) into the migrated
    database at `database_url`; returns a Generated. Refuses a non-empty database unless
    `reset` (which empties every table of the app first)."""
    shape = shape or Shape()
    started = time.perf_counter()
    rng = random.Random(shape.seed)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    password_hash = generate_password_hash(PASSWORD)

    conn = psycopg2.connect(_libpq(database_url))
    try:
        with conn, conn.cursor() as cursor:
            if reset:
                cursor.execute(f"TRUNCATE {', '.join(APP_TABLES)} RESTART IDENTITY CASCADE")
            cursor.execute("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM documents)")
            if cursor.fetchone()[0]:
                raise SystemExit("The database already has users or documents: pass --reset to replace them.")
            counts = _write(cursor, shape, rng, now, password_hash, log)
            long_documents = counts.pop("long_documents")
            for table in SERIAL_TABLES:
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")
        if shape.queued:
            counts["queued"] = requeue_newest(database_url, shape.queued, conn=conn, analyze=False)  # vacuumed next
        _vacuum(conn)
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    log(f"datagen: {', '.join(f'{n:,} {table}' for table, n in counts.items())} in {seconds:.1f} s")
    return Generated(shape, seconds, counts, long_documents)


def _libpq(database_url):
    """A SQLAlchemy URL (postgresql+psycopg2://...) as libpq takes it."""
    scheme, rest = database_url.split("://", 1)
    return "postgresql://" + rest


def _write(cursor, shape, rng, now, password_hash, log):
    step = time.perf_counter()

    def done(what):
        nonlocal step
        log(f"  {what} {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()

    users = _plan_users(shape, rng, now)
    names = {u[0]: u[1] for u in users}
    documents, long_documents = _plan_documents(shape, users, rng, now)
    bodies = [_escape(body) for body in _text_pool(rng, 400, 80, 900)]
    continuations = [_escape(" " + text) for text in _text_pool(rng, 400, 150, 400, paragraphs=False)]
    titles = {d.id: _escape(d.title) for d in documents}
    done("planned")
    counts = {"users": _copy(cursor, "users", ("id", "name", "email", "password_hash", "role", "status",
                                               "organization", "created_at", "last_login_at", "decided_at",
                                               "decided_by_id", "decision_reason"),
                             _user_lines(users, password_hash, now, rng))}

    def body_of(document, version):
        return bodies[(document.id * 31 + version * 7) % len(bodies)]

    counts["documents"] = _copy(cursor, "documents", ("id", "title", "body", "created_at", "updated_at", "version"), (
        f"{d.id}\t{titles[d.id]}\t{body_of(d, d.revisions)}\t{_ts(d.created)}\t{_ts(d.saves[-1])}\t{d.revisions}\n"
        for d in documents))
    counts["retentions"] = _copy(cursor, "retentions", ("document_id", "sponsor_id", "editor_id", "assigned_at",
                                                        "document_updated_at"), (
        f"{d.id}\t{d.sponsor_id}\t{d.editor_id}\t{_ts(d.created)}\t{_ts(d.saves[-1])}\n" for d in documents))
    done("users, documents, retentions")

    # Revisions (and their autodocs) get ids in the order they were saved.
    saves = sorted(((saved, d.id, version) for d in documents for version, saved in enumerate(d.saves, 1)))
    by_id = {d.id: d for d in documents}
    counts["revisions"] = _copy(cursor, "revisions", ("id", "document_id", "version", "title", "body", "saved_by_id",
                                                      "saved_at"), (
        f"{number}\t{document_id}\t{version}\t{titles[document_id]}\t{body_of(by_id[document_id], version)}\t"
        f"{by_id[document_id].sponsor_id}\t{_ts(saved)}\n"
        for number, (saved, document_id, version) in enumerate(saves, 1)))
    done("revisions")

    weights_sha = hashlib.sha256(b"bench weights").hexdigest()
    settings = ('{"num_beams": 5, "no_repeat_ngram_size": 4, "early_stopping": true, "max_new_tokens": 60, '
                '"context_tokens": 64}')
    outcomes = []  # (autodoc id, document, version, status, finished_at) for verdicts and notifications

    def autodoc_lines():
        for number, (saved, document_id, version) in enumerate(saves, 1):
            document = by_id[document_id]
            started = min(saved + dt.timedelta(seconds=rng.uniform(0.5, 30)), now)
            finished = min(started + dt.timedelta(seconds=rng.uniform(2, 9)), now)
            if rng.random() < 0.001:
                outcomes.append((number, document, version, "failed", finished))
                yield (f"{number}\t{number}\t1\tfailed\t\\N\t\\N\t{DIED_MESSAGE}\t3\t\\N\t\\N\t\\N\t\\N\t"
                       f"{_ts(saved)}\t{_ts(started)}\t{_ts(finished)}\n")
                continue
            outcomes.append((number, document, version, "done", finished))
            body = body_of(document, version)
            prompt = body[-300:]  # the writer's prompt is the end of the body
            continuation = continuations[number % len(continuations)]
            worker = f"web-{1 + number % 3}:7:writer-0"
            stamp = (f'{{"model": "gpt2", "weights_sha256": "{weights_sha}", "settings": {settings}, '
                     f'"prompt_sha256": "{hashlib.sha256(prompt.encode()).hexdigest()}", '
                     f'"queued_at": "{_ts(saved)}", "started_at": "{_ts(started)}", '
                     f'"generate_seconds": {rng.uniform(5, 8):.3f}, "batch_size": 8, "worker": "{worker}"}}')
            yield (f"{number}\t{number}\t1\tdone\t{prompt}\t{continuation}\t\\N\t1\t\\N\t\\N\t{worker}\t"
                   f"{_escape(stamp)}\t{_ts(saved)}\t{_ts(started)}\t{_ts(finished)}\n")

    counts["autodocs"] = _copy(cursor, "autodocs", (
        "id", "revision_id", "generation", "status", "prompt", "continuation", "error", "attempts", "attempt_token",
        "lease_expires_at", "worker", "stamp", "queued_at", "started_at", "finished_at"), autodoc_lines())
    done("autodocs")

    verdicts, notifications = _reviews(outcomes, names, rng, now)
    counts["verdicts"] = _copy(cursor, "verdicts", ("id", "autodoc_id", "editor_id", "decision", "comment",
                                                    "created_at", "current"), verdicts)
    counts["notifications"] = _copy(cursor, "notifications", ("id", "user_id", "kind", "message", "document_id",
                                                              "autodoc_id", "created_at", "read_at"),
                                    _notification_lines(documents, names, notifications))
    done("verdicts, notifications")
    recount_awaiting_reviews(cursor)
    done("counts of autodocs awaiting review")
    counts["long_documents"] = long_documents
    return counts


def _reviews(outcomes, names, rng, now):
    """Verdict COPY lines (a generator, filling `notices` as it goes) and the notices: an
    editor reviews most written autodocs after a while; the busy editor has a backlog."""
    notices = []  # (user_id, kind, message, document_id, autodoc_id, created_at, read_at)

    def lines():
        number = 0
        for autodoc_id, document, version, status, finished in outcomes:
            if status == "failed":
                notices.append((document.sponsor_id, "autodoc_failed",
                                f"The writer could not write the autodoc of “{document.title}” (version {version}).",
                                document.id, autodoc_id, finished, finished + dt.timedelta(hours=2)))
                continue
            age_days = (now - finished).total_seconds() / 86400
            chance = (0.35 if document.editor_id == BUSY_EDITOR_ID else 0.9) if age_days > 7 else 0.3
            reviewed = rng.random() < chance
            notices.append((document.editor_id, "autodoc_ready",
                            f"The autodoc of “{document.title}” (version {version}) is ready for your review.",
                            document.id, autodoc_id, finished, finished + dt.timedelta(hours=6) if reviewed else None))
            if not reviewed:
                continue
            at = min(now, finished + dt.timedelta(hours=rng.uniform(1, 72)))
            if rng.random() < 0.05:  # sent back once, then decided again: history kept, not current
                number += 1
                yield (f"{number}\t{autodoc_id}\t{document.editor_id}\trequest_changes\t{rng.choice(_COMMENTS)}\t"
                       f"{_ts(at - dt.timedelta(minutes=30))}\tf\n")
            roll = rng.random()
            decision = "approve" if roll < 0.75 else "request_changes" if roll < 0.92 else "reject"
            comment = "" if decision == "approve" and rng.random() < 0.8 else rng.choice(_COMMENTS)
            number += 1
            yield f"{number}\t{autodoc_id}\t{document.editor_id}\t{decision}\t{comment}\t{_ts(at)}\tt\n"
            phrase = {"approve": "approved", "request_changes": "asked for changes to", "reject": "rejected"}[decision]
            notices.append((document.sponsor_id, "autodoc_reviewed",
                            f"{names[document.editor_id]} {phrase} the autodoc of “{document.title}” "
                            f"(version {version}).", document.id, autodoc_id, at,
                            at + dt.timedelta(hours=3) if rng.random() < 0.9 else None))

    return lines(), notices


def _notification_lines(documents, names, notices):
    """Notifications in time order: each document's assignment, then `notices` (filled by
    the verdicts' COPY, which has run by the time this generator is read)."""
    assigned = [(d.editor_id, "document_assigned", f"{names[d.sponsor_id]} assigned “{d.title}” to you.", d.id, None,
                 d.created, d.created + dt.timedelta(days=1)) for d in documents]
    everything = sorted(assigned + notices, key=lambda n: n[5])
    cutoff = everything[-1][5] - dt.timedelta(days=1) if everything else None
    for number, (user_id, kind, message, document_id, autodoc_id, created, read) in enumerate(everything, 1):
        autodoc = autodoc_id or NULL
        read_at = NULL if read is None or read > cutoff else _ts(read)
        yield (f"{number}\t{user_id}\t{kind}\t{_escape(message)}\t{document_id}\t{autodoc}\t{_ts(created)}\t"
               f"{read_at}\n")


# --- the queue ---------------------------------------------------------------------------------

def requeue_newest(database_url, count, exclude_documents=(), conn=None, analyze=True):
    """Put the newest `count` written, unreviewed autodocs back in the queue, as if their
    revisions had just been saved: a deep queue for the writer. Their "ready" notifications
    go too. `exclude_documents` keeps some documents' pages unchanged. Returns how many.

    With `analyze`, the autodocs' statistics are refreshed afterwards. Without it the planner
    still believes no autodoc is queued (autoanalyze waits for 10 % of the table to change),
    and the writer's claim query, planned as a nested loop over the whole queue, takes ~40 s
    per claim at 5,000 queued (see the Load at scale section of RESULTS.md)."""
    own = conn is None
    conn = conn or psycopg2.connect(_libpq(database_url))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(
                """
                WITH picked AS (
                    SELECT a.id FROM autodocs a JOIN revisions r ON r.id = a.revision_id
                    WHERE a.status = 'done' AND r.document_id <> ALL(%(exclude)s)
                      AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.autodoc_id = a.id)
                    ORDER BY a.id DESC LIMIT %(count)s
                ), gone AS (
                    DELETE FROM notifications n USING picked WHERE n.autodoc_id = picked.id
                )
                UPDATE autodocs a SET status = 'queued', prompt = NULL, continuation = NULL, stamp = NULL,
                       attempts = 0, worker = NULL, started_at = NULL, finished_at = NULL, queued_at = now()
                FROM picked WHERE a.id = picked.id
                """, {"count": count, "exclude": list(exclude_documents)})
            queued = cursor.rowcount
            recount_awaiting_reviews(cursor)
        if analyze:
            _analyze(conn, "autodocs")
        return queued
    finally:
        if own:
            conn.close()


def finish_queue(database_url):
    """Write every waiting or running autodoc by hand, as a writer would have (a stand-in
    text): the queue is empty again. Returns how many."""
    conn = psycopg2.connect(_libpq(database_url))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(
                """
                UPDATE autodocs a SET status = 'done', prompt = right(r.body, 300),
                       continuation = ' The committee approved the plan.', attempts = greatest(a.attempts, 1),
                       attempt_token = NULL, lease_expires_at = NULL, error = NULL,
                       started_at = coalesce(a.started_at, now()), finished_at = now()
                FROM revisions r WHERE r.id = a.revision_id AND a.status IN ('queued', 'running')
                """)
            finished = cursor.rowcount
            recount_awaiting_reviews(cursor)
            return finished
    finally:
        conn.close()


def recount_awaiting_reviews(cursor):
    """Bring each document's kept count of autodocs awaiting review (retentions.awaiting_review)
    in line with the autodocs and verdicts written here in bulk, with the app's own statement.
    The tables are analysed first: rows just copied in have no statistics, and the planner,
    taking the tables for nearly empty, ran the statement's subquery as scans of whole tables
    for each of 100,000 documents (hours; seconds once analysed)."""
    from sqlalchemy.dialects import postgresql

    from srcflask.services.reviews import recount_awaiting_reviews_statement

    cursor.execute("ANALYZE retentions, revisions, autodocs, verdicts")
    cursor.execute(str(recount_awaiting_reviews_statement().compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})))


def _vacuum(conn):
    _analyze(conn, "", vacuum=True)


def _analyze(conn, table, vacuum=False):
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"{'VACUUM (ANALYZE)' if vacuum else 'ANALYZE'} {table}")
    finally:
        conn.autocommit = False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a migrated PostgreSQL database")
    defaults = Shape()
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--documents", type=int, default=defaults.documents)
    parser.add_argument("--revisions", type=int, default=None,
                        help="default: 3 per document (300,000 for 100,000 documents)")
    parser.add_argument("--queued", type=int, default=0, help="newest autodocs left waiting for the writer")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--reset", action="store_true", help="empty the app's tables first")
    args = parser.parse_args(argv)
    shape = Shape(users=args.users, documents=args.documents, revisions=args.revisions or 3 * args.documents,
                  queued=args.queued, seed=args.seed)
    generated = generate(args.database_url, shape, reset=args.reset)
    print(f"Every account's password: {PASSWORD!r}. Admin: {email_of(ADMIN_ID, 'admin')}, heavy sponsor: "
          f"{email_of(HEAVY_SPONSOR_ID, 'sponsor')}, busy editor: {email_of(BUSY_EDITOR_ID, 'editor')}; "
          f"longest history: document {generated.longest_document}.", file=sys.stderr)


if __name__ == "__main__":
    main()
