"""The commands: articles import, worker --once, db upgrade, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

from sqlalchemy import create_engine, func, inspect, select
from support.articles import ARTICLE
from support.network import free_port

from auth_service.extensions import db
from auth_service.models import Article, OutboxMessage


def write(tmp_path, items) -> str:
    """Write an import file and return its path."""
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return str(path)


def test_import_creates_then_updates_by_slug_and_sanitises(runner, tmp_path):
    result = runner.invoke(args=["articles", "import", write(tmp_path, [ARTICLE])])
    assert result.exit_code == 0, result.output
    assert "1 created, 0 updated" in result.output
    changed = {**ARTICLE, "title": "Un article corrigé"}
    result = runner.invoke(args=["articles", "import", write(tmp_path, [changed])])
    assert "0 created, 1 updated" in result.output
    article = db.session.scalar(select(Article))
    assert article.title == "Un article corrigé"
    assert "<script" not in article.body_html and "onclick" not in article.body_html
    assert "javascript:" not in article.body_html
    assert article.opening_html == "<p>Premier paragraphe.</p>"


def test_import_of_a_bad_file_stores_nothing_and_names_the_article(runner, tmp_path):
    bad = {**ARTICLE, "slug": "second", "access": "premium"}
    result = runner.invoke(args=["articles", "import", write(tmp_path, [ARTICLE, bad])])
    assert result.exit_code != 0
    assert "article 2" in result.output and "access" in result.output
    assert db.session.scalar(select(func.count(Article.id))) == 0


def test_import_of_a_file_that_is_not_json_says_so(runner, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("[{", encoding="utf-8")
    result = runner.invoke(args=["articles", "import", str(path)])
    assert result.exit_code != 0 and "not valid JSON" in result.output


def test_import_refuses_unsafe_image_urls(runner, tmp_path):
    bad = {**ARTICLE, "image": {"url": "javascript:alert(1)"}}
    result = runner.invoke(args=["articles", "import", write(tmp_path, [bad])])
    assert result.exit_code != 0 and "image.url" in result.output


def test_worker_once_drains_the_outbox_into_the_dev_mailbox(runner, reader, app):
    reader.ask_for_link("one@example.com")
    reader.ask_for_link("two@example.com")
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "sent 2" in result.output
    assert len(list(app.instance_path and os.scandir(f"{app.instance_path}/mailbox"))) == 2
    unsent = select(func.count(OutboxMessage.id)).where(OutboxMessage.sent_at.is_(None))
    assert db.session.scalar(unsent) == 0


def test_db_upgrade_builds_the_schema_from_nothing(tmp_path):
    database = tmp_path / "fresh.sqlite3"
    environment = {
        **os.environ,
        "AUTH_SERVICE_SECRET_KEY": "k",
        "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
        "AUTH_SERVICE_INSTANCE_PATH": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "auth_service", "db", "upgrade"],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    engine = create_engine(f"sqlite:///{database}")
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "readers",
        "login_attempts",
        "articles",
        "newsletters",
        "newsletter_consents",
        "outbox_messages",
        "sign_in_events",
        "alembic_version",
    } <= tables


def test_demo_serves_the_journey_from_an_empty_folder(tmp_path):
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("AUTH_SERVICE_")
    }
    environment["AUTH_SERVICE_INSTANCE_PATH"] = str(tmp_path / "instance")
    demo = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from auth_service.cli import main; main()",
            "demo",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        front = _get_when_up(f"http://127.0.0.1:{port}/")
        assert "/articles/" in front
        mailbox = _get_when_up(f"http://127.0.0.1:{port}/dev/mailbox/")
        assert "<h1>" in mailbox
    finally:
        demo.terminate()
        output = demo.communicate(timeout=10)[0]
    assert f"http://127.0.0.1:{port}/" in output
    assert (tmp_path / "instance" / "auth_service.sqlite3").exists()


def _get_when_up(url: str, attempts: int = 100) -> str:
    """GET ``url``, waiting for the server to come up (bounded)."""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_import_with_a_non_string_access_names_the_article(runner, tmp_path):
    bad = {**ARTICLE, "access": ["public"]}
    result = runner.invoke(args=["articles", "import", write(tmp_path, [bad])])
    assert result.exit_code != 0 and "access" in result.output
    assert "Traceback" not in result.output
