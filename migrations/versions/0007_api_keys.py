"""Publisher API keys, and the record of every article change made with one (§9).

Revision ID: 0007_api_keys
Revises: 0006_signing_keys
Create Date: 2026-12-01 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_api_keys"
down_revision = "0006_signing_keys"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "article_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_article_changes_slug", "article_changes", ["slug"])
    op.create_index("ix_article_changes_changed_at", "article_changes", ["changed_at"])


def downgrade():
    op.drop_index("ix_article_changes_changed_at", table_name="article_changes")
    op.drop_index("ix_article_changes_slug", table_name="article_changes")
    op.drop_table("article_changes")
    op.drop_table("api_keys")
