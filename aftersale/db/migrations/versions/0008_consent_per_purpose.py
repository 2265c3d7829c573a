"""customers: order-updates opt-ins for SMS and WhatsApp, and the time of each stored fact

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        # Nobody has opted in to order updates before they could say so.
        batch_op.add_column(sa.Column('order_updates_sms', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('order_updates_whatsapp', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        # NULL for the customers stored so far: their next event states its fields' times.
        batch_op.add_column(sa.Column('fact_times', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('fact_times')
        batch_op.drop_column('order_updates_whatsapp')
        batch_op.drop_column('order_updates_sms')
