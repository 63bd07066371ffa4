"""Settings are checked when the app starts: one clear line per problem, never a traceback."""
import os
import stat
import subprocess
import sys

import pytest
from dotenv import dotenv_values

from srcflask import create_app
from srcflask.config import PUBLIC_SECRET_KEYS, ConfigurationError, flask_config, load_settings

from .prodstack import REPO_ROOT, VENV_BIN, WEB_ROOT, free_port

GOOD_PRODUCTION = {"SECRET_KEY": "k" * 64, "DATABASE_URL": "postgresql://srcflask@db:5432/srcflask",
                   "RATELIMIT_STORAGE_URI": "redis://redis:6379/0"}


@pytest.fixture
def environment(monkeypatch):
    """Set variables for one test; the settings' own variables start unset."""
    for name in ("SRCFLASK_ENV", "SECRET_KEY", "DATABASE_URL", "WRITER_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def set_variables(**variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_variables


@pytest.mark.parametrize("variables, line", [
    ({"WRITER_BATCH_SIZE": "eight"}, "WRITER_BATCH_SIZE: got 'eight'; expected a whole number from 1 to 64"),
    ({"WRITER_BATCH_SIZE": "0"}, "WRITER_BATCH_SIZE: got '0'; expected a whole number from 1 to 64"),
    ({"WRITER_POLL_SECONDS": "-1"}, "WRITER_POLL_SECONDS: got '-1'; expected a number of seconds above 0"),
    ({"WRITER_IN_PROCESS": "maybe"}, "WRITER_IN_PROCESS: got 'maybe'; expected 1 or 0"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: got 'xml'; expected 'json' or 'text'"),
    ({"LOGIN_RATE_LIMIT": "ten a minute"}, "LOGIN_RATE_LIMIT: got 'ten a minute'; couldn't parse rate limit"),
    ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/33"}, "METRICS_ALLOWED_NETWORKS: got '10.0.0.0/33'"),
    ({"SRCFLASK_ENV": "prod"}, "SRCFLASK_ENV: got 'prod'; expected one of development, testing, production"),
])
def test_a_bad_setting_is_one_line_naming_it(environment, variables, line):
    environment(**variables)
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    assert str(refused.value).startswith(line)
    assert len(str(refused.value).splitlines()) == 1


def test_every_problem_is_reported_at_once(environment):
    environment(WRITER_BATCH_SIZE="eight", PAGE_SIZE="-3", LOG_LEVEL="LOUD")
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    lines = str(refused.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["PAGE_SIZE", "WRITER_BATCH_SIZE", "LOG_LEVEL"]


@pytest.mark.parametrize("secret, problem", [
    (None, "SECRET_KEY: not set"),
    ("", "SECRET_KEY: not set"),
    ("short-secret", "SECRET_KEY: got 12 bytes; production needs at least 32"),
    ("dev-only-not-secret", "SECRET_KEY: this is a published development key"),
])
def test_production_refuses_a_weak_secret_key_without_repeating_it(environment, secret, problem):
    environment(SRCFLASK_ENV="production", DATABASE_URL=GOOD_PRODUCTION["DATABASE_URL"],
                **({} if secret is None else {"SECRET_KEY": secret}))
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    assert str(refused.value).startswith(problem)
    assert not secret or secret not in str(refused.value)


def test_production_refuses_to_run_on_the_sqlite_fallback(environment):
    environment(SRCFLASK_ENV="production", SECRET_KEY=GOOD_PRODUCTION["SECRET_KEY"])
    with pytest.raises(ConfigurationError, match="DATABASE_URL: not set"):
        load_settings()


def test_production_with_its_own_secrets_starts_with_its_defaults(environment):
    environment(SRCFLASK_ENV="production", **GOOD_PRODUCTION)
    settings = load_settings()
    assert (settings.WRITER_NICE, settings.LOG_FORMAT) == (7, "json")
    environment(WRITER_NICE="5", LOG_FORMAT="text")
    assert (load_settings().WRITER_NICE, load_settings().LOG_FORMAT) == (5, "text")


def test_the_committed_development_key_is_known_as_public():
    assert dotenv_values(REPO_ROOT / ".env.dev")["SECRET_KEY"] in PUBLIC_SECRET_KEYS


def test_overrides_are_checked_like_the_environment(database_url):
    with pytest.raises(ConfigurationError, match="WRITER_BATCH_SIZE: got 0"):
        create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WRITER_BATCH_SIZE=0)


def test_development_keeps_one_generated_secret_key_private(environment, tmp_path):
    first = flask_config(load_settings("development"), tmp_path)["SECRET_KEY"]
    again = flask_config(load_settings("development"), tmp_path)["SECRET_KEY"]
    assert first == again and len(first) == 64
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    environment(SECRET_KEY="set-by-the-operator")
    assert flask_config(load_settings("development"), tmp_path)["SECRET_KEY"] == "set-by-the-operator"


def _start(command, tmp_path, **variables):
    env = {**os.environ, "SRCFLASK_ENV": "development", "SECRET_KEY": "x", "TF_CPP_MIN_LOG_LEVEL": "2",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **variables}
    return subprocess.run(command, cwd=WEB_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [
    [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
    [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "current"],
    [str(WEB_ROOT / "entrypoint.sh"), "true"],
], ids=["gunicorn", "flask", "entrypoint"])
def test_every_entry_point_stops_with_the_lines_and_no_traceback(tmp_path, command):
    result = _start(command, tmp_path, WRITER_BATCH_SIZE="eight", SRCFLASK_ENV="staging")
    assert result.returncode != 0
    assert "SRCFLASK_ENV: got 'staging'; expected one of development, testing, production" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Booting worker" not in result.stderr  # gunicorn's master stops before any worker


def test_a_good_environment_still_starts(tmp_path):
    result = _start([sys.executable, "-c", "import wsgi; print(wsgi.app.config['WRITER_BATCH_SIZE'])"], tmp_path,
                    WRITER_BATCH_SIZE="4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4"
