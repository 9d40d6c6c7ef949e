"""A real OpenID Connect provider for the tests: ``tests/node/provider.mjs`` under Node.

The provider is the npm package ``oidc-provider`` (v9), installed by
``npm ci --prefix tests/node``. It listens on 127.0.0.1, serves discovery, JWKS, the
authorization code flow with PKCE (S256) required for every client, and the scopes
``openid email profile``; ``email``, ``email_verified`` and ``name`` are in the ID token.
Every requested scope is granted without a consent page.

Its sign-in page (``GET /interaction/<uid>``) is one form, ``form#login-form``, that posts
to ``/interaction/<uid>/login``:

* ``input[name="login"]`` (``#login``): the key of an account in ``config["accounts"]``;
* ``input[name="password"]`` (``#password``): ignored unless the account has a
  ``"password"``;
* ``button[type="submit"]`` (``#login-submit``).

An unknown login (or a wrong password) shows the form again, status 401, with
``#login-error``. The link ``a#cancel`` (``/interaction/<uid>/abort``) sends the browser
back to the client's ``redirect_uri`` with ``error=access_denied``.

A test starts one with :func:`start_provider` (or the :func:`oidc_provider_factory`
fixture) and signs in with a browser, or with :func:`login_with_requests`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

NODE_FOLDER = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_FOLDER / "provider.mjs"
START_TIMEOUT = 20.0  # seconds for the provider to print READY
STOP_TIMEOUT = 5.0  # seconds for it to exit on SIGTERM before it is killed
REQUEST_TIMEOUT = 10.0  # seconds for one HTTP request of the helpers below
LOGIN_FORM_ID = "login-form"
LOGIN_FIELD = "login"
PASSWORD_FIELD = "password"
LOGIN_ERROR_ID = "login-error"
CANCEL_ID = "cancel"


class ProviderError(RuntimeError):
    """The provider did not start, or answered something the helpers did not expect."""


class LoginRejected(ProviderError):
    """The provider showed its sign-in form again: unknown login or wrong password."""


class Provider:
    """A running ``provider.mjs``: its issuer, its log, and :meth:`stop`.

    Also a context manager: ``with start_provider(config) as provider: ...`` stops it at
    the end of the block.
    """

    def __init__(
        self, process: subprocess.Popen, issuer: str, folder: Path, owns_folder: bool
    ) -> None:
        self.process = process
        self.issuer = issuer
        self.folder = folder
        self._owns_folder = owns_folder
        self._final_log: str | None = None

    @property
    def port(self) -> int:
        """The TCP port it listens on, on 127.0.0.1."""
        port = urlsplit(self.issuer).port
        assert port is not None
        return port

    def url(self, path: str) -> str:
        """An absolute URL on the provider, e.g. ``url("/.well-known/openid-configuration")``."""
        return urljoin(self.issuer + "/", path.lstrip("/"))

    def discovery(self) -> dict:
        """The provider's metadata, read from ``/.well-known/openid-configuration``."""
        with requests.Session() as session:
            response = session.get(
                self.url("/.well-known/openid-configuration"), timeout=REQUEST_TIMEOUT
            )
            response.raise_for_status()
            return response.json()

    def log_text(self) -> str:
        """What the provider wrote to stderr: warnings, errors it reported, tracebacks."""
        if self._final_log is not None:
            return self._final_log
        return _read(self.folder / "stderr.log")

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL after ``STOP_TIMEOUT``); idempotent."""
        if self._final_log is not None:
            return
        _end(self.process)
        self._final_log = _read(self.folder / "stderr.log")
        if self._owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _read(path: Path) -> str:
    """A log file's text, or "" when it does not exist."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _end(process: subprocess.Popen) -> None:
    """Terminate ``process`` and reap it, killing it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_provider(
    config: dict, *, log_dir: Path | None = None, timeout: float = START_TIMEOUT
) -> Provider:
    """Start ``provider.mjs`` with ``config`` and return it once it printed ``READY``.

    ``config`` is what the script reads from ``OIDC_PROVIDER_CONFIG``: ``port`` (0, the
    default, picks a free one), optional ``issuer``, ``clients`` (oidc-provider client
    metadata: ``client_id``, ``client_secret``, ``redirect_uris``,
    ``token_endpoint_auth_method``...) and ``accounts`` (login -> ``email``,
    ``email_verified``, ``name``, optional ``password``).

    Its stdout and stderr go to ``stdout.log`` and ``stderr.log`` in ``log_dir`` (kept)
    or in a temporary folder (removed at :meth:`Provider.stop`). Raises
    :class:`ProviderError`, with the provider's stderr, when it exits or is not ready
    within ``timeout`` seconds.
    """
    node = shutil.which("node")
    if node is None:
        raise ProviderError("node is not on PATH; the OIDC provider needs Node.js")
    if not (NODE_FOLDER / "node_modules" / "oidc-provider").is_dir():
        raise ProviderError(
            f"oidc-provider is not installed in {NODE_FOLDER}; run npm ci --prefix tests/node"
        )
    owns_folder = log_dir is None
    folder = Path(tempfile.mkdtemp(prefix="oidc-provider-")) if log_dir is None else log_dir
    folder.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "OIDC_PROVIDER_CONFIG": json.dumps({"port": 0, **config}),
        "NO_COLOR": "1",
    }
    with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            [node, str(SCRIPT)],
            cwd=NODE_FOLDER,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    deadline = time.monotonic() + timeout
    while True:
        for line in _read(folder / "stdout.log").splitlines():
            if line.startswith("READY "):
                return Provider(process, line.split(" ", 1)[1].strip(), folder, owns_folder)
        problem = None
        if process.poll() is not None:
            problem = f"exited with status {process.returncode} before it was ready"
        elif time.monotonic() > deadline:
            problem = f"was not ready within {timeout:g} s"
        if problem:
            _end(process)
            log = _read(folder / "stderr.log")
            if owns_folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise ProviderError(f"the OIDC provider {problem}; its stderr:\n{log}")
        time.sleep(0.05)


@pytest.fixture
def oidc_provider_factory(tmp_path: Path) -> Iterator[Callable[[dict], Provider]]:
    """A function that starts providers (see :func:`start_provider`); all stop at teardown.

    Register it by importing it into a test module or a conftest::

        from support.oidc_provider import oidc_provider_factory  # noqa: F401

    Each provider's logs stay in the test's ``tmp_path``.
    """
    started: list[Provider] = []

    def start(config: dict) -> Provider:
        provider = start_provider(config, log_dir=tmp_path / f"oidc-provider-{len(started)}")
        started.append(provider)
        return provider

    yield start
    for provider in reversed(started):
        provider.stop()


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)``, the challenge by S256."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# --- Signing in without a browser -------------------------------------------------


class _Page(HTMLParser):
    """The forms (by id: action and fields) and links (by id: href) of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict] = {}
        self.links: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self._form: dict | None = None
        self._text_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = {"action": attributes.get("action", ""), "fields": {}}
            self.forms[attributes.get("id", "")] = self._form
        elif tag == "input" and self._form is not None and attributes.get("name"):
            self._form["fields"][attributes["name"]] = attributes.get("value", "")
        elif tag == "a" and attributes.get("id"):
            self.links[attributes["id"]] = attributes.get("href", "")
        elif attributes.get("id"):
            self._text_id = attributes["id"]
            self.texts[self._text_id] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        self._text_id = None

    def handle_data(self, data: str) -> None:
        if self._text_id is not None:
            self.texts[self._text_id] += data


def _parse(html: str) -> _Page:
    """The forms and links of ``html``."""
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _origin(url: str) -> tuple[str, str]:
    """Scheme and host:port of ``url``."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _walk(session: requests.Session, response: requests.Response, provider: tuple[str, str]):
    """Follow redirects while they stay on the provider.

    Returns ``(url, None)`` for a redirect that leaves the provider (the client's
    callback; not requested), or ``(url, response)`` for the page the walk ends on.
    """
    for _ in range(20):
        if not response.is_redirect:
            return response.url, response
        target = urljoin(response.url, response.headers["Location"])
        if _origin(target) != provider:
            return target, None
        response = session.get(target, allow_redirects=False, timeout=REQUEST_TIMEOUT)
    raise ProviderError(f"too many redirects, last at {response.url}")


def _unexpected(url: str, response: requests.Response) -> ProviderError:
    """An error naming the page the provider showed instead of the expected one."""
    return ProviderError(
        f"the provider answered {response.status_code} at {url}:\n{response.text[:2000]}"
    )


def _login_page(session: requests.Session, authorize_url: str) -> tuple[str, str | None, _Page]:
    """Open ``authorize_url`` and follow the provider's redirects to its sign-in page.

    Returns ``(url, left, page)``: ``left`` is the client URL when the provider sent the
    browser straight back (an error such as a missing ``code_challenge``), else ``None``
    and ``page`` is the sign-in page found at ``url``.
    """
    provider = _origin(authorize_url)
    first = session.get(authorize_url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
    url, response = _walk(session, first, provider)
    if response is None:
        return url, url, _Page()
    page = _parse(response.text)
    if LOGIN_FORM_ID not in page.forms:
        raise _unexpected(url, response)
    return url, None, page


def login_with_requests(authorize_url: str, login: str, password: str = "") -> str:
    """Sign in at the provider as ``login`` with a fresh ``requests`` session.

    Opens ``authorize_url`` (the provider's authorization endpoint with the client's
    parameters), fills ``form#login-form`` (``login``, ``password``), submits it and
    follows the provider's own redirects, not the last one to the client. Returns that
    last URL: the client's ``redirect_uri`` with ``code``, ``state`` and ``iss``, or with
    ``error=...`` when the provider refused the request before any sign-in (e.g. no
    ``code_challenge``). Raises :class:`LoginRejected` for an unknown login or a wrong
    password, :class:`ProviderError` for any other page.
    """
    with requests.Session() as session:
        page_url, left, page = _login_page(session, authorize_url)
        if left is not None:
            return left
        form = page.forms[LOGIN_FORM_ID]
        fields = {**form["fields"], LOGIN_FIELD: login, PASSWORD_FIELD: password}
        response = session.post(
            urljoin(page_url, form["action"]),
            data=fields,
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )
        url, response = _walk(session, response, _origin(authorize_url))
        if response is None:
            return url
        again = _parse(response.text)
        if LOGIN_FORM_ID in again.forms:
            reason = again.texts.get(LOGIN_ERROR_ID, "").strip() or "no reason shown"
            raise LoginRejected(f"the provider refused the login {login!r}: {reason}")
        raise _unexpected(url, response)


def cancel_with_requests(authorize_url: str) -> str:
    """Open ``authorize_url`` with a fresh ``requests`` session and press Cancel.

    Follows the sign-in page's ``a#cancel`` link (``/interaction/<uid>/abort``) and the
    provider's redirects, not the last one. Returns the client's ``redirect_uri`` with
    ``error=access_denied``, ``error_description=End-User aborted interaction``,
    ``state`` and ``iss``.
    """
    with requests.Session() as session:
        page_url, left, page = _login_page(session, authorize_url)
        if left is not None:
            return left
        if CANCEL_ID not in page.links:
            raise ProviderError(f"no a#{CANCEL_ID} on the sign-in page at {page_url}")
        response = session.get(
            urljoin(page_url, page.links[CANCEL_ID]),
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )
        url, response = _walk(session, response, _origin(authorize_url))
        if response is None:
            return url
        raise _unexpected(url, response)
