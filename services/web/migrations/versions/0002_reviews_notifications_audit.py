"""verdicts, notifications, audit_events

Editors' verdicts on autodocs (history kept: one current verdict per autodoc), in-app
notifications, and the append-only audit log. On PostgreSQL a trigger refuses any
UPDATE or DELETE of audit rows, so not even a bug in the app can rewrite the record.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:56:59.067905

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events rows are never updated or deleted';
END;
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
"""


def upgrade():
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=32), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_events_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_created_at'), ['created_at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(APPEND_ONLY_FUNCTION)
        op.execute(APPEND_ONLY_TRIGGER)

    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=True),
    sa.Column('autodoc_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['autodoc_id'], ['autodocs.id'], name=op.f('fk_notifications_autodoc_id_autodocs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_notifications_document_id_documents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_autodoc_id'), ['autodoc_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_document_id'), ['document_id'], unique=False)
        batch_op.create_index('ix_notifications_user_id_read_at', ['user_id', 'read_at'], unique=False)

    op.create_table('verdicts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('autodoc_id', sa.Integer(), nullable=False),
    sa.Column('editor_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('comment', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('current', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.CheckConstraint("decision = 'approve' OR length(trim(comment)) > 0", name=op.f('ck_verdicts_comment_required')),
    sa.CheckConstraint("decision IN ('approve', 'request_changes', 'reject')", name=op.f('ck_verdicts_decision')),
    sa.ForeignKeyConstraint(['autodoc_id'], ['autodocs.id'], name=op.f('fk_verdicts_autodoc_id_autodocs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['editor_id'], ['users.id'], name=op.f('fk_verdicts_editor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verdicts'))
    )
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verdicts_autodoc_id'), ['autodoc_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_verdicts_editor_id'), ['editor_id'], unique=False)
        # Partial: any number of past verdicts, one current one.
        batch_op.create_index('uq_verdicts_current_autodoc', ['autodoc_id'], unique=True,
                              postgresql_where=sa.text('current'), sqlite_where=sa.text('current'))


def downgrade():
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.drop_index('uq_verdicts_current_autodoc')
        batch_op.drop_index(batch_op.f('ix_verdicts_editor_id'))
        batch_op.drop_index(batch_op.f('ix_verdicts_autodoc_id'))

    op.drop_table('verdicts')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_user_id_read_at')
        batch_op.drop_index(batch_op.f('ix_notifications_document_id'))
        batch_op.drop_index(batch_op.f('ix_notifications_autodoc_id'))

    op.drop_table('notifications')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER audit_events_append_only ON audit_events')
        op.execute('DROP FUNCTION audit_events_append_only()')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_created_at'))
        batch_op.drop_index(batch_op.f('ix_audit_events_actor_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')
