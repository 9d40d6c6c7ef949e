"""Index the outbox by kind and creation time, for the hourly mail ceiling.

Revision ID: 0002_outbox_kind_created
Revises: 0001_initial_schema
Create Date: 2026-11-28 01:13:34
"""

from alembic import op

revision = "0002_outbox_kind_created"
down_revision = "0001_initial_schema"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_kind_created", ["kind", "created_at"], unique=False)


def downgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_kind_created")
