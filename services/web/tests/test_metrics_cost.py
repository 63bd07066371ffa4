"""What a scrape reads from the database (srcflask/metrics.py): the queue as the writers see
it, at the same cost whatever the history (the same few queries, none of which reads the
finished autodocs or the sent emails)."""
import re

import pytest
from sqlalchemy import event, text

from srcflask.extensions import db

from srcflask.services.archive import archive_document

from .factories import make_document, make_user

HISTORY = 50_000


@pytest.fixture
def scrape_statements(app, client):
    """scrape() -> (the /metrics text, [(statement, parameters)] the app ran for it)."""
    with app.app_context():
        engine = db.engine
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    def scrape():
        statements.clear()
        event.listen(engine, "before_cursor_execute", record)
        try:
            response = client.get("/metrics")
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert response.status_code == 200
        return response.get_data(as_text=True), list(statements)

    return scrape


def figure(metrics, series):
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    assert found, (series, metrics)
    return float(found.group(1))


def test_the_queue_as_the_writers_see_it(app, scrape_statements):
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        waiting, retried, archived, running = [make_document(sponsor, editor, title=f"Document {number}")
                                               for number in range(4)]
        # One tried before and given back, one being written, one of an archived document
        # saved an hour before the others: it waits for nobody.
        for document, change in ((retried, "attempts = 1"), (running, "status = 'running', attempts = 1"),
                                 (archived, "queued_at = now() - interval '1 hour'"),
                                 (waiting, "queued_at = now() - interval '2 minutes'")):
            db.session.execute(text(f"UPDATE autodocs SET {change} WHERE revision_id IN "
                                    "(SELECT id FROM revisions WHERE document_id = :id)"), {"id": document.id})
        archive_document(archived, sponsor)
        db.session.commit()
    metrics, _ = scrape_statements()
    assert figure(metrics, 'srcflask_autodocs{status="queued"}') == 3
    assert figure(metrics, 'srcflask_autodocs{status="running"}') == 1
    assert figure(metrics, "srcflask_writer_queue_depth") == 2
    assert figure(metrics, "srcflask_writer_queue_retrying") == 1
    assert 120 <= figure(metrics, "srcflask_writer_oldest_queued_age_seconds") < 600


def add_history(document_id):
    """HISTORY finished autodocs of the document's revision and as many sent emails, in two
    statements, then fresh planner statistics, as autovacuum would have them."""
    db.session.execute(text(
        "INSERT INTO autodocs (revision_id, generation, status, queued_at, started_at, finished_at) "
        "SELECT r.id, 100 + g, CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'done' END, now(), now(), now() "
        "FROM revisions r, generate_series(1, :n) g WHERE r.document_id = :document_id"),
        {"n": HISTORY, "document_id": document_id})
    db.session.execute(text(
        "INSERT INTO outbox_messages (recipient, subject, text_body, message_id, status, next_attempt_at, "
        "created_at, sent_at) SELECT 'a@example.org', 's', 'b', 'm-' || g, 'sent', now(), now(), now() "
        "FROM generate_series(1, :n) g"), {"n": HISTORY})
    db.session.commit()
    db.session.execute(text("ANALYZE autodocs; ANALYZE outbox_messages"))
    db.session.commit()


HISTORY_TABLES = ("autodocs", "outbox_messages")


def rows_read(statement, parameters):
    """{table: rows its scans read (returned or filtered out)} when PostgreSQL runs `statement`."""
    [explained] = db.session.execute(
        text("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.replace("%(", ":").replace(")s", "")), parameters).scalar()
    read = {}

    def walk(node):
        if node.get("Relation Name") in HISTORY_TABLES:
            rows = node["Actual Rows"] + node.get("Rows Removed by Filter", 0) + node.get(
                "Rows Removed by Index Recheck", 0)
            read[node["Relation Name"]] = read.get(node["Relation Name"], 0) + rows * node["Actual Loops"]
        for child in node.get("Plans", ()):
            walk(child)

    walk(explained["Plan"])
    return read


def test_a_scrape_runs_the_same_queries_after_years_of_history(app, scrape_statements):
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        documents = [make_document(sponsor, editor, title=f"Document {number}") for number in range(3)]
        document_id = documents[0].id
    small_metrics, small = scrape_statements()

    with app.app_context():
        add_history(document_id)
    large_metrics, large = scrape_statements()

    assert len(small) == 3, small  # the queue, the unsent emails, the training runs
    assert [statement for statement, _ in large] == [statement for statement, _ in small]
    for series in ('srcflask_autodocs{status="queued"}', "srcflask_writer_queue_depth",
                   'srcflask_outbox_messages{status="queued"}'):
        figure = re.compile(rf"^{re.escape(series)} (\S+)$", re.MULTILINE)
        assert figure.search(large_metrics).group(1) == figure.search(small_metrics).group(1)
    # Nothing reads the history: each query reads the few rows still to do (3 queued
    # autodocs), through the status indexes, not the HISTORY finished ones.
    with app.app_context():
        for statement, parameters in large:
            assert all(rows <= 10 for rows in rows_read(statement, parameters).values()), statement
        assert rows_read("SELECT status, count(*) FROM autodocs GROUP BY status", {})["autodocs"] > HISTORY, \
            "the check must catch a count over the whole table"
