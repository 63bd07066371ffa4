"""The production processes, on loopback: for tests/test_production.py and bench/.

No Docker engine runs on these machines, so the containers' processes are started as
they are inside them: the entrypoint (settings check, wait for the database, `flask db
upgrade`, then the command), gunicorn with gunicorn.conf.py, and Debian's nginx with
services/nginx/nginx.conf. The environment is the one docker-compose.prod.yml gives the
web container (.env.prod plus the secrets of .env.prod.db); only what names a container
(the database host, the upstream, the ports, the mounted paths) is replaced.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from dotenv import dotenv_values
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

WEB_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = WEB_ROOT.parent.parent
VENV_BIN = WEB_ROOT / ".venv" / "bin"
NGINX_CONF = WEB_ROOT.parent / "nginx" / "nginx.conf"
ASSETS = WEB_ROOT / "srcflask" / "static" / "assets"
SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Settings of the test runner's environment that must not leak into the "container".
# The suite's Redis (rate limits): the one every machine here runs.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_HOST_ONLY = re.compile(r"^(SRCFLASK_|WRITER_|METRICS_|GUNICORN_|LOG_|FLASK_|ADMIN_)")


class StackFailed(Exception):
    """A production process did not start or a step failed; the message has its output."""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def throwaway_database(prefix="srcflask_prod"):
    """A new, empty database on TEST_DATABASE_URL's server; its URL. Dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def production_env(database_url, model_dir, **overrides):
    """The web container's environment: .env.prod as committed, the two secrets
    .env.prod.db would hold, and loopback in place of the containers' names."""
    env = {key: value for key, value in os.environ.items() if not _HOST_ONLY.match(key)}
    env.update({key: value or "" for key, value in dotenv_values(REPO_ROOT / ".env.prod").items()})
    env.update(
        # What Dockerfile.prod sets.
        FLASK_APP="wsgi", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
        PATH=f"{VENV_BIN}{os.pathsep}{env['PATH']}",
        # What .env.prod.db holds.
        SECRET_KEY=secrets.token_hex(32), DATABASE_URL=database_url,
        WRITER_MODEL_DIR=str(model_dir),
        # The redis service: the machine's Redis, under a prefix of this stack's own.
        RATELIMIT_STORAGE_URI=REDIS_URL,
        RATELIMIT_STORAGE_PREFIX=f"srcflask-test-{uuid.uuid4().hex[:12]}",
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def run_entrypoint(env, *command, timeout=180):
    """entrypoint.sh with `command`, as `docker compose run web <command>` would; its output."""
    result = subprocess.run([str(WEB_ROOT / "entrypoint.sh"), *command], cwd=WEB_ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise StackFailed(f"entrypoint.sh {' '.join(command)} exited {result.returncode}:\n"
                          f"{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


class Process:
    """A server started in its own process group, its output in a file; stop() ends the
    group (gunicorn's or nginx's workers with their master), gently first."""

    def __init__(self, name, args, log_path, extra_logs=(), **popen):
        self.name = name
        self.log_path = Path(log_path)
        self.extra_logs = [Path(path) for path in extra_logs]
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen)

    @property
    def pid(self):
        return self.popen.pid

    def output(self):
        return "".join(path.read_text(errors="replace") for path in [self.log_path, *self.extra_logs]
                       if path.exists())

    def wait_until_answering(self, url, timeout=60, **request_args):
        """Poll `url` until it answers at all; StackFailed with the output if the process
        exits or the time runs out."""
        deadline = time.monotonic() + timeout
        browser = requests.Session()
        browser.trust_env = False  # loopback: no proxy settings of the environment
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise StackFailed(f"{self.name} exited with status {self.popen.returncode}:\n{self.output()}")
            try:
                return browser.get(url, timeout=2, **request_args)
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or the master is listening and its worker still booting.
                time.sleep(0.2)
        raise StackFailed(f"{self.name} did not answer {url} within {timeout} s:\n{self.output()}")

    def stop(self, timeout=20):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        else:
            # The master is gone; make sure no worker of its group outlives it.
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextmanager
def gunicorn(env, port, log_path, startup_timeout=90):
    """The web container's command (entrypoint.sh, then gunicorn with gunicorn.conf.py) on
    127.0.0.1:`port`; yields the Process once /healthz answers."""
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    server = Process("gunicorn", [str(WEB_ROOT / "entrypoint.sh"), "gunicorn", "--config", "gunicorn.conf.py",
                                  "wsgi:app"], log_path, cwd=WEB_ROOT, env=env)
    try:
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz", timeout=startup_timeout)
        yield server
    finally:
        server.stop()


def self_signed_certificate(folder):
    """(certificate, key) for 127.0.0.1, made with openssl; the certificate is also the CA
    a client verifies against."""
    cert, key = Path(folder) / "fullchain.pem", Path(folder) / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def nginx_site(upstream_port, http_port, https_port, cert, key, assets=ASSETS, upstream_host="127.0.0.1",
               resolver="127.0.0.1", resolver_valid="10s"):
    """services/nginx/nginx.conf rendered as the image renders its template (envsubst of the
    ${NGINX_RESOLVER*} variables, services/nginx/Dockerfile), with the container's names and
    paths replaced by these; every replacement must find its line exactly once, so the test
    cannot silently run a config that drifted from the real one. The upstream `web:5000`
    becomes `upstream_host:upstream_port`: an address (no lookup), or a name that nginx
    resolves through `resolver` (host[:port]) and keeps for `resolver_valid`."""
    replacements = {
        "${NGINX_RESOLVER}": resolver,
        "${NGINX_RESOLVER_VALID}": resolver_valid,
        "set $srcflask_web web:5000;": f"set $srcflask_web {upstream_host}:{upstream_port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "alias /srv/srcflask/assets/;": f"alias {assets}/;",
        "/etc/nginx/certs/fullchain.pem;": f"{cert};",
        "/etc/nginx/certs/privkey.pem;": f"{key};",
    }
    site = NGINX_CONF.read_text()
    for old, new in replacements.items():
        if site.count(old) != 1:
            raise StackFailed(f"{NGINX_CONF} has {site.count(old)} times {old!r}, not once: update tests/prodstack.py")
        site = site.replace(old, new)
    if "${" in site:
        raise StackFailed(f"{NGINX_CONF} has a variable the test does not render: update tests/prodstack.py")
    return site


# What the nginx image's own /etc/nginx/nginx.conf puts around conf.d/*.conf, with every
# path inside the test's folder.
NGINX_MAIN = """
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/srcflask.conf;
}}
"""


@contextmanager
def nginx(site, startup_timeout=20):
    """Debian's nginx, in the foreground, serving `site` (see nginx_site) from a folder of
    its own; yields the Process once it answers its health URL."""
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"  # root's PATH has /usr/sbin, others' may not
    # Readable by the workers (nobody, when the master runs as root) for their temp files.
    prefix = Path(tempfile.mkdtemp(prefix="srcflask-nginx-"))
    prefix.chmod(0o755)
    (prefix / "srcflask.conf").write_text(site)
    (prefix / "nginx.conf").write_text(NGINX_MAIN.format(prefix=prefix))
    http_port = re.search(r"listen 127\.0\.0\.1:(\d+);", site).group(1)
    server = Process("nginx", [nginx_bin, "-p", str(prefix), "-e", str(prefix / "error.log"),
                               "-c", str(prefix / "nginx.conf"),
                               "-g", f"daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log;"],
                     prefix / "nginx.out", extra_logs=[prefix / "error.log"])
    try:
        server.wait_until_answering(f"http://127.0.0.1:{http_port}/nginx-healthz", timeout=startup_timeout)
        yield server
    finally:
        server.stop()
        shutil.rmtree(prefix, ignore_errors=True)


@dataclass
class Stack:
    https: str  # base URL of nginx over TLS
    http: str  # base URL of nginx's plain-HTTP server
    ca: str  # the self-signed certificate, to verify against
    database_url: str
    web: Process
    proxy: Process
    migrate_output: str

    def session(self):
        """A browser that trusts the stack's certificate (and no proxy or CA bundle
        settings of the environment, which requests would let override it)."""
        browser = requests.Session()
        browser.trust_env = False
        browser.verify = self.ca
        return browser

    def get(self, path, **kwargs):
        return self.session().get(self.https + path, timeout=10, allow_redirects=False, **kwargs)

    def logs(self):
        return f"--- gunicorn ---\n{self.web.output()[-6000:]}\n--- nginx ---\n{self.proxy.output()[-3000:]}"


def gunicorn_workers(master_pid):
    """The pids of the gunicorn master's worker processes."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


def json_lines(output):
    """The JSON objects among a process's output lines (the app's and gunicorn's logs)."""
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines
