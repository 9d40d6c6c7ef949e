"""Server-side sessions, an opaque public id per reader, shared rate-limit counters.

- ``reader_sessions``: one row per signed-in browser. The session cookie carries a key
  whose hash is stored here, so signing out ends that session on every copy of the
  cookie. Existing cookies carried the alternative id, which goes: every reader signs
  in again once after this upgrade.
- ``readers.public_id``: what preference and unsubscribe links carry instead of the
  sequential id. Existing readers get a random one.
- ``login_attempts.chain_id``: the first attempt of a run of "send again", whose
  allowance is its own (see ``auth/limits.py``).
- ``rate_limits``: Flask-Limiter's counters in the database when no Redis is given, so
  that several web processes share one allowance.
- ``uq_newsletter_consents_open``: one open consent per reader and newsletter, so that
  two requests recording it at once cannot both add one. Duplicates already there are
  closed first, the earliest kept.

Revision ID: 0005_sessions_public_ids_limits
Revises: 0004_outbox_waiting_index
Create Date: 2026-12-01 15:30:00
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005_sessions_public_ids_limits"
down_revision = "0004_outbox_waiting_index"
branch_labels = None
depends_on = None

OPEN = sa.text("withdrawn_at IS NULL")


def upgrade():
    op.create_table(
        "reader_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_reader_sessions_reader_id", "reader_sessions", ["reader_id"])
    op.create_index("ix_reader_sessions_created_at", "reader_sessions", ["created_at"])

    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_rate_limits_expires_at", "rate_limits", ["expires_at"])

    op.add_column("login_attempts", sa.Column("chain_id", sa.String(length=32), nullable=True))
    _close_duplicate_consents()
    op.create_index(
        "uq_newsletter_consents_open",
        "newsletter_consents",
        ["reader_id", "newsletter_id"],
        unique=True,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )

    op.add_column("readers", sa.Column("public_id", sa.String(length=32), nullable=True))
    _give_every_reader_a_random("public_id", 16)
    with op.batch_alter_table("readers") as batch_op:
        batch_op.alter_column("public_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint("uq_readers_public_id", ["public_id"])
        batch_op.drop_column("alternative_id")


def _give_every_reader_a_random(column: str, nbytes: int) -> None:
    """Fill ``readers.<column>`` with a fresh random value per row, as the model would."""
    readers = sa.table("readers", sa.column("id", sa.Integer), sa.column(column))
    connection = op.get_bind()
    for (reader_id,) in connection.execute(sa.select(readers.c.id)).all():
        connection.execute(
            readers.update()
            .where(readers.c.id == reader_id)
            .values({column: secrets.token_urlsafe(nbytes)})
        )


def _close_duplicate_consents():
    """Withdraw every open consent but the earliest of each reader and newsletter."""
    consents = sa.table(
        "newsletter_consents",
        sa.column("id", sa.Integer),
        sa.column("reader_id", sa.Integer),
        sa.column("newsletter_id", sa.Integer),
        sa.column("consented_at", sa.DateTime),
        sa.column("withdrawn_at", sa.DateTime),
    )
    earlier = consents.alias("earlier")
    has_earlier = (
        sa.select(earlier.c.id)
        .where(
            earlier.c.reader_id == consents.c.reader_id,
            earlier.c.newsletter_id == consents.c.newsletter_id,
            earlier.c.withdrawn_at.is_(None),
            earlier.c.id < consents.c.id,
        )
        .exists()
    )
    op.get_bind().execute(
        consents.update()
        .where(consents.c.withdrawn_at.is_(None), has_earlier)
        .values(withdrawn_at=consents.c.consented_at)
    )


def downgrade():
    op.drop_index("uq_newsletter_consents_open", table_name="newsletter_consents")
    with op.batch_alter_table("login_attempts") as batch_op:
        batch_op.drop_column("chain_id")
    with op.batch_alter_table("readers") as batch_op:
        batch_op.add_column(sa.Column("alternative_id", sa.String(length=64), nullable=True))
    _give_every_reader_a_random("alternative_id", 24)
    with op.batch_alter_table("readers") as batch_op:
        batch_op.alter_column("alternative_id", existing_type=sa.String(64), nullable=False)
        batch_op.create_unique_constraint("uq_readers_alternative_id", ["alternative_id"])
        batch_op.drop_constraint("uq_readers_public_id", type_="unique")
        batch_op.drop_column("public_id")
    op.drop_index("ix_rate_limits_expires_at", table_name="rate_limits")
    op.drop_table("rate_limits")
    op.drop_index("ix_reader_sessions_created_at", table_name="reader_sessions")
    op.drop_index("ix_reader_sessions_reader_id", table_name="reader_sessions")
    op.drop_table("reader_sessions")
