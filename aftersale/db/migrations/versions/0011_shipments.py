"""shipments and their carrier updates; orders remember their first delivery problem

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 20:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('shipments',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('carrier', sa.String(length=100), nullable=True),
    sa.Column('tracking_number', sa.String(length=100), nullable=True),
    sa.Column('tracking_url', sa.Text(), nullable=True),
    sa.Column('destination_country', sa.String(length=2), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('raw_status', sa.String(length=64), nullable=True),
    _when('status_at', False), _when('last_update_at', False),
    sa.Column('last_message', sa.Text(), nullable=True),
    _when('first_estimated_delivery_at'), _when('estimated_delivery_at'), _when('shipped_at'),
    _when('delivered_at'), _when('problem_at'), _when('stalled_at'),
    sa.Column('stalled_days', sa.Integer(), nullable=True), _when('late_for'),
    _when('late_at'),
    _when('created_at', False), _when('updated_at', False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_shipments_order_id', 'shipments', ['order_id'])
    op.create_index('ix_shipments_tracking', 'shipments', ['order_id', 'tracking_number'])
    op.create_index('ix_shipments_open', 'shipments', ['delivered_at', 'status'])
    op.create_table('shipment_updates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('shipment_id', sa.String(length=128), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('raw_status', sa.String(length=64), nullable=True),
    _when('happened_at', False),
    sa.Column('message', sa.Text(), nullable=True),
    _when('estimated_delivery_at'), _when('recorded_at', False),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shipment_id', 'event_id', name='uq_shipment_update_event')
    )
    op.create_index('ix_shipment_updates_timeline', 'shipment_updates',
                    ['shipment_id', 'happened_at'])
    with op.batch_alter_table('orders') as batch:
        batch.add_column(_when('delivery_problem_at'))
    with op.batch_alter_table('enrollments') as batch:
        batch.add_column(sa.Column('shipment_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('enrollments') as batch:
        batch.drop_column('shipment_id')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('delivery_problem_at')
    op.drop_index('ix_shipment_updates_timeline', table_name='shipment_updates')
    op.drop_table('shipment_updates')
    op.drop_index('ix_shipments_open', table_name='shipments')
    op.drop_index('ix_shipments_tracking', table_name='shipments')
    op.drop_index('ix_shipments_order_id', table_name='shipments')
    op.drop_table('shipments')
