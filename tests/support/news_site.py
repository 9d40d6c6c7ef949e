"""The example news site of ``examples/news-site``: its article, and its servers started
as a publisher starts them (``serve.py``, ``verify_server.py``)."""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

from auth_service import create_app
from auth_service.articles.store import import_articles, sanitise
from auth_service.cli import demo_articles
from auth_service.extensions import db
from support.settings import REPOSITORY, SECRET

EXAMPLE = REPOSITORY / "examples" / "news-site"
SLUG = "train-de-nuit-port-ardent-montcalvel"
ARTICLE = next(item for item in demo_articles() if item["slug"] == SLUG)
START_TIMEOUT = 15


def paragraphs(article: dict) -> list[str]:
    """The plain text of each paragraph of an article's (sanitised) body."""
    found = re.findall(r"<p\b[^>]*>(.*?)</p>", sanitise(article["body_html"]), re.DOTALL)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", item)).split()) for item in found]


# The start of the second paragraph: the first words a signed-out reader must not get.
GATED_WORDS = paragraphs(ARTICLE)[1][:80]


def import_demo_articles(database_url: str) -> None:
    """Load the demo articles into the live server's database, as ``demo`` does."""
    app = create_app({"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        import_articles(demo_articles())
        db.session.remove()
        db.engine.dispose()


def start_example_server(
    script: str, port: int, arguments: list[str], log: Path
) -> subprocess.Popen:
    """Start one of the example's servers on ``port`` and wait until it answers."""
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE / script), "--port", str(port), *arguments],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{script} did not start:\n{log.read_text()}") from None
            time.sleep(0.05)


def serve_example_site(port: int, service_url: str, log: Path) -> subprocess.Popen:
    """Start ``examples/news-site/serve.py`` and wait until it answers."""
    return start_example_server("serve.py", port, ["--service", service_url], log)


def example_module(name: str) -> ModuleType:
    """A script of the example imported as a module (``verify_server``), as the scripts
    import one another: from their own folder."""
    spec = importlib.util.spec_from_file_location(f"news_site_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLE))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLE))
    return module
