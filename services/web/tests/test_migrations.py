"""The schema is made only by Alembic: one head, and upgrade/downgrade on an empty database."""
import uuid
import warnings
from contextlib import contextmanager

from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from srcflask import create_app
from srcflask.extensions import db, migrate

from .conftest import SERVER_URL


def test_single_alembic_head(app):
    with app.app_context():
        config = migrate.get_config()
        assert len(ScriptDirectory.from_config(config).get_heads()) == 1


@contextmanager
def empty_database_app():
    """The app on a database of its own, created empty and dropped afterwards."""
    name = f"srcflask_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrade_then_downgrade_on_an_empty_database():
    with empty_database_app():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {"users", "documents", "retentions", "revisions", "autodocs"} <= tables
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}


def test_0005_fills_the_retentions_figures_from_existing_rows():
    """A site upgraded with documents in it: each retention gets its document's last change
    and the number of its written autodocs without a current verdict (a replaced verdict,
    a queued or a failed autodoc do not count)."""
    with empty_database_app():
        upgrade(revision="0004")
        with db.engine.begin() as conn:
            conn.execute(text("""
                INSERT INTO users (id, name, email, password_hash, role, status)
                VALUES (1, 'Sam', 'sam@example.org', 'x', 'sponsor', 'approved'),
                       (2, 'Eve', 'eve@example.org', 'x', 'editor', 'approved');
                INSERT INTO documents (id, title, body, version, created_at, updated_at)
                VALUES (1, 'Plan', 'b', 2, '2026-01-01', '2026-02-01'), (2, 'Idle', 'b', 1, '2026-01-05', '2026-01-05');
                INSERT INTO retentions (document_id, sponsor_id, editor_id) VALUES (1, 1, 2), (2, 1, 2);
                INSERT INTO revisions (id, document_id, version, title, body, saved_by_id)
                VALUES (1, 1, 1, 'Plan', 'b', 1), (2, 1, 2, 'Plan', 'b', 1), (3, 2, 1, 'Idle', 'b', 1);
                INSERT INTO autodocs (id, revision_id, generation, status, continuation) VALUES
                    (1, 1, 1, 'done', 'reviewed'), (2, 1, 2, 'done', 'verdict replaced, then sent back'),
                    (3, 2, 1, 'done', 'waiting'), (4, 2, 2, 'done', 'waiting too'),
                    (5, 2, 3, 'failed', NULL), (6, 3, 1, 'queued', NULL);
                INSERT INTO verdicts (autodoc_id, editor_id, decision, comment, current) VALUES
                    (1, 2, 'approve', '', true), (2, 2, 'approve', '', false), (2, 2, 'reject', 'No.', true),
                    (3, 2, 'approve', '', false);
            """))
        upgrade()
        rows = db.session.execute(text(
            "SELECT document_id, document_updated_at = documents.updated_at, awaiting_review FROM retentions "
            "JOIN documents ON documents.id = retentions.document_id ORDER BY document_id")).all()
        assert [tuple(row) for row in rows] == [(1, True, 2), (2, True, 0)]


def test_models_match_the_migrations(app):
    """Autogenerate finds nothing to do: no model change was left without its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_the_quick_starts_sqlite_upgrade_prints_no_warning_and_keeps_the_email_index(tmp_path):
    """The quick start migrates an SQLite file: Alembic's batch mode reflects `users` there, which
    warned on every start about the lower(email) index it cannot reflect (harmless, so silenced
    in migrations/env.py). The index must still be there: it is what keeps emails unique."""
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'quickstart.sqlite3'}")
    with app.app_context():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            upgrade()
        assert [str(warning.message) for warning in caught] == []
        indexes = db.session.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'"))
        assert "uq_users_email_lower" in set(indexes.scalars())
