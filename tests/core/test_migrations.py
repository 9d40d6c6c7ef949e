"""Upgrading a database that holds readers keeps what they own, on SQLite and PostgreSQL.

``test_schema`` proves the migrated schema matches the models; these tests prove the
way there loses nothing. SQLite alters a table by copying it: with foreign keys on,
dropping the old ``readers`` table would cascade to every consent and sign-in.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, make_url, text
from support.settings import DATABASES, SECRET

from auth_service import create_app
from auth_service.extensions import db

BEFORE_SESSIONS = "0004_outbox_waiting_index"


@pytest.fixture(params=DATABASES)
def empty_database(request, tmp_path) -> Iterator[str]:
    """A database with no tables at all: a new SQLite file, or a new PostgreSQL one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
        return
    server = make_url(request.getfixturevalue("postgres_url"))
    name = f"upgrade_{secrets.token_hex(4)}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def _migrate(url: str, tmp_path, revision: str, *, down: bool = False) -> None:
    """Run the project's migrations on ``url`` up (or down) to ``revision``."""
    app = create_app({"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    app.instance_path = str(tmp_path / "instance")
    with app.app_context():
        directory = app.extensions["migrate"].directory
        (downgrade if down else upgrade)(directory=directory, revision=revision)
        db.engine.dispose()


def test_upgrading_keeps_every_consent_and_sign_in_and_gives_each_reader_a_public_id(
    empty_database, tmp_path
):
    _migrate(empty_database, tmp_path, BEFORE_SESSIONS)
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO readers (id, email, alternative_id, locale, created_at, is_staff) "
                "VALUES (1, 'a@example.com', 'alt-a', 'fr', '2026-01-01', false), "
                "(2, 'b@example.com', 'alt-b', 'en', '2026-01-02', false)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO newsletter_consents "
                "(reader_id, newsletter_id, consented_at, wording, source) VALUES "
                "(1, 1, '2026-01-01', 'oui', '/a'), (1, 1, '2026-01-03', 'oui', '/b'), "
                "(2, 1, '2026-01-02', 'yes', '/c')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO sign_in_events (reader_id, at, method, user_agent, network) "
                "VALUES (1, '2026-01-01', 'link', 'ua', ''), (2, '2026-01-02', 'code', 'ua', '')"
            )
        )
    engine.dispose()

    _migrate(empty_database, tmp_path, "head")

    engine = create_engine(empty_database)
    with engine.connect() as connection:
        consents = connection.execute(
            text(
                "SELECT reader_id, source, withdrawn_at IS NULL FROM newsletter_consents "
                "ORDER BY id"
            )
        ).all()
        sign_ins = connection.execute(text("SELECT count(*) FROM sign_in_events")).scalar()
        public_ids = connection.execute(text("SELECT public_id FROM readers")).scalars().all()
    engine.dispose()
    # The second open consent of reader 1 (a double submission) is closed, not deleted.
    assert [tuple(row) for row in consents] == [(1, "/a", True), (1, "/b", False), (2, "/c", True)]
    assert sign_ins == 2
    assert len(set(public_ids)) == 2 and all(len(value) >= 20 for value in public_ids)

    _migrate(empty_database, tmp_path, BEFORE_SESSIONS, down=True)
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM newsletter_consents")).scalar() == 3
    engine.dispose()


BEFORE_COMMENTS = "0008_webhook_events"


def test_comments_come_and_go_without_touching_readers(empty_database, tmp_path):
    _migrate(empty_database, tmp_path, BEFORE_COMMENTS)
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO readers (id, email, public_id, locale, created_at, is_staff) "
                "VALUES (1, 'a@example.com', 'pub-a', 'fr', '2026-01-01', false)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO sign_in_events (reader_id, at, method, user_agent, network) "
                "VALUES (1, '2026-01-01', 'link', 'ua', '')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO articles (id, slug, title, kicker, standfirst, body_html, "
                "opening_html, image_url, image_caption, image_credit, image_alt, tags, "
                "access, published_at, updated_at) VALUES (1, 'a', 'A', '', '', '', '', "
                "'', '', '', '', '[]', 'public', '2026-01-01', '2026-01-01')"
            )
        )
    engine.dispose()

    _migrate(empty_database, tmp_path, "head")
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE readers SET display_name = 'Al', display_name_key = 'al' WHERE id = 1")
        )
        connection.execute(
            text(
                "INSERT INTO comments (public_id, article_id, reader_id, body, status, "
                "created_at) VALUES ('c1', 1, 1, 'Bonjour', 'visible', '2026-01-02')"
            )
        )
    engine.dispose()

    _migrate(empty_database, tmp_path, BEFORE_COMMENTS, down=True)
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT email FROM readers")).scalars().all() == [
            "a@example.com"
        ]
        assert connection.execute(text("SELECT count(*) FROM sign_in_events")).scalar() == 1
    engine.dispose()
