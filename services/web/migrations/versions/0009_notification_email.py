"""notification_preferences, notifications.emailed_at, users.digest_sent_at: notification email

A person may have their in-app notifications of some kinds emailed too, each kind either at
once or in one daily digest. Email is opt-in: a kind without a row in notification_preferences
is not emailed. chosen_at says since when the row's delivery holds, so a digest carries only
notifications from then on (opting in does not mail a year of old news). emailed_at marks a
notification that went out by email (at once or in a digest), so none goes out twice;
users.digest_sent_at is when the user's last digest pass ran, which is what keeps two mail
senders from both sending today's digest.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 13:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'notification_preferences',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('delivery', sa.String(length=16), nullable=False),
        sa.Column('chosen_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
        sa.CheckConstraint("kind IN ('autodoc_ready', 'autodoc_failed', 'autodoc_reviewed', 'document_assigned')",
                           name=op.f('ck_notification_preferences_kind')),
        sa.CheckConstraint("delivery IN ('immediate', 'daily')", name=op.f('ck_notification_preferences_delivery')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_preferences_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'kind', name=op.f('pk_notification_preferences')),
    )
    # The digest pass looks for the users with a daily kind.
    op.create_index('ix_notification_preferences_daily', 'notification_preferences', ['user_id'], unique=False,
                    postgresql_where=sa.text("delivery = 'daily'"), sqlite_where=sa.text("delivery = 'daily'"))

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('emailed_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_sent_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('digest_sent_at')

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('emailed_at')

    op.drop_index('ix_notification_preferences_daily', table_name='notification_preferences',
                  postgresql_where=sa.text("delivery = 'daily'"), sqlite_where=sa.text("delivery = 'daily'"))
    op.drop_table('notification_preferences')
