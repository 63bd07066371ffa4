"""Operations for Alembic migrations that Alembic does not package: indexes built without
blocking writes.

A plain CREATE INDEX holds a SHARE lock on its table for the whole build: every insert and
update waits, minutes on a large table. CREATE INDEX CONCURRENTLY takes only a SHARE UPDATE
EXCLUSIVE lock (reads and writes go on) but cannot run inside a transaction, so it runs in
Alembic's autocommit_block: the migration's transaction is committed first, which is why such
an index gets a migration of its own. Rule: an index on a large table (documents, revisions,
autodocs, verdicts, notifications, audit_events) is created with `create_index_concurrently`
and dropped with `drop_index_concurrently`. Other databases (the quick start's SQLite) get a
plain index.

Imported by migration scripts: nothing here may touch the app at import time.
"""
from alembic import op
from sqlalchemy import text


def create_index_concurrently(name, table, columns, **options):
    """Build index `name` on `table` without blocking writes; `options` as op.create_index's
    (unique, postgresql_where, postgresql_include ...). An interrupted concurrent build leaves
    an INVALID index behind, which is dropped and built again, so the migration can be rerun."""
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(name, table, columns, **options)
        return
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        # The build waits for transactions older than itself to end: it blocks nobody while it
        # waits, so the migrations' lock_timeout (meant for locks that queue requests) is lifted.
        previous = bind.scalar(text("SHOW lock_timeout"))
        bind.exec_driver_sql("SET lock_timeout = 0")
        try:
            invalid = bind.scalar(text(
                "SELECT NOT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid "
                "WHERE relname = :name AND pg_class.relnamespace = to_regnamespace(current_schema())"),
                {"name": name})
            if invalid:
                op.drop_index(name, table_name=table, postgresql_concurrently=True)
            op.create_index(name, table, columns, postgresql_concurrently=True, if_not_exists=True, **options)
        finally:
            bind.exec_driver_sql(f"SET lock_timeout = '{previous}'")


def drop_index_concurrently(name, table):
    """Drop index `name` of `table` without blocking writes (the downgrade of the above)."""
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
