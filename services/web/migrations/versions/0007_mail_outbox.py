"""outbox_messages: email written with the change that causes it, sent later

An email is a row written in the transaction of the change it tells about (an account
decision, a reset link...), so a rolled-back change sends nothing, and a mail server that is
down delays the email instead of losing it. The mail sender claims rows the way the writer
claims autodocs (status, attempts, attempt_token, worker, started_at, lease_expires_at;
services/leases.py) and retries with backoff (next_attempt_at). message_id is fixed here so
that every delivery attempt of one email carries the same Message-ID.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'outbox_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('recipient', sa.String(length=254), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('text_body', sa.Text(), nullable=False),
        sa.Column('html_body', sa.Text(), nullable=True),
        sa.Column('message_id', sa.String(length=255), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('attempt_token', sa.String(length=64), nullable=True),
        sa.Column('worker', sa.String(length=200), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'sent', 'failed')", name=op.f('ck_outbox_messages_status')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
        sa.UniqueConstraint('message_id', name=op.f('uq_outbox_messages_message_id')),
    )
    op.create_index('ix_outbox_messages_due', 'outbox_messages', ['next_attempt_at', 'id'], unique=False,
                    postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))
    op.create_index('ix_outbox_messages_status', 'outbox_messages', ['status'], unique=False)


def downgrade():
    op.drop_index('ix_outbox_messages_status', table_name='outbox_messages')
    op.drop_index('ix_outbox_messages_due', table_name='outbox_messages',
                  postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))
    op.drop_table('outbox_messages')
