"""Index only the outbox messages still waiting, in the order the worker takes them.

The worker claims the oldest due messages among those neither sent nor given up. The
old index covered every row ever sent, and every "sent" changed it; this one holds the
waiting rows only, sorted as they are claimed, and a row leaves it once handled.

Revision ID: 0004_outbox_waiting_index
Revises: 0003_newsletter_editions
Create Date: 2026-11-28 04:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_outbox_waiting_index"
down_revision = "0003_newsletter_editions"
branch_labels = None
depends_on = None

WAITING = sa.text("sent_at IS NULL AND failed_at IS NULL")


def upgrade():
    context = op.get_context()
    if context.dialect.name != "postgresql":
        _swap_indexes()
        return
    # CONCURRENTLY: the outbox keeps every mail ever sent, and a plain CREATE INDEX would
    # stop sign-in mails from being queued while it reads them all. It cannot run inside
    # a transaction, hence the autocommit block.
    with context.autocommit_block():
        _swap_indexes(postgresql_concurrently=True)


def _swap_indexes(**options):
    """The waiting-rows index in, the index over every row out."""
    op.create_index(
        "ix_outbox_waiting",
        "outbox_messages",
        ["next_attempt_at", "id"],
        postgresql_where=WAITING,
        sqlite_where=WAITING,
        **options,
    )
    op.drop_index("ix_outbox_due", table_name="outbox_messages", **options)


def downgrade():
    op.create_index("ix_outbox_due", "outbox_messages", ["sent_at", "failed_at", "next_attempt_at"])
    op.drop_index("ix_outbox_waiting", table_name="outbox_messages")
