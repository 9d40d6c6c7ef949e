"""Initial schema: readers, sign-in attempts, articles, newsletters, consents, outbox.

Timestamps are naive UTC on every database (see ``models.UTCDateTime``). The daily
front-page newsletter exists from this first revision.

Revision ID: 0001_initial_schema
Revises:
Create Date: 2026-11-28 00:35:32.448370

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0001_initial_schema"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("kicker", sa.String(length=200), nullable=False),
        sa.Column("standfirst", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("opening_html", sa.Text(), nullable=False),
        sa.Column("image_url", sa.String(length=2048), nullable=False),
        sa.Column("image_caption", sa.Text(), nullable=False),
        sa.Column("image_credit", sa.String(length=500), nullable=False),
        sa.Column("image_alt", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("access", sa.String(length=16), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_articles_published_at"), ["published_at"], unique=False
        )

    op.create_table(
        "login_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("tries_left", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("next_url", sa.String(length=2048), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("newsletter", sa.Boolean(), nullable=False),
        sa.Column("newsletter_wording", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_login_attempts_email_open", ["email", "used_at"], unique=False)

    op.create_table(
        "newsletters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("description_fr", sa.Text(), nullable=False),
        sa.Column("description_en", sa.Text(), nullable=False),
        sa.Column("cadence", sa.String(length=32), nullable=False),
        sa.Column("default_opt_in", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("failed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_due", ["sent_at", "failed_at", "next_attempt_at"], unique=False
        )

    op.create_table(
        "readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("alternative_id", sa.String(length=64), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alternative_id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "newsletter_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("consented_at", sa.DateTime(), nullable=False),
        sa.Column("wording", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=2048), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletters.id"],
        ),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("newsletter_consents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_newsletter_consents_reader_id"), ["reader_id"], unique=False
        )

    op.create_table(
        "sign_in_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sign_in_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sign_in_events_reader_id"), ["reader_id"], unique=False
        )

    newsletters = sa.table(
        "newsletters",
        sa.column("slug", sa.String),
        sa.column("name_fr", sa.String),
        sa.column("name_en", sa.String),
        sa.column("description_fr", sa.Text),
        sa.column("description_en", sa.Text),
        sa.column("cadence", sa.String),
        sa.column("default_opt_in", sa.Boolean),
    )
    op.bulk_insert(
        newsletters,
        [
            {
                "slug": "daily",
                "name_fr": "La Une du jour",
                "name_en": "Today's front page",
                "description_fr": "Chaque matin, les articles de la Une dans votre boîte mail.",
                "description_en": "Every morning, the front page stories in your inbox.",
                "cadence": "daily",
                "default_opt_in": False,
            }
        ],
    )


def downgrade():
    with op.batch_alter_table("sign_in_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_events_reader_id"))

    op.drop_table("sign_in_events")
    with op.batch_alter_table("newsletter_consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_newsletter_consents_reader_id"))

    op.drop_table("newsletter_consents")
    op.drop_table("readers")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")

    op.drop_table("outbox_messages")
    op.drop_table("newsletters")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_email_open")

    op.drop_table("login_attempts")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_articles_published_at"))

    op.drop_table("articles")
