"""A private PostgreSQL server, for tests and benchmarks that stop, restart or crash the database.

The server on TEST_DATABASE_URL is shared by every test run on the machine, so nothing may
ever restart it. A test that needs the database to go away starts its own cluster instead:
Debian's server programs (initdb, pg_ctl; they live in /usr/lib/postgresql/<version>/bin,
outside PATH), a data folder and a Unix-socket folder in a fresh temporary folder, a free
port on 127.0.0.1, trust authentication, and no fsync (a crash of the machine would lose
the cluster, which is thrown away anyway; a crash of PostgreSQL, `pg_ctl stop -m
immediate`, still recovers every acknowledged commit from the WAL, which is what the fault
tests check). synchronous_commit stays on: off, a crash loses the last acknowledged
commits, and the tests would report saves lost that the app did save.

PostgreSQL refuses to run as root, so when the tests run as root (CI containers do) every
server program runs as the `postgres` user that Debian's package creates, and the folder is
given to that user.
"""
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from .prodstack import free_port

SERVER_USER = "postgres"
# Appended to the cluster's postgresql.conf. Enough connections for gunicorn's threads, a
# few writers and the test's own checks; small buffers: several clusters may run at once.
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 60
shared_buffers = 32MB
fsync = off
log_line_prefix = '%m [%p] '
"""


class ServerFailed(Exception):
    """initdb or pg_ctl failed; the message has their output and the server's log."""


def postgres_bin_dir():
    """The folder holding initdb and pg_ctl: PG_BIN if set, else the newest
    /usr/lib/postgresql/<version>/bin (Debian), else wherever PATH finds pg_ctl."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda path: int(re.sub(r"\D", "", path.parent.parent.name) or 0))
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise ServerFailed("No PostgreSQL server programs found: install Debian's postgresql package or set PG_BIN.")


class PostgresServer:
    """One private cluster: `start()` creates it on first use, `stop(mode)`, `restart(mode)`
    with mode "fast" (clients are disconnected, then a clean shutdown) or "immediate" (every
    server process is killed: a crash, recovered from the WAL on the next start). `remove()`
    stops it and deletes its folder. Use as a context manager to get both ends."""

    def __init__(self, port=None, bin_dir=None):
        self.port = port or free_port()
        self.bin_dir = Path(bin_dir) if bin_dir else postgres_bin_dir()
        # Not under pytest's tmp_path: those folders are private to the user running the
        # tests, and the server's user must be able to reach its own folder.
        self.root = Path(tempfile.mkdtemp(prefix="srcflask-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self._as_server_user = []
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as_server_user = ["runuser", "-u", SERVER_USER, "--"]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.remove()

    def url(self, database="postgres"):
        return URL.create("postgresql", username="postgres", host="127.0.0.1", port=self.port,
                          database=database).render_as_string(hide_password=False)

    def start(self):
        if not self.data_dir.exists():
            self._initdb()
        self._pg_ctl("start", "-l", str(self.log_path))
        return self

    def stop(self, mode="fast"):
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode="fast", down_seconds=0.0):
        """Stop with `mode`, stay down `down_seconds` (so that requests and writers meet a
        server that is gone, not only one that is restarting), start again; returns the
        seconds the server did not answer."""
        started = time.monotonic()
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()
        return time.monotonic() - started

    @property
    def running(self):
        return (self.data_dir / "postmaster.pid").exists()

    def create_database(self, name):
        """A new database on this server; its URL."""
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def remove(self):
        if self.running:
            try:
                self.stop("immediate")
            except ServerFailed:
                pass  # already gone; the folder goes anyway
        shutil.rmtree(self.root, ignore_errors=True)

    def _initdb(self):
        self._run([self.bin_dir / "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(SETTINGS.format(port=self.port, socket_dir=self.root))

    def _pg_ctl(self, *args):
        self._run([self.bin_dir / "pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", *args])

    def _run(self, command):
        result = subprocess.run([*self._as_server_user, *map(str, command)], capture_output=True, text=True,
                                cwd=self.root, timeout=120)
        if result.returncode != 0:
            raise ServerFailed(f"{' '.join(map(str, command))} exited {result.returncode}:\n{result.stdout}"
                               f"{result.stderr}\n--- server log ---\n{self.log()[-3000:]}")


@pytest.fixture(scope="module")
def pg_server():
    """A running private PostgreSQL server for the module; stopped and deleted afterwards."""
    with PostgresServer() as server:
        yield server
