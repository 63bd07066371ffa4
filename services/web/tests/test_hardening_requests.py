"""Bounds on what a request can make the app hold or do (issue 13, items 1, 6 and 11):
metric labels from fixed sets, the same body checks for every form encoding, NUL refused
by the API as by the pages, database statements that cannot run forever (but migrations
may), and a revisions list that comes a page at a time."""
import threading

import pytest
import requests
from flask_migrate import upgrade
from sqlalchemy import create_engine, func, select, text

from srcflask import create_app
from srcflask.extensions import db
from srcflask.forms import NUL_MESSAGE
from srcflask import metrics
from srcflask.models import Document, Revision, User, Verdict
from srcflask.services import documents, tokens

from .factories import DEFAULT_PASSWORD, make_document, make_user, write_autodocs
from .helpers import FormClient, database_fingerprint
from .prodstack import free_port, gunicorn, production_env, throwaway_database
from .test_abuse import (ANONYMOUS_FORMS, BAD_REQUEST, FORM_PATHS, INVALID_UTF8, SAVING_FIELDS, SIGNUP, TOO_LARGE, _form,
                         assert_clean, database_unchanged, world)  # noqa: F401  (world: a fixture)

# --- item 1: metric labels --------------------------------------------------------------------


def _series(client):
    """The lines of /metrics that are samples (one per series and bucket)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return [line for line in response.get_data(as_text=True).splitlines() if line and not line.startswith("#")]


def test_2000_invented_methods_add_no_metric_series(app):
    """Each unknown method once made a series of its own (about 4 KB each, forever)."""
    client = app.test_client()
    for path in ("/healthz", "/no-such-page"):
        client.open(path, method="INVENTED")  # the first one may add the `other` series
    _series(client)  # and /metrics its own
    before = _series(client)
    for number in range(1000):
        assert client.open("/healthz", method=f"M{number}").status_code == 405
        assert client.open(f"/no-such-page-{number}", method=f"X{number}").status_code in (404, 405)
    after = _series(client)
    assert len(after) == len(before)
    assert not [line for line in after if 'method="M' in line or 'method="X' in line]
    assert any('endpoint="unmatched",method="other",status="405"' in line for line in after)


def test_known_methods_and_endpoints_keep_their_labels(app):
    client = app.test_client()
    client.get("/healthz")
    client.options("/healthz")
    lines = _series(client)
    assert any('endpoint="ops.healthz",method="GET",status="200"' in line for line in lines)
    assert any('endpoint="ops.healthz",method="OPTIONS",status="200"' in line for line in lines)


@pytest.mark.parametrize("code, label", [(200, "200"), (404, "404"), (429, "429"), (299, "2xx"), (599, "5xx"),
                                         (799, "other"), (99, "other")])
def test_status_labels_come_from_a_fixed_set(code, label):
    """A view may answer any integer: the label is the known code, or its class."""
    assert metrics.status_label(code) == label


# --- item 6: body checks by encoding ----------------------------------------------------------


def _multipart(fields, boundary="srcflask-test-boundary"):
    """A multipart/form-data body from {name: value} (bytes or str, raw: no re-encoding)."""
    parts = []
    for name, value in fields.items():
        name = name if isinstance(name, bytes) else name.encode()
        value = value if isinstance(value, bytes) else str(value).encode()
        parts.append(b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n'
                     + value + b"\r\n")
    return b"".join(parts) + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def test_invalid_utf8_in_a_multipart_form_is_400_and_stores_nothing(app, make_client, world, subtests):
    """werkzeug decodes multipart values with errors="replace": the text would have been
    saved with U+FFFD in place of what was sent."""
    for form, field in SAVING_FIELDS:
        browser = make_client() if form in ANONYMOUS_FORMS else world["browser"]
        for bad in INVALID_UTF8:
            fields = {"csrf_token": browser.csrf_token(), **_form(world, form), field: b"Bad " + bad + b" text"}
            body, content_type = _multipart(fields)
            with subtests.test(form, field=field, bad=bad), database_unchanged(app):
                response = browser.raw.post(FORM_PATHS[form].format(**world), data=body, content_type=content_type)
                assert_clean(response, 400, BAD_REQUEST)


def test_invalid_utf8_in_a_multipart_field_name_is_400(app, make_client, subtests):
    browser = make_client()
    for bad in INVALID_UTF8:
        body, content_type = _multipart({"csrf_token": browser.csrf_token(), **SIGNUP, b"na" + bad + b"me": "x"})
        with subtests.test(bad=bad), database_unchanged(app):
            assert_clean(browser.raw.post("/auth/signup", data=body, content_type=content_type), 400, BAD_REQUEST)


def test_valid_multipart_forms_still_save(app, make_client):
    browser = make_client()
    form = {**SIGNUP, "name": "Ada \u00e9\u6f22\U0001f600 Lovelace", "email": "multi@example.org"}
    body, content_type = _multipart({"csrf_token": browser.csrf_token(), **form})
    response = browser.raw.post("/auth/signup", data=body, content_type=content_type)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    with app.app_context():
        assert db.session.scalar(select(User.name).where(User.email == "multi@example.org")) == form["name"]


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_field_more_than_max_form_parts_is_413_in_every_encoding(app, make_client, encoding):
    browser = make_client()
    fields = {"csrf_token": browser.csrf_token(), **SIGNUP}
    fields.update({f"extra{number}": "x" for number in range(app.config["MAX_FORM_PARTS"] + 1 - len(fields))})
    if encoding == "multipart":
        body, content_type = _multipart(fields)
    else:
        body, content_type = "&".join(f"{k}={v}" for k, v in fields.items()), "application/x-www-form-urlencoded"
    with database_unchanged(app):
        assert_clean(browser.raw.post("/auth/signup", data=body, content_type=content_type), 413, TOO_LARGE)


@pytest.fixture
def api_people(app_context):
    owner, editor, admin = make_user("sponsor"), make_user("editor"), make_user("admin")
    secrets = {}
    for user in (owner, editor, admin):
        secrets[user.role] = {"Authorization": f"Bearer {tokens.create_token(user, 'script').secret}"}
    db.session.commit()
    return {"owner": owner, "editor": editor, "admin": admin, "headers": secrets}


def _saved_rows():
    """The database's fingerprint but for the tokens' last-use stamps, which any call moves."""
    return {table: value for table, value in database_fingerprint().items() if table != "api_tokens"}


def _assert_nul_refused(response, field):
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["json"][field] == [NUL_MESSAGE]


@pytest.mark.parametrize("field, value", [("title", "Nu\x00ll"), ("title", "\x00"), ("body", "A\x00B")])
def test_the_api_refuses_nul_in_a_new_document(app, api_people, field, value):
    payload = {"title": "T", "body": "B", "editor_id": api_people["editor"].id, field: value}
    before = _saved_rows()
    response = app.test_client().post("/api/v1/documents", json=payload, headers=api_people["headers"]["sponsor"])
    _assert_nul_refused(response, field)
    assert db.session.scalar(select(func.count(Document.id))) == 0
    assert _saved_rows() == before


def test_the_api_refuses_nul_in_an_update_a_verdict_and_a_reason(app, api_people):
    client = app.test_client()
    document = make_document(api_people["owner"], api_people["editor"], title="Kept", body="Untouched.")
    (autodoc_id,) = write_autodocs()
    target = make_user("sponsor", "pending")
    before = _saved_rows()
    _assert_nul_refused(client.put(f"/api/v1/documents/{document.id}", headers=api_people["headers"]["sponsor"],
                                   json={"version": 1, "title": "Kept", "body": "\x00Edited"}), "body")
    _assert_nul_refused(client.post(f"/api/v1/autodocs/{autodoc_id}/verdicts", headers=api_people["headers"]["editor"],
                                    json={"decision": "rejected", "comment": "No\x00"}), "comment")
    _assert_nul_refused(client.post(f"/api/v1/users/{target.id}/reject", headers=api_people["headers"]["admin"],
                                    json={"reason": "Spam\x00"}), "reason")
    assert _saved_rows() == before
    assert db.session.scalar(select(func.count(Verdict.id))) == 0


# --- item 11 (c): the revisions list is paginated -----------------------------------------------


def test_the_revisions_list_comes_a_page_at_a_time_with_links(app, api_people):
    owner = api_people["owner"]
    document = make_document(owner, api_people["editor"], body="v1")
    total = documents.HISTORY_PAGE_SIZE + 3
    for version in range(2, total + 1):
        documents.update_document(document, version - 1, document.title, f"v{version}", owner)
        db.session.commit()
    client = app.test_client()
    path = f"/api/v1/documents/{document.id}/revisions"

    first = client.get(path, headers=api_people["headers"]["sponsor"]).get_json()
    assert (first["page"], first["pages"], first["total"]) == (1, 2, total)
    assert [item["version"] for item in first["items"]] == list(range(total, 3, -1))
    assert first["links"]["self"] == path + "?page=1" and first["links"]["prev"] is None
    second = client.get(first["links"]["next"], headers=api_people["headers"]["sponsor"]).get_json()
    assert [item["body"] for item in second["items"]] == ["v3", "v2", "v1"]
    assert second["links"]["next"] is None and second["links"]["prev"] == path + "?page=1"


# --- item 11 (a): statement and connection timeouts -------------------------------------------


@pytest.fixture
def impatient_app(database_url):
    """The app with a statement timeout far below the lock wait of the test."""
    return create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, DATABASE_STATEMENT_TIMEOUT_SECONDS=0.3)


@pytest.fixture
def locked_document(app, api_people, database_url):
    """A document whose row another transaction holds locked for the test (at most 10 s,
    so that an app without a timeout waits and then succeeds rather than hangs)."""
    document = make_document(api_people["owner"], api_people["editor"], title="Kept", body="Untouched.")
    engine = create_engine(database_url)
    locked, done = threading.Event(), threading.Event()

    def hold():
        with engine.connect() as connection:
            connection.execute(text("SELECT id FROM documents WHERE id = :id FOR UPDATE"), {"id": document.id})
            locked.set()
            done.wait(10)
            connection.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    yield document
    done.set()
    holder.join()
    engine.dispose()


def test_a_page_whose_query_runs_past_the_statement_timeout_gets_a_clean_503(impatient_app, locked_document,
                                                                             api_people):
    browser = FormClient(impatient_app.test_client())
    assert browser.post("/auth/login", {"email": api_people["owner"].email,
                                        "password": DEFAULT_PASSWORD}).status_code == 302
    response = browser.post(f"/sponsor/documents/{locked_document.id}/edit",
                            {"title": "Kept", "body": "My new paragraph.", "version": "1"})
    assert_clean(response, 503, "took too long")
    assert "My new paragraph." in response.get_data(as_text=True)  # the text is shown back, not lost


def test_an_api_call_whose_query_runs_past_the_statement_timeout_gets_a_json_503(impatient_app, locked_document,
                                                                               api_people):
    response = impatient_app.test_client().put(
        f"/api/v1/documents/{locked_document.id}", headers=api_people["headers"]["sponsor"],
        json={"version": 1, "title": "Kept", "body": "Changed"})
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "statement_timeout"
    assert db.session.scalar(select(func.count(Revision.id))) == 1


def test_web_connections_carry_the_timeouts(impatient_app):
    with impatient_app.app_context():
        assert db.session.scalar(text("SHOW statement_timeout")) == "300ms"
    assert impatient_app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["connect_timeout"] == 5


def test_migrations_are_not_bound_by_the_statement_timeout():
    """`flask db upgrade` may rewrite big tables: a statement of a migration that runs past
    the web's timeout must finish (here every migration step sleeps beyond it)."""
    with throwaway_database("srcflask_migrate") as url:
        migrating = create_app("testing", SQLALCHEMY_DATABASE_URI=url, DATABASE_STATEMENT_TIMEOUT_SECONDS=0.05)

        def slow_step(ctx, **_):
            ctx.connection.exec_driver_sql("SELECT pg_sleep(0.2)")

        migrating.extensions["migrate"].configure_args["on_version_apply"] = slow_step
        with migrating.app_context():
            upgrade()
            assert db.session.scalar(text("SELECT count(*) FROM alembic_version")) == 1
            # The web's own connections still carry the timeout afterwards.
            assert db.session.scalar(text("SHOW statement_timeout")) == "50ms"
            db.session.remove()
            db.engine.dispose()


@pytest.mark.slow
def test_gunicorn_answers_a_request_stuck_on_the_database_within_the_statement_timeout(tmp_path):
    """gthread's `timeout` never ends a stuck request thread (gunicorn.conf.py): under the
    production config it is the database's statement_timeout that does. A save waiting on a
    row lock answers 503 while the lock is still held (the client would give up at 30 s),
    and the entrypoint's `flask db upgrade` ran under the same settings."""
    with throwaway_database() as database_url:
        env = production_env(database_url, tmp_path, WRITER_IN_PROCESS="0", DATABASE_STATEMENT_TIMEOUT_SECONDS="1")
        port = free_port()
        with gunicorn(env, port, tmp_path / "gunicorn.log") as server:
            seeding = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
            with seeding.app_context():
                owner, editor = make_user("sponsor"), make_user("editor")
                document = make_document(owner, editor)
                secret = tokens.create_token(owner, "script").secret
                db.session.commit()
                document_id = document.id
                db.session.remove()
                db.engine.dispose()
            locker = create_engine(database_url)
            try:
                with locker.connect() as connection:
                    connection.execute(text("SELECT id FROM documents WHERE id = :id FOR UPDATE"), {"id": document_id})
                    response = requests.put(f"http://127.0.0.1:{port}/api/v1/documents/{document_id}",
                                            json={"version": 1, "title": "Changed", "body": "Changed"},
                                            headers={"Authorization": f"Bearer {secret}"}, timeout=30)
                    connection.rollback()
            finally:
                locker.dispose()
            assert response.status_code == 503, (response.text[:300], server.output()[-3000:])
            assert response.json()["error"]["code"] == "statement_timeout"
            assert '"event": "statement_timeout"' in server.output()
