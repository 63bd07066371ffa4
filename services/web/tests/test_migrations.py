"""The schema is made only by Alembic: one head, and upgrade/downgrade on an empty database."""
import uuid

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


def test_upgrade_then_downgrade_on_an_empty_database():
    name = f"srcflask_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            upgrade()
            tables = set(inspect(db.engine).get_table_names())
            assert {"users", "documents", "retentions", "revisions", "autodocs"} <= tables
            downgrade(revision="base")
            assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
            db.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_models_match_the_migrations(app):
    """Autogenerate finds nothing to do: no model change was left without its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []
