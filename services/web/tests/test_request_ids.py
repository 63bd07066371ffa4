"""Request ids: every request has one (the proxy's X-Request-ID when sane, else a new one),
on every log line it causes, in its response's X-Request-ID header and on its error page;
its log line lists the jobs it queued, and the writer's line names the same autodoc. The
last test runs the production nginx in front of gunicorn (tests/prodstack.py)."""
import io
import json
import logging
import re
from contextlib import ExitStack, contextmanager

import pytest
import requests
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.logging_setup import JsonFormatter, TextFormatter
from srcflask.static.data.processeddata.models import Autodoc
from srcflask.writer import WriterRuntime

from .factories import make_user
from .faultkit import wait_until
from .helpers import FormClient, html
from .prodstack import (free_port, gunicorn, json_lines, nginx, nginx_site, production_env, self_signed_certificate,
                        throwaway_database)
from .test_database_outage import down_app  # noqa: F401  (fixture)
from .test_writer_runtime import writer_config  # noqa: F401  (fixture)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

NEW_ID = re.compile(r"[0-9a-f]{32}")


@contextmanager
def app_log_lines(formatter=None):
    """The lines the `srcflask` loggers write inside the block, formatted as production
    writes them (JsonFormatter) unless another formatter is given."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or JsonFormatter())
    logger = logging.getLogger("srcflask")
    logger.addHandler(handler)
    lines = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        lines.extend(stream.getvalue().splitlines())


def test_each_request_gets_a_new_id_in_its_response(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert NEW_ID.fullmatch(first.headers["X-Request-ID"])
    assert NEW_ID.fullmatch(second.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@pytest.mark.parametrize("offered", ["0123456789abcdef0123456789abcdef", "lb-1.trace:42_abc", "a" * 128])
def test_a_sane_id_from_the_proxy_is_kept(client, offered):
    with app_log_lines() as lines:
        response = client.get("/healthz", headers={"X-Request-ID": offered})
    assert response.headers["X-Request-ID"] == offered
    assert [json.loads(line)["request_id"] for line in lines] == [offered]


@pytest.mark.parametrize("offered", ["short", "a" * 129, "has spaces in it", '"quoted-id-1234"', "<script>x</script>",
                                     "ünïcode-12345", "semi;colon;12345", ""])
def test_any_other_id_is_replaced_by_a_new_one(client, offered):
    with app_log_lines() as lines:
        response = client.get("/healthz", headers={"X-Request-ID": offered})
    made = response.headers["X-Request-ID"]
    assert NEW_ID.fullmatch(made) and made != offered
    assert [json.loads(line)["request_id"] for line in lines] == [made]


def test_every_log_line_of_a_request_carries_its_id(client, down_app):  # noqa: F811
    # /readyz on a database that does not answer logs a warning, then the request's line.
    with app_log_lines() as lines, app_log_lines(TextFormatter("%(levelname)s %(name)s: %(message)s")) as text:
        response = down_app.test_client().get("/readyz", headers={"X-Request-ID": "probe-0001"})
        client.get("/healthz", headers={"X-Request-ID": "other-request-2"})
    assert response.status_code == 503
    entries = [json.loads(line) for line in lines]
    assert [(entry["logger"], entry["request_id"]) for entry in entries] == [
        ("srcflask.ops.routes", "probe-0001"), ("srcflask.request", "probe-0001"),
        ("srcflask.request", "other-request-2")]
    assert text[0].startswith("WARNING srcflask.ops.routes: readyz: the database cannot be read")
    assert re.findall(r" \[request ([^\]]+)\]$", "\n".join(text), re.MULTILINE) == [
        "probe-0001", "probe-0001", "other-request-2"]


def test_lines_outside_a_request_have_no_id(app):
    with app_log_lines() as lines:
        logging.getLogger("srcflask.writer").info("outside any request")
    assert "request_id" not in json.loads(lines[0])


@pytest.mark.parametrize("method, path, code", [("get", "/no/such/page", 404), ("post", "/healthz", 405),
                                                ("post", "/auth/login", 400)])  # the last: no CSRF token
def test_error_pages_show_the_request_id(client, method, path, code):
    response = getattr(client.raw, method)(path, headers={"X-Request-ID": "quote-me-123"})
    assert response.status_code == code
    assert "Request id: <code>quote-me-123</code>" in html(response)


def test_the_unavailable_page_shows_the_request_id(down_app):  # noqa: F811
    browser = FormClient(down_app.test_client())
    response = browser.post("/auth/login", {"email": "someone@example.org", "password": "whatever it is"},
                            headers={"X-Request-ID": "outage-id-42"})
    assert response.status_code == 503 and "Service unavailable" in html(response)
    assert "Request id: <code>outage-id-42</code>" in html(response)
    assert response.headers["X-Request-ID"] == "outage-id-42"


def test_a_save_lists_the_autodoc_it_queued_and_the_writer_names_it(app, login_as, writer_config):  # noqa: F811
    browser, _ = login_as("sponsor")
    with app.app_context():
        editor_id = make_user("editor").id
    with app_log_lines() as lines:
        refused = browser.post("/sponsor/documents/new", {"title": "", "body": "text", "editor": editor_id},
                               headers={"X-Request-ID": "refused-save-1"})
        saved = browser.post("/sponsor/documents/new", {"title": "Plan", "body": "Funding for the project comes from",
                                                        "editor": editor_id}, headers={"X-Request-ID": "the-save-001"})
        WriterRuntime().run(app, until_idle=True)
    assert refused.status_code in (200, 422) and saved.status_code == 302
    with app.app_context():
        [autodoc] = db.session.scalars(select(Autodoc)).all()
        assert autodoc.status == "done"
    entries = [json.loads(line) for line in lines]
    requests_logged = {entry.get("request_id"): entry for entry in entries if entry["logger"] == "srcflask.request"}
    assert "autodoc_ids" not in requests_logged["refused-save-1"]  # nothing was queued
    assert requests_logged["the-save-001"]["autodoc_ids"] == [autodoc.id]
    assert autodoc.request_id == "the-save-001"  # kept on the job's row...
    written = [entry for entry in entries if entry.get("event") == "autodoc_written"]
    # ...so the writer's line, in a thread with no request, names the save's request too
    assert [(entry["autodoc_id"], entry["request_id"]) for entry in written] == [(autodoc.id, "the-save-001")]


def test_the_text_log_names_the_request_behind_a_writers_line(app, login_as, writer_config):  # noqa: F811
    browser, _ = login_as("sponsor")
    with app.app_context():
        editor_id = make_user("editor").id
    with app_log_lines(TextFormatter("%(name)s: %(message)s")) as lines:
        browser.post("/sponsor/documents/new", {"title": "Plan", "body": "The committee reviewed the budget and",
                                                "editor": editor_id}, headers={"X-Request-ID": "text-save-01"})
        WriterRuntime().run(app, until_idle=True)
    written = [line for line in lines if line.startswith("srcflask.writer: autodoc ")]
    assert written and all(line.endswith("[request text-save-01]") for line in written), lines


def test_an_email_a_request_queued_is_sent_under_its_request_id(app, client):
    """The forgot page queues an email in the outbox; the sender's line about it, in another
    thread, names the request that asked for it."""
    from srcflask.mailer import MailSender
    from srcflask.models import OutboxMessage

    with app.app_context():
        make_user("sponsor", email="asks@example.org")
        db.session.commit()
    with app_log_lines() as lines:
        asked = client.post("/auth/forgot", data={"email": "asks@example.org"}, headers={"X-Request-ID": "forgot-0001"})
        MailSender().run(app, until_idle=True)
    assert asked.status_code == 302
    with app.app_context():
        [message] = db.session.scalars(select(OutboxMessage)).all()
        assert message.request_id == "forgot-0001" and message.status == "sent"
    sent = [json.loads(line) for line in lines if '"mail_sent"' in line]
    assert [(entry["outbox_id"], entry["request_id"]) for entry in sent] == [(message.id, "forgot-0001")]


def test_jobs_queued_outside_a_request_have_no_request_id(app):
    from srcflask.services.documents import create_document

    with app.app_context():
        document = create_document(make_user("sponsor"), make_user("editor").id, "Console", "Made at the console.")
        db.session.commit()
        assert document.revisions[0].autodocs[0].request_id is None


def test_nginx_passes_its_id_to_the_app(tmp_path):
    """The production proxy and server: nginx makes an id (or keeps a sane one of the
    client's), the app logs and returns that same id, and nginx's access log has it too."""
    with ExitStack() as down:
        database_url = down.enter_context(throwaway_database())
        env = production_env(database_url, tmp_path / "no-model", WRITER_IN_PROCESS="0", MAIL_IN_PROCESS="0")
        web_port, http_port, https_port = free_port(), free_port(), free_port()
        web = down.enter_context(gunicorn(env, web_port, tmp_path / "gunicorn.log"))
        cert, key = self_signed_certificate(tmp_path)
        proxy = down.enter_context(nginx(nginx_site(web_port, http_port, https_port, cert, key)))
        browser = requests.Session()
        browser.trust_env, browser.verify = False, str(cert)
        base = f"https://127.0.0.1:{https_port}"

        made = browser.get(base + "/healthz", timeout=10)
        kept = browser.get(base + "/healthz", headers={"X-Request-ID": "client-trace-0042"}, timeout=10)
        forged = browser.get(base + "/healthz", headers={"X-Request-ID": "forged id\tx"}, timeout=10)
        missing = browser.get(base + "/no/such/page", timeout=10)
        ids = [response.headers["X-Request-ID"] for response in (made, kept, forged, missing)]

        # Both logs are written as each request ends, a moment after its answer reached us.
        def logged():
            lines = [line for line in json_lines(web.output()) if line.get("logger") == "srcflask.request"]
            return ids[-1] in proxy.output() and lines and lines[-1].get("request_id") == ids[-1] and lines

        # The last four: gunicorn's start-up was waited for with requests of its own.
        app_lines = wait_until(logged, 10, "the last request in both logs")[-4:]
        access_log = proxy.output()

    assert NEW_ID.fullmatch(ids[0]) and ids[1] == "client-trace-0042" and NEW_ID.fullmatch(ids[2])
    assert f"Request id: <code>{ids[3]}</code>" in missing.text
    assert [line["request_id"] for line in app_lines] == ids
    for request_id in ids:
        assert f"request_id={request_id}" in access_log
