"""models, model_evaluations, training_sets, training_runs and autodocs.model_id: the model registry

Every GPT-2 the writers may use becomes a row (seed or retrained) with the sha256 of each of
its files, taken once at registration and checked before the writer loads the folder. At most
one model is active: a partial unique index holds that rule, so two promotions at the same
moment cannot leave two. Training sets, the validation figures the promotion gate compares and
the queued training runs come with it. Each autodoc records the model that wrote it; those
written before the registry existed have none (NULL). The existing installation's model
folder is registered by the writer on its first round (services/registry.py), not here: a
migration must not read hundreds of MB of weights.

models and training_sets refer to each other (a model's training set, a set's tokenizer model),
so models.training_set_id gets its foreign key once both tables exist.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 13:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ONE_ACTIVE = sa.text("state = 'active'")


def _timestamp(name, nullable=False):
    default = sa.text('CURRENT_TIMESTAMP') if not nullable else None
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def upgrade():
    op.create_table(
        'models',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=True),
        sa.Column('path', sa.String(length=500), nullable=False),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('parameters', sa.BigInteger(), nullable=False),
        sa.Column('shape', sa.JSON(), nullable=False),
        sa.Column('generation', sa.JSON(), nullable=False),
        sa.Column('training', sa.JSON(), nullable=True),
        sa.Column('training_set_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=16), server_default='candidate', nullable=False),
        sa.Column('integrity_error', sa.Text(), nullable=True),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        _timestamp('created_at'),
        _timestamp('promoted_at', nullable=True),
        _timestamp('retired_at', nullable=True),
        sa.CheckConstraint("kind IN ('seed', 'retrained')", name=op.f('ck_models_kind')),
        sa.CheckConstraint("state IN ('candidate', 'active', 'retired')", name=op.f('ck_models_state')),
        sa.CheckConstraint('version >= 1', name=op.f('ck_models_version_positive')),
        sa.ForeignKeyConstraint(['parent_id'], ['models.id'], name=op.f('fk_models_parent_id_models')),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_models_created_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
        sa.UniqueConstraint('name', 'version', name='uq_models_name_version'),
    )
    op.create_table(
        'training_sets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('path', sa.String(length=500), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('verdicts', sa.JSON(), nullable=False),
        sa.Column('seed', sa.Integer(), nullable=False),
        sa.Column('train_documents', sa.Integer(), nullable=False),
        sa.Column('train_pairs', sa.Integer(), nullable=False),
        sa.Column('train_tokens', sa.Integer(), nullable=False),
        sa.Column('validation_documents', sa.Integer(), nullable=False),
        sa.Column('validation_pairs', sa.Integer(), nullable=False),
        sa.Column('validation_tokens', sa.Integer(), nullable=False),
        sa.Column('tokenizer_model_id', sa.Integer(), nullable=True),
        sa.Column('last_verdict_id', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        _timestamp('created_at'),
        sa.ForeignKeyConstraint(['tokenizer_model_id'], ['models.id'],
                                name=op.f('fk_training_sets_tokenizer_model_id_models')),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_training_sets_created_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_sets')),
    )
    # Before the indexes: on SQLite this recreates the table, and the partial index is
    # simpler made once, after.
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_foreign_key('fk_models_training_set_id_training_sets', 'training_sets',
                                    ['training_set_id'], ['id'])
    op.create_index('uq_models_one_active', 'models', ['state'], unique=True,
                    postgresql_where=ONE_ACTIVE, sqlite_where=ONE_ACTIVE)

    op.create_table(
        'model_evaluations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('training_set_id', sa.Integer(), nullable=False),
        sa.Column('loss', sa.Float(), nullable=False),
        sa.Column('perplexity', sa.Float(), nullable=False),
        sa.Column('tokens', sa.Integer(), nullable=False),
        _timestamp('created_at'),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_model_evaluations_model_id_models'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['training_set_id'], ['training_sets.id'],
                                name=op.f('fk_model_evaluations_training_set_id_training_sets'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_evaluations')),
        sa.UniqueConstraint('model_id', 'training_set_id', name='uq_model_evaluations_model_set'),
    )
    op.create_index(op.f('ix_model_evaluations_training_set_id'), 'model_evaluations', ['training_set_id'],
                    unique=False)

    op.create_table(
        'training_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=False),
        sa.Column('training_set_id', sa.Integer(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('progress', sa.JSON(), nullable=True),
        sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('result_model_id', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('attempt_token', sa.String(length=64), nullable=True),
        _timestamp('lease_expires_at', nullable=True),
        sa.Column('worker', sa.String(length=200), nullable=True),
        _timestamp('started_at', nullable=True),
        _timestamp('queued_at'),
        _timestamp('finished_at', nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
                           name=op.f('ck_training_runs_status')),
        sa.ForeignKeyConstraint(['parent_id'], ['models.id'], name=op.f('fk_training_runs_parent_id_models')),
        sa.ForeignKeyConstraint(['training_set_id'], ['training_sets.id'],
                                name=op.f('fk_training_runs_training_set_id_training_sets')),
        sa.ForeignKeyConstraint(['result_model_id'], ['models.id'],
                                name=op.f('fk_training_runs_result_model_id_models')),
        sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'],
                                name=op.f('fk_training_runs_requested_by_id_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_runs')),
    )
    op.create_index('ix_training_runs_status_id', 'training_runs', ['status', 'id'], unique=False)

    with op.batch_alter_table('autodocs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_autodocs_model_id_models', 'models', ['model_id'], ['id'],
                                    ondelete='RESTRICT')
        batch_op.create_index(batch_op.f('ix_autodocs_model_id'), ['model_id'], unique=False)


def downgrade():
    with op.batch_alter_table('autodocs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_autodocs_model_id'))
        batch_op.drop_constraint('fk_autodocs_model_id_models', type_='foreignkey')
        batch_op.drop_column('model_id')
    op.drop_index('ix_training_runs_status_id', table_name='training_runs')
    op.drop_table('training_runs')
    op.drop_index(op.f('ix_model_evaluations_training_set_id'), table_name='model_evaluations')
    op.drop_table('model_evaluations')
    op.drop_index('uq_models_one_active', table_name='models', postgresql_where=ONE_ACTIVE, sqlite_where=ONE_ACTIVE)
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_constraint('fk_models_training_set_id_training_sets', type_='foreignkey')
    op.drop_table('training_sets')
    op.drop_table('models')
