"""experiments: assignments per customer, decisions per version, a split's subject on the
message; alerts may be about no customer (an experiment's decision)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 23:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('experiment_assignments',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('experiment', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('variant', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('enrollment_id', _ID, nullable=False),
    sa.Column('step_key', sa.String(length=64), nullable=False),
    _when('assigned_at', False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey', 'experiment', 'customer_id', name='uq_experiment_customer')
    )
    op.create_index('ix_experiment_assignments_version', 'experiment_assignments',
                    ['journey', 'experiment', 'version', 'variant', 'assigned_at'])
    op.create_index('ix_experiment_assignments_customer', 'experiment_assignments',
                    ['customer_id'])
    op.create_table('experiment_decisions',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('experiment', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('variant', sa.String(length=64), nullable=False),
    _when('decided_at', False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey', 'experiment', 'version', name='uq_experiment_decision')
    )
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('subject_override', sa.JSON(), nullable=True))
    with op.batch_alter_table('alerts') as batch:
        batch.alter_column('enrollment_id', existing_type=_ID, nullable=True)
        batch.alter_column('customer_id', existing_type=sa.String(length=128), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.alter_column('customer_id', existing_type=sa.String(length=128), nullable=False)
        batch.alter_column('enrollment_id', existing_type=_ID, nullable=False)
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('subject_override')
    op.drop_table('experiment_decisions')
    op.drop_index('ix_experiment_assignments_customer', 'experiment_assignments')
    op.drop_index('ix_experiment_assignments_version', 'experiment_assignments')
    op.drop_table('experiment_assignments')
