"""The news site's own server renders the article's body for registered readers.

Python's standard library and PyJWT (``pip install 'pyjwt[crypto]'``) only:

    python3 examples/news-site/verify_server.py [--port 8000] [--service URL] [--audience NAME]

Once a reader has signed in, the service sets a cookie (``reader_access``) on the news
site's parent domain: a token (a JWT) it signed. This server checks it on every view of
an article page, without calling the service: against the service's public keys (its
JWKS), fetched once and kept in memory. A valid token for a registered reader: the page
comes with the whole body, rendered here from the site's own copy
(``bodies/<slug>.html``). No token, or one that does not verify: the opening and the
embedded wall, as ``serve.py`` serves the page, so the reader can sign up right there.

The pages, the stylesheet and the Content-Security-Policy are ``serve.py``'s.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jwt
from serve import (
    DEFAULT_PORT,
    FOLDER,
    PUBLIC_SUFFIXES,
    SITE_HOST,
    WRITTEN_SERVICE,
    NewsSiteHandler,
    origin_of,
    serve_until_stopped,
)

BODIES = FOLDER / "bodies"
DEFAULT_AUDIENCE = "news-site"  # the service's default ENTITLEMENT_AUDIENCE
DEFAULT_COOKIE = "reader_access"  # the service's default ENTITLEMENT_COOKIE_NAME
# What the server hands out as files: the folder's pages, stylesheet and pictures; never
# the bodies, this script or anything else in the folder.
# The element the wall takes over, with the article it gates (as in article.html).
GATED_BODY = re.compile(
    r'<div\b[^>]*\bdata-paywall\b[^>]*\bdata-article="(?P<slug>[a-z0-9-]+)"[^>]*>.*?</div>', re.S
)


# --- Checking the cookie: the lines README.md quotes ------------------------------------


def registered_reader(token: str | None, keys, service: str, audience: str) -> dict | None:
    """The token's claims if the service signed it, for us, for a registered reader; else None."""
    if not token:
        return None
    try:
        key = keys.get_signing_key_from_jwt(token).key  # the public key its "kid" names
        # ES256 only; the issuer and the audience must match; the expiry must be there.
        claims = jwt.decode(
            token, key, ["ES256"], audience=audience, issuer=service, options={"require": ["exp"]}
        )
    except jwt.PyJWTError:  # tampered, expired, another site's, unknown key: the wall
        return None
    return claims if "registered" in claims.get("ent", []) else None


# --- The service's public keys -----------------------------------------------------------

MIN_AGE = 300  # seconds the keys are kept at least, whatever the JWKS's max-age says
MAX_AGE = 86400  # ... and at most
REFETCH_INTERVAL = 30.0  # seconds between two fetches for an unknown kid, at least
MAX_JWKS_BYTES = 1_000_000
FETCH_TIMEOUT = 5


def fetch_jwks(url: str) -> tuple[bytes, str | None]:
    """The body and the Cache-Control header of the service's JWKS."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
        return response.read(MAX_JWKS_BYTES), response.headers.get("Cache-Control")


def kept_for(cache_control: str | None) -> float:
    """How long to keep the keys: the answer's max-age, within ``MIN_AGE``–``MAX_AGE``."""
    found = re.search(r"\bmax-age=(\d+)", cache_control or "")
    return min(max(int(found.group(1)) if found else MIN_AGE, MIN_AGE), MAX_AGE)


def parse_jwks(body: bytes) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS, by kid; keys this PyJWT cannot use are left out."""
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JSON Web Key Set")
    keys = {}
    for item in document["keys"]:
        if isinstance(item, dict) and isinstance(item.get("kid"), str):
            try:
                keys[item["kid"]] = jwt.PyJWK(item)
            except jwt.PyJWTError:
                continue
    return keys


class ServiceKeys:
    """The service's public keys, kept in memory; PyJWT's ``PyJWKClient`` could stand in.

    Fetched on first use and again once the JWKS's ``max-age`` has passed; fetched at
    once when a token names a key the set lacks (the service has rotated its key), but
    not twice within ``refetch_interval`` seconds, so that tokens with made-up kids
    cannot make this server call the service on every request. When the service cannot
    be reached, the keys already fetched stay in use.
    """

    def __init__(
        self,
        url: str,
        *,
        refetch_interval: float = REFETCH_INTERVAL,
        fetch: Callable[[str], tuple[bytes, str | None]] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.refetch_interval = refetch_interval
        self.fetch = fetch
        self.clock = clock
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fresh_until = -math.inf
        self.last_refetch = -math.inf
        self.lock = threading.Lock()

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        """The public key named by the token's ``kid``; ``PyJWKClientError`` if none."""
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is None:
            raise jwt.PyJWKClientError("the token names no key")
        with self.lock:
            now = self.clock()
            if now >= self.fresh_until:
                self._refresh(now)
            elif kid not in self.keys and now - self.last_refetch >= self.refetch_interval:
                self.last_refetch = now
                self._refresh(now)
            key = self.keys.get(kid)
        if key is None:
            raise jwt.PyJWKClientError(f"the service publishes no key {kid!r}")
        return key

    def _refresh(self, now: float) -> None:
        """Fetch the JWKS; on failure keep the keys we have and try again a little later."""
        try:
            body, cache_control = self.fetch(self.url)
            self.keys = parse_jwks(body)
        except (OSError, ValueError) as error:
            sys.stderr.write(f"news-site: the JWKS at {self.url} could not be read: {error}\n")
            self.fresh_until = now + self.refetch_interval
            return
        self.fresh_until = now + kept_for(cache_control)


# --- The site -------------------------------------------------------------------------------


class ArticleHandler(NewsSiteHandler):
    """``serve.py``'s site, but the article pages are rendered here for each reader."""

    audience = DEFAULT_AUDIENCE
    cookie_name = DEFAULT_COOKIE
    keys: ServiceKeys

    def send_head(self):
        """A page (the body rendered in for a registered reader), or a public file."""
        name = self._public_file()
        if name is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        if not name.endswith(".html"):
            return super().send_head()
        page = (FOLDER / name).read_text(encoding="utf-8").replace(WRITTEN_SERVICE, self.service)
        gated = GATED_BODY.search(page)
        if gated:
            page = self._render_for_this_reader(page, gated)
        return self._send_page(page, per_reader=bool(gated))

    def _public_file(self) -> str | None:
        """The name of the folder's public file the request asks for, if there is one."""
        name = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
        if "/" in name or "\\" in name or Path(name).suffix not in PUBLIC_SUFFIXES:
            return None
        return name if (FOLDER / name).is_file() else None

    def _render_for_this_reader(self, page: str, gated: re.Match) -> str:
        """The page with the whole body for a registered reader; as it is for anyone else
        (the opening, then the wall the script puts after it)."""
        token = self._cookie()
        claims = registered_reader(token, self.keys, self.service, self.audience)
        body = BODIES / f"{gated['slug']}.html"
        if claims is None or not body.is_file():
            if token:
                self.log_message("%s", f"{self.cookie_name} refused: the wall")
            return page
        # The page needs no wall: neither its element nor its script.
        page = page.replace(f'<script src="{self.service}/embed/paywall.js" defer></script>', "")
        gated = GATED_BODY.search(page)
        rendered = f'<div class="article__body">\n{body.read_text(encoding="utf-8")}</div>'
        return page[: gated.start()] + rendered + page[gated.end() :]

    def _cookie(self) -> str | None:
        """The entitlement token the browser sent, if any."""
        try:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get(self.cookie_name)
        except CookieError:
            return None
        return morsel.value if morsel else None

    def _send_page(self, page: str, *, per_reader: bool):
        """Answer with ``page``; an article page differs by reader: no shared cache."""
        body = page.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "private, no-cache" if per_reader else "no-cache")
        if per_reader:
            self.send_header("Vary", "Cookie")
        self.end_headers()
        return io.BytesIO(body)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(description="The news site, checking the reader's token.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)))
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--service",
        default=os.environ.get("PAYWALL_SERVICE_URL", WRITTEN_SERVICE),
        help="the service's PUBLIC_URL: the tokens' issuer (default: $PAYWALL_SERVICE_URL "
        "or %(default)s)",
    )
    parser.add_argument(
        "--audience",
        default=os.environ.get("PAYWALL_AUDIENCE", DEFAULT_AUDIENCE),
        help="the service's ENTITLEMENT_AUDIENCE (default: $PAYWALL_AUDIENCE or %(default)s)",
    )
    parser.add_argument(
        "--cookie",
        default=os.environ.get("PAYWALL_COOKIE_NAME", DEFAULT_COOKIE),
        help="the service's ENTITLEMENT_COOKIE_NAME (default: $PAYWALL_COOKIE_NAME or %(default)s)",
    )
    parser.add_argument(
        "--jwks-url",
        default=os.environ.get("PAYWALL_JWKS_URL"),
        help="where this server fetches the service's keys, if not at the service's public "
        "address (default: $PAYWALL_JWKS_URL or SERVICE/.well-known/jwks.json)",
    )
    parser.add_argument(
        "--refetch-interval",
        type=float,
        default=REFETCH_INTERVAL,
        help="seconds between two fetches of the JWKS for an unknown kid (default: %(default)s)",
    )
    options = parser.parse_args(argv)
    service = options.service.rstrip("/")
    origin_of(service)  # refuse a service that is not an http(s) URL
    jwks_url = options.jwks_url or f"{service}/.well-known/jwks.json"
    origin_of(jwks_url)
    keys = ServiceKeys(jwks_url, refetch_interval=options.refetch_interval)
    handler = type(
        "Handler",
        (ArticleHandler,),
        {
            "service": service,
            "audience": options.audience,
            "cookie_name": options.cookie,
            "keys": keys,
        },
    )
    server = ThreadingHTTPServer(
        (options.bind, options.port), functools.partial(handler, directory=str(FOLDER))
    )
    port = server.server_address[1]
    print(
        f"The news site, rendering the body for registered readers: "
        f"http://{SITE_HOST}:{port}/article.html\n"
        f"Tokens: cookie {options.cookie!r}, issuer {service}, audience {options.audience!r}\n"
        f"Keys: {keys.url}\n"
        "Ctrl+C to stop.",
        flush=True,
    )
    serve_until_stopped(server)


if __name__ == "__main__":
    main()
