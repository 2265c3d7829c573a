"""survey clicks judged person or scanner, so a scanner's fetch is never an answer

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 14:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('survey_clicks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('clicked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('verdict', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=True),
    sa.Column('event_id', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    # Recent clicks of one message (the burst rule); pending clicks due to settle.
    op.create_index('ix_survey_clicks_message', 'survey_clicks', ['message_id', 'clicked_at'])
    op.create_index('ix_survey_clicks_verdict', 'survey_clicks', ['verdict', 'clicked_at'])


def downgrade() -> None:
    op.drop_index('ix_survey_clicks_verdict', table_name='survey_clicks')
    op.drop_index('ix_survey_clicks_message', table_name='survey_clicks')
    op.drop_table('survey_clicks')
