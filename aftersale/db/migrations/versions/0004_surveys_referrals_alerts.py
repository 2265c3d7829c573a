"""surveys referrals alerts delivery

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:34:45.024125
"""
import hashlib
from base64 import b32encode

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('referral_clicks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('referrer_id', sa.String(length=128), nullable=True),
    sa.Column('clicked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('referral_clicks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referral_clicks_code'), ['code'], unique=False)

    op.create_table('referrals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('referrer_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('first_order', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['referrer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_id')
    )
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referrals_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_referrals_referrer_id'), ['referrer_id'], unique=False)

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=12), nullable=False,
                                      server_default='pending'))
        batch_op.add_column(sa.Column('email_status', sa.String(length=12), nullable=False,
                                      server_default='pending'))
        batch_op.add_column(sa.Column('webhook_status', sa.String(length=12), nullable=False,
                                      server_default='pending'))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_alerts_status', ['status', 'next_attempt_at'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('referral_code', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint('uq_customer_referral_code', ['referral_code'])

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clarified_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint('uq_survey_response_message', ['message_id'])

    # Existing customers get their code too (the same function as aftersale.links, frozen here
    # so a later change there cannot rewrite history).
    customers = sa.table('customers', sa.column('id', sa.String), sa.column('referral_code', sa.String))
    connection = op.get_bind()
    for (customer_id,) in connection.execute(sa.select(customers.c.id)).all():
        digest = hashlib.sha256(f"referral:{customer_id}".encode()).digest()
        code = "R" + b32encode(digest[:6]).decode().rstrip("=")
        connection.execute(customers.update().where(customers.c.id == customer_id)
                           .values(referral_code=code))



def downgrade() -> None:
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.drop_constraint('uq_survey_response_message', type_='unique')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('source')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('clarified_at')

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_constraint('uq_customer_referral_code', type_='unique')
        batch_op.drop_column('referral_code')

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_status')
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('webhook_status')
        batch_op.drop_column('email_status')
        batch_op.drop_column('status')

    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referrals_referrer_id'))
        batch_op.drop_index(batch_op.f('ix_referrals_customer_id'))

    op.drop_table('referrals')
    with op.batch_alter_table('referral_clicks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referral_clicks_code'))

    op.drop_table('referral_clicks')
