"""Comments on articles, readers' reports of them, and readers' display names (§10).

- ``comments``: one row per comment or reply (one level deep), with a public id for
  URLs; a deleted comment that others replied to stays as a tombstone (no author, no
  body).
- ``comment_reports``: one row per reader and comment reported.
- ``readers.display_name``: the name shown on a reader's comments, chosen at their
  first one; ``display_name_key``, its folded form, is unique. Both are nullable
  columns added without copying the table (SQLite's ``ADD COLUMN``).

Revision ID: 0009_comments
Revises: 0008_webhook_events
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_comments"
down_revision = "0008_webhook_events"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("readers", sa.Column("display_name", sa.String(length=40), nullable=True))
    op.add_column("readers", sa.Column("display_name_key", sa.String(length=160), nullable=True))
    op.create_index("ix_readers_display_name_key", "readers", ["display_name_key"], unique=True)

    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("edited_at", sa.DateTime(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["parent_id"], ["comments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index(
        "ix_comments_listing", "comments", ["article_id", "parent_id", "status", "created_at"]
    )
    op.create_index("ix_comments_reader_id", "comments", ["reader_id"])
    op.create_index("ix_comments_parent_id", "comments", ["parent_id"])

    op.create_table(
        "comment_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("comment_id", "reader_id", name="uq_comment_reports_comment_reader"),
    )
    op.create_index("ix_comment_reports_comment_id", "comment_reports", ["comment_id"])
    op.create_index("ix_comment_reports_reader_id", "comment_reports", ["reader_id"])


def downgrade():
    op.drop_index("ix_comment_reports_reader_id", table_name="comment_reports")
    op.drop_index("ix_comment_reports_comment_id", table_name="comment_reports")
    op.drop_table("comment_reports")
    op.drop_index("ix_comments_parent_id", table_name="comments")
    op.drop_index("ix_comments_reader_id", table_name="comments")
    op.drop_index("ix_comments_listing", table_name="comments")
    op.drop_table("comments")
    op.drop_index("ix_readers_display_name_key", table_name="readers")
    with op.batch_alter_table("readers") as batch_op:
        batch_op.drop_column("display_name_key")
        batch_op.drop_column("display_name")
