"""Rate limits that hold: counted in Redis across processes, per account as well as per
address, failures only for log-ins, one allowance per user for the API and for writing, and
a refusal that loses nothing.

The tests that count in Redis use the real server at REDIS_URL under a key prefix of their
own (so parallel runs never share a counter) and delete their keys afterwards.
"""
import logging
import os
import re
import signal
import threading
import uuid
from contextlib import contextmanager

import limits
import pytest
import redis
import requests
from sqlalchemy import func, select, text

from srcflask.config import ConfigurationError, load_settings
from srcflask.extensions import db, limiter
from srcflask.models import ApiToken, User
from srcflask.services import tokens
from srcflask.throttle import SAVES_REFUSED

from .factories import DEFAULT_PASSWORD, make_document, make_user, write_autodocs
from .helpers import CSRF_META, html
from .prodstack import (REDIS_URL, free_port, gunicorn, gunicorn_workers, production_env, run_entrypoint,
                        throwaway_database)

PRODUCTION = {"SECRET_KEY": "s" * 32, "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres"}


# --- production refuses counts that multiply -----------------------------------------------------


def test_production_refuses_per_process_counts_in_one_line():
    with pytest.raises(ConfigurationError) as refused:
        load_settings("production", **PRODUCTION, RATELIMIT_STORAGE_URI="memory://")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("RATELIMIT_STORAGE_URI: got 'memory://'")
    assert "RATELIMIT_SINGLE_PROCESS=1" in message and "redis://" in message


def test_production_takes_redis_or_a_single_process_on_purpose():
    assert load_settings("production", **PRODUCTION, RATELIMIT_STORAGE_URI=REDIS_URL).RATELIMIT_STORAGE_URI == REDIS_URL
    single = load_settings("production", **PRODUCTION, RATELIMIT_STORAGE_URI="memory://", RATELIMIT_SINGLE_PROCESS=True)
    assert single.RATELIMIT_SINGLE_PROCESS


# --- log-ins: per address and per account, failures only -----------------------------------------


def login(browser, email, password=DEFAULT_PASSWORD):
    return browser.post("/auth/login", {"email": email, "password": password})


def from_address(make_client, address):
    browser = make_client()
    browser.raw.environ_base["REMOTE_ADDR"] = address
    return browser


def users(app, *emails):
    """Committed users with these emails (made outside the requests' app contexts: Flask-WTF
    keeps a CSRF token in `g`, which an enclosing app context would share between browsers)."""
    with app.app_context():
        return [make_user(email=email) for email in emails]


def test_failures_against_one_account_are_limited_whatever_the_address(app, make_client, monkeypatch):
    """An attacker with many addresses gets LOGIN_ACCOUNT_RATE_LIMIT guesses at one account,
    its email written in any case and spacing; other accounts are not touched."""
    monkeypatch.setitem(app.config, "LOGIN_ACCOUNT_RATE_LIMIT", "3 per hour")
    _, other = users(app, "target@example.org", "other@example.org")
    for number, spelling in enumerate(["target@example.org", "  TARGET@example.org", "Target@Example.Org "]):
        response = login(from_address(make_client, f"198.51.100.{number}"), spelling, "wrong guess")
        assert response.status_code == 200, number
    refused = login(from_address(make_client, "198.51.100.50"), "target@example.org")  # even the right password
    assert refused.status_code == 429
    assert "Too many attempts" in html(refused) and int(refused.headers["Retry-After"]) > 0
    assert login(from_address(make_client, "198.51.100.50"), other.email).status_code == 302


def test_successful_logins_leave_the_address_allowance_to_the_next_person(app, make_client, monkeypatch):
    """Behind one address (an office's NAT) many people log in: only failures count."""
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "2 per minute")
    people = users(app, *(f"person{number}@example.org" for number in range(5)))
    for person in people:
        assert login(from_address(make_client, "192.0.2.7"), person.email).status_code == 302
    office = from_address(make_client, "192.0.2.7")
    assert login(office, people[0].email, "typo").status_code == 200
    assert login(office, people[1].email, "typo").status_code == 200
    assert login(office, people[2].email).status_code == 429


# --- counted in Redis ------------------------------------------------------------------------------


def redis_keys(prefix):
    with redis.Redis.from_url(REDIS_URL) as connection:
        return connection.keys(f"{prefix}:*")


@contextmanager
def counted_in(app, uri):
    """The app's limiter counting at `uri` under a key prefix of this test's own; back to the
    suite's storage afterwards, with this prefix's keys deleted."""
    prefix = f"srcflask-test-{uuid.uuid4().hex}"
    saved = {name: app.config[name] for name in ("RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_OPTIONS")}
    app.config["RATELIMIT_STORAGE_URI"] = uri
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {**saved["RATELIMIT_STORAGE_OPTIONS"], "key_prefix": prefix}
    limiter.init_app(app)  # the extension is one object: it now counts for every app at `uri`
    try:
        yield prefix
    finally:
        if uri == REDIS_URL:
            limiter.reset()
        app.config.update(saved)
        limiter.init_app(app)
        # Flask-Limiter remembers a dead storage until it has checked it again (with backoff):
        # the next test must start on the suite's storage, not on this one's fallback.
        limiter._storage_dead = False


def test_login_failures_are_counted_in_redis_under_the_runs_prefix(app, make_client, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "2 per minute")
    users(app, "known@example.org")
    with counted_in(app, REDIS_URL) as prefix:
        browser = from_address(make_client, "203.0.113.9")
        assert [login(browser, "known@example.org", "wrong").status_code for _ in range(3)] == [200, 200, 429]
        keys = redis_keys(prefix)
        assert keys, "nothing was counted in Redis"
        assert not any(b"known@example.org" in key for key in keys), "emails are hashed, never stored"
    assert redis_keys(prefix) == []


def test_redis_down_degrades_to_per_process_counts_with_an_error_and_a_metric(app, make_client, monkeypatch, caplog):
    """Fail open, but not wide open: while Redis does not answer, each process counts on
    its own (Flask-Limiter's in-memory fallback), logs it, and /metrics says so."""
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "2 per minute")
    users(app, "known@example.org")
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    with counted_in(app, nothing_listens), caplog.at_level(logging.WARNING):
        browser = from_address(make_client, "203.0.113.10")
        statuses = [login(browser, "known@example.org", "wrong").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert login(from_address(make_client, "203.0.113.11"), "known@example.org").status_code == 302
        metrics = make_client().get("/metrics").get_data(as_text=True)
    assert "srcflask_ratelimit_storage_up 0.0" in metrics
    assert any("Rate limit storage unreachable" in record.getMessage() for record in caplog.records)
    assert "srcflask_ratelimit_storage_up 1.0" in make_client().get("/metrics").get_data(as_text=True)


# --- the API: one allowance per user ---------------------------------------------------------------


def make_token(user, name="script"):
    new = tokens.create_token(user, name)
    db.session.commit()
    return new.secret


def call(app, method, path, secret, **kwargs):
    return app.test_client().open(path, method=method, headers={"Authorization": f"Bearer {secret}"}, **kwargs)


def test_the_api_limit_is_one_allowance_per_user_whatever_the_token_or_endpoint(app, monkeypatch):
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "3 per minute")
    with app.app_context():
        sponsor, other = make_user("sponsor"), make_user("sponsor")
        first, second, third = (make_token(sponsor, name) for name in ("one", "two", "three"))
        others = make_token(other)
    assert call(app, "GET", "/api/v1/me", first).status_code == 200
    assert call(app, "GET", "/api/v1/documents", second).status_code == 200
    assert call(app, "GET", "/api/v1/editors", third).status_code == 200
    limited = call(app, "GET", "/api/v1/me", first)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "this account" in limited.get_json()["error"]["message"]
    assert call(app, "GET", "/api/v1/me", others).status_code == 200


# --- live tokens per user ------------------------------------------------------------------------


def live_tokens(user_id):
    return db.session.scalar(select(func.count()).select_from(ApiToken)
                             .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)))


def test_the_service_refuses_a_token_past_the_cap_and_revoked_ones_do_not_count(app, app_context, monkeypatch):
    monkeypatch.setitem(app.config, "API_TOKENS_PER_USER", 2)
    user = make_user("sponsor")
    first = tokens.create_token(user, "one")
    tokens.create_token(user, "two")
    db.session.commit()
    with pytest.raises(tokens.TokenError, match="at most 2 active tokens"):
        tokens.create_token(user, "three")
    db.session.rollback()
    tokens.revoke_token(user, first.token.id)
    tokens.create_token(user, "three")
    db.session.commit()
    assert live_tokens(user.id) == 2


def test_the_tokens_page_says_why_it_refuses_and_keeps_the_name(app, login_as, monkeypatch):
    monkeypatch.setitem(app.config, "API_TOKENS_PER_USER", 1)
    browser, user = login_as("sponsor")
    assert browser.post("/account/tokens", {"name": "first"}).status_code < 300
    refused = browser.post("/account/tokens", {"name": "second script"})
    assert refused.status_code == 200
    page = html(refused)
    assert "at most 1 active token" in page and 'value="second script"' in page
    with app.app_context():
        assert live_tokens(user.id) == 1


def test_two_creations_at_once_cannot_pass_the_cap_together(app, app_context, monkeypatch):
    """The second creation waits for the first one's transaction (a lock on the user's row)
    and then counts its token: never cap + 1 live tokens."""
    monkeypatch.setitem(app.config, "API_TOKENS_PER_USER", 1)
    user_id = make_user("sponsor").id
    first_flushed, outcome = threading.Event(), {}

    def first():
        with app.app_context():
            tokens.create_token(db.session.get(User, user_id), "first")
            first_flushed.set()
            waiting_for_lock_or_done(app, second_thread)
            db.session.commit()

    def second():
        first_flushed.wait(30)
        with app.app_context():
            try:
                tokens.create_token(db.session.get(User, user_id), "second")
                db.session.commit()
                outcome["second"] = "created"
            except tokens.TokenError as refused:
                db.session.rollback()
                outcome["second"] = str(refused)

    second_thread = threading.Thread(target=second)
    first_thread = threading.Thread(target=first)
    first_thread.start()
    second_thread.start()
    first_thread.join(60)
    second_thread.join(60)
    assert "at most 1 active token" in outcome["second"]
    assert live_tokens(user_id) == 1


def waiting_for_lock_or_done(app, thread):
    """Return once `thread` has finished or waits on a row lock in PostgreSQL: the moment
    an unprotected check would already have counted."""
    while thread.is_alive():
        with db.engine.connect() as connection:
            waiting = connection.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                             "WHERE wait_event_type = 'Lock' AND datname = current_database()"))
        if waiting:
            return
        thread.join(0.05)


# --- saves and regenerations: one allowance per user, pages and API alike -------------------------


def test_saves_share_one_allowance_between_pages_and_api_and_a_refusal_loses_nothing(app, login_as, monkeypatch):
    monkeypatch.setitem(app.config, "SAVE_RATE_LIMIT", "2 per minute")
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        editor = make_user("editor")
        secret = make_token(sponsor)
    created = browser.post("/sponsor/documents/new", {"title": "Plan", "body": "First text.", "editor": editor.id})
    assert created.status_code == 302
    document_id = int(created.headers["Location"].rsplit("/", 1)[1])
    saved = call(app, "PUT", f"/api/v1/documents/{document_id}", secret,
                 json={"version": 1, "title": "Plan", "body": "Second text."})
    assert saved.status_code == 200

    refused = browser.post(f"/sponsor/documents/{document_id}/edit",
                           {"version": 2, "title": "Plan", "body": "Third text, typed with care."})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    page = html(refused)
    assert SAVES_REFUSED.split(":")[0] in page
    assert "Third text, typed with care." in page  # what they wrote is on the page
    api_refused = call(app, "POST", "/api/v1/documents", secret,
                       json={"title": "Another", "body": "Text", "editor_id": editor.id})
    assert api_refused.status_code == 429
    assert api_refused.get_json()["error"]["message"] == SAVES_REFUSED
    # Reading is not writing; another sponsor has their own allowance.
    assert browser.get(f"/sponsor/documents/{document_id}").status_code == 200
    other, _ = login_as("sponsor")
    assert other.post("/sponsor/documents/new", {"title": "Mine", "body": "Text.", "editor": editor.id}).status_code == 302


def test_regenerations_share_one_allowance_between_pages_and_api(app, login_as, monkeypatch):
    monkeypatch.setitem(app.config, "REGENERATE_RATE_LIMIT", "2 per minute")
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        editor = make_user("editor")
        documents = [make_document(sponsor, editor, title=f"Doc {n}") for n in range(3)]
        autodoc_ids = write_autodocs()
        secret = make_token(sponsor)
    assert len(autodoc_ids) == len(documents)
    assert browser.post(f"/sponsor/autodocs/{autodoc_ids[0]}/regenerate").status_code == 302
    assert call(app, "POST", f"/api/v1/autodocs/{autodoc_ids[1]}/regenerate", secret).status_code == 202
    refused = browser.post(f"/sponsor/autodocs/{autodoc_ids[2]}/regenerate")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert call(app, "POST", f"/api/v1/autodocs/{autodoc_ids[2]}/regenerate", secret).status_code == 429
    # Saving is a separate allowance.
    assert browser.post("/sponsor/documents/new", {"title": "New", "body": "Text.", "editor": editor.id}).status_code == 302


def test_the_default_writing_limits_let_a_heavy_writer_through():
    """Production's defaults (the suite's own are higher: tests/test_concurrent_saves.py
    saves hundreds of times a minute): bench/load.py's heavy sponsor saves 100 documents in
    a minute and must get a 302 for each."""
    settings = load_settings("production", **PRODUCTION, RATELIMIT_STORAGE_URI=REDIS_URL)

    def per(value):
        return {item.GRANULARITY.name: item.amount for item in limits.parse_many(value)}

    assert per(settings.SAVE_RATE_LIMIT) == {"minute": 120, "hour": 1200}
    assert per(settings.REGENERATE_RATE_LIMIT) == {"minute": 30, "hour": 300}


# --- two real gunicorn workers share the counts ---------------------------------------------------


def _post_login(base, email, password, forwarded_for):
    """One log-in attempt on a connection of its own (a kept-alive one would stay with one
    worker); the cookie is sent by hand because production's is Secure and this is http."""
    with requests.Session() as browser:
        browser.trust_env = False
        form = browser.get(f"{base}/auth/login", headers={"Connection": "close"}, timeout=10)
        token = CSRF_META.search(form.text).group(1)
        cookie = re.match(r"session=([^;]+)", form.headers["Set-Cookie"]).group(1)
        return requests.post(f"{base}/auth/login", data={"email": email, "password": password, "csrf_token": token},
                             headers={"Cookie": f"session={cookie}", "Connection": "close",
                                      "X-Forwarded-For": forwarded_for},
                             allow_redirects=False, timeout=10, proxies={"http": None, "https": None})


@contextmanager
def only(worker, workers):
    """Every other worker stopped (SIGSTOP), so `worker` accepts every new connection."""
    stopped = [pid for pid in workers if pid != worker]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
def test_login_failures_are_limited_across_two_gunicorn_workers(tmp_path):
    """Production's settings (.env.prod) with two workers: failures served by one worker
    and then by the other are limited at LOGIN_RATE_LIMIT in all, not per worker."""
    prefix = f"srcflask-test-{uuid.uuid4().hex}"
    port = free_port()
    with throwaway_database() as database_url:
        env = production_env(database_url, tmp_path, GUNICORN_WORKERS=2, GUNICORN_THREADS=2, WRITER_IN_PROCESS=0,
                             LOGIN_RATE_LIMIT="4 per minute", RATELIMIT_STORAGE_PREFIX=prefix)
        run_entrypoint(env, "true")
        try:
            with gunicorn(env, port, tmp_path / "gunicorn.log") as server:
                workers = sorted(gunicorn_workers(server.pid))
                assert len(workers) == 2
                base = f"http://127.0.0.1:{port}"
                statuses = []
                for worker, attempts in ((workers[0], 3), (workers[1], 3)):
                    with only(worker, workers):
                        statuses += [_post_login(base, "nobody@example.org", "guess", "203.0.113.77").status_code
                                     for _ in range(attempts)]
                assert statuses == [200, 200, 200, 200, 429, 429], server.output()[-3000:]
        finally:
            with redis.Redis.from_url(REDIS_URL) as connection:
                keys = connection.keys(f"{prefix}:*")
                if keys:
                    connection.delete(*keys)


def test_retry_after_never_exceeds_the_limits_window(app, make_client, monkeypatch):
    """Flask-Limiter rounds the window's reset up by a second (RequestLimit.reset_at), so an
    allowance spent at once answered Retry-After: 61 for a limit of a minute — longer than the
    limit can ever hold anyone. It is the window at most."""
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "2 per minute")
    users(app, "quick@example.org")
    browser = from_address(make_client, "198.51.100.77")
    for _ in range(2):
        assert login(browser, "quick@example.org", "wrong guess").status_code == 200
    refused = login(browser, "quick@example.org", "wrong guess")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
