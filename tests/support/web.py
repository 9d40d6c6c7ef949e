"""A reader at a browser, and readers of what comes back: forms, text, calm pages, mail.

A browser is a Flask test client (its own cookies); :class:`Visitor` asks for links and
reads the mail the service queued in its outbox table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import event, select

from auth_service import create_app
from auth_service.extensions import db
from support.network import free_port
from support.settings import SECRET

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a page hands to its forms, read as a browser would."""
    page = client.get(path).get_data(as_text=True)
    match = CSRF_FIELD.search(page)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


@dataclass
class Mail:
    """A mail as the reader gets it: headers and both parts."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict = field(default_factory=dict)

    @property
    def link(self) -> str:
        """The sign-in link: the line of the text part that is only a URL."""
        return re.search(r"^(https?://\S+)$", self.text, re.MULTILINE).group(1)

    @property
    def token(self) -> str:
        """The token of the sign-in link."""
        return self.link.split("token=", 1)[1]

    @property
    def code(self) -> str:
        """The first standalone 6-digit number outside the link."""
        without_link = self.text.replace(self.link, "")
        return re.search(r"(?<!\d)(\d{6})(?!\d)", without_link).group(1)


class Visitor:
    """A reader at a browser: asks for links, reads the mail the service queued."""

    def __init__(self, app, client):
        self.app = app
        self.client = client

    def ask_for_link(
        self, email: str, *, next_url: str = "/", newsletter: bool = False, client=None
    ):
        """Submit the sign-up-or-sign-in form."""
        client = client or self.client
        data = {"email": email, "next": next_url, "csrf_token": csrf_token(client)}
        if newsletter:
            data["newsletter"] = "y"
        return client.post("/login", data=data)

    def outbox(self) -> list[Mail]:
        """Every queued mail, oldest first, read from the outbox table."""
        from auth_service.models import OutboxMessage

        rows = db.session.scalars(db.select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [
            Mail(r.to_address, r.subject, r.text_body, r.html_body, dict(r.headers)) for r in rows
        ]

    def last_mail(self) -> Mail:
        """The newest queued mail."""
        mails = self.outbox()
        assert mails, "no mail was queued"
        return mails[-1]

    def sign_in(
        self, email: str = "reader@example.com", *, next_url: str = "/", newsletter: bool = False
    ):
        """Ask for a link and open it in the same browser; return the final response."""
        response = self.ask_for_link(email, next_url=next_url, newsletter=newsletter)
        assert response.status_code == 303, response.status_code
        return self.client.get(f"/login/verify?token={self.last_mail().token}")


ADDRESS = "reader@example.com"


def in_english(browser):
    """Set the language cookie to English, so messages can be read in one language."""
    browser.set_cookie("lang", "en")
    return browser


def sign_in(app, browser, email=ADDRESS, *, next_url="/", newsletter=False):
    """Sign ``browser`` in with the link of a fresh mail; return the final response."""
    return Visitor(app, browser).sign_in(email, next_url=next_url, newsletter=newsletter)


def is_signed_in(browser) -> bool:
    """Whether the account page opens for ``browser``."""
    return browser.get("/account").status_code == 200


def post_form(browser, path, data, *, page="/login"):
    """Post ``data`` to ``path`` with the CSRF token the form on ``page`` carries."""
    return browser.post(path, data={**data, "csrf_token": csrf_token(browser, page)})


def rows(model, *where) -> list:
    """Rows of ``model`` as the database holds them now."""
    db.session.rollback()  # drop anything this session cached before the requests
    return list(db.session.scalars(select(model).where(*where)))


@dataclass
class Form:
    """A form of a page: where it goes and its fields' attributes."""

    action: str
    method: str
    inputs: list[dict] = field(default_factory=list)

    def field(self, name: str) -> dict | None:
        """The attributes of the first input named ``name``."""
        return next((attrs for attrs in self.inputs if attrs.get("name") == name), None)


class _FormFinder(HTMLParser):
    """Collects forms and the inputs and buttons inside them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []

    def handle_starttag(self, tag, attrs):
        """Open a form, or add a control to the open one."""
        attrs = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append(Form(attrs.get("action", ""), attrs.get("method", "get").lower()))
        elif tag in {"input", "button", "textarea", "select"} and self.forms:
            self.forms[-1].inputs.append({"tag": tag, **attrs})


def forms_of(response, action: str) -> list[Form]:
    """The forms of the page in ``response`` that are sent to ``action``."""
    finder = _FormFinder()
    finder.feed(response.get_data(as_text=True))
    return [form for form in finder.forms if form.action == action]


def text_of(response) -> str:
    """The page as text, with character references decoded."""
    return unescape(response.get_data(as_text=True))


def assert_calm_page(response, status: int) -> None:
    """An HTML page with ``status`` that shows no stack trace and no SQL."""
    body = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, body[:300])
    assert response.mimetype == "text/html"
    assert body.lstrip().startswith("<!doctype html>")
    for leak in ("Traceback", 'File "', "sqlalchemy", "psycopg", "Werkzeug Debugger"):
        assert leak not in body


def query_of(location: str) -> dict:
    """The query parameters of a redirect target."""
    return parse_qs(urlsplit(location).query)


def app_without_database(app, monkeypatch, tmp_path):
    """The same app, pointed at a database of the same kind that does not answer."""
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path / "gone"))
    dead = (
        "sqlite:////nonexistent-folder/none.sqlite3"
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
        else f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    )
    config = {"SECRET_KEY": SECRET, "TESTING": True, "SQLALCHEMY_DATABASE_URI": dead}
    return create_app({**config, "RATELIMIT_ENABLED": False})


def session_cookie(browser) -> str | None:
    """The value of the browser's session cookie, if it has one."""
    cookie = browser.get_cookie("auth_session")
    return cookie.value if cookie else None


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements the app's engine sends meanwhile, in order (a list filled as
    they go)."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
