"""Property-based attacks: arbitrary text, bytes and unicode at every field and parameter.

Hypothesis throws at each form field and query parameter: any unicode text (control and
format characters, combining marks, separators, long strings up to ~5,000 characters),
arbitrary bytes (as raw form bodies, raw query strings, and percent-encoded into one
field), and address-like text built to fall on both sides of email-validator's line.
The properties, on SQLite and on PostgreSQL:

- the service never answers 5xx and never shows a trace (defence: the forms' own
  validation, ``safe_next``, the bounded token reader, and the error pages of
  ``errors.py``);
- no mail is ever queued for an address ``normalise_address`` refuses (defence: the
  address check of ``LoginForm.validate_email`` before anything is issued);
- a valid address gets exactly one mail, or the typo page, the refusal page or the
  honeypot's decoy, never two mails (defence: the one ``issue`` + ``queue`` per post);
- what is stored or echoed as ``next`` is a path of this site (defence: ``safe_next``).

Surrogate code points are left out: a Python ``str`` may hold them, but no browser can
send them (they have no UTF-8 form), so they never reach the service.

Hypothesis runs many examples inside one test, with the test's function-scoped
fixtures: the ``function_scoped_fixture`` health check is suppressed on purpose, and
each example counts the outbox before and after instead of assuming it empty.
"""

from __future__ import annotations

import functools
import random
import re
import unicodedata
import warnings
from html import unescape
from urllib.parse import quote, quote_from_bytes, urlsplit

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support.web import csrf_token
from werkzeug.test import EnvironBuilder
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Request

from auth_service.articles import store
from auth_service.articles.store import import_articles
from auth_service.auth import abuse
from auth_service.auth.addresses import InvalidAddress, normalise_address, transport_address
from auth_service.cli import demo_articles
from auth_service.extensions import db
from auth_service.models import LoginAttempt, OutboxMessage, Reader
from auth_service.storable import is_storable

with warnings.catch_warnings():
    # Hypothesis imports this module to print a patch when a property fails. Where
    # libcst is installed, the import raises a DeprecationWarning (mypy_extensions) from
    # inside a pytest hook; with filterwarnings=error that turns a failing property into
    # an INTERNALERROR that stops the whole run. Importing it here, quietly, avoids that.
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst absent: Hypothesis skips the patch, nothing to do
        pass

# Bounded: 60 examples a test. A failure is shrunk to one small example of the first
# bug met (shrinking several at once, and "explaining" them, takes minutes per test).
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
FEWER = settings(PROPERTY, max_examples=30)

FORM = "application/x-www-form-urlencoded"
READER_ADDRESS = "lectrice@example.com"

# --- Strategies ------------------------------------------------------------------------

# Every code point a browser can send: Python's ``str`` minus the surrogates.
ANY_CHARACTER = st.characters(codec="utf-8")
# The characters that break naive code: C0/C1 controls (NUL, CR, LF, ESC…), format
# characters (zero-width, bidi overrides), separators, and combining marks.
TRICKY_CHARACTER = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"])


def _repeated(text: str, times: int) -> str:
    """``text`` repeated: long strings without making Hypothesis build them one by one."""
    return text * times


LONG_TEXT = st.one_of(
    st.builds(_repeated, st.text(ANY_CHARACTER, min_size=1, max_size=12), st.integers(200, 420)),
    st.text(ANY_CHARACTER, min_size=2000, max_size=5000),
)
TEXT = st.one_of(
    st.text(ANY_CHARACTER, max_size=80),
    st.text(TRICKY_CHARACTER, max_size=40),
    st.text(st.one_of(ANY_CHARACTER, TRICKY_CHARACTER), max_size=300),
    LONG_TEXT,
)
# A field of an ordinary form post: anything, or left out / empty like a browser does.
FIELD = st.one_of(st.none(), st.just(""), TEXT)

# Where an open redirect or a URL parser would trip: other hosts, schemes, backslashes,
# IPv6 literals (balanced or not), and text made of what URL parsers give meaning to.
RISKY_STARTS = [
    "/", "//", "/\\", "\\\\evil", "/%2F", "javascript:", "https://evil.example",
    "//evil.example", "http://[::1]", "//[", "https://]",
]  # fmt: skip
URL_TEXT = st.text(st.sampled_from("/\\:@[]?#%.;&=+ ab1"), max_size=24)
URL_LIKE = st.builds("{}{}".format, st.sampled_from(RISKY_STARTS), st.one_of(URL_TEXT, TEXT))
NEXT = st.one_of(URL_LIKE, FIELD)

LETTERS = st.characters(categories=["Ll", "Lu", "Lo", "Nd"])
LABEL = st.text(LETTERS, min_size=1, max_size=12)
# Addresses on both sides of the line: RFC-valid ones (some email-validator refuses,
# for special-use domains or quoting), internationalised ones, typos of common
# domains, disposable domains, padding and case, and text that merely has an "@".
ADDRESS_LIKE = st.one_of(
    st.emails(),
    st.builds("{}@{}.{}".format, LABEL, LABEL, st.sampled_from(["fr", "com", "org", "de"])),
    st.builds(
        "{}@{}".format,
        st.text(ANY_CHARACTER, min_size=1, max_size=70),
        st.sampled_from(
            [
                "gmial.com",
                "gmail.con",
                "hotmial.fr",
                "yahooo.fr",
                "mailinator.com",
                "example.com",
                "exämple.fr",
                "xn--exmple-cua.fr",
            ]
        ),
    ),
    st.builds(
        "{}{}{}".format,
        st.text(TRICKY_CHARACTER, max_size=3),
        st.sampled_from(["Reader@Example.COM", "a+tag@example.org", "jean@gmial.com"]),
        st.text(TRICKY_CHARACTER, max_size=3),
    ),
    st.builds("{}@{}".format, TEXT, TEXT),
    TEXT,
)
BYTES = st.one_of(st.binary(max_size=200), st.binary(min_size=1000, max_size=4000))


# --- Helpers ------------------------------------------------------------------------


def outbox_size() -> int:
    """How many mails the outbox holds right now."""
    return db.session.scalar(select(func.count(OutboxMessage.id)))


def newest_mails(count: int) -> list[OutboxMessage]:
    """The ``count`` most recently queued mails."""
    return list(
        db.session.scalars(
            select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(count)
        ).all()
    )


def assert_calm(response) -> None:
    """Not a server error and no trace, whatever was sent."""
    assert response.status_code < 500, response.status_code
    assert b"Traceback" not in response.data


def valid_address(typed: str | None) -> str | None:
    """What ``normalise_address`` makes of ``typed``, or ``None`` if it refuses it."""
    try:
        return normalise_address(typed or "")
    except InvalidAddress:
        return None


def is_site_path(target: str) -> bool:
    """Whether ``target`` stays on this site: a path, no scheme, no host, no tricks."""
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. "//[": not a URL anyone should be sent to
        return False
    return (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(char) < 32 for char in target)
        and not parts.scheme
        and not parts.netloc
    )


def form_as_received(body: bytes) -> dict[str, str]:
    """The form fields the service reads from ``body``, parsed by werkzeug as it does."""
    environ = EnvironBuilder(method="POST", data=body, content_type=FORM).get_environ()
    return Request(environ).form.to_dict(flat=True)


def refused_as_unstorable(response, values) -> bool:
    """Whether a value sent holds text PostgreSQL cannot store (a NUL): the answer must
    then be the input guard's 400, before any view (defence: ``security.check_input``)."""
    if all(is_storable(value) for value in values if isinstance(value, str)):
        return False
    # 413: a body over MAX_CONTENT_LENGTH is refused before anything reads it.
    assert response.status_code in (400, 413), response.status_code
    return True


def assert_mail_rule(response, fields: dict, before: int) -> None:
    """No mail for an invalid address; one mail, a typo page, a refusal or the decoy.

    ``fields`` are the form fields as the service received them.
    """
    if refused_as_unstorable(response, fields.values()):
        event("unstorable text: refused")
        assert outbox_size() == before
        return
    if response.status_code == 413:
        # A body over MAX_CONTENT_LENGTH (long fields, in UTF-8) is refused unread.
        event("body too large: refused")
        assert outbox_size() == before
        return
    queued = outbox_size() - before
    address = valid_address(fields.get("email"))
    if address is None:
        event("invalid address: nothing sent")
        assert queued == 0, f"{queued} mail(s) queued for invalid {fields.get('email')!r}"
        return
    assert queued in (0, 1), f"{queued} mails for one post"
    if queued == 1:
        event("valid address: one mail")
        assert response.status_code == 303
        assert not fields.get("website"), "the honeypot was filled, yet a mail went out"
        (mail,) = newest_mails(1)
        assert mail.to_address == transport_address(address)
        attempt = db.session.scalars(
            select(LoginAttempt).order_by(LoginAttempt.created_at.desc()).limit(1)
        ).one()
        assert is_site_path(attempt.next_url), attempt.next_url
        return
    if fields.get("website"):  # the honeypot: the usual answer, nothing sent
        event("valid address: honeypot decoy")
        assert response.status_code == 303
        return
    body = response.get_data(as_text=True)
    suggestion = None if fields.get("as_typed") else abuse.suggest_correction(address)
    if suggestion:
        event("valid address: typo page")
        assert response.status_code == 200
        assert 'class="suggestion"' in body
        return
    event("valid address: refused")
    assert abuse.refusal(address), f"valid {address!r} got no mail and no explanation"
    assert response.status_code == 422


def post_fields(client, path: str, fields: dict, token: str):
    """Post ``fields`` (``None`` values left out, as a browser leaves out empty boxes)."""
    data = {key: value for key, value in fields.items() if value is not None}
    return client.post(path, data={**data, "csrf_token": token}, content_type=FORM)


def fresh_randomness(test):
    """Run each example with the global ``random`` seeded from the system.

    Hypothesis seeds the global ``random`` to the same value at the start of every
    example (and restores it after). ``email.utils.make_msgid``, which gives each
    mail its Message-ID, draws from that generator: two examples within the same
    hundredth of a second would then queue two mails with one Message-ID, and the
    outbox's UNIQUE constraint would fail. No production process replays its random
    state like this, so each example starts from fresh entropy instead.
    """

    @functools.wraps(test)
    def run(*args, **kwargs):
        random.seed()
        return test(*args, **kwargs)

    return run


# --- Fixtures -----------------------------------------------------------------------


@pytest.fixture
def token(client) -> str:
    """The CSRF token of ``client``, read once from the sign-in form."""
    return csrf_token(client)


@pytest.fixture
def articles(app) -> list[str]:
    """The demo articles, so that real slugs exist beside the arbitrary ones."""
    import_articles(demo_articles())
    return [item["slug"] for item in demo_articles() if store.find(item["slug"])]


@pytest.fixture
def signed_in(reader, client) -> dict:
    """``client`` signed in as a reader; holds the CSRF token of the account page."""
    state = {"token": ""}

    def sign_in_again() -> None:
        response = reader.sign_in(READER_ADDRESS)
        assert response.status_code == 303
        state["token"] = csrf_token(client, "/account")

    state["again"] = sign_in_again
    sign_in_again()
    return state


# --- POST /login ----------------------------------------------------------------------


@PROPERTY
@given(
    email=ADDRESS_LIKE,
    newsletter=FIELD,
    next_url=NEXT,
    website=st.one_of(st.none(), st.just(""), TEXT),
    as_typed=st.one_of(st.none(), st.just(""), st.just("y"), TEXT),
)
@fresh_randomness
def test_login_form_never_fails_and_mails_only_valid_addresses(
    client, token, email, newsletter, next_url, website, as_typed
):
    fields = {
        "email": email,
        "newsletter": newsletter,
        "next": next_url,
        "website": website,
        "as_typed": as_typed,
    }
    before = outbox_size()
    response = post_fields(client, "/login", fields, token)
    assert_calm(response)
    received = {key: value for key, value in fields.items() if value is not None}
    assert_mail_rule(response, received, before)


@PROPERTY
@given(email=st.one_of(st.emails(), ADDRESS_LIKE), honeypot=st.booleans(), as_typed=st.booleans())
@fresh_randomness
def test_valid_address_gets_one_mail_or_an_explanation_never_two(
    client, token, email, honeypot, as_typed
):
    """Focused on valid addresses, which the general test reaches less often."""
    fields = {
        "email": email,
        "website": "x" if honeypot else "",
        "as_typed": "y" if as_typed else "",
    }
    before = outbox_size()
    response = post_fields(client, "/login", fields, token)
    assert_calm(response)
    assert_mail_rule(response, fields, before)


@PROPERTY
@given(raw=BYTES)
@fresh_randomness
def test_raw_bytes_as_the_login_body_never_fail_nor_mail_an_invalid_address(client, token, raw):
    """Arbitrary bytes after the CSRF field: invalid UTF-8, stray ``&`` and ``=``, NULs."""
    body = b"csrf_token=" + quote(token).encode() + b"&" + raw
    before = outbox_size()
    response = client.post("/login", data=body, content_type=FORM)
    assert_calm(response)
    fields = form_as_received(body)
    if fields.get("csrf_token") == token:
        assert_mail_rule(response, fields, before)
    else:  # the bytes overrode or broke the token: refused before anything is read
        assert outbox_size() == before


@PROPERTY
@given(
    field=st.sampled_from(["email", "newsletter", "next", "website", "as_typed"]),
    raw=BYTES,
)
@fresh_randomness
def test_percent_encoded_bytes_in_any_login_field_never_fail(client, token, field, raw):
    """Any bytes, percent-encoded into one field, beside a valid address when it is not
    the address field itself."""
    body = (
        f"csrf_token={quote(token)}&{field}=".encode()
        + quote_from_bytes(raw, safe="").encode()
        + (b"" if field == "email" else b"&email=reader%40example.com")
    )
    before = outbox_size()
    response = client.post("/login", data=body, content_type=FORM)
    assert_calm(response)
    assert_mail_rule(response, form_as_received(body), before)


# --- GET /login?next= and raw query strings ----------------------------------------------

NEXT_FIELD = re.compile(r'<input type="hidden" name="next" value="([^"]*)">')


def args_as_received(query: str) -> dict[str, str]:
    """The query parameters the service reads from ``query``, parsed by werkzeug."""
    return Request(EnvironBuilder(query_string=query).get_environ()).args.to_dict(flat=True)


def quoted(strategy):
    """``strategy``'s text or bytes percent-encoded, as a browser puts it in a URL."""
    return strategy.map(
        lambda value: (
            quote_from_bytes(value, safe="") if isinstance(value, bytes) else quote(value, safe="")
        )
    )


ANY_NEXT_QUERY = quoted(st.one_of(URL_LIKE, TEXT, BYTES))


# Unbalanced IPv6 brackets in the host part: found by these properties, kept as
# explicit examples so that every run tries them.
IPV6_TRIPS = ["//[", "https://]x", "//evil.example[/"]


@PROPERTY
@given(next_url=ANY_NEXT_QUERY)
@example(next_url=quote(IPV6_TRIPS[0], safe=""))
@example(next_url=quote(IPV6_TRIPS[1], safe=""))
@fresh_randomness
def test_login_page_keeps_only_a_next_on_this_site(client, next_url):
    """Any ``next``, percent-encoded as browsers send it: the form keeps it only if it
    is a path of this site (defence: ``safe_next``, no open redirect), and never fails."""
    query = "next=" + next_url
    response = client.get("/login?" + query)
    assert_calm(response)
    if refused_as_unstorable(response, args_as_received(query).values()):
        return
    assert response.status_code == 200
    match = NEXT_FIELD.search(response.get_data(as_text=True))
    assert match, "the form has no hidden next field"
    kept = unescape(match.group(1))
    assert kept in ("/", args_as_received(query)["next"])
    assert is_site_path(kept), kept


@PROPERTY
@given(next_url=ANY_NEXT_QUERY)
@example(next_url=quote(IPV6_TRIPS[2], safe=""))
@fresh_randomness
def test_signed_in_reader_is_sent_only_to_a_next_on_this_site(client, signed_in, next_url):
    """A signed-in reader opening the form goes straight to ``next``: only on this site."""
    query = "next=" + next_url
    response = client.get("/login?" + query)
    assert_calm(response)
    if refused_as_unstorable(response, args_as_received(query).values()):
        return
    assert response.status_code == 303
    location = response.headers["Location"]  # as sent: werkzeug makes it a URI
    assert location == "/" or location == iri_to_uri(args_as_received(query)["next"])
    assert is_site_path(location), location


@PROPERTY
@given(next_url=st.one_of(URL_LIKE, TEXT))
@example(next_url=IPV6_TRIPS[0])
@fresh_randomness
def test_posted_next_is_kept_only_if_on_this_site(client, token, next_url):
    """``next`` posted with a valid address: the attempt keeps it only if it is a path of
    this site, which is where the link will send the reader (defence: ``safe_next``)."""
    before = outbox_size()
    response = post_fields(client, "/login", {"email": "next@example.com", "next": next_url}, token)
    assert_calm(response)
    if refused_as_unstorable(response, [next_url]):
        assert outbox_size() == before
        return
    assert response.status_code == 303
    assert outbox_size() == before + 1
    attempt = db.session.scalars(
        select(LoginAttempt).order_by(LoginAttempt.created_at.desc()).limit(1)
    ).one()
    assert attempt.next_url in ("/", next_url)
    assert is_site_path(attempt.next_url), attempt.next_url


@PROPERTY
@given(
    path=st.sampled_from(["/login", "/login/verify", "/", "/articles/x", "/account"]),
    name=st.sampled_from(["next", "token", "lang", ""]),
    raw=BYTES,
)
@example(path="/login", name="next", raw=b"\x80")
@fresh_randomness
def test_raw_bytes_in_any_query_string_never_fail(client, path, name, raw):
    """The query string as a WSGI server that follows PEP 3333 hands it over: the raw
    bytes, unescaped, as latin-1 (invalid UTF-8 included).

    Browsers percent-encode (see the tests above); werkzeug's own server re-encodes
    such bytes, and gunicorn and waitress answer 400 before the app sees them. A
    server that passes them through, or a client that bypasses those, meets this.
    """
    query = (f"{name}=".encode() if name else b"") + raw
    response = client.get(path, environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    assert_calm(response)


# --- POST /login/code -------------------------------------------------------------------


def fresh_browser(app):
    """A new browser and its CSRF token: examples that may sign in stay independent."""
    browser = app.test_client()
    return browser, csrf_token(browser)


def open_attempt(browser, token: str) -> OutboxMessage:
    """Ask for a link in ``browser``; return the mail it queued."""
    before = outbox_size()
    response = post_fields(browser, "/login", {"email": "code@example.com"}, token)
    assert response.status_code == 303
    assert outbox_size() == before + 1
    return newest_mails(1)[0]


def mailed_code(mail: OutboxMessage) -> str:
    """The 6-digit code of a sign-in mail."""
    without_link = re.sub(r"https?://\S+", "", mail.text_body)
    return re.search(r"(?<!\d)(\d{6})(?!\d)", without_link).group(1)


def mailed_token(mail: OutboxMessage) -> str:
    """The token of the sign-in link of a mail."""
    return re.search(r"token=(\S+)", mail.text_body).group(1)


@PROPERTY
@given(code=st.one_of(TEXT, st.text(st.characters(categories=["Nd"]), max_size=12)))
@fresh_randomness
def test_code_form_never_fails_and_a_wrong_code_never_signs_in(app, code):
    browser, token = fresh_browser(app)
    mailed = mailed_code(open_attempt(browser, token))
    response = post_fields(browser, "/login/code", {"code": code}, token)
    assert_calm(response)
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", code))
    if mailed not in digits:
        assert response.status_code != 303, "a code other than the mailed one signed in"
        assert browser.get("/account").status_code != 200


@FEWER
@given(raw=BYTES)
@fresh_randomness
def test_percent_encoded_bytes_as_the_code_never_fail(app, raw):
    browser, token = fresh_browser(app)
    open_attempt(browser, token)
    body = f"csrf_token={quote(token)}&code=".encode() + quote_from_bytes(raw, safe="").encode()
    response = browser.post("/login/code", data=body, content_type=FORM)
    assert_calm(response)
    assert response.status_code != 303


# --- GET and POST /login/verify ---------------------------------------------------------


def tampered(token: str, position: int, insert: str, cut: int) -> str:
    """A real token with ``cut`` characters replaced by ``insert`` at ``position``."""
    position %= len(token) + 1
    return token[:position] + insert + token[position + cut :]


@PROPERTY
@given(
    token_text=st.one_of(TEXT, st.text(st.sampled_from("ABCdef0123-_.:"), max_size=300)),
    use_real=st.booleans(),
    position=st.integers(0, 500),
    cut=st.integers(0, 3),
    post=st.booleans(),
)
@fresh_randomness
def test_link_check_never_fails_on_any_token(app, token_text, use_real, position, cut, post):
    """Arbitrary tokens, and real ones with text spliced in, by link and by button."""
    browser, token = fresh_browser(app)
    candidate = token_text
    if use_real:
        candidate = tampered(mailed_token(open_attempt(browser, token)), position, token_text, cut)
    if post:
        response = post_fields(browser, "/login/verify", {"token": candidate}, token)
    else:
        response = browser.get("/login/verify?token=" + quote(candidate, safe=""))
    assert_calm(response)


@FEWER
@given(raw=BYTES, post=st.booleans())
@fresh_randomness
def test_percent_encoded_bytes_as_the_token_never_fail(app, raw, post):
    browser, token = fresh_browser(app)
    encoded = quote_from_bytes(raw, safe="")
    if post:
        body = f"csrf_token={quote(token)}&token={encoded}".encode()
        response = browser.post("/login/verify", data=body, content_type=FORM)
    else:
        response = browser.get("/login/verify?token=" + encoded)
    assert_calm(response)
    assert response.status_code != 303


# --- Articles and ?lang= ----------------------------------------------------------------


@PROPERTY
@given(
    slug=st.one_of(
        TEXT.filter(bool),
        st.binary(min_size=1, max_size=300),
        st.sampled_from([item["slug"] for item in demo_articles()]),
    ),
    lang=FIELD,
)
@fresh_randomness
def test_article_page_answers_a_page_or_not_found_for_any_slug(client, articles, slug, lang):
    """Any slug: the article, "not found", or (for a slug holding "/", which werkzeug
    decodes into the path) its routing's redirect to the path with single slashes,
    which stays on this site."""
    encoded = quote_from_bytes(slug, safe="") if isinstance(slug, bytes) else quote(slug, safe="")
    query = "" if lang is None else "?lang=" + quote(lang, safe="")
    response = client.get(f"/articles/{encoded}{query}")
    assert_calm(response)
    received = slug if isinstance(slug, str) else slug.decode("utf-8", "replace")
    if refused_as_unstorable(response, [received, lang]):
        return
    if isinstance(slug, str) and slug in articles:
        assert response.status_code == 200
    elif response.status_code == 308:
        assert "/" in (slug if isinstance(slug, str) else slug.decode("utf-8", "replace"))
        assert urlsplit(response.headers["Location"]).netloc in ("", "localhost")
    else:
        assert response.status_code in (200, 404)


@PROPERTY
@given(
    path=st.sampled_from(["/", "/login", "/login/sent", "/healthz", "/account"]),
    lang=st.one_of(
        st.builds(quote, TEXT, safe=st.just("")),
        st.builds(quote_from_bytes, BYTES, safe=st.just("")),
        st.sampled_from(["fr", "en", "EN", "fr-FR", "de", "en%00", "fr%0d%0aSet-Cookie:%20x=1"]),
    ),
)
@fresh_randomness
def test_any_lang_parameter_gives_a_page_in_french_or_english(client, path, lang):
    """Any ``lang``, percent-encoded: a page in French or English, and the language
    cookie set only to one of the two (no header injection through the cookie)."""
    response = client.get(path + "?lang=" + lang)
    lang = args_as_received("lang=" + lang)["lang"]
    assert_calm(response)
    for cookie in response.headers.getlist("Set-Cookie"):
        if cookie.startswith("lang="):
            assert lang in ("fr", "en") and cookie.startswith(f"lang={lang};"), cookie
    if response.status_code == 200 and response.mimetype == "text/html":
        assert re.search(r'<html lang="(fr|en)"', response.get_data(as_text=True))


# --- POST /account/delete (signed in) ---------------------------------------------------

CONFIRM = st.one_of(
    TEXT,
    ADDRESS_LIKE,
    st.builds(
        "{}{}{}".format,
        st.text(st.sampled_from(" \t\n\r\u00a0\u3000"), max_size=3),
        st.sampled_from(
            [
                READER_ADDRESS,
                READER_ADDRESS.upper(),
                "lectrice@EXAMPLE.com",
                "lectrice+x@example.com",
                "lectrice@example.co",
            ]
        ),
        st.text(st.sampled_from(" \t\n\r\u00a0\u3000"), max_size=3),
    ),
)


@PROPERTY
@given(confirm=st.one_of(st.none(), CONFIRM))
@fresh_randomness
def test_account_deletion_happens_only_for_the_readers_own_address(client, signed_in, confirm):
    if client.get("/account").status_code != 200:  # an earlier example deleted it
        signed_in["again"]()
    response = post_fields(client, "/account/delete", {"confirm": confirm}, signed_in["token"])
    assert_calm(response)
    typed = (confirm or "").strip()
    own = valid_address(typed) == READER_ADDRESS
    still_there = db.session.scalar(
        select(func.count(Reader.id)).where(Reader.email == READER_ADDRESS)
    )
    if refused_as_unstorable(response, [confirm]):
        assert still_there == 1
        return
    if own:
        assert response.status_code == 303
        assert still_there == 0
    else:
        assert response.status_code == 422
        assert still_there == 1


@FEWER
@given(raw=BYTES)
@fresh_randomness
def test_percent_encoded_bytes_as_the_deletion_confirm_never_fail(client, signed_in, raw):
    if client.get("/account").status_code != 200:
        signed_in["again"]()
    body = (
        f"csrf_token={quote(signed_in['token'])}&confirm=".encode()
        + quote_from_bytes(raw, safe="").encode()
    )
    response = client.post("/account/delete", data=body, content_type=FORM)
    assert_calm(response)
