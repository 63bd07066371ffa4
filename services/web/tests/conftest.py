"""Shared fixtures: a throwaway PostgreSQL database migrated with Alembic, the app, clients.

Every test session creates its own database on TEST_DATABASE_URL's server (one per xdist
worker), migrates it with the real migrations and drops it at the end. Tests commit for
real (transactions, locking and constraints are part of what is tested) and the tables
are truncated after each test.
"""
import os
import uuid

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from srcflask import create_app
from srcflask.extensions import db, limiter
from srcflask.services import queue_signals

from .factories import DEFAULT_PASSWORD, make_user
from .helpers import FormClient

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_engine():
    return create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def database_url(worker_id):
    name = f"srcflask_test_{worker_id}_{uuid.uuid4().hex[:8]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    queue_signals.listener.stop()  # it would try the dropped database again and again
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def worker_id(request):
    """The xdist worker's name ('gw0', ...) or 'main' when tests run in one process."""
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture(scope="session")
def app(database_url, tmp_path_factory):
    # Flask-SQLAlchemy 3 makes its engine in init_app(): the URI must be given to
    # create_app(), or every run would share TEST_DATABASE_URL's database. Models and
    # training sets the tests register, train or build go to folders of this run, never
    # into the checkout's static/ folders.
    folders = tmp_path_factory.mktemp("app-data")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url,
                     SEED_MODELS_DIR=str(folders / "seedmlmodels"),
                     RETRAINED_MODELS_DIR=str(folders / "retrainedmodels"),
                     TRAINING_DATA_DIR=str(folders / "trainingsets"))
    with app.app_context():
        upgrade()
    return app


@pytest.fixture(autouse=True)
def _clean_state(request):
    """After each test: empty every table and forget rate-limit counters."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    with app.app_context():
        db.session.remove()
        tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        limiter.reset()


@pytest.fixture
def app_context(app):
    with app.app_context():
        yield


@pytest.fixture
def client(app):
    """A browser-like client: keeps cookies and sends the page's CSRF token with forms."""
    return FormClient(app.test_client())


@pytest.fixture
def make_client(app):
    """Several independent browsers (sessions) in one test."""
    return lambda: FormClient(app.test_client())


@pytest.fixture
def login_as(app, make_client):
    """Create a user of `role` (and `status`) and return (client, user) logged in through
    the real log-in form. Extra keyword arguments go to make_user."""

    def login(role, status="approved", client=None, **fields):
        with app.app_context():
            user = make_user(role=role, status=status, **fields)
            db.session.refresh(user)  # the commit expired it; load it before detaching
            db.session.expunge(user)
        browser = client or make_client()
        response = browser.post("/auth/login", {"email": user.email, "password": DEFAULT_PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return browser, user

    return login
