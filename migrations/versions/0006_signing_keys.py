"""Signing keys of the entitlement tokens the news site's servers verify (contract §8).

Revision ID: 0006_signing_keys
Revises: 0005_sessions_public_ids_limits
Create Date: 2026-12-01 18:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_signing_keys"
down_revision = "0005_sessions_public_ids_limits"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("kid"),
    )
    op.create_index("ix_signing_keys_created_at", "signing_keys", ["created_at"])


def downgrade():
    op.drop_index("ix_signing_keys_created_at", table_name="signing_keys")
    op.drop_table("signing_keys")
