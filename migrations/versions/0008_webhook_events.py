"""Events for the publisher's webhook, queued with the change they report (§9).

Revision ID: 0008_webhook_events
Revises: 0007_api_keys
Create Date: 2026-12-01 19:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_webhook_events"
down_revision = "0007_api_keys"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("reader_key", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("failed_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_webhook_events_waiting", "webhook_events", ["next_attempt_at", "id"])
    op.create_index("ix_webhook_events_reader_key", "webhook_events", ["reader_key"])


def downgrade():
    op.drop_index("ix_webhook_events_reader_key", table_name="webhook_events")
    op.drop_index("ix_webhook_events_waiting", table_name="webhook_events")
    op.drop_table("webhook_events")
