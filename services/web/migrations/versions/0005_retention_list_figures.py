"""the figures lists need on retentions: each document's last change and its autodocs awaiting review

Measured at 100,000 documents (bench/RESULTS.md, "Load at scale"): a sponsor's list read all
5,000 of their documents to sort them by last change (25-38 ms a page), and an editor's review
queue counted a 10,000-autodoc backlog through three joins (~90 ms a page). The models'
Retention docstring says who keeps the two columns. Existing rows are filled from what the
documents, autodocs and verdicts say now.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 16:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('retentions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('document_updated_at', sa.DateTime(timezone=True),
                                      server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False))
        batch_op.add_column(sa.Column('awaiting_review', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_check_constraint(op.f('ck_retentions_awaiting_review_not_negative'), 'awaiting_review >= 0')

    op.execute("""
        UPDATE retentions SET document_updated_at = documents.updated_at
        FROM documents WHERE documents.id = retentions.document_id
    """)
    op.execute("""
        UPDATE retentions SET awaiting_review = waiting.autodocs
        FROM (
            SELECT revisions.document_id, count(*) AS autodocs
            FROM autodocs JOIN revisions ON revisions.id = autodocs.revision_id
            WHERE autodocs.status = 'done' AND NOT EXISTS (
                SELECT 1 FROM verdicts WHERE verdicts.autodoc_id = autodocs.id AND verdicts.current)
            GROUP BY revisions.document_id
        ) AS waiting
        WHERE waiting.document_id = retentions.document_id
    """)

    with op.batch_alter_table('retentions', schema=None) as batch_op:
        batch_op.drop_index('ix_retentions_sponsor_id')
        batch_op.drop_index('ix_retentions_editor_id')
        batch_op.create_index('ix_retentions_sponsor_recent', ['sponsor_id', 'document_updated_at', 'document_id'],
                              unique=False)
        batch_op.create_index('ix_retentions_editor_recent', ['editor_id', 'document_updated_at', 'document_id'],
                              unique=False)
        batch_op.create_index('ix_retentions_recent', ['document_updated_at', 'document_id'], unique=False)
        batch_op.create_index('ix_retentions_editor_awaiting', ['editor_id'], unique=False,
                              postgresql_include=['awaiting_review'],
                              postgresql_where=sa.text('awaiting_review > 0'),
                              sqlite_where=sa.text('awaiting_review > 0'))


def downgrade():
    with op.batch_alter_table('retentions', schema=None) as batch_op:
        batch_op.drop_index('ix_retentions_editor_awaiting')
        batch_op.drop_index('ix_retentions_recent')
        batch_op.drop_index('ix_retentions_editor_recent')
        batch_op.drop_index('ix_retentions_sponsor_recent')
        batch_op.create_index('ix_retentions_editor_id', ['editor_id'], unique=False)
        batch_op.create_index('ix_retentions_sponsor_id', ['sponsor_id'], unique=False)
        batch_op.drop_constraint(op.f('ck_retentions_awaiting_review_not_negative'), type_='check')
        batch_op.drop_column('awaiting_review')
        batch_op.drop_column('document_updated_at')
