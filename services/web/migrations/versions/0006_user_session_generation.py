"""users.session_generation: sessions that can be ended

A session cookie is signed, not stored: before this, a copy taken before log-out kept
opening the site for the whole session lifetime. The generation is part of the user id in
the session and remember-me cookies; moving it on refuses every older cookie (models.User,
security.load_user). Existing accounts start at 0. Cookies issued before this revision hold
a bare user id, which is no longer accepted: everyone logs in once more.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_generation', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_generation')
