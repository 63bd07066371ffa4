"""The production shape, proven with the real programs on loopback.

No Docker engine runs here, so the compose files are checked by a real compose client
(`docker compose config`, else Debian's docker-compose: scripts/system-packages installs
it), and the containers' processes are run as the containers would run them
(tests/prodstack.py): a throwaway PostgreSQL database, entrypoint.sh (settings check, wait
for the database, `flask db upgrade`), gunicorn with gunicorn.conf.py and the environment
of .env.prod, Debian's nginx with services/nginx/nginx.conf in front, over TLS. Then a
person's round trip goes through nginx: the first admin from `flask create-admin`, a
sponsor and an editor signing up through the forms, the admin approving them, the sponsor
saving a document, and the writer process gunicorn's master runs writing its autodoc.
"""
import re
import secrets
import shutil
import subprocess
import time
from contextlib import ExitStack

import pytest
import yaml
from dotenv import dotenv_values
from sqlalchemy import create_engine, text

from .factories import DEFAULT_PASSWORD
from .helpers import CSRF_META
from .prodstack import (REPO_ROOT, WEB_ROOT, Stack, free_port, gunicorn, gunicorn_workers, json_lines, nginx,
                        nginx_site, production_env, run_entrypoint, self_signed_certificate, throwaway_database)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

ADMIN = {"ADMIN_EMAIL": "first.admin@example.org", "ADMIN_NAME": "First Admin", "ADMIN_PASSWORD": DEFAULT_PASSWORD}
SPONSOR = {"name": "Sam Sponsor", "email": "sam@example.org", "role": "sponsor", "organization": "Acme"}
EDITOR = {"name": "Eve Editor", "email": "eve@example.org", "role": "editor", "organization": ""}
METRICS_TOKEN = secrets.token_urlsafe(24)
# A bound on waiting for the worker's writer to load and compile the tiny model, not a timing:
# seconds on an idle machine, over a minute seen on one shared by several test runs.
WRITER_WAIT_SECONDS = 240


# --- the compose files ----------------------------------------------------------------------


def compose_command():
    """`docker compose` where the plugin runs, else Debian's `docker-compose`; None if neither."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run([*command, "version"], capture_output=True).returncode == 0:
            return command
    return None


@pytest.fixture(scope="module")
def compose_folder(tmp_path_factory):
    """A copy of the repository's compose files and committed env files beside the real
    services/ folder, plus the .env.prod.db an operator would write (never committed)."""
    folder = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "docker-compose.prod.yml", "docker-compose.scale.yml", "docker-compose.backup.yml",
                 ".env.dev", ".env.prod"):
        shutil.copy(REPO_ROOT / name, folder / name)
    (folder / "services").symlink_to(REPO_ROOT / "services")
    (folder / ".env.prod.db").write_text(
        "POSTGRES_USER=srcflask\nPOSTGRES_PASSWORD=throwaway\nPOSTGRES_DB=srcflask\n"
        "SECRET_KEY=throwaway-secret\nDATABASE_URL=postgresql://srcflask:throwaway@db:5432/srcflask\n"
    )
    return folder


def compose_config(folder, *compose_files):
    command = compose_command()
    assert command, ("Neither `docker compose` nor `docker-compose` runs here: "
                     "services/web/scripts/system-packages installs Debian's docker-compose.")
    files = [arg for name in compose_files for arg in ("-f", name)]
    result = subprocess.run([*command, *files, "config"], cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def mounts(service):
    """(source, target) of each volume, in either client's output syntax."""
    pairs = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            pairs.add((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            pairs.add((source, target))
    return pairs


def environment(service):
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def healthy(service, dependency):
    return service["depends_on"][dependency]["condition"] == "service_healthy"


def test_development_compose_file(compose_folder):
    services = compose_config(compose_folder, "docker-compose.yml")
    assert set(services) == {"web", "db", "trainer"}
    assert all("healthcheck" in service for service in services.values())
    web = services["web"]
    assert_trainer_beside(services["trainer"], web)
    assert healthy(web, "db")
    assert "--debug" in web["command"] and "flask" in web["command"]
    assert any(target == "/usr/src/app" for _, target in mounts(web)), "the source must be mounted"
    assert environment(web)["SRCFLASK_ENV"] == "development"
    assert environment(web)["MAIL_BACKEND"] == "log"  # emails in the log: no mail server needed
    assert services["db"]["image"].startswith("postgres:16")
    assert any(target == "/var/lib/postgresql/data" for _, target in mounts(services["db"]))


def test_production_compose_file(compose_folder):
    services = compose_config(compose_folder, "docker-compose.prod.yml")
    assert set(services) == {"web", "nginx", "db", "redis", "trainer"}
    assert all("healthcheck" in service for service in services.values())
    web, proxy, db = services["web"], services["nginx"], services["db"]
    assert_trainer_beside(services["trainer"], web)
    assert environment(web)["RETRAINED_MODELS_DIR"].startswith("/models/")  # on the shared volume
    assert healthy(web, "db") and healthy(web, "redis") and healthy(proxy, "web")
    assert_redis_counts_only(services["redis"])
    assert environment(web)["RATELIMIT_STORAGE_URI"] == "redis://redis:6379/0"
    assert web["build"]["dockerfile"] == "Dockerfile.prod"
    assert "ports" not in web, "only nginx is published"
    assert ("models", "/models") in mounts(web)
    env = environment(web)
    assert env["SRCFLASK_ENV"] == "production"
    assert env["WRITER_MODEL_DIR"].startswith("/models/")
    assert env["MAIL_BACKEND"] == "smtp" and env["MAIL_SERVER"] and env["SITE_URL"].startswith("https://")
    # The secrets arrive from .env.prod.db, never from the committed .env.prod.
    assert env["SECRET_KEY"] == "throwaway-secret" and env["DATABASE_URL"].startswith("postgresql://")
    assert environment(db)["POSTGRES_PASSWORD"] == "throwaway"
    assert any(target == "/var/lib/postgresql/data" for _, target in mounts(db))


def test_scaling_out_compose_file(compose_folder):
    services = compose_config(compose_folder, "docker-compose.prod.yml", "docker-compose.scale.yml")
    assert set(services) == {"web", "nginx", "db", "writer", "redis", "trainer"}
    # Every web replica counts rate limits in the one Redis.
    assert healthy(services["web"], "redis") and environment(services["web"])["RATELIMIT_STORAGE_URI"].startswith("redis://")
    assert all("healthcheck" in service for service in services.values())
    web, writer = services["web"], services["writer"]
    assert environment(web)["WRITER_IN_PROCESS"] == "0"
    assert "WRITER_IN_PROCESS" not in environment(writer)  # the default, 1: it writes
    assert writer["command"] == ["flask", "writer", "run"]
    assert healthy(writer, "db") and ("models", "/models") in mounts(writer)
    assert environment(writer)["DATABASE_URL"] == environment(web)["DATABASE_URL"]
    # Its metrics, for Prometheus on the project's network (monitoring/prometheus/prometheus.yml).
    assert environment(writer)["WRITER_METRICS_PORT"] == "9101" and "ports" not in writer


def assert_trainer_beside(trainer, web):
    """The trainer service: `flask model train --queued` with web's image, settings and model folders."""
    assert trainer["command"] == ["flask", "model", "train", "--queued"]
    assert trainer["build"] == web["build"] and environment(trainer) == environment(web)
    assert mounts(web) <= mounts(trainer) and healthy(trainer, "db") and "ports" not in trainer


def assert_redis_counts_only(redis):
    """A pinned Redis that is checked and keeps nothing on disk: it only holds counts."""
    assert re.fullmatch(r"redis:\d+\.\d+(\.\d+)?-alpine", redis["image"]), redis["image"]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    command = redis["command"] if isinstance(redis["command"], list) else redis["command"].split()
    assert command[command.index("--save") + 1] in ("", '""') and command[command.index("--appendonly") + 1] == "no"
    assert not redis.get("volumes") and "ports" not in redis


def test_committed_env_prod_carries_no_secret():
    settings = dotenv_values(REPO_ROOT / ".env.prod")
    assert settings["SRCFLASK_ENV"] == "production"
    for secret in ("SECRET_KEY", "DATABASE_URL", "POSTGRES_PASSWORD", "METRICS_TOKEN", "MAIL_PASSWORD"):
        assert not settings.get(secret), f"{secret} must not be committed in .env.prod"
    assert ".env.prod.db" in (REPO_ROOT / ".gitignore").read_text().split()


# --- the entrypoint on its own --------------------------------------------------------------


def test_entrypoint_refuses_production_without_its_secrets(tmp_path):
    env = production_env("", tmp_path, SECRET_KEY="", DATABASE_URL="")
    result = subprocess.run([str(WEB_ROOT / "entrypoint.sh"), "true"], cwd=WEB_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "SECRET_KEY: not set" in result.stderr and "DATABASE_URL: not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_entrypoint_gives_up_on_a_database_that_never_answers(tmp_path):
    env = production_env(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", tmp_path, DB_WAIT_SECONDS="2")
    started = time.monotonic()
    result = subprocess.run([str(WEB_ROOT / "entrypoint.sh"), "true"], cwd=WEB_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "did not answer within 2 s" in result.stderr
    assert time.monotonic() - started < 30


def test_replicas_starting_together_take_turns_at_migrating(tmp_path):
    """Three containers' entrypoints on one empty database at once: all succeed (a
    PostgreSQL advisory lock serialises `flask db upgrade`), and the schema is at head."""
    with throwaway_database() as database_url:
        env = production_env(database_url, tmp_path)
        starts = [subprocess.Popen([str(WEB_ROOT / "entrypoint.sh"), "flask", "db", "current"], cwd=WEB_ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
        outputs = [start.communicate(timeout=180)[0] for start in starts]
        assert [start.returncode for start in starts] == [0, 0, 0], "\n---\n".join(outputs)
        assert sum("Running upgrade  -> 0001" in output for output in outputs) == 1
        assert all("(head)" in output for output in outputs)


# --- the running stack ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_dir):  # noqa: F811
    """Everything up, in the order compose starts it; everything down afterwards, whatever
    happened (the database is dropped, gunicorn's and nginx's process groups are ended)."""
    workdir = tmp_path_factory.mktemp("production")
    with ExitStack() as down:
        database_url = down.enter_context(throwaway_database())
        # The tiny model writes short texts in small batches: a faster round trip.
        env = production_env(database_url, tiny_model_dir, METRICS_TOKEN=METRICS_TOKEN, WRITER_POLL_SECONDS="0.2",
                             WRITER_BATCH_SIZE="2", WRITER_MAX_NEW_TOKENS="12", WRITER_CONTEXT_TOKENS="24")
        # First start: `docker compose run --rm web flask create-admin` migrates, then creates.
        migrate_output = run_entrypoint({**env, **ADMIN}, "flask", "create-admin")
        web_port, http_port, https_port = free_port(), free_port(), free_port()
        web = down.enter_context(gunicorn(env, web_port, workdir / "gunicorn.log"))
        cert, key = self_signed_certificate(workdir)
        proxy = down.enter_context(nginx(nginx_site(web_port, http_port, https_port, cert, key)))
        yield Stack(https=f"https://127.0.0.1:{https_port}", http=f"http://127.0.0.1:{http_port}", ca=str(cert),
                    database_url=database_url, web=web, proxy=proxy, migrate_output=migrate_output)


def test_plain_http_only_redirects_to_https(stack):
    response = stack.session().get(stack.http + "/auth/login?next=/x", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == "https://127.0.0.1/auth/login?next=/x"
    assert stack.session().get(stack.http + "/nginx-healthz", timeout=10).text == "ok\n"


def test_a_page_through_nginx(stack):
    response = stack.get("/")
    assert response.status_code == 200, stack.logs()
    assert "text/html" in response.headers["Content-Type"]
    # The app's own headers: the page came from gunicorn, in production settings, over TLS.
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Server" not in response.headers or "nginx/" not in response.headers["Server"]


def test_assets_are_served_by_nginx(stack):
    response = stack.get("/static/css/app.css")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert response.text == (WEB_ROOT / "srcflask/static/assets/css/app.css").read_text()
    # nginx's `expires 1h`, and none of the headers the app puts on everything it answers.
    assert "Expires" in response.headers and response.headers["Cache-Control"] == "max-age=3600"
    assert "Content-Security-Policy" not in response.headers


def test_proxied_responses_are_gzipped(stack):
    response = stack.get("/bootstrap/static/css/bootstrap.min.css", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize("path", [
    "/static/src/features/doctokenization.py",
    "/static/mlmodels/seedmlmodels/headmodel.py",
    "/static/data/processeddata/models.py",
    "/static/assets/css/app.css",
])
def test_code_under_static_is_404_at_nginx(stack, path):
    response = stack.get(path)
    assert response.status_code == 404
    assert "Content-Security-Policy" not in response.headers, "nginx must answer /static/ itself"


def test_bodies_over_the_apps_limit_are_refused_by_nginx(stack):
    response = stack.session().post(stack.https + "/auth/login", data=b"x" * (10 * 1024 * 1024), timeout=30)
    assert response.status_code == 413
    assert "Content-Security-Policy" not in response.headers
    assert "That request is too large" in response.text and "nginx" not in response.text


def test_nginx_says_the_site_is_unavailable_when_gunicorn_is_down(stack, tmp_path):
    """The same site, its upstream a port where nothing listens (gunicorn restarting)."""
    cert, key = self_signed_certificate(tmp_path)
    http_port, https_port = free_port(), free_port()
    with nginx(nginx_site(free_port(), http_port, https_port, cert, key)):
        browser = stack.session()
        browser.verify = str(cert)
        response = browser.get(f"https://127.0.0.1:{https_port}/sponsor/documents", timeout=10)
    assert response.status_code == 502
    assert "Service unavailable" in response.text and "try again" in response.text
    assert "nginx" not in response.text


def test_health_and_readiness(stack):
    assert stack.get("/healthz").json() == {"status": "ok"}
    deadline = time.monotonic() + WRITER_WAIT_SECONDS
    while True:
        response = stack.get("/readyz")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["writer"]["state"] == "loaded" or time.monotonic() > deadline:
            break
        assert body["writer"]["state"] == "loading", body
        time.sleep(0.5)
    assert body["status"] == "ready"
    assert body["database"] == {"ok": True}
    assert body["migrations"]["ok"] and body["migrations"]["database"] == body["migrations"]["code"]
    assert body["writer"]["state"] == "loaded", stack.logs()
    assert body["writer"]["load_seconds"] >= 0


def test_metrics_need_the_token_in_production(stack):
    assert stack.get("/metrics").status_code == 403
    assert stack.get("/metrics", headers={"Authorization": "Bearer not-the-token"}).status_code == 403
    response = stack.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert "srcflask_writer_queue_depth" in response.text


# --- a person's round trip ------------------------------------------------------------------


def csrf_token(browser, url):
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, (url, page.status_code)
    return CSRF_META.search(page.text).group(1)


def post_form(browser, base, path, data, form_page=None):
    """POST a form as a browser does: with the CSRF token of the page it is on, and that
    page as the Referer (Flask-WTF checks it on HTTPS)."""
    page = base + (form_page or path)
    token = csrf_token(browser, page)
    return browser.post(base + path, data={**data, "csrf_token": token}, headers={"Referer": page},
                        allow_redirects=False, timeout=30)


def sign_up(stack, person):
    browser = stack.session()
    response = post_form(browser, stack.https, "/auth/signup",
                         {**person, "password": DEFAULT_PASSWORD, "confirm": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/standing", response.text[:2000]


def log_in(stack, email):
    browser = stack.session()
    response = post_form(browser, stack.https, "/auth/login", {"email": email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/", response.text[:2000]
    return browser


def user_ids(database_url, *emails):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT email, id FROM users WHERE email = ANY(:emails)"), {"emails": list(emails)})
            found = dict(rows.all())
    finally:
        engine.dispose()
    return [found[email] for email in emails]


def autodoc_row(database_url, document_id):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT a.id, a.status, a.worker, a.continuation FROM autodocs a JOIN revisions r ON r.id = a.revision_id"
                " WHERE r.document_id = :document ORDER BY a.id"), {"document": document_id}).one()
    finally:
        engine.dispose()


def test_round_trip_save_to_autodoc_written_by_gunicorns_writer(stack):
    assert "Created the approved admin first.admin@example.org." in stack.migrate_output
    sign_up(stack, SPONSOR)
    sign_up(stack, EDITOR)
    admin = log_in(stack, ADMIN["ADMIN_EMAIL"])
    for user_id in user_ids(stack.database_url, SPONSOR["email"], EDITOR["email"]):
        response = post_form(admin, stack.https, f"/admin/users/{user_id}/approve", {}, form_page="/admin/approvals")
        assert response.status_code == 302, response.text[:2000]
    assert "No account is waiting for approval." in admin.get(stack.https + "/admin/approvals").text

    sponsor = log_in(stack, SPONSOR["email"])
    (editor_id,) = user_ids(stack.database_url, EDITOR["email"])
    response = post_form(sponsor, stack.https, "/sponsor/documents/new",
                         {"title": "Budget", "body": "The committee reviewed the budget and", "editor": editor_id})
    assert response.status_code == 302, response.text[:2000]
    document_id = int(re.fullmatch(r"/sponsor/documents/(\d+)", response.headers["Location"]).group(1))
    page = sponsor.get(stack.https + response.headers["Location"])
    assert page.status_code == 200 and "Budget" in page.text

    autodoc_id = autodoc_row(stack.database_url, document_id).id
    status_url = f"{stack.https}/autodocs/{autodoc_id}/status"
    first = sponsor.get(status_url).json()
    # Queued by the save; the writer may already have taken it by the time we look.
    assert first["status"] in ("queued", "running", "done"), first
    deadline = time.monotonic() + WRITER_WAIT_SECONDS
    status = first
    while status["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = sponsor.get(status_url).json()
    assert status["status"] == "done", f"{status}\n{stack.logs()}"

    row = autodoc_row(stack.database_url, document_id)
    assert row.continuation
    # Written by the writer process beside the page workers (tests/test_writer_process.py):
    # <host>:<its pid>:writer-0.
    _, writer_pid, thread = row.worker.rsplit(":", 2)
    assert thread == "writer-0" and int(writer_pid) == stack.get("/readyz").json()["writer"]["process"]
    assert int(writer_pid) not in gunicorn_workers(stack.web.pid)

    check_logs(stack, document_id, autodoc_id)
    check_metrics(stack)


def check_logs(stack, document_id, autodoc_id):
    """gunicorn's output: one JSON line per request, and the writer's line for the autodoc."""
    (sponsor_id,) = user_ids(stack.database_url, SPONSOR["email"])
    lines = json_lines(stack.web.output())
    saves = [line for line in lines if line.get("logger") == "srcflask.request" and line["method"] == "POST"
             and line["path"] == "/sponsor/documents/new"]
    assert len(saves) == 1, stack.logs()
    assert saves[0]["status"] == 302 and saves[0]["user_id"] == sponsor_id and saves[0]["duration_ms"] > 0
    assert saves[0]["endpoint"] == "sponsor.new_document" and saves[0]["remote_addr"] == "127.0.0.1"
    written = [line for line in lines if line.get("event") == "autodoc_written" and line["autodoc_id"] == autodoc_id]
    assert len(written) == 1, stack.logs()
    assert written[0]["seconds"] >= 0 and written[0]["worker"].endswith(":writer-0")
    assert any(line.get("logger") == "gunicorn.error" for line in lines), "gunicorn's own lines are JSON too"


def check_metrics(stack):
    metrics = stack.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert re.search(r'^srcflask_http_requests_total\{endpoint="sponsor.new_document",method="POST",status="302"\} 1\.0$',
                     metrics, re.MULTILINE), metrics
    # Finished autodocs are counted by the writer that wrote them (a scrape reads only the
    # queue), in the multiprocess files of gunicorn's folder (gunicorn.conf.py).
    assert re.search(r'^srcflask_writer_jobs_total\{kind="autodoc",outcome="written"\} 1\.0$', metrics, re.MULTILINE)
    assert re.search(r"^srcflask_writer_queue_depth 0\.0$", metrics, re.MULTILINE)
    count = re.search(r"^srcflask_writer_generation_seconds_count (\S+)$", metrics, re.MULTILINE)
    assert count and float(count.group(1)) >= 1
    assert re.search(r"^srcflask_writer_model_load_seconds \d", metrics, re.MULTILINE)
    assert "/sponsor/documents/" not in metrics, "routes are labelled by endpoint, never by path"


# --- the pages' event stream through nginx ---------------------------------------------------

STREAMER = {"name": "Lee Streamer", "email": "lee@example.org", "role": "sponsor", "organization": ""}
STREAM_EDITOR = {"name": "Ivo Editor", "email": "ivo@example.org", "role": "editor", "organization": ""}


@pytest.fixture(scope="module")
def streamer(stack):
    """A logged-in sponsor's session and the autodoc of the document it just saved, once the
    writer has written it: its claim and its write are events too, and one arriving as a
    stream opens would share the stream's first chunk (it once did, in CI)."""
    sign_up(stack, STREAMER)
    sign_up(stack, STREAM_EDITOR)
    admin = log_in(stack, ADMIN["ADMIN_EMAIL"])
    for user_id in user_ids(stack.database_url, STREAMER["email"], STREAM_EDITOR["email"]):
        assert post_form(admin, stack.https, f"/admin/users/{user_id}/approve", {},
                         form_page="/admin/approvals").status_code == 302
    sponsor = log_in(stack, STREAMER["email"])
    (editor_id,) = user_ids(stack.database_url, STREAM_EDITOR["email"])
    response = post_form(sponsor, stack.https, "/sponsor/documents/new",
                         {"title": "Streamed", "body": "The committee reviewed the budget and", "editor": editor_id})
    document_id = int(re.fullmatch(r"/sponsor/documents/(\d+)", response.headers["Location"]).group(1))
    deadline = time.monotonic() + WRITER_WAIT_SECONDS
    while (row := autodoc_row(stack.database_url, document_id)).status != "done":
        assert time.monotonic() < deadline, f"the writer did not write autodoc {row.id}: {row.status}\n{stack.logs()}"
        time.sleep(0.2)
    return sponsor, row.id


def test_the_event_stream_passes_nginx_unbuffered(stack, streamer):
    """Each event reaches the browser when gunicorn writes it: the test reads the stream's
    first line through nginx before anything else happens, then makes the event. A buffering
    proxy would hold the first line until the stream ends (SSE_STREAM_SECONDS), and the event,
    sent after, would never arrive on that stream."""
    sponsor, autodoc_id = streamer
    with sponsor.get(f"{stack.https}/autodocs/events?id={autodoc_id}", stream=True, timeout=(5, 60),
                     headers={"Accept-Encoding": "gzip"}) as stream:
        assert stream.status_code == 200, stack.logs()
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in stream.headers and "X-Accel-Buffering" not in stream.headers
        chunks = stream.iter_content(chunk_size=None, decode_unicode=True)
        assert next(chunks) == "retry: 500\n\n"
        # The autodoc is written (streamer): nothing else makes an event for it but this.
        engine = create_engine(stack.database_url)
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify('srcflask_autodoc_status', :id)"), {"id": str(autodoc_id)})
        engine.dispose()
        received = ""
        for chunk in chunks:
            received += chunk
            if f"event: changed\ndata: {autodoc_id}\n\n" in received:
                break
        else:
            raise AssertionError(f"the stream ended without the event: {received!r}\n{stack.logs()}")


def test_a_closed_page_gives_its_stream_back_through_nginx(stack, streamer):
    """Pages opened and closed one after another, more of them than production's places for
    streams (.env.prod: 2 workers x half of 4 threads), faster than a keep-alive (5 s): each
    gets a stream, because nginx closes its connection to gunicorn when the page's goes, and
    the stream notices that at once instead of at its next keep-alive write."""
    sponsor, autodoc_id = streamer
    places = 2 * (4 // 2)
    opened = []
    for page in range(2 * places + 1):
        opened.append(time.monotonic())
        with sponsor.get(f"{stack.https}/autodocs/events?id={autodoc_id}", stream=True, timeout=(5, 60)) as stream:
            assert stream.status_code == 200, f"page {page} was refused: {stream.text}\n{stack.logs()}"
            assert next(stream.iter_content(chunk_size=None, decode_unicode=True)) == "retry: 500\n\n"
        # The server takes the place back in its own time (a quarter of a second).
        time.sleep(0.3)
    # Otherwise keep-alives could have freed the places, and this would show nothing.
    assert opened[places] - opened[0] < 5, "the machine is too slow for this test to mean anything"
