"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 11:56:53.888073
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('customers',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('locale', sa.String(length=35), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('consent_email', sa.Boolean(), nullable=False),
    sa.Column('consent_sms', sa.Boolean(), nullable=False),
    sa.Column('consent_whatsapp', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('definition_sets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('journeys', sa.JSON(), nullable=False),
    sa.Column('segments', sa.JSON(), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    op.create_table('inbox_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('inbox_events', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_status_seq', ['status', 'seq'], unique=False)

    op.create_table('journey_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey', 'version')
    )
    op.create_table('runtime_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('sandbox_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('channel', sa.String(length=12), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    op.create_table('orders',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=True),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('discount_codes', sa.JSON(), nullable=False),
    sa.Column('referral_code', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('shipped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('carrier', sa.String(length=100), nullable=True),
    sa.Column('tracking_number', sa.String(length=100), nullable=True),
    sa.Column('tracking_url', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_customer_id'), ['customer_id'], unique=False)

    op.create_table('survey_responses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=True),
    sa.Column('message_id', sa.String(length=40), nullable=True),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('responded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_responses_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_survey_responses_order_id'), ['order_id'], unique=False)

    op.create_table('enrollments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('journey_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=True),
    sa.Column('entry_key', sa.String(length=140), nullable=False),
    sa.Column('segment', sa.String(length=64), nullable=False),
    sa.Column('holdout', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('pc', sa.Integer(), nullable=False),
    sa.Column('wait_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('waiting_for', sa.String(length=40), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.Text(), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['journey_version_id'], ['journey_versions.id'], ),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey', 'customer_id', 'entry_key', name='uq_enrollment_entry')
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollments_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_enrollments_due', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollments_order_id'), ['order_id'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('step_key', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=True),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enrollment_id', 'step_key', name='uq_alert_step')
    )
    op.create_table('messages',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('step_key', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('template', sa.String(length=100), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('channel', sa.String(length=12), nullable=True),
    sa.Column('recipient', sa.String(length=320), nullable=True),
    sa.Column('locale', sa.String(length=35), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('body_text', sa.Text(), nullable=True),
    sa.Column('body_html', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('skips', sa.JSON(), nullable=True),
    sa.Column('provider', sa.String(length=20), nullable=True),
    sa.Column('provider_message_id', sa.String(length=100), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sending_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enrollment_id', 'step_key', name='uq_message_step')
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_messages_status_due', ['status', 'due_at'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_status_due')
        batch_op.drop_index(batch_op.f('ix_messages_customer_id'))

    op.drop_table('messages')
    op.drop_table('alerts')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollments_order_id'))
        batch_op.drop_index('ix_enrollments_due')
        batch_op.drop_index(batch_op.f('ix_enrollments_customer_id'))

    op.drop_table('enrollments')
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_responses_order_id'))
        batch_op.drop_index(batch_op.f('ix_survey_responses_customer_id'))

    op.drop_table('survey_responses')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_customer_id'))

    op.drop_table('orders')
    op.drop_table('sandbox_outbox')
    op.drop_table('runtime_state')
    op.drop_table('journey_versions')
    with op.batch_alter_table('inbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_status_seq')

    op.drop_table('inbox_events')
    op.drop_table('definition_sets')
    op.drop_table('customers')

