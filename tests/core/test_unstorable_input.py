"""Text the database cannot store is refused with a 4xx on every route, and in every file.

PostgreSQL text holds neither a NUL character nor a lone UTF-16 surrogate (it has no
UTF-8 form): psycopg raises on either, so ``?n=%00`` was a 500 on PostgreSQL where
SQLite stored the NUL. Defence: the guard of ``auth_service.security`` refuses such text
in the query string, the path, the form fields and a JSON body before any view runs (the
calm error page, or a JSON error for a JSON request); the articles and subscribers
imports refuse it in the file, naming where, and store nothing.

The sweeps walk ``app.url_map`` at run time, every rule and method, so that a route added
later (or the sign-in and account routes being rewritten now) is covered without a change
here. Each form request carries a valid CSRF token, and each refusal is checked for the
guard's own message, so what is proven is the NUL path, not the CSRF one.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text as sa_text
from sqlalchemy.exc import StatementError
from support.web import assert_calm_page

from auth_service.articles.store import import_articles
from auth_service.cli import demo_articles, unsubscribe_mail_command
from auth_service.extensions import db
from auth_service.models import Article, NewsletterConsent, Reader
from auth_service.newsletter import subscriptions
from auth_service.storable import first_unstorable, is_storable, shown_where

PREVIEW_KEY = "preview-key-0123456789"
WEBHOOK_SECRET = "hook-secret-0123456789"
SETTINGS = pytest.mark.settings(
    DEV_MODE=True,  # the dev mailbox's routes are swept too
    NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY,
    MAIL_EVENTS_SECRET=WEBHOOK_SECRET,
)
# Sent with every request: the staff preview and the webhook then reach their views.
TRUSTED = {"X-API-Key": PREVIEW_KEY, "X-Webhook-Secret": WEBHOOK_SECRET, "Accept-Language": "en"}
REFUSAL_TITLE = "Text that cannot be saved"
REFUSAL_SENTENCE = "contains a character that cannot be saved"

# Query parameters the views read, and one they do not.
QUERY_NAMES = ["n", "token", "date", "next", "lang", "unread-parameter"]
# Fields of the forms, in case a page that shows one cannot be reached; the pages' own
# fields are added at run time.
FORM_NAMES = {
    "email",
    "newsletter",
    "next",
    "code",
    "token",
    "confirm",
    "website",
    "page",
    "as_typed",
    "List-Unsubscribe",
    "unread-field",
}
# Tables a refused request must leave as they were. The session and rate-limit tables
# are left out: refreshing a session is not writing what was sent.
WRITTEN_TABLES = [
    "readers",
    "login_attempts",
    "outbox_messages",
    "newsletter_consents",
    "suppressions",
    "sign_in_events",
    "articles",
    "editions",
]
STRING_CONVERTERS = {"UnicodeConverter", "PathConverter"}
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- Walking the routes -----------------------------------------------------------------


def routes(app, *, path_value: str = "x"):
    """(method, path) for every rule and method; string path arguments get ``path_value``,
    others a value their converter accepts."""
    for rule in app.url_map.iter_rules():
        values = {}
        for name, converter in rule._converters.items():
            kind = type(converter).__name__
            values[name] = path_value if kind in STRING_CONVERTERS else _plain_value(kind)
        path = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - {"OPTIONS"}):
            yield method, path, rule


def _plain_value(kind: str) -> str:
    """A value for a converter that is not a string one."""
    return {
        "IntegerConverter": "1",
        "FloatConverter": "1.0",
        "UUIDConverter": "00000000-0000-0000-0000-000000000000",
    }.get(kind, "x")


class _FieldNames(HTMLParser):
    """The names of the controls of every form of a page, by the form's action."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.by_action: dict[str, set[str]] = {}
        self.action = None

    def handle_starttag(self, tag, attrs):
        """Open a form, or note the name of a control of the open one."""
        attrs = dict(attrs)
        if tag == "form":
            self.action = (attrs.get("action") or "").split("?")[0]
            self.by_action.setdefault(self.action, set())
        elif tag in {"input", "button", "textarea", "select"} and self.action is not None:
            if attrs.get("name") and attrs["name"] != "csrf_token":  # sent valid, always
                self.by_action[self.action].add(attrs["name"])


def field_names(app, client) -> dict[str, set[str]]:
    """The field names of every form the GET routes show this browser, by action."""
    finder = _FieldNames()
    for method, path, _rule in routes(app):
        if method == "GET":
            finder.feed(client.get(path).get_data(as_text=True))
    account = app.extensions["sqlalchemy"].session.scalar(db.select(Reader))
    if account is not None:  # the pages of the newsletter links
        token = subscriptions.token_for_public_id(account.public_id)
        for path in (
            f"/newsletter/preferences?token={token}",
            f"/newsletter/unsubscribe?n=daily&token={token}",
        ):
            finder.feed(client.get(path).get_data(as_text=True))
    finder.feed(client.get("/login/sent").get_data(as_text=True))
    return finder.by_action


def form_token(client) -> str:
    """A valid CSRF token for this browser, read from a page with a form."""
    for page in ("/login", "/account"):
        match = CSRF_FIELD.search(client.get(page).get_data(as_text=True))
        if match:
            return match.group(1)
    raise AssertionError("no page shows this browser a CSRF token")


def snapshot() -> dict:
    """What the requests may have written, table by table."""
    db.session.rollback()
    return {
        table: db.session.execute(sa_text(f"SELECT * FROM {table} ORDER BY 1")).all()
        for table in WRITTEN_TABLES
    }


def send(browser, problems: list[str], label: str, *args, **kwargs):
    """One request; an exception the app let out (a 500 in production) is a problem."""
    try:
        return browser.open(*args, **kwargs)
    except Exception as error:  # TESTING propagates what production answers with a 500
        problems.append(f"{label}: raised {type(error).__name__}: {str(error)[:100]}")
        db.session.rollback()
        return None


def refusal_problem(response, *, as_json: bool) -> str | None:
    """What is wrong with ``response`` as the guard's refusal; ``None`` if nothing."""
    if response is None:
        return None  # already noted by send()
    if response.status_code != 400:
        return f"status {response.status_code}"
    if response.request.method == "HEAD":
        return None
    if as_json or response.request.path.startswith("/api/"):  # the API answers JSON
        body = response.get_json(silent=True) or {}
        if REFUSAL_SENTENCE not in str(body.get("error")):
            return f"JSON body {str(body)[:120]}"
        return None
    page = response.get_data(as_text=True)
    if response.mimetype != "text/html" or REFUSAL_TITLE not in page:
        return f"not the refusal page: {page[:120]!r}"
    return None


def assert_no_problems(problems: list[str]) -> None:
    """Fail with the first problems found, one per line."""
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


@pytest.fixture
def published(app):
    """The demo articles, so that article pages and their wall exist."""
    import_articles(demo_articles())


@pytest.fixture(params=[False, True], ids=["signed-out", "signed-in"])
def browser(request, app, reader, client, published):
    """The browser of the sweep: a reader who asked for a link, signed in or not."""
    if request.param:
        reader.sign_in("sweeper@example.com", newsletter=True)
    else:
        reader.ask_for_link("sweeper@example.com", newsletter=True)
    client.signed_in = request.param
    return client


def still_signed_in(client) -> bool:
    """Whether the account page still opens for this browser."""
    return client.get("/account").status_code == 200


# --- The sweeps ---------------------------------------------------------------------------


@SETTINGS
def test_nul_in_any_path_argument_is_refused(app, browser):
    """Defence: the input guard of ``security.py`` (the path's arguments), on every rule
    and method of ``app.url_map``; nothing written, the reader still signed in or not."""
    before = snapshot()
    problems = []
    for method, path, rule in routes(app, path_value="a\x00b"):
        if not set(rule.arguments) & {
            name for name, c in rule._converters.items() if type(c).__name__ in STRING_CONVERTERS
        }:
            continue
        assert "%00" in path, path
        label = f"{method} {path}"
        # A form's valid token, so that the answer is the guard's, not the CSRF check's.
        data = None if method in ("GET", "HEAD") else {"csrf_token": form_token(browser)}
        response = send(browser, problems, label, path, method=method, data=data, headers=TRUSTED)
        if problem := refusal_problem(response, as_json=False):
            problems.append(f"{label}: {problem}")
    assert_no_problems(problems)
    assert snapshot() == before
    assert still_signed_in(browser) == browser.signed_in


@pytest.mark.parametrize(
    "path", ["/no/such/page%00", "/articles/a/b%00", "/articles/a%00//b", "/%00"], ids=repr
)
def test_nul_in_a_path_that_matches_no_route_is_refused_too(client, path):
    """Defence: the guard looks at the whole path when no route matched (a 404 or a
    redirect to come): the same answer on every path."""
    response = client.get(path, headers={"Accept-Language": "en"})
    assert refusal_problem(response, as_json=False) is None


@SETTINGS
def test_nul_in_any_query_parameter_is_refused(app, browser):
    """Defence: the input guard of ``security.py`` (the query string), on every rule and
    method, with a valid CSRF token on the forms; nothing written."""
    form = {"csrf_token": form_token(browser)}  # a form posted with its valid token
    before = snapshot()
    problems = []
    for method, path, _rule in routes(app):
        data = None if method in ("GET", "HEAD") else form
        for name in QUERY_NAMES:
            url = f"{path}?n=daily&{quote(name)}=a%00b"
            label = f"{method} {url}"
            response = send(
                browser, problems, label, url, method=method, data=data, headers=TRUSTED
            )
            if problem := refusal_problem(response, as_json=False):
                problems.append(f"{label}: {problem}")
    assert_no_problems(problems)
    assert snapshot() == before
    assert still_signed_in(browser) == browser.signed_in


@SETTINGS
@pytest.mark.parametrize("value", ["\x00", "a\x00b", "reader@example.com\x00"], ids=repr)
def test_nul_in_any_form_field_is_refused_even_with_a_valid_form_token(app, browser, value):
    """Defence: the input guard of ``security.py`` (form fields): every field of the
    route's forms and one they do not have, beside a valid CSRF token; nothing written."""
    names = field_names(app, browser)
    token = form_token(browser)
    before = snapshot()
    problems = []
    for method, path, _rule in routes(app):
        if method in ("GET", "HEAD"):
            continue
        for name in sorted(FORM_NAMES | names.get(path, set())):
            label = f"{method} {path} field {name!r}"
            data = {"csrf_token": token, name: value}
            response = send(
                browser, problems, label, path, method=method, data=data, headers=TRUSTED
            )
            if problem := refusal_problem(response, as_json=False):
                problems.append(f"{label}: {problem}")
    assert_no_problems(problems)
    assert snapshot() == before
    assert still_signed_in(browser) == browser.signed_in


def json_bodies(names: set[str]):
    """JSON bodies holding a NUL or a lone surrogate: in a value, a key, deep in a list."""
    for name in sorted(names):
        yield {name: "\u0000"}
        yield {name: "a\ud800b"}
    yield ["fine", {"address": "x@example.com", "event": "bounce", "time": "\ud800"}]
    yield {"nested": [[{"deeper": ["\udfff"]}]]}
    yield {"key\u0000": "value"}
    yield "\u0000"


@SETTINGS
def test_nul_or_a_lone_surrogate_in_any_json_body_is_refused_as_json(app, browser):
    """Defence: the input guard of ``security.py`` (a JSON body, keys and values at any
    depth): a JSON error body naming where; nothing written."""
    names = field_names(app, browser)
    headers = {**TRUSTED, "X-CSRFToken": form_token(browser)}
    before = snapshot()
    problems = []
    for method, path, _rule in routes(app):
        if method in ("GET", "HEAD"):
            continue
        for body in json_bodies(FORM_NAMES | names.get(path, set())):
            label = f"{method} {path} {json.dumps(body)[:80]}"
            response = send(
                browser, problems, label, path, method=method, json=body, headers=headers
            )
            if problem := refusal_problem(response, as_json=True):
                problems.append(f"{label}: {problem}")
    assert_no_problems(problems)
    assert snapshot() == before
    assert still_signed_in(browser) == browser.signed_in


# --- Over-long values: whatever the answer, never a 5xx -----------------------------------

LONG_QUERY_VALUE = "a" * 100_000
LONG_FIELD_VALUE = "a" * 60_000  # under MAX_CONTENT_LENGTH (64 KiB) with the other fields


def assert_calm(response, where: str, problems: list[str]) -> None:
    """Note a 5xx, or a page that shows a trace."""
    if response is None:
        return  # already noted by send()
    body = response.get_data(as_text=True)
    if response.status_code >= 500 or "Traceback" in body or "psycopg" in body:
        problems.append(f"{where}: {response.status_code} {body[:120]!r}")


def keep_signed_in(browser, reader) -> None:
    """Sign in again if a request signed the browser out (a sign-out form may accept a
    long extra field: that is no bug), so that the rest of the sweep is signed in."""
    if browser.signed_in and not still_signed_in(browser):
        reader.sign_in("sweeper@example.com")


def sweep(browser, reader, problems: list[str], label: str, path: str, **request):
    """Send one over-long request, note a 5xx, stay signed in for the next one."""
    response = send(browser, problems, label, path, **request)
    assert_calm(response, label, problems)
    keep_signed_in(browser, reader)
    return response


@SETTINGS
def test_over_long_query_values_never_give_a_5xx(app, browser, reader):
    """Defence: each view's own caps (slugs, tokens, ``next``); 100 KB in any parameter
    of any route is never a 5xx."""
    assert len(LONG_QUERY_VALUE) == 100_000
    problems = []
    for method, path, _rule in routes(app, path_value="daily"):
        for name in QUERY_NAMES:
            label = f"{method} {path}?{name}=<100 KB>"
            query = {name: LONG_QUERY_VALUE}
            sweep(
                browser,
                reader,
                problems,
                label,
                path,
                method=method,
                query_string=query,
                headers=TRUSTED,
            )
    assert_no_problems(problems)


@SETTINGS
def test_over_long_form_fields_and_json_values_never_give_a_5xx(app, browser, reader):
    """Defence: the forms' own length checks, ``MAX_CONTENT_LENGTH``; 60 KB in any field
    (under the 64 KiB limit, so the views do read it) is never a 5xx."""
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024
    names = field_names(app, browser)
    problems = []
    for method, path, _rule in routes(app, path_value="daily"):
        if method in ("GET", "HEAD"):
            continue
        for name in sorted(FORM_NAMES | names.get(path, set())):
            data = {"csrf_token": form_token(browser), name: LONG_FIELD_VALUE}
            label = f"{method} {path} field {name!r}=<60 KB>"
            response = sweep(
                browser, reader, problems, label, path, method=method, data=data, headers=TRUSTED
            )
            assert response is None or response.status_code != 413, "it fits under the limit"
            headers = {**TRUSTED, "X-CSRFToken": form_token(browser)}
            label = f"{method} {path} JSON {name!r}=<60 KB>"
            sweep(
                browser,
                reader,
                problems,
                label,
                path,
                method=method,
                json={name: LONG_FIELD_VALUE},
                headers=headers,
            )
    assert_no_problems(problems)


# --- What the reader reads, and what stays unwritten --------------------------------------


def test_the_refusal_is_in_french_by_default_and_in_english_on_request(client):
    """Defence: ``errors.UnstorableText`` and ``errors.error_response``: the calm page in
    the reader's language, a JSON body for a JSON client."""
    french = client.get("/newsletter/unsubscribe?n=%00")
    assert_calm_page(french, 400)
    assert "Texte impossible à enregistrer" in french.get_data(as_text=True)
    english = client.get("/newsletter/unsubscribe?n=%00", headers={"Accept-Language": "en"})
    assert REFUSAL_TITLE in english.get_data(as_text=True)
    as_json = client.post(
        "/webhooks/mail-events", json={"address": "\u0000"}, headers={"Accept-Language": "en"}
    )
    assert as_json.status_code == 400 and as_json.is_json
    error = as_json.get_json()["error"]
    assert error == {
        "code": "unstorable_text",
        "message": error["message"],
        "where": "json",
        "field": "address",
    }
    assert REFUSAL_SENTENCE in error["message"]


@pytest.mark.parametrize("path", ["/newsletter/unsubscribe", "/newsletter/resubscribe"])
@pytest.mark.parametrize("where", ["n", "token", "extra-parameter", "form-field"])
def test_a_nul_beside_a_genuine_link_changes_no_subscription(app, client, path, where):
    """Defence: the input guard of ``security.py``. The finding: ``?n=%00`` beside a
    genuine token was a 500 on PostgreSQL; a NUL anywhere now unsubscribes nobody."""
    account = Reader(email="lea@example.com")
    db.session.add(account)
    db.session.commit()
    daily = subscriptions.newsletter("daily")
    if path.endswith("resubscribe"):
        subscriptions.unsubscribe(account, daily)
    else:
        subscriptions.subscribe(account, daily, wording="Recevoir La Une", source="test")
    db.session.commit()
    query = {"n": "daily", "token": subscriptions.token_for_public_id(account.public_id)}
    data = {"List-Unsubscribe": "One-Click"}
    if where == "form-field":
        data["page"] = "\x00"
    elif where == "extra-parameter":
        query["x"] = "\x00"
    else:
        query[where] += "\x00"
    before = snapshot()

    response = client.post(path, query_string=query, data=data)

    assert_calm_page(response, 400)
    assert snapshot() == before
    if path.endswith("unsubscribe") and where != "form-field":
        assert client.get(path, query_string=query).status_code == 400  # the button too


@pytest.mark.settings(NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY)
def test_a_nul_in_a_preview_slug_is_refused_before_any_query(app, client):
    """Defence: the input guard of ``security.py``. The finding: the staff preview of
    ``/newsletter/%00/preview`` was a 500 on PostgreSQL. Without the key it is the same
    refusal: the guard runs first."""
    for slug in ("da%00ily", "%00", "daily%00"):
        for key in (PREVIEW_KEY, "wrong"):
            response = client.get(f"/newsletter/{slug}/preview", headers={"X-API-Key": key})
            assert_calm_page(response, 400)


def test_a_form_without_its_token_is_still_refused_for_csrf(client):
    """Defence: Flask-WTF's CSRF check, still in place beside the guard: a form with no
    token and no NUL is the expired-form page, as before."""
    response = client.post("/login", data={"email": "reader@example.com"})
    assert_calm_page(response, 400)
    assert REFUSAL_TITLE not in response.get_data(as_text=True)


@SETTINGS
def test_a_json_body_to_any_form_is_a_415_and_only_the_webhook_reads_json(app, browser):
    """Defence: ``security.reads_json`` and the guard's 415. Storable JSON of every shape
    (the class of 500s where Flask-WTF read a JSON list or number as a form) to every
    route a form is posted to."""
    headers = {**TRUSTED, "X-CSRFToken": form_token(browser)}
    before = snapshot()
    problems = []
    for method, path, rule in routes(app):
        if method in ("GET", "HEAD"):
            continue
        view = app.view_functions[rule.endpoint]
        for body in (["a", "b"], "text", 12, None, {"email": {"a": 1}}, {"code": ["1"]}):
            label = f"{method} {path} {json.dumps(body)}"
            response = send(
                browser,
                problems,
                label,
                path,
                method=method,
                data=json.dumps(body),  # not json=: the test client drops json=None
                content_type="application/json",
                headers=headers,
            )
            if response is None:
                continue
            if getattr(view, "reads_json", False):
                if response.status_code >= 500:
                    problems.append(f"{label}: {response.status_code}")
            elif (
                response.status_code != 415
                or response.get_json()["error"]["code"] != "form_expected"
            ):
                problems.append(f"{label}: {response.status_code} {response.data[:80]!r}")
    assert_no_problems(problems)
    assert snapshot() == before


# --- The rule itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "storable"),
    [
        ("", True),
        ("Le Quotidien", True),
        ("📰 é \u200b \U0010ffff \ufffd \x01 \x7f", True),
        ("\x00", False),
        ("a\x00", False),
        ("\ud800", False),
        ("\udfff", False),
        ("a\udce9b", False),  # the surrogateescape form of the byte 0xE9
    ],
    ids=repr,
)
def test_storable_text_has_no_nul_and_no_lone_surrogate(text, storable):
    assert is_storable(text) is storable


def test_the_first_unstorable_string_is_found_at_any_depth_without_recursion():
    assert first_unstorable({"a": ["ok", {"b": "fine"}], "c": 1, "d": None}) is None
    assert first_unstorable("\x00") == ()
    assert first_unstorable([{"a": "ok"}, {"b": ["x", "y\ud800"]}, "\x00"]) == (1, "b", 1)
    assert first_unstorable({"k\x00": "v"}) == ("k\x00",)
    assert shown_where((0, "image", "caption")) == "[0].image.caption"
    assert shown_where(("k\x00", 2)) == "k\\u0000[2]"
    deep: list = ["\x00"]
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert first_unstorable(deep) == (0,) * 100_000 + (0,)


@given(text=st.text(st.characters(codec=None, exclude_categories=()), max_size=20))
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(text="\x00")
@example(text="\ud800")
@example(text="\U0001f4f0")
def test_the_rule_is_exactly_what_postgresql_accepts(app, text):
    """Defence: ``storable.is_storable``. On PostgreSQL, the rule is checked against the
    server itself; on SQLite (which stores anything) it is what the guard enforces, so
    the two databases agree."""
    if db.engine.dialect.name != "postgresql":
        return
    try:
        with db.engine.connect() as connection:
            stored = connection.execute(sa_text("SELECT CAST(:t AS text)"), {"t": text}).scalar()
    except (StatementError, UnicodeEncodeError):
        stored = None
    assert is_storable(text) is (stored == text)


# --- Imported files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"title": "Le train\x00 de nuit"}, "title"),
        ({"body_html": "<p>Un \ud800 caractère</p>"}, "body_html"),
        ({"tags": ["ok", "ta\x00g"]}, "tags[1]"),
        ({"image": {"url": "/x.svg", "caption": "\udfff"}}, "image.caption"),
        ({"slug\x00": "x"}, "slug\\\\u0000"),
    ],
    ids=[
        "nul-in-title",
        "surrogate-in-body",
        "nul-in-a-tag",
        "surrogate-in-caption",
        "nul-in-a-key",
    ],
)
def test_an_articles_file_with_unstorable_text_names_it_and_stores_nothing(
    runner, tmp_path, change, named
):
    """Defence: ``articles.store._refuse_unstorable`` (the whole file, before parsing):
    a NUL was silently dropped, a lone surrogate was a traceback on PostgreSQL."""
    from support.articles import ARTICLE

    items = [ARTICLE, {**ARTICLE, "slug": "second", **change}]
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(items), encoding="utf-8")  # "\ud800" as JSON escapes it
    result = runner.invoke(args=["articles", "import", str(path)])
    assert result.exit_code != 0
    assert f"nothing imported: article 2: '{named}' holds a character" in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(db.select(db.func.count(Article.id))) == 0


def write_csv(tmp_path, content: bytes, name: bytes = b"list.csv") -> str:
    """An import file (its name as bytes: it may not be UTF-8); its path as click gets it."""
    path = os.fsencode(tmp_path) + b"/" + name
    with open(path, "wb") as handle:
        handle.write(content)
    return os.fsdecode(path)


def test_a_subscribers_csv_with_nul_rejects_those_rows_and_keeps_the_rest(runner, tmp_path):
    """Defence: ``subscribers._RowChecker.check``: a NUL in a column the import reads
    rejects its row with the reason; in a column it ignores, it is never stored."""
    path = write_csv(
        tmp_path,
        b"email,subscribed,newsletter,notes\n"
        b"nul\x00@example.com,yes,,\n"  # 2
        b"flag@example.com,y\x00es,,\n"  # 3
        b"letter@example.com,yes,dai\x00ly,\n"  # 4
        b"kept@example.com,yes,,a note with \x00 in an unread column\n",  # 5
    )
    result = runner.invoke(args=["subscribers", "import", path])
    assert result.exit_code == 0, result.output
    assert "line 2: the address holds a NUL character, which cannot be stored" in result.output
    assert "line 3: the subscribed value holds a NUL character" in result.output
    assert "line 4: the newsletter holds a NUL character" in result.output
    assert "1 subscribed (1 new readers), 0 unsubscribed, 0 unchanged, 3 rejected" in result.output
    assert "\x00" not in result.output and "Traceback" not in result.output
    assert [r.email for r in db.session.scalars(db.select(Reader))] == ["kept@example.com"]


def test_a_subscribers_file_named_in_bytes_that_are_not_utf8_is_imported(runner, tmp_path):
    """Defence: ``subscribers_cli`` decodes the name with U+FFFD. Its name, in the
    consent's wording, gets U+FFFD where PostgreSQL could not store
    the bytes' lone surrogates."""
    path = write_csv(tmp_path, b"email\nlatin@example.com\n", name=b"liste-\xe9t\xe9.csv")
    assert "\udce9" in path
    result = runner.invoke(args=["subscribers", "import", path])
    assert result.exit_code == 0, result.output
    consent = db.session.scalar(db.select(NewsletterConsent))
    assert consent.wording == "Imported from liste-\ufffdt\ufffd.csv"


def test_a_subscribers_newsletter_named_in_bytes_that_are_not_utf8_is_refused(runner, tmp_path):
    """Defence: ``subscribers._newsletter`` asks the database only about storable
    slugs (the surrogates of a Latin-1 command line were a traceback on PostgreSQL)."""
    path = write_csv(tmp_path, b"email\nsomeone@example.com\n")
    for command in (["import", path], ["export"]):
        result = runner.invoke(args=["subscribers", *command, "--newsletter", "dai\udcefly"])
        assert result.exit_code != 0
        assert "there is no newsletter 'dai\\udcefly'" in result.output
        assert "Traceback" not in result.output
    assert db.session.scalar(db.select(db.func.count(Reader.id))) == 0


def unsubscribe_mail(runner, subject: bytes):
    """Pipe a mail with this raw subject to ``newsletter unsubscribe-mail``."""
    raw = b"From: lea@example.com\r\nTo: unsubscribe@news.test\r\nSubject: " + subject
    return runner.invoke(unsubscribe_mail_command, input=raw + b"\r\n\r\nbody\x00\xff\r\n")


@pytest.fixture
def lea(app):
    """A reader subscribed to the daily newsletter; the token of her links, as bytes."""
    account = Reader(email="lea@example.com")
    db.session.add(account)
    db.session.commit()
    subscriptions.subscribe(account, subscriptions.newsletter("daily"), wording="w", source="t")
    db.session.commit()
    return account, subscriptions.token_for_public_id(account.public_id).encode()


@pytest.mark.parametrize(
    "subject",
    [
        b"unsubscribe daily \x00{token}",
        b"unsubscribe da\x00ily {token}",
        b"unsubscribe daily {token}"[:-8] + b"\x00" + b"{token}"[-2:],
        b"\xff\xfe\x00 unsubscribe \xed\xa0\x80 {token}",
        b"=?utf-8?b?dW5zdWJzY3JpYmUgZGFpbHkgAA==?= {token}",  # "unsubscribe daily \0"
    ],
    ids=["nul-before-token", "nul-in-slug", "nul-in-token", "raw-bytes", "encoded-nul"],
)
def test_a_mail_with_unstorable_text_in_the_request_unsubscribes_nobody(runner, lea, subject):
    """Defence: ``mailto.REQUEST`` captures only ASCII words; the rest is never stored."""
    account, token = lea
    result = unsubscribe_mail(runner, subject.replace(b"{token}", token))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ignored:"), result.output
    assert "Traceback" not in result.output
    assert subscriptions.open_consent(account, subscriptions.newsletter("daily")) is not None


def test_unstorable_text_around_a_genuine_request_does_not_stop_it(runner, lea):
    """Defence: ``mailto.REQUEST``. Only the request's two words reach the database: raw
    8-bit bytes (decoded to lone surrogates) and NUL elsewhere in the mail change
    nothing."""
    account, token = lea
    result = unsubscribe_mail(runner, b"Re: d\xe9sabonnement\x00 unsubscribe daily " + token)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("unsubscribed reader"), result.output
    assert subscriptions.open_consent(account, subscriptions.newsletter("daily")) is None
