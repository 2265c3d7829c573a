"""indexes the message funnel reads without touching the wide message rows

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 18:30:00.000000
"""
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The funnel's sends are grouped in this index's order, from the index alone.
    op.create_index('ix_messages_funnel', 'messages',
                    ['journey', 'step_key', 'template', 'channel', 'status', 'sent_at',
                     'sending_at'])
    # Replaces the index on message_id alone: still serves look-ups by message, and the
    # funnel's stages per message are read from it without the rows (raw payloads).
    op.create_index('ix_delivery_events_message_stage', 'delivery_events',
                    ['message_id', 'occurred_at', 'kind'])
    op.drop_index('ix_delivery_events_message_id', table_name='delivery_events')


def downgrade() -> None:
    op.create_index('ix_delivery_events_message_id', 'delivery_events', ['message_id'])
    op.drop_index('ix_delivery_events_message_stage', table_name='delivery_events')
    op.drop_index('ix_messages_funnel', table_name='messages')
