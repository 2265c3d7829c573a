"""rate limits and sms encoding

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:36:28.235413
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('rate_limits',
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('next_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('provider')
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_encoding', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('sms_segments', sa.Integer(), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('sms_segments')
        batch_op.drop_column('sms_encoding')

    op.drop_table('rate_limits')

