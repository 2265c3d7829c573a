"""messages: the claim's token and the moment the provider call was about to start

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        # Which claim a `sending` row belongs to: recording matches it, not the claim's time.
        batch.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
        # Set (committed) just before the provider call: only such a row is in doubt after a
        # crash; a claimed row without it goes back to the queue.
        batch.add_column(sa.Column('call_started_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('call_started_at')
        batch.drop_column('claim_token')
