"""The bare side of bench/signed_in_page.py: a plain Flask app, with Flask-Babel and no
database, session, reader, forms or headers of ours, whose one route renders the same
template as our article page (``articles/article.html``) from constants.

Everything a template needs is a constant made once at import: the article (the demo
article named by ``BENCH_SLUG``), the signed-in reader as the templates see them, the
CSRF token, the language (``BENCH_LANG``), an empty page of comments. Our app is built
once, in memory, only to lend its template filters and its routes' names to
``url_for``; nothing of it runs per request. What our service does beyond this route is
what the benchmark measures: finding the article and the reader, the comments, the
meter, Babel's locale choice, the headers.

    gunicorn --chdir bench bare_article:app
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

from flask import Flask, render_template
from flask_babel import Babel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auth_service import create_app  # noqa: E402
from auth_service.articles.store import parse  # noqa: E402
from auth_service.cli import demo_articles  # noqa: E402
from auth_service.comments.listing import Page  # noqa: E402
from auth_service.models import Article, utcnow  # noqa: E402

SLUG = os.environ.get("BENCH_SLUG") or next(
    item["slug"] for item in demo_articles() if item["access"] == "registered"
)
LANG = os.environ.get("BENCH_LANG", "fr")
CSRF_TOKEN = "I" * 91  # the length of a Flask-WTF token, so the bytes match ours

ours = create_app(
    {"SECRET_KEY": "x" * 32, "SQLALCHEMY_DATABASE_URI": "sqlite://", "RATELIMIT_ENABLED": False}
)
app = Flask(__name__, template_folder=ours.template_folder, static_folder=ours.static_folder)
app.config.update({key: ours.config[key] for key in ("SITE_NAME", "BABEL_DEFAULT_TIMEZONE")})
app.jinja_env.filters.update(ours.jinja_env.filters)
app.jinja_env.globals.update(
    {name: value for name, value in ours.jinja_env.globals.items() if name.startswith("comment_")}
)
for rule in ours.url_map.iter_rules():
    if rule.endpoint not in ("static", "articles.article"):
        app.add_url_rule(rule.rule, rule.endpoint, methods=rule.methods)
Babel(app, locale_selector=lambda: LANG, default_translation_directories=str(
    Path(ours.root_path) / "translations"
))  # fmt: skip

ARTICLE = Article(**parse(next(item for item in demo_articles() if item["slug"] == SLUG)))
READER = SimpleNamespace(is_authenticated=True, id=1, display_name=None, is_staff=False)
CONTEXT = {
    "article": ARTICLE,
    "gated": False,
    "paywalled": ARTICLE.access == "registered",
    "metered": False,
    "meter": None,
    "wall": None,
    "comment_count": 0,
    "comments": Page([], "newest", 1, 1, READER.id, utcnow()),
    "comment_form": None,
    "current_user": READER,
    "csrf_token": lambda: CSRF_TOKEN,
    "lang": LANG,
    "this_page_in": lambda language: f"/articles/{SLUG}?lang={language}",
    "sign_in_providers": [],
}


def article(slug: str):
    """The article page's template, rendered from the constants above."""
    return render_template("articles/article.html", **CONTEXT)


app.add_url_rule("/articles/<slug>", "articles.article", article)
