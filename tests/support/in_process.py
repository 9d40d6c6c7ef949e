"""The service in the test's own process, for browser tests that also read its database:
an app public at a port chosen first, and werkzeug's threaded server for it in a thread.

(Race tests need several processes: they use ``support.live``'s gunicorn instead.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

from auth_service import create_app
from auth_service.articles.store import import_articles
from auth_service.extensions import db
from support.settings import SECRET


@contextmanager
def app_at(
    database_url: str, port: int, folder: Path, articles: list[dict], **settings
) -> Iterator[Flask]:
    """The app on ``database_url``, public at http://127.0.0.1:``port`` (so that links and
    callbacks lead the browser back to the server), with ``articles`` imported; its
    application context stays open for the test's queries."""
    application = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "RATELIMIT_ENABLED": False,
            **settings,
        }
    )
    application.instance_path = str(folder / "instance")
    Path(application.instance_path).mkdir(exist_ok=True)
    with application.app_context():
        import_articles(articles)
        yield application
        db.session.remove()
        db.engine.dispose()


@contextmanager
def served(app: Flask, port: int) -> Iterator[str]:
    """``app`` on a threaded HTTP server at 127.0.0.1:``port``; yields its base URL."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
