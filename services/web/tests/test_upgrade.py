"""Upgrades: migrations on a populated database, the migrations' lock_timeout, indexes built
without blocking writes, and /readyz while old and new replicas share one database.

Each test has a database of its own, filled by bench/datagen.py at a small size (users of
every role, documents with histories, autodocs written and queued, verdicts, notifications)."""
import os
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from bench.datagen import Shape, generate
from srcflask import create_app
from srcflask.extensions import db
from srcflask.migration_helpers import create_index_concurrently, drop_index_concurrently

from .prodstack import throwaway_database

WEB_ROOT = Path(__file__).resolve().parent.parent
# The newest migration, and the one before it: what the previous release's code ends at.
_SCRIPTS = ScriptDirectory(str(WEB_ROOT / "migrations"))
HEAD = _SCRIPTS.get_current_head()
PREVIOUS = _SCRIPTS.get_revision(HEAD).down_revision
# What every revision since 0007 has, compared across a downgrade and an upgrade (columns that
# later migrations add are left out: a downgrade drops them, by design).
KEPT = {
    "users": "id, email, role, status, password_hash",
    "documents": "id, title, body, version",
    "revisions": "id, document_id, version, title, body, saved_by_id",
    "autodocs": "id, revision_id, generation, status, continuation",
    "verdicts": "id, autodoc_id, editor_id, decision, comment, current",
    "notifications": "id, user_id, kind, message",
}


@contextmanager
def populated_site(at=None):
    """(app, url) on a new database migrated to head, filled by datagen, then migrated down
    to `at` if given."""
    with throwaway_database("srcflask_upgrade") as url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            upgrade()
            generate(url, Shape(users=30, documents=400, revisions=1000, queued=20), log=lambda *_: None)
            if at:
                downgrade(revision=at)
            db.session.remove()
        yield app, url
        with app.app_context():
            db.engine.dispose()


def kept_rows():
    rows = {table: tuple(db.session.execute(text(
        f"SELECT count(*), md5(string_agg(row({columns})::text, '|' ORDER BY id)) FROM {table}")).one())
        for table, columns in KEPT.items()}
    db.session.rollback()  # an open transaction's locks would hold the next migration up
    return rows


def schema_version():
    version = db.session.scalar(text("SELECT version_num FROM alembic_version"))
    db.session.rollback()
    return version


def test_downgrade_and_upgrade_on_a_populated_database_keep_the_data():
    with populated_site() as (app, _):
        with app.app_context():
            before = kept_rows()
            assert before["autodocs"][0] == 1000 and before["verdicts"][0] > 0
            downgrade(revision="0007")
            assert schema_version() == "0007" and kept_rows() == before
            upgrade()
            assert schema_version() == HEAD and kept_rows() == before
        assert app.test_client().get("/readyz").status_code == 200


def flask_db_upgrade(url, **settings):
    """`flask db upgrade` as the entrypoint runs it: (exit code, output)."""
    env = {**os.environ, "FLASK_APP": "wsgi", "SRCFLASK_ENV": "development", "DATABASE_URL": url,
           "TF_CPP_MIN_LOG_LEVEL": "2", **settings}
    done = subprocess.run([str(WEB_ROOT / ".venv" / "bin" / "flask"), "db", "upgrade"], cwd=WEB_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_a_migration_waiting_for_a_lock_gives_up_with_a_clear_message_and_changes_nothing():
    """0011 alters verdicts; a report's open transaction has read verdicts (ACCESS SHARE),
    so the ALTER TABLE would queue every later request on verdicts behind itself."""
    with populated_site(at="0010") as (app, url):
        other = create_engine(url)
        with other.connect() as reader:
            reader.execute(text("SELECT count(*) FROM verdicts"))  # the transaction stays open
            started = time.monotonic()
            code, output = flask_db_upgrade(url, MIGRATION_LOCK_TIMEOUT="1s")
            assert code == 1, output
            assert "waited longer than MIGRATION_LOCK_TIMEOUT (1s)" in output
            assert "ALTER TABLE verdicts" in output and "pg_stat_activity" in output
            assert "Traceback" not in output
            assert time.monotonic() - started < 120
        other.dispose()
        with app.app_context():
            assert schema_version() == "0010"
            assert db.session.scalar(text("SELECT to_regclass('shadow_drafts')")) is None
        code, output = flask_db_upgrade(url, MIGRATION_LOCK_TIMEOUT="1s")  # the reader is gone
        assert code == 0, output
        with app.app_context():
            assert schema_version() == HEAD


def run_operation(connection, operation, *arguments):
    """An operation of migration_helpers run the way a migration script runs it."""
    context = MigrationContext.configure(connection)
    with context.begin_transaction(), Operations.context(context):
        operation(*arguments)


def index_state(connection, name):
    return connection.execute(text(
        "SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid WHERE relname = :name"),
        {"name": name}).scalar()


def test_an_index_built_concurrently_lets_writes_through_and_replaces_an_invalid_leftover():
    with populated_site() as (app, url):
        engine = create_engine(url)
        name = "ix_revisions_saved_by_id_test"
        # A concurrent build cut short leaves an INVALID index (here: a unique one on duplicates).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            with pytest.raises(IntegrityError):
                connection.execute(text(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON revisions (saved_by_id)"))
            assert index_state(connection, name) is False

        builder = engine.connect()
        builder.exec_driver_sql("SET lock_timeout = '1s'")  # as migrations/env.py sets it
        builder.commit()
        reader = engine.connect()
        reader.execute(text("SELECT count(*) FROM revisions"))  # an open transaction the build waits for
        build = threading.Thread(target=run_operation, args=(builder, create_index_concurrently, name, "revisions",
                                                             ["saved_by_id"]))
        build.start()
        try:
            time.sleep(2)  # longer than the lock_timeout: the build waits, it does not give up
            assert build.is_alive()
            with engine.connect() as writer:  # and writes go on meanwhile
                writer.exec_driver_sql("SET lock_timeout = '1s'")
                writer.execute(text("UPDATE revisions SET title = title || '.' WHERE id = 1"))
                writer.commit()
        finally:
            reader.rollback()
            build.join(timeout=60)
        assert not build.is_alive()
        with engine.connect() as connection:
            assert index_state(connection, name) is True
            unique = connection.execute(text("SELECT indisunique FROM pg_index JOIN pg_class ON pg_class.oid = "
                                              "indexrelid WHERE relname = :name"), {"name": name}).scalar()
            assert unique is False
        assert builder.exec_driver_sql("SHOW lock_timeout").scalar() == "1s"  # put back afterwards
        builder.commit()
        run_operation(builder, drop_index_concurrently, name, "revisions")
        assert index_state(builder, name) is None
        builder.close()
        reader.close()
        engine.dispose()


def old_release(app, tmp_path):
    """The app as the previous release runs it: the same code, but its migrations end one
    revision earlier (PREVIOUS)."""
    scripts = tmp_path / "old-migrations"
    shutil.copytree(WEB_ROOT / "migrations", scripts, ignore=shutil.ignore_patterns("__pycache__", f"{HEAD}_*"))
    old = create_app("testing", SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"])
    old.extensions["migrate"].directory = str(scripts)
    return old


def test_readyz_during_a_rolling_upgrade_sends_traffic_to_the_replicas_whose_code_matches(tmp_path):
    """Old replicas serve until the first new one migrates the database; from then on only the
    new ones are ready, and the old ones say why."""
    with populated_site(at=PREVIOUS) as (new, _):
        old = old_release(new, tmp_path)
        assert old.test_client().get("/readyz").status_code == 200
        behind = new.test_client().get("/readyz")  # a new replica that has not migrated (the entrypoint does)
        assert behind.status_code == 503 and behind.json["migrations"]["schema"] == "behind"

        with new.app_context():
            upgrade()  # the first new replica's entrypoint
        assert new.test_client().get("/readyz").status_code == 200
        ahead = old.test_client().get("/readyz")
        assert ahead.status_code == 503
        assert ahead.json["migrations"] == {
            "ok": False, "database": [HEAD], "code": [PREVIOUS], "schema": "ahead",
            "detail": "The database is at a revision this code does not know: a newer release ran `flask db "
                      "upgrade`. This replica stays out of rotation until that release replaces it."}
        # Old replicas still answer their pages while draining (their probe only takes them out).
        assert old.test_client().get("/healthz").status_code == 200
