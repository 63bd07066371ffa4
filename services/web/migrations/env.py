import logging
import warnings
from logging.config import fileConfig

from flask import current_app

from alembic import context
from alembic.util import CommandError
from sqlalchemy.exc import OperationalError, SAWarning

# On SQLite, Alembic's batch mode reflects a table before changing it, and SQLAlchemy cannot
# reflect the expression index on lower(users.email), so every migration that alters `users`
# printed a warning to a quick start's console. Harmless: batch mode only adds columns there
# (ALTER TABLE, no copy of the table), and the index stays (tests/test_migrations.py checks it).
warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index",
                        category=SAWarning)

# PostgreSQL's SQLSTATE for a lock wait cut short by lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
# Keep the app's loggers: a default fileConfig would disable every logger that exists
# when migrations run inside the app's process (tests, `upgrade()` from code).
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger('alembic.env')


def get_engine():
    return current_app.extensions['migrate'].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace(
            '%', '%%')
    except AttributeError:
        return str(get_engine().url).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=get_metadata(), literal_binds=True
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    conf_args = current_app.extensions['migrate'].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        try:
            lift_statement_timeout(connection)
            set_lock_timeout(connection)
            context.configure(
                connection=connection,
                target_metadata=get_metadata(),
                **conf_args
            )

            try:
                with context.begin_transaction():
                    context.run_migrations()
            except OperationalError as error:
                if getattr(error.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
                    raise
                raise CommandError(lock_timeout_message(error)) from None
        finally:
            # Closed, not returned: the web's pool must never get a connection without
            # its statement_timeout.
            connection.invalidate()


def lift_statement_timeout(connection):
    """The app's connections start with the web's statement_timeout
    (config.database_engine_options); a migration may rewrite a large table for longer,
    and cancelling it half-way would only make the next deploy start over."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET statement_timeout = 0")
        connection.commit()


def set_lock_timeout(connection):
    """Give up on a lock after MIGRATION_LOCK_TIMEOUT. An ALTER TABLE waiting for its lock
    behind a long query or an open transaction queues every later request on that table
    behind itself: the site would hang for as long as it waits. Giving up after a few
    seconds rolls the whole upgrade back (one transaction) and leaves the site serving;
    run it again when the other session is done.

    Rule for new migrations: an index on a large table (documents, revisions, autodocs,
    verdicts, notifications, audit_events) is built with
    srcflask.migration_helpers.create_index_concurrently, which takes no lock that blocks
    writes, in a migration of its own."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET lock_timeout = '{current_app.config['MIGRATION_LOCK_TIMEOUT']}'")
        connection.commit()


def lock_timeout_message(error):
    statement = " ".join(str(error.statement or "").split())[:200]
    timeout = current_app.config["MIGRATION_LOCK_TIMEOUT"]
    return (f"A migration waited longer than MIGRATION_LOCK_TIMEOUT ({timeout}) for a lock another session "
            f"holds, while running: {statement}. The upgrade's transaction was rolled back: the schema is where it "
            "was. Find the session in pg_stat_activity (a long query or an idle transaction), let it finish or "
            "end it, then run `flask db upgrade` again.")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
