"""request_id on autodocs, shadow_drafts, outbox_messages and training_runs: a job's log lines name the request that queued it

A save's request id (nginx's X-Request-ID, else one the app made) is on every log line of that
request; the jobs it queued are done later by writers, the mail sender and the trainer, which
have no request. Kept on the job's row (set when the row is inserted in a request), their log
lines carry it too, so one search for the id a user quotes finds the save and its autodoc.
Rows queued outside a request (the console, the writer's own retries) have none.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 19:25:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JOB_TABLES = ('autodocs', 'shadow_drafts', 'outbox_messages', 'training_runs')


def upgrade():
    # A nullable column without a default: PostgreSQL adds it without rewriting the table.
    for table in JOB_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('request_id', sa.String(length=128), nullable=True))


def downgrade():
    for table in reversed(JOB_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('request_id')
