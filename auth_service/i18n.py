"""Languages: French by default, English on request.

The reader's choice comes from ``?lang=``, then the language cookie, then the
browser's Accept-Language header. The JSON API answers in the language its caller
asks for (``Accept-Language``): the wall in a news site's page speaks that page's
language, whatever was last chosen on the service's own pages.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask, current_app, request
from flask_babel import format_date, format_time, get_locale

from .errors import API_PREFIX
from .extensions import babel
from .security import cookie_attributes

ONE_YEAR = 365 * 24 * 3600


def select_locale() -> str:
    """The language of this request."""
    languages = current_app.config["LANGUAGES"]
    asked = request.args.get("lang", "")
    if asked in languages:
        return asked
    if request.path.startswith(API_PREFIX) and "Accept-Language" in request.headers:
        return (
            request.accept_languages.best_match(languages)
            or current_app.config["BABEL_DEFAULT_LOCALE"]
        )
    remembered = request.cookies.get(current_app.config["LANGUAGE_COOKIE_NAME"], "")
    if remembered in languages:
        return remembered
    return (
        request.accept_languages.best_match(languages) or current_app.config["BABEL_DEFAULT_LOCALE"]
    )


def current_language() -> str:
    """The language code of the current request, as a plain string."""
    return str(get_locale() or current_app.config["BABEL_DEFAULT_LOCALE"])


def _remember_choice(response):
    """Keep a language chosen with ``?lang=`` for the reader's next pages."""
    asked = request.args.get("lang", "")
    name = current_app.config["LANGUAGE_COOKIE_NAME"]
    if asked in current_app.config["LANGUAGES"] and request.cookies.get(name) != asked:
        response.set_cookie(name, asked, max_age=ONE_YEAR, **cookie_attributes())
    return response


def this_page_in(language: str) -> str:
    """The address of this page in ``language``: the same path (under the service's
    public path prefix, if any) and query, ``lang`` swapped."""
    query = [(key, value) for key, value in request.args.items(multi=True) if key != "lang"]
    return f"{request.script_root}{request.path}?{urlencode([*query, ('lang', language)])}"


def _template_globals() -> dict:
    """Make the current language, and the way to switch it, available to every template."""
    return {"lang": current_language(), "this_page_in": this_page_in}


def format_date_local(moment) -> str:
    """A date and time in the reader's language and the site's time zone."""
    return f"{format_date(moment, 'long')}, {format_time(moment, 'short')}"


def init_app(app: Flask) -> None:
    """Attach Flask-Babel and the language cookie to ``app``."""
    babel.init_app(app, locale_selector=select_locale)
    app.after_request(_remember_choice)
    app.context_processor(_template_globals)
    app.add_template_filter(format_date_local)
