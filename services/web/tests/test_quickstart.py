"""The quick start (`services/web/scripts/run`) as a user runs it and keeps it running.

The script is started for real, as README's quick start says, on a free port with a
throwaway PostgreSQL database (its own steps: bootstrap, migrate, the first admin, serve)
and the tiny test GPT-2 as its model. Then: it serves with gunicorn; the writer starts with
the server, not with the first request; one request is one log line; the start prints no
library noise; a restart keeps everyone logged in (the development SECRET_KEY kept in
services/web/instance/secret_key, the same file a user's quick start keeps); SIGTERM stops it
cleanly.

"Library noise" means output of TensorFlow, transformers, absl or Python's warnings module
that says nothing is wrong (NOISE below), and, once gunicorn starts, any line that is not
one of the log's own lines (a text record: time, level, logger, message).
"""
import os
import re
import signal
import time
import uuid

import pytest
import requests

from .faultkit import wait_until
from .helpers import CSRF_META
from .prodstack import _HOST_ONLY, WEB_ROOT, Process, StackFailed, free_port, throwaway_database
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

# Loading and compiling the tiny model after gunicorn's start, on 2 shared cores: a deadline,
# not a measure.
WRITER_READY_DEADLINE_SECONDS = 150
NOISE = [
    re.compile(pattern) for pattern in (
        r"^[IWEF]\d{4} \d\d:\d\d:\d\d",  # TensorFlow/XLA's C++ log (absl format)
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ",  # TensorFlow's C++ log (its own format)
        r"oneDNN custom operations|cpu_feature_guard|This TensorFlow binary is optimized",
        r"TensorFlow and JAX classes are deprecated",  # transformers
        r"All model checkpoint layers were used|All the layers of \w+ were initialized",  # transformers
        r"^WARNING:(absl|tensorflow|transformers)",
        r"\b\w+Warning: ",  # Python's warnings module
        r"development server",  # werkzeug's
    )
]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
GUNICORN_STARTS = "Starting gunicorn"
WRITER_READY = "srcflask.writer: writer ready"
# What a user's shell holds that must not leak into the quick start (it sets its own).
_USER_SHELL_ONLY = {"SECRET_KEY", "DATABASE_URL", "HOST", "PORT", "TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY"}


class QuickStart:
    """scripts/run in its own process group; start() again after stop() is a restart."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = log_dir
        self.port = int(env["PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.runs = 0
        self.process = None

    def start(self):
        self.runs += 1
        self.process = Process("scripts/run", [str(WEB_ROOT / "scripts" / "run")],
                               self.log_dir / f"run-{self.runs}.log", cwd=self.log_dir, env=self.env)
        return self.process

    def wait_for(self, text, timeout):
        """Wait until the output holds `text`, making no request meanwhile."""
        deadline = time.monotonic() + timeout
        while text not in self.process.output():
            if self.process.popen.poll() is not None:
                raise StackFailed(f"scripts/run exited with {self.process.popen.returncode}:\n{self.process.output()}")
            if time.monotonic() > deadline:
                raise StackFailed(f"no {text!r} within {timeout} s:\n{self.process.output()}")
            time.sleep(0.2)

    def browser(self):
        browser = requests.Session()
        browser.trust_env = False
        return browser


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, tiny_model_dir):  # noqa: F811
    """The quick start on a free port, up with its writer ready; stopped afterwards."""
    env = {key: value for key, value in os.environ.items()
           if not _HOST_ONLY.match(key) and key not in _USER_SHELL_ONLY}
    with throwaway_database("srcflask_quickstart") as database_url:
        env.update(DATABASE_URL=database_url, PORT=str(free_port()), WRITER_MODEL_DIR=str(tiny_model_dir),
                   WRITER_POLL_SECONDS="0.2", PYTHONUNBUFFERED="1")
        runner = QuickStart(env, tmp_path_factory.mktemp("quickstart"))
        runner.start()
        try:
            runner.wait_for(WRITER_READY, WRITER_READY_DEADLINE_SECONDS)
            runner.startup_output = runner.process.output()
            runner.process.wait_until_answering(runner.base + "/healthz", timeout=30)
            yield runner
        finally:
            runner.process.stop()


def test_the_writer_starts_with_the_server_before_any_request(quickstart):
    """The fixture made no request before the writer said it was ready: the model was loaded
    and compiled by the server's start, so the first autodoc does not wait for a visitor."""
    output = quickstart.startup_output
    assert "srcflask.request" not in output, output
    assert output.index(GUNICORN_STARTS) < output.index(WRITER_READY)


def test_it_is_served_by_gunicorn_on_the_given_port(quickstart):
    response = quickstart.browser().get(quickstart.base + "/healthz", timeout=10)
    assert response.status_code == 200
    assert response.headers["Server"].startswith("gunicorn")
    # scripts/run became the gunicorn master (exec): signals reach it directly.
    command = open(f"/proc/{quickstart.process.pid}/cmdline", "rb").read().split(b"\0")
    assert any(part.endswith(b"gunicorn") for part in command), command


def test_one_request_is_one_log_line(quickstart):
    probe = f"/quickstart-probe-{uuid.uuid4().hex}"
    assert quickstart.browser().get(quickstart.base + probe, timeout=10).status_code == 404
    # The line is written after the answer: wait for it, then for a second one that must not come.
    wait_until(lambda: probe in quickstart.process.output(), 30, "the request's log line")
    quickstart.browser().get(quickstart.base + "/healthz", timeout=10)
    wait_until(lambda: "GET /healthz" in quickstart.process.output(), 30, "the next request's log line")
    lines = [line for line in quickstart.process.output().splitlines() if probe in line]
    assert len(lines) == 1, lines
    assert LOG_LINE.match(lines[0]) and f"srcflask.request: GET {probe} 404" in lines[0]


def test_the_start_prints_no_library_noise(quickstart):
    output = quickstart.startup_output
    noise = [line for line in output.splitlines() if any(pattern.search(line) for pattern in NOISE)]
    assert noise == [], output
    served = output[output.rfind("\n", 0, output.index(GUNICORN_STARTS)) + 1:].splitlines()
    strays = [line for line in served if not LOG_LINE.match(line)]
    assert strays == [], output
    assert not [line for line in served if re.search(r" (WARNING|ERROR|CRITICAL) ", line)], output


def test_a_restart_keeps_the_session_and_sigterm_stops_it_cleanly(quickstart):
    password = re.search(r"Password \(shown only this once; store it now\): (\S+)", quickstart.startup_output).group(1)
    browser = quickstart.browser()
    page = browser.get(quickstart.base + "/auth/login", timeout=10).text
    response = browser.post(quickstart.base + "/auth/login", timeout=10, allow_redirects=False,
                            data={"email": "admin@localhost", "password": password,
                                  "csrf_token": CSRF_META.search(page).group(1)})
    assert response.status_code == 302, response.text[:2000]
    assert browser.get(quickstart.base + "/admin/", allow_redirects=False, timeout=10).status_code == 200

    master = quickstart.process
    os.kill(master.pid, signal.SIGTERM)  # as `kill`, systemd or docker stop would
    assert master.popen.wait(30) == 0, master.output()
    assert "Shutting down: Master" in master.output()
    assert "Traceback" not in master.output()
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left
        os.killpg(master.pid, 0)

    quickstart.start()
    quickstart.process.wait_until_answering(quickstart.base + "/healthz", timeout=120)
    assert "Created the approved admin" not in quickstart.process.output()  # same database, same admin
    again = browser.get(quickstart.base + "/admin/", allow_redirects=False, timeout=10)
    assert again.status_code == 200, "the session cookie from before the restart no longer logs in"
