"""verdicts.correction, training_sets.corrections, shadow_drafts and comparisons: editors teach the writer

An editor who sends an autodoc back or rejects it may write how it should have read (the
verdict's correction; never with an approval, which the database holds). Training sets count
the pairs whose target is a correction. While a candidate model exists, a share of saves also
gets a shadow draft from it, a queue of its own (claim columns as the autodocs'), and editors
compare the two drafts blind: one comparison per editor and pair, a unique constraint.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 18:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _timestamp(name, nullable=False):
    default = sa.text('CURRENT_TIMESTAMP') if not nullable else None
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def upgrade():
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('correction', sa.Text(), nullable=True))
        batch_op.create_check_constraint(op.f('ck_verdicts_correction_not_approved'), "correction IS NULL OR decision <> 'approve'")
    with op.batch_alter_table('training_sets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('corrections', sa.Integer(), server_default='0', nullable=False))

    op.create_table(
        'shadow_drafts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('autodoc_id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
        sa.Column('prompt', sa.Text(), nullable=True),
        sa.Column('continuation', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('attempt_token', sa.String(length=64), nullable=True),
        _timestamp('lease_expires_at', nullable=True),
        sa.Column('worker', sa.String(length=200), nullable=True),
        sa.Column('stamp', sa.JSON(), nullable=True),
        _timestamp('queued_at'),
        _timestamp('started_at', nullable=True),
        _timestamp('finished_at', nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_shadow_drafts_status')),
        sa.ForeignKeyConstraint(['autodoc_id'], ['autodocs.id'], name=op.f('fk_shadow_drafts_autodoc_id_autodocs'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_shadow_drafts_model_id_models')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_shadow_drafts')),
        sa.UniqueConstraint('autodoc_id', 'model_id', name='uq_shadow_drafts_autodoc_model'),
    )
    op.create_index('ix_shadow_drafts_status_id', 'shadow_drafts', ['status', 'id'], unique=False)
    op.create_index(op.f('ix_shadow_drafts_model_id'), 'shadow_drafts', ['model_id'], unique=False)

    op.create_table(
        'comparisons',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('autodoc_id', sa.Integer(), nullable=False),
        sa.Column('shadow_draft_id', sa.Integer(), nullable=False),
        sa.Column('revision_id', sa.Integer(), nullable=False),
        sa.Column('editor_id', sa.Integer(), nullable=False),
        sa.Column('candidate_model_id', sa.Integer(), nullable=False),
        sa.Column('baseline_model_id', sa.Integer(), nullable=False),
        sa.Column('winner', sa.String(length=16), nullable=False),
        sa.Column('candidate_shown_first', sa.Boolean(), nullable=False),
        _timestamp('created_at'),
        sa.CheckConstraint("winner IN ('candidate', 'baseline', 'tie')", name=op.f('ck_comparisons_winner')),
        sa.ForeignKeyConstraint(['autodoc_id'], ['autodocs.id'], name=op.f('fk_comparisons_autodoc_id_autodocs'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['shadow_draft_id'], ['shadow_drafts.id'],
                                name=op.f('fk_comparisons_shadow_draft_id_shadow_drafts'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_comparisons_revision_id_revisions'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['editor_id'], ['users.id'], name=op.f('fk_comparisons_editor_id_users')),
        sa.ForeignKeyConstraint(['candidate_model_id'], ['models.id'],
                                name=op.f('fk_comparisons_candidate_model_id_models')),
        sa.ForeignKeyConstraint(['baseline_model_id'], ['models.id'],
                                name=op.f('fk_comparisons_baseline_model_id_models')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_comparisons')),
        sa.UniqueConstraint('shadow_draft_id', 'editor_id', name='uq_comparisons_shadow_draft_editor'),
    )
    op.create_index('ix_comparisons_models', 'comparisons', ['candidate_model_id', 'baseline_model_id'],
                    unique=False)
    op.create_index(op.f('ix_comparisons_autodoc_id'), 'comparisons', ['autodoc_id'], unique=False)
    op.create_index(op.f('ix_comparisons_editor_id'), 'comparisons', ['editor_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_comparisons_editor_id'), table_name='comparisons')
    op.drop_index(op.f('ix_comparisons_autodoc_id'), table_name='comparisons')
    op.drop_index('ix_comparisons_models', table_name='comparisons')
    op.drop_table('comparisons')
    op.drop_index(op.f('ix_shadow_drafts_model_id'), table_name='shadow_drafts')
    op.drop_index('ix_shadow_drafts_status_id', table_name='shadow_drafts')
    op.drop_table('shadow_drafts')
    with op.batch_alter_table('training_sets', schema=None) as batch_op:
        batch_op.drop_column('corrections')
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_verdicts_correction_not_approved'), type_='check')
        batch_op.drop_column('correction')
