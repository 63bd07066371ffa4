"""indexes for the writer's pace and the review queues

Measured at 300,000 autodocs (bench/RESULTS.md, "Load at scale"): the writer's recent pace
scanned and sorted every finished autodoc (125-265 ms on every page with a queued autodoc),
and an editor's review queue and badge read every autodoc of their documents.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 13:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('autodocs', schema=None) as batch_op:
        batch_op.create_index('ix_autodocs_done_finished_at', ['finished_at'], unique=False,
                              postgresql_where=sa.text("status = 'done'"), sqlite_where=sa.text("status = 'done'"))
        batch_op.create_index('ix_autodocs_done_revision_id', ['revision_id'], unique=False,
                              postgresql_include=['id'], postgresql_where=sa.text("status = 'done'"),
                              sqlite_where=sa.text("status = 'done'"))


def downgrade():
    with op.batch_alter_table('autodocs', schema=None) as batch_op:
        batch_op.drop_index('ix_autodocs_done_revision_id')
        batch_op.drop_index('ix_autodocs_done_finished_at')
