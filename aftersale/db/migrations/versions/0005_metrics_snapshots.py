"""metrics snapshots and the indexes metrics walk

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:41:41.983688
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('metrics_snapshots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('period_to', sa.DateTime(timezone=True), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metrics_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metrics_snapshots_as_of'), ['as_of'], unique=False)
    # What the metrics queries walk (see aftersale/metrics).
    op.create_index('ix_orders_customer_placed', 'orders', ['customer_id', 'placed_at'])
    op.create_index('ix_enrollments_segment_customer', 'enrollments',
                    ['segment', 'customer_id', 'enrolled_at', 'id'])
    op.create_index('ix_enrollments_journey_customer', 'enrollments',
                    ['journey', 'customer_id', 'enrolled_at', 'id'])
    op.create_index('ix_enrollments_customer_enrolled', 'enrollments',
                    ['customer_id', 'enrolled_at', 'id'])
    op.create_index('ix_messages_customer_sent', 'messages', ['customer_id', 'status', 'sent_at'])
    op.create_index('ix_survey_responses_customer_kind', 'survey_responses',
                    ['customer_id', 'kind', 'responded_at'])


def downgrade() -> None:
    op.drop_index('ix_survey_responses_customer_kind', 'survey_responses')
    op.drop_index('ix_messages_customer_sent', 'messages')
    op.drop_index('ix_enrollments_customer_enrolled', 'enrollments')
    op.drop_index('ix_enrollments_journey_customer', 'enrollments')
    op.drop_index('ix_enrollments_segment_customer', 'enrollments')
    op.drop_index('ix_orders_customer_placed', 'orders')
    with op.batch_alter_table('metrics_snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metrics_snapshots_as_of'))

    op.drop_table('metrics_snapshots')
