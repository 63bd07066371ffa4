"""Health, readiness, metrics and the request log, in the test app (test_production.py
runs them in the real production processes)."""
import json
import logging
import sys

import pytest
from sqlalchemy import event, text

from srcflask import create_app
from srcflask.extensions import db
from srcflask.logging_setup import JsonFormatter
from srcflask.writer import writer_runtime

from .factories import make_document, make_user


@pytest.fixture
def count_queries(app):
    """A list that collects every SQL statement the app's engine runs while it is open."""
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield statements
    event.remove(engine, "before_cursor_execute", record)


def other_app(database_url, **settings):
    return create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, **settings)


# --- /healthz and /readyz -------------------------------------------------------------------


def test_healthz_answers_without_touching_the_database(client, count_queries):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    assert count_queries == []


def test_readyz_when_ready(client, count_queries):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ready"
    assert body["database"] == {"ok": True}
    assert body["migrations"]["ok"] is True
    assert body["migrations"]["database"] == body["migrations"]["code"] != []
    # The tests' app runs no writer of its own.
    assert body["writer"]["state"] == "elsewhere"
    assert "flask writer run" in body["writer"]["detail"]
    assert len(count_queries) == 1, count_queries


def test_readyz_is_503_when_migrations_are_behind(app, client):
    with app.app_context():
        current = db.session.scalar(text("SELECT version_num FROM alembic_version"))
        db.session.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        db.session.commit()
        try:
            response = client.get("/readyz")
        finally:
            db.session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})
            db.session.commit()
    assert response.status_code == 503
    assert response.json["status"] == "not ready"
    assert response.json["database"] == {"ok": True}
    assert response.json["migrations"]["database"] == ["older"]
    assert "flask db upgrade" in response.json["migrations"]["detail"]


def test_readyz_is_503_when_the_database_is_empty(app):
    with app.app_context():
        url = db.engine.url.set(database="postgres").render_as_string(hide_password=False)
    # The server's own `postgres` database exists but has no srcflask schema.
    response = other_app(url).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["migrations"]["ok"] is False
    assert "no schema" in response.json["migrations"]["detail"]


def test_readyz_is_503_when_the_database_is_down_and_says_no_more_than_the_error_class():
    down = other_app("postgresql://postgres:hunter2@127.0.0.1:1/srcflask")
    response = down.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["database"]["ok"] is False
    assert response.json["database"]["detail"] == "OperationalError (details in the log)"
    assert "hunter2" not in response.get_data(as_text=True) and "127.0.0.1" not in response.get_data(as_text=True)
    assert down.test_client().get("/healthz").status_code == 200


def test_readyz_names_the_reason_the_writer_has_no_model(app, monkeypatch, tmp_path):
    monkeypatch.setitem(app.config, "WRITER_IN_PROCESS", True)
    monkeypatch.setitem(app.config, "WRITER_MODEL_DIR", str(tmp_path / "gpt2"))
    # The view's helper, not the URL: a request would start this app's writer threads.
    with app.test_request_context("/readyz"):
        state = writer_runtime.state()
    assert state["state"] == "unavailable"
    assert str(tmp_path / "gpt2") in state["detail"] and "flask writer fetch" in state["detail"]


# --- /metrics -------------------------------------------------------------------------------


def sample(metrics, line_start):
    """The value of the one sample line starting with `line_start`."""
    values = [line.rsplit(" ", 1)[1] for line in metrics.splitlines() if line.startswith(line_start + " ")]
    assert len(values) == 1, (line_start, metrics)
    return float(values[0])


def test_metrics_report_the_queues_from_one_query_each(app, client, count_queries):
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        for number in range(3):
            make_document(sponsor, editor, title=f"Document {number}")
        db.session.execute(text("UPDATE autodocs SET status = 'done' WHERE id = 1"))
        db.session.commit()
    count_queries.clear()

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    metrics = response.get_data(as_text=True)
    assert sample(metrics, 'srcflask_autodocs{status="queued"}') == 2
    assert sample(metrics, 'srcflask_autodocs{status="running"}') == 0
    # Finished autodocs are history: counted by the writers (srcflask_writer_jobs_total), not
    # per scrape (tests/test_metrics_cost.py).
    assert 'srcflask_autodocs{status="done"}' not in metrics
    assert sample(metrics, "srcflask_writer_queue_depth") == 2
    assert sample(metrics, "srcflask_writer_oldest_queued_age_seconds") >= 0
    assert sample(metrics, "srcflask_database_up") == 1
    assert sample(metrics, "srcflask_writer_model_loaded") == 0
    assert "srcflask_writer_generation_seconds_count" in metrics
    # The queue, the unsent emails (tests/test_mail.py has their figures), the training runs.
    assert len(count_queries) == 3, count_queries


def test_request_metrics_are_labelled_by_endpoint_not_path(login_as):
    browser, user = login_as("sponsor")
    before = browser.get("/metrics").get_data(as_text=True)
    label = 'srcflask_http_requests_total{endpoint="sponsor.document",method="GET",status="404"}'
    seen = sample(before, label) if label in before else 0
    for document_id in (991, 992):
        assert browser.get(f"/sponsor/documents/{document_id}").status_code == 404
    metrics = browser.get("/metrics").get_data(as_text=True)
    assert sample(metrics, label) == seen + 2
    assert "/sponsor/documents/99" not in metrics
    assert 'srcflask_http_request_duration_seconds_count{endpoint="sponsor.document",method="GET"}' in metrics


def test_metrics_without_a_reachable_database_still_answer():
    metrics = other_app("postgresql://postgres@127.0.0.1:1/srcflask").test_client().get("/metrics")
    assert metrics.status_code == 200
    assert sample(metrics.get_data(as_text=True), "srcflask_database_up") == 0


@pytest.mark.parametrize("settings, headers, remote, status", [
    # Production's default: nothing configured, so the URL does not exist.
    ({}, {}, "127.0.0.1", 404),
    ({"METRICS_TOKEN": "s3cret"}, {}, "127.0.0.1", 403),
    ({"METRICS_TOKEN": "s3cret"}, {"Authorization": "Bearer wrong"}, "127.0.0.1", 403),
    ({"METRICS_TOKEN": "s3cret"}, {"Authorization": "Basic s3cret"}, "127.0.0.1", 403),
    ({"METRICS_TOKEN": "s3cret"}, {"Authorization": "Bearer s3cret"}, "127.0.0.1", 200),
    ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.7"}, {}, "127.0.0.1", 403),
    ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.7"}, {}, "10.20.30.40", 200),
    ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.7"}, {}, "192.168.1.7", 200),
    ({"METRICS_TOKEN": "s3cret", "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8"}, {"Authorization": "Bearer s3cret"},
     "127.0.0.1", 200),
])
def test_who_may_read_the_metrics(database_url, settings, headers, remote, status):
    restricted = other_app(database_url, **{"METRICS_TOKEN": None, "METRICS_ALLOWED_NETWORKS": "", **settings})
    response = restricted.test_client().get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == status


def test_production_keeps_metrics_closed_by_default(monkeypatch, database_url):
    monkeypatch.setenv("SECRET_KEY", "x" * 32)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # SECRET_KEY as an override: the config classes read the environment when imported.
    # One process on purpose: counting in memory keeps this app off the suite's Redis.
    # No mail sender and no writer: they would keep polling the suite's database after this
    # test (the writer would write with whatever model a later test registers there).
    production = create_app("production", SECRET_KEY="x" * 32, RATELIMIT_SINGLE_PROCESS=True, MAIL_IN_PROCESS=False,
                            WRITER_IN_PROCESS=False)
    assert not production.config["METRICS_TOKEN"] and not production.config["METRICS_ALLOWED_NETWORKS"]
    assert production.test_client().get("/metrics").status_code == 404


def test_a_mistyped_network_fails_at_start(database_url):
    with pytest.raises(ValueError):
        other_app(database_url, METRICS_ALLOWED_NETWORKS="10.0.0.0/33")


# --- the request log ------------------------------------------------------------------------


def test_one_json_log_line_per_request(login_as, caplog):
    browser, user = login_as("sponsor")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="srcflask.request"):
        assert browser.get("/sponsor/documents?page=1").status_code == 200
    (record,) = [r for r in caplog.records if r.name == "srcflask.request"]
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "srcflask.request" and line["level"] == "INFO"
    assert line["method"] == "GET" and line["path"] == "/sponsor/documents" and line["status"] == 200
    assert line["endpoint"] == "sponsor.documents" and line["user_id"] == user.id
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["message"] == "GET /sponsor/documents 200"


def test_requests_answered_before_the_view_are_logged_too(client, caplog):
    with caplog.at_level(logging.INFO, logger="srcflask.request"):
        assert client.get("/sponsor/").status_code == 302  # sent to log in by require_role
        assert client.get("/no/such/page").status_code == 404
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "srcflask.request"]
    assert [(line["path"], line["status"], line["user_id"]) for line in lines] == [
        ("/sponsor/", 302, None), ("/no/such/page", 404, None)]
    assert lines[1]["endpoint"] is None


def test_the_json_formatter_keeps_exceptions_and_extras():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("srcflask.writer").makeRecord(
            "srcflask.writer", logging.ERROR, __file__, 1, "writer failed on %s", ([1, 2],), sys.exc_info(),
            extra={"event": "autodoc_batch_failed", "autodoc_ids": [1, 2]})
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "writer failed on [1, 2]"
    assert line["event"] == "autodoc_batch_failed" and line["autodoc_ids"] == [1, 2]
    assert "RuntimeError: boom" in line["exception"]
