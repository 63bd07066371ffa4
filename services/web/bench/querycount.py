"""SQL queries per page, counted in-process, and the original app's N+1 pattern beside ours.

Used by bench/load.py (its "queries" step); the pages are requested through Flask's test client
as the heavy sponsor, the busy editor and an admin of bench/datagen.py, logged in through the
real form with CSRF on. Every statement the app sends is seen by a SQLAlchemy
`before_cursor_execute` listener, so a count that grows with the data (an N+1 loop, a lazy
load in a template) shows up as a different number at 1,000 and at 100,000 documents.

The N+1 side is written here, not taken from the app: the owner's first version rendered a
list by loading the page's documents and then, for each row, its retention and editor, its
current revision's newest autodoc and that autodoc's verdict (ORM lazy loads and one query
per row), and the editor's queue by loading each autodoc's revision, document and sponsor
the same way. Both sides fill the same template with the same rows, so the time compared is
the whole page minus the HTTP layer.
"""
import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace

from flask import render_template
from flask_login import login_user
from sqlalchemy import event, func, select, text

from srcflask import create_app
from srcflask.extensions import db
from srcflask.models import Autodoc, Document, Retention, Revision, User, Verdict
from srcflask.services import reviews
from srcflask.services.documents import sponsor_documents
from srcflask.services.pages import paginate
from tests.helpers import FormClient

from .datagen import ADMIN_ID, BUSY_EDITOR_ID, HEAVY_SPONSOR_ID, PASSWORD, email_of

SAVE_FORM = {"title": "Bench save", "body": "The committee reviewed the budget and approved the plan. " * 8}


@dataclass
class Statement:
    sql: str
    params: object
    ms: float


@dataclass
class Recorder:
    """The statements run while `recording` (all of them, in order, with their time)."""

    statements: list = field(default_factory=list)
    recording: bool = False

    def before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_started"] = time.perf_counter()

    def after(self, conn, cursor, statement, parameters, context, executemany):
        if self.recording:
            ms = (time.perf_counter() - conn.info.pop("bench_started")) * 1000
            self.statements.append(Statement(statement, parameters, ms))

    @contextmanager
    def record(self):
        self.statements, self.recording = [], True
        try:
            yield self.statements
        finally:
            self.recording = False


def make_app(database_url):
    """The app on `database_url` as tests build it, without rate limits (the bench logs in
    several times a minute) and with only warnings logged; a Recorder listens to its engine."""
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, RATELIMIT_ENABLED=False, LOG_LEVEL="WARNING")
    recorder = Recorder()
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", recorder.before)
        event.listen(db.engine, "after_cursor_execute", recorder.after)
    app.extensions["bench_recorder"] = recorder
    return app


def log_in(app, user_id, role):
    client = FormClient(app.test_client())
    response = client.post("/auth/login", data={"email": email_of(user_id, role), "password": PASSWORD})
    assert response.status_code == 302, f"log-in of {email_of(user_id, role)} answered {response.status_code}"
    return client


def heavy_sponsor_documents(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).where(Retention.sponsor_id == HEAVY_SPONSOR_ID))


def page_paths(long_document, list_total, page_size):
    """{label: (role, method, path)}: the measured pages (bench/load.py requests the same);
    `list_total` is the heavy sponsor's number of documents, for the middle and last page."""
    pages = max(1, math.ceil(list_total / page_size))
    return {
        "sponsor list, first page": ("sponsor", "GET", "/sponsor/documents?page=1"),
        "sponsor list, middle page": ("sponsor", "GET", f"/sponsor/documents?page={(pages + 1) // 2}"),
        "sponsor list, last page": ("sponsor", "GET", f"/sponsor/documents?page={pages}"),
        "document, long history": ("sponsor", "GET", f"/sponsor/documents/{long_document}"),
        "editor review queue": ("editor", "GET", "/editor/reviews"),
        "admin user list": ("admin", "GET", "/admin/users"),
        "save (new document)": ("sponsor", "POST", "/sponsor/documents/new"),
    }


def clients(app):
    return {"sponsor": log_in(app, HEAVY_SPONSOR_ID, "sponsor"), "editor": log_in(app, BUSY_EDITOR_ID, "editor"),
            "admin": log_in(app, ADMIN_ID, "admin")}


def count_queries(app, long_document, repeats=5):
    """{label: {"queries": n, "median_ms": page time in-process, "slowest": Statement}} for
    every measured page; the second request of each is counted (the first may warm caches)."""
    recorder = app.extensions["bench_recorder"]
    logged_in = clients(app)
    editor_id = _an_editor(app)
    results = {}
    paths = page_paths(long_document, heavy_sponsor_documents(app), app.config["PAGE_SIZE"])
    for label, (role, method, path) in paths.items():
        client = logged_in[role]
        counts, times, slowest = [], [], None
        for _ in range(repeats + 1):
            with recorder.record() as statements:
                started = time.perf_counter()
                if method == "GET":
                    response = client.get(path)
                    expected = 200
                else:
                    response = client.post(path, data={**SAVE_FORM, "editor": editor_id})
                    expected = 302
                elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == expected, f"{label}: {path} answered {response.status_code}"
            counts.append(len(statements))
            times.append(elapsed)
            top = max(statements, key=lambda s: s.ms)
            if slowest is None or top.ms > slowest.ms:
                slowest = top
        results[label] = {"queries": counts[1], "all_counts": sorted(set(counts[1:])),
                          "median_ms": statistics.median(times[1:]), "slowest": slowest}
    return results


def _an_editor(app):
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.role == "editor", User.status == "approved")
                                 .order_by(User.id))


def explain(app, statement):
    """EXPLAIN (ANALYZE, BUFFERS) of a recorded statement, as text."""
    with app.app_context():
        with db.engine.connect() as conn:
            cursor = conn.connection.cursor()
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement.sql, statement.params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            conn.rollback()
    return plan


# --- the original app's pattern: one query (or more) per listed row ---------------------------

def naive_sponsor_list(sponsor, page_number):
    """The sponsor's list page as the first version built it: a page of Document rows, then
    per row its retention and editor (lazy loads), its current revision's newest autodoc
    and that autodoc's current verdict (a query each)."""
    page = paginate(
        select(Document).join(Retention, Retention.document_id == Document.id)
        .where(Retention.sponsor_id == sponsor.id).order_by(Document.updated_at.desc(), Document.id.desc()),
        page_number)
    rows = []
    for document in page.items:
        retention = document.retention
        autodoc = db.session.scalar(
            select(Autodoc).join(Revision, Revision.id == Autodoc.revision_id)
            .where(Revision.document_id == document.id, Revision.version == document.version)
            .order_by(Autodoc.generation.desc()).limit(1))
        verdict = autodoc.current_verdict if autodoc else None
        rows.append(SimpleNamespace(
            id=document.id, title=document.title, version=document.version, updated_at=document.updated_at,
            sponsor_name=retention.sponsor.name, editor_name=retention.editor.name,
            autodoc_status=autodoc.status if autodoc else None, autodoc_id=autodoc.id if autodoc else None,
            verdict=verdict.decision if verdict else None, verdict_comment=verdict.comment if verdict else None))
    page.items = rows
    return page


def naive_review_queue(editor, page_number):
    """The editor's queue as the first version built it: a page of Autodoc rows waiting for a
    verdict, then per row its revision, document and the document's sponsor (lazy loads)."""
    reviewed = select(Verdict.id).where(Verdict.autodoc_id == Autodoc.id, Verdict.current)
    page = paginate(
        select(Autodoc).join(Revision, Revision.id == Autodoc.revision_id)
        .join(Retention, Retention.document_id == Revision.document_id)
        .where(Retention.editor_id == editor.id, Autodoc.status == "done", ~reviewed.exists())
        .order_by(Autodoc.finished_at, Autodoc.id),
        page_number)
    rows = []
    for autodoc in page.items:
        revision = autodoc.revision
        document = revision.document
        rows.append(SimpleNamespace(
            autodoc_id=autodoc.id, generation=autodoc.generation, finished_at=autodoc.finished_at,
            document_id=document.id, title=document.title, version=revision.version,
            sponsor_name=document.retention.sponsor.name, stale=revision.version < document.version))
    page.items = rows
    return page


def _sponsor_list_page(loader):
    def render(user, page_number):
        return render_template("sponsor/documents.html", page=loader(user, page_number), q="")
    return render


def _review_queue_page(loader):
    import datetime as dt

    def render(user, page_number):
        return render_template("editor/reviews.html", page=loader(user, page_number),
                               now=dt.datetime.now(dt.timezone.utc))
    return render


COMPARED = {
    "sponsor list, first page": (HEAVY_SPONSOR_ID, 1, _sponsor_list_page(lambda u, p: sponsor_documents(u, "", p)),
                                 _sponsor_list_page(naive_sponsor_list)),
    "editor review queue, first page": (BUSY_EDITOR_ID, 1, _review_queue_page(reviews.review_queue),
                                        _review_queue_page(naive_review_queue)),
}


def compare_n_plus_one(app, repeats=20):
    """{label: {"ours": (queries, median ms), "naive": (queries, median ms), "same_rows": bool}}:
    each page loaded and rendered in a request context as its user, a fresh session per
    run (nothing cached between runs), alternating the two loaders."""
    recorder = app.extensions["bench_recorder"]
    results = {}
    for label, (user_id, page_number, ours, naive) in COMPARED.items():
        figures = {"ours": [], "naive": []}
        html = {}
        for run in range(repeats + 1):
            for name, render in (("ours", ours), ("naive", naive)):
                with app.test_request_context("/"):
                    user = db.session.get(User, user_id)
                    login_user(user)
                    with recorder.record() as statements:
                        started = time.perf_counter()
                        html[name] = render(user, page_number)
                        elapsed = (time.perf_counter() - started) * 1000
                    db.session.remove()
                if run:  # the first run of each warms the template cache
                    figures[name].append((len(statements), elapsed))
        results[label] = {
            name: (statistics.median(q for q, _ in runs), statistics.median(ms for _, ms in runs))
            for name, runs in figures.items()
        }
        results[label]["same_rows"] = _rows_of(html["ours"]) == _rows_of(html["naive"])
    return results


def _rows_of(page):
    """The table rows of a rendered list page (the part both loaders must agree on)."""
    start, end = page.find("<tbody>"), page.find("</tbody>")
    return page[start:end]


def database_size(app):
    with app.app_context():
        return db.session.execute(text(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM revisions), "
            "pg_size_pretty(pg_database_size(current_database()))")).one()
