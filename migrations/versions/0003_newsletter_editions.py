"""Newsletter editions, suppressed addresses, staff readers.

An edition is rendered once per language; each reader's copy is an outbox row that
points at it, with a unique dedupe key so that an edition is never queued twice.

Revision ID: 0003_newsletter_editions
Revises: 0002_outbox_kind_created
Create Date: 2026-11-28 02:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_newsletter_editions"
down_revision = "0002_outbox_kind_created"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email", name="uq_suppressions_email"),
    )
    op.create_table(
        "editions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("edition_date", sa.Date(), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["newsletter_id"], ["newsletters.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "newsletter_id", "edition_date", "locale", name="uq_editions_newsletter_date_locale"
        ),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edition_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("personal", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint("uq_outbox_dedupe_key", ["dedupe_key"])
        batch_op.create_foreign_key("fk_outbox_edition", "editions", ["edition_id"], ["id"])
    with op.batch_alter_table("readers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_staff", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("readers", schema=None) as batch_op:
        batch_op.drop_column("is_staff")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_edition", type_="foreignkey")
        batch_op.drop_constraint("uq_outbox_dedupe_key", type_="unique")
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("personal")
        batch_op.drop_column("edition_id")
    op.drop_table("editions")
    op.drop_table("suppressions")
