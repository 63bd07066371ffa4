"""retentions.archived_at and users.erased_at: archived documents and erased accounts

A sponsor archives a document: it is kept, but leaves every list, search, review queue and
the writer's queue until it is restored. The list indexes become partial (the documents not
archived), so an archive of any size costs the lists nothing; one more partial index pages
the archived lists. An admin erases an account at its holder's request: the row stays (the
revisions, verdicts and audit rows that name it keep their ids), its personal data goes.
Existing documents start not archived, existing accounts not erased.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ACTIVE, ARCHIVED = sa.text('archived_at IS NULL'), sa.text('archived_at IS NOT NULL')
LISTS = {
    'ix_retentions_sponsor_recent': ['sponsor_id', 'document_updated_at', 'document_id'],
    'ix_retentions_editor_recent': ['editor_id', 'document_updated_at', 'document_id'],
    'ix_retentions_recent': ['document_updated_at', 'document_id'],
}


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('retentions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True))
        for name, columns in LISTS.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, columns, unique=False, postgresql_where=ACTIVE, sqlite_where=ACTIVE)
        batch_op.drop_index('ix_retentions_editor_awaiting')
        awaiting = sa.text('awaiting_review > 0 AND archived_at IS NULL')
        batch_op.create_index('ix_retentions_editor_awaiting', ['editor_id'], unique=False,
                              postgresql_include=['awaiting_review'], postgresql_where=awaiting,
                              sqlite_where=awaiting)
        batch_op.create_index('ix_retentions_archived', ['sponsor_id', 'document_updated_at', 'document_id'],
                              unique=False, postgresql_where=ARCHIVED, sqlite_where=ARCHIVED)


def downgrade():
    with op.batch_alter_table('retentions', schema=None) as batch_op:
        batch_op.drop_index('ix_retentions_archived')
        batch_op.drop_index('ix_retentions_editor_awaiting')
        awaiting = sa.text('awaiting_review > 0')
        batch_op.create_index('ix_retentions_editor_awaiting', ['editor_id'], unique=False,
                              postgresql_include=['awaiting_review'], postgresql_where=awaiting,
                              sqlite_where=awaiting)
        for name, columns in LISTS.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, columns, unique=False)
        batch_op.drop_column('archived_at')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
