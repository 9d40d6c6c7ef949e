"""Settings: defaults here, then ``AUTH_SERVICE_*`` environment variables on top."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import string
from datetime import timedelta
from email.utils import parseaddr
from urllib.parse import SplitResult, urlsplit

from flask import Flask

# What the path of PUBLIC_URL may hold: characters that need no percent-encoding, so
# that it reads the same in a URL, in PATH_INFO and in a cookie's Path.
PATH_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-._~/")


class ConfigurationError(RuntimeError):
    """A setting that would make the service misbehave: refuse to start, and say why."""


class Config:
    """Defaults for every setting. Each can be overridden by ``AUTH_SERVICE_<KEY>``."""

    SITE_NAME = "Le Quotidien"
    # The service's public base URL. Links built outside a request (mails) use it and
    # its scheme decides whether cookies are Secure.
    PUBLIC_URL = "http://127.0.0.1:5000"
    SECRET_KEY: str | None = None
    SECRET_KEY_FALLBACKS: list[str] = []
    # True for `auth-service demo` and local development: enables the dev mailbox page
    # and allows a generated secret key.
    DEV_MODE = False

    SQLALCHEMY_DATABASE_URI: str | None = None  # default: SQLite in the instance folder
    # hide_parameters: an error's log line never shows the values of a statement (a
    # signing key being stored, an address).
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True, "hide_parameters": True}

    LOGIN_TOKEN_MAX_AGE = 15 * 60
    LOGIN_CODE_TRIES = 5
    PERMANENT_SESSION_LIFETIME = timedelta(days=30)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_NAME = "auth_session"
    # A session lasts PERMANENT_SESSION_LIFETIME from its sign-in (its row says when),
    # so its cookie need not be signed and sent again with every page: only when the
    # session changes (sign-in, a new CSRF token, a language choice).
    SESSION_REFRESH_EACH_REQUEST = False
    SESSION_COOKIE_SECURE = False  # forced on when PUBLIC_URL is https
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_DURATION = timedelta(days=30)
    REMEMBER_COOKIE_SECURE = False
    ATTEMPT_COOKIE_NAME = "auth_attempts"
    # Set at sign-in: this browser has signed in with these inboxes (digests, signed).
    DEVICE_COOKIE_NAME = "auth_known"
    MAX_CONTENT_LENGTH = 64 * 1024

    MAIL_SERVER: str | None = None  # none: the dev mailbox in the instance folder
    MAIL_PORT = 25
    MAIL_USE_TLS = False
    MAIL_USE_SSL = False
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: str | None = None
    MAIL_DEFAULT_SENDER: str | None = None  # default: no-reply@<PUBLIC_URL host>
    MAIL_TIMEOUT = 30
    # A new SMTP connection after this many messages: relays often cap a session
    # (SendGrid at 100), and a fresh one costs a few milliseconds.
    MAIL_MESSAGES_PER_CONNECTION = 100
    MAIL_SUPPRESS_SEND = False  # Flask-Mail would otherwise stay silent under testing
    # DKIM (mail/dkim.py): a selector and the PEM file of its RSA key sign every mail;
    # DKIM_DOMAIN is the d= domain, by default MAIL_DEFAULT_SENDER's. Unset: unsigned.
    DKIM_SELECTOR: str | None = None
    DKIM_DOMAIN: str | None = None
    DKIM_PRIVATE_KEY_FILE: str | None = None
    # Worker: how often an idle worker looks at the outbox when nothing wakes it.
    OUTBOX_POLL_INTERVAL = 0.2
    OUTBOX_BATCH_SIZE = 100
    # How long a worker's claim on a batch lasts (at least twice the slowest send): a
    # worker that died mid-batch leaves its messages to the others after this.
    OUTBOX_CLAIM_SECONDS = 120
    OUTBOX_MAX_ATTEMPTS = 30
    OUTBOX_BACKOFF_BASE = 5  # seconds; doubles each try
    OUTBOX_BACKOFF_MAX = 3600

    BABEL_DEFAULT_LOCALE = "fr"
    BABEL_DEFAULT_TIMEZONE = "Europe/Paris"
    LANGUAGES = ["fr", "en"]
    LANGUAGE_COOKIE_NAME = "lang"

    # Whether the wall's newsletter box starts ticked. Off: consent must be given.
    NEWSLETTER_DEFAULT_OPT_IN = False
    # The mailto: of List-Unsubscribe; default unsubscribe@<PUBLIC_URL host>.
    MAIL_UNSUBSCRIBE_ADDRESS: str | None = None
    # Staff preview of editions: this key in the X-API-Key header (or a staff reader).
    NEWSLETTER_PREVIEW_KEY: str | None = None
    # Shared secret of the bounce/complaint webhook (X-Webhook-Secret); unset: disabled.
    MAIL_EVENTS_SECRET: str | None = None

    WTF_CSRF_TIME_LIMIT = None  # CSRF tokens live as long as the session
    # Flask-WTF's https check wants a same-origin Referer on every form post; the confirm
    # page is sent with Referrer-Policy: no-referrer (its URL holds a token), so its
    # button would always fail over https. The session-bound token is the defence, with
    # SameSite=Lax cookies; the Referer check added nothing a token does not.
    WTF_CSRF_SSL_STRICT = False

    # Rate limits (Flask-Limiter's own keys). Limit strings use Flask-Limiter's notation.
    # Counters live in the service's database (limit_storage.py), so every process counts
    # one allowance; redis://… shares them through Redis instead. memory:// counts per
    # process: N gunicorn workers would grant N times each limit (warned at start).
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = "auth-service-db://"
    # No X-RateLimit-* headers: they would tell anyone, to the second, when an address
    # last asked for a link. A 429 still carries Retry-After (errors.py).
    RATELIMIT_HEADERS_ENABLED = False
    RATELIMIT_KEY_PREFIX = "auth-service"
    # Redis (or the database) unreachable: fail open, not closed. Each process then
    # counts the same limits in its own memory (N processes: N times each allowance)
    # and logs a WARNING; it goes back to the shared storage once it answers again. A
    # limit store down must not stop every sign-in; the hourly ceiling of sign-in mail
    # (MAIL_HOURLY_CEILING, counted in the database) still bounds the damage.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    # Links mailed to one inbox (capitals, +tags and Gmail's dots folded), counted per
    # requesting network (/24, /48): what strangers elsewhere ask for spends nothing of
    # the reader's own allowance...
    LOGIN_LIMIT_PER_ADDRESS_AND_NETWORK = "1 per minute;5 per hour;10 per day"
    # ...under a higher ceiling for the inbox from every network together, which bounds
    # mail bombing. A browser that signed in with the address before is not held back
    # by it; one holding an open attempt for it counts its "send again" per run of
    # attempts instead, which nobody else's requests can spend.
    LOGIN_LIMIT_PER_ADDRESS = "3 per minute;15 per hour;30 per day"
    LOGIN_LIMIT_RESENDS_PER_CHAIN = "5 per day"
    LOGIN_LIMIT_PER_IP = "30 per 5 minutes"
    CHECK_LIMIT_PER_IP = "30 per 5 minutes"  # link and code checks together
    # Comments and replies a reader may send (whatever their network); refused ones count.
    COMMENT_LIMIT_PER_READER = "5 per minute;50 per day"
    # Sign-in mails the whole service may queue in an hour; 0 turns the ceiling off.
    MAIL_HOURLY_CEILING = 10_000
    # How many reverse proxies to trust for X-Forwarded-For (werkzeug's ProxyFix); 0: none.
    PROXY_FIX_X_FOR = 0
    PROXY_FIX_X_PROTO = 0
    # Trust X-Forwarded-Prefix from a proxy that strips PUBLIC_URL's path before passing
    # the request on (docs/deploy.md, deployment (b)); 0: the path must arrive whole.
    PROXY_FIX_X_PREFIX = 0

    # Bot friction. Domains refused for sign-in (subdomains included), on top of the
    # maintained list of disposable-address domains.
    BLOCKED_DOMAINS: list[str] = []
    BLOCK_DISPOSABLE_DOMAINS = True

    # Who may frame the pages (CSP frame-ancestors), e.g. "'self' https://www.news.example".
    FRAME_ANCESTORS = "'self'"

    # The news site's side (docs/contract.md §7). Origins (scheme://host[:port]) whose
    # pages may call the JSON API with the reader's cookies (CORS with credentials),
    # and where a sign-in link may send the reader back to. A list, or comma-separated.
    ALLOWED_ORIGINS: list[str] = []
    # Seconds an article read from the database serves the pages of this process:
    # changes made elsewhere show within this long (0: read it for every page).
    ARTICLE_CACHE_SECONDS = 5
    # Metering: registered articles a signed-out browser may read per period before the
    # wall shows (0: the wall from the first article). Counted in a signed cookie.
    PAYWALL_FREE_ARTICLES = 0
    PAYWALL_METER_DAYS = 30
    METER_COOKIE_NAME = "auth_meter"

    # Entitlement tokens for the news site's servers (docs/contract.md §8): a JWT in a
    # cookie on the news site's parent domain (e.g. ".news.example"; unset: no cookie).
    ENTITLEMENT_COOKIE_NAME = "reader_access"
    ENTITLEMENT_COOKIE_DOMAIN: str | None = None
    ENTITLEMENT_AUDIENCE = "news-site"  # the token's aud: what the news site checks
    ENTITLEMENT_TTL = 3600  # seconds; renewed while the reader keeps visiting
    # The publisher's CMS (docs/contract.md §9): article changes a minute per API key.
    PUBLISHER_LIMIT_PER_KEY = "120 per minute"
    # Bytes of one article pushed by the CMS (the import allows 500,000 characters of
    # body; JSON escapes can take six bytes a character).
    PUBLISHER_MAX_CONTENT_LENGTH = 4 * 1024 * 1024
    # Events for the publisher's CRM, signed the Standard Webhooks way; unset: none.
    PUBLISHER_WEBHOOK_URL: str | None = None
    PUBLISHER_WEBHOOK_SECRET: str | None = None  # "whsec_" + base64 of 24 to 64 bytes
    # Deployment (c) of docs/deploy.md, the service on another site than the news site:
    # every cookie is SameSite=None; Secure, so that the news site's pages send it.
    # Needs an https PUBLIC_URL; works only where browsers still send third-party cookies.
    CROSS_SITE_COOKIES = False

    # Social sign-in (docs/contract.md §10): OpenID Connect providers, a JSON object from
    # a short name (in URLs and the sign-in history) to {"issuer", "client_id",
    # "client_secret", "label"} and optionally "style" (google, microsoft, apple or
    # generic: whose branding the button follows), "icon" (the provider's logo from its
    # brand kit), "response_mode" ("form_post" for Apple) and "scope". Buttons show in
    # this order. The callback to register with each is PUBLIC_URL/login/with/NAME/callback.
    OIDC_PROVIDERS: dict = {}

    # Prometheus metrics at /metrics (docs/operations.md, "Observing"): for the networks
    # listed, or whoever sends "Authorization: Bearer <METRICS_TOKEN>"; 404 for others.
    METRICS_ENABLED = True
    METRICS_ALLOW_FROM: list[str] = ["127.0.0.1/32", "::1/128"]
    METRICS_TOKEN: str | None = None


def load(app: Flask, test_config: dict | None) -> None:
    """Fill ``app.config`` from the defaults, the environment, then ``test_config``."""
    app.config.from_object(Config)
    if "PUBLIC_URL" in os.environ:
        # The contract (docs/contract.md §5) names PUBLIC_URL on its own; the prefixed
        # form wins if both are set.
        app.config["PUBLIC_URL"] = os.environ["PUBLIC_URL"]
    app.config.from_prefixed_env("AUTH_SERVICE")
    if test_config:
        app.config.update(test_config)
    if isinstance(app.config["SECRET_KEY_FALLBACKS"], str):
        # Allow a comma-separated list in the environment as well as JSON.
        app.config["SECRET_KEY_FALLBACKS"] = [
            key for key in app.config["SECRET_KEY_FALLBACKS"].split(",") if key
        ]
    app.config["ALLOWED_ORIGINS"] = _origins(app.config["ALLOWED_ORIGINS"])
    app.config["METRICS_ALLOW_FROM"] = _networks(app.config["METRICS_ALLOW_FROM"])
    for key in (
        "PAYWALL_FREE_ARTICLES",
        "PAYWALL_METER_DAYS",
        "ENTITLEMENT_TTL",
        "ARTICLE_CACHE_SECONDS",
    ):
        app.config[key] = _whole_number(key, app.config[key])
    if app.config["ENTITLEMENT_TTL"] < 60:
        raise ConfigurationError("ENTITLEMENT_TTL must be at least 60 seconds.")
    _check_entitlement_domain(app)
    _check_webhook(app)
    if app.config["PAYWALL_FREE_ARTICLES"] and not app.config["PAYWALL_METER_DAYS"]:
        raise ConfigurationError(
            "PAYWALL_METER_DAYS must be at least 1 when PAYWALL_FREE_ARTICLES is set: a "
            "period of 0 days would start again on every page and never show the wall."
        )
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        app.config["SQLALCHEMY_DATABASE_URI"] = (
            f"sqlite:///{app.instance_path}/auth_service.sqlite3"
        )
    app.config["PUBLIC_URL"] = app.config["PUBLIC_URL"].rstrip("/")
    if urlsplit(app.config["PUBLIC_URL"]).scheme == "https":
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
    _scope_cookies(app)
    app.config["MAIL_DEFAULT_SENDER"] = _sender_address(app)


def _scope_cookies(app: Flask) -> None:
    """Keep Flask's cookies under ``PUBLIC_URL``'s path; make them cross-site if asked.

    ``APPLICATION_ROOT`` is left at ``/``: the WSGI middleware of ``prefix.py`` mounts
    the service at its path for each request, and Flask's test client would otherwise
    send every request as if already mounted there.
    """
    path = public_path(app)
    if path:
        app.config["SESSION_COOKIE_PATH"] = path
        app.config["REMEMBER_COOKIE_PATH"] = path
    app.config["CROSS_SITE_COOKIES"] = bool(app.config["CROSS_SITE_COOKIES"])
    if not app.config["CROSS_SITE_COOKIES"]:
        return
    if urlsplit(app.config["PUBLIC_URL"]).scheme != "https":
        raise ConfigurationError(
            "CROSS_SITE_COOKIES needs an https PUBLIC_URL: browsers drop SameSite=None "
            f"cookies that are not Secure, and {app.config['PUBLIC_URL']!r} is not https."
        )
    app.config["SESSION_COOKIE_SAMESITE"] = "None"
    app.config["REMEMBER_COOKIE_SAMESITE"] = "None"


def public_path(app: Flask) -> str:
    """The path of ``PUBLIC_URL`` (``/compte``), or ``""`` at the root of its host."""
    return _checked_path(app.config["PUBLIC_URL"])


def _checked_path(public_url: str) -> str:
    """The path of ``public_url``, without its trailing slash, if we can serve under it."""
    parts = urlsplit(public_url)
    path = parts.path.rstrip("/")
    if parts.query or parts.fragment or not set(path) <= PATH_CHARACTERS or "//" in path:
        raise ConfigurationError(
            f"PUBLIC_URL {public_url!r} cannot be served: give scheme://host[:port] and, "
            "behind a proxy, a plain path such as /compte (letters, digits, - . _ ~ /)."
        )
    return path


def _origins(configured) -> list[str]:
    """``ALLOWED_ORIGINS`` as a list of ``scheme://host[:port]``, each checked."""
    if isinstance(configured, str):
        configured = configured.split(",")
    origins = []
    for entry in configured or []:
        origin = str(entry).strip().rstrip("/")
        if not origin:
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ConfigurationError(
                f"ALLOWED_ORIGINS entry {origin!r} is not an origin; give scheme://host[:port] "
                "with no path, for example https://www.news.example."
            )
        origins.append(origin_of(parts))
    return origins


def _networks(configured) -> list[str]:
    """``METRICS_ALLOW_FROM`` as a list of networks (``10.0.0.0/8``), each checked."""
    if isinstance(configured, str):
        configured = [item.strip() for item in configured.split(",") if item.strip()]
    networks = []
    for item in configured:
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigurationError(
                f"METRICS_ALLOW_FROM entry {item!r} is not a network; give e.g. 10.0.0.0/8."
            ) from None
    return networks


def origin_of(parts: SplitResult) -> str:
    """The origin of a split URL as ``ALLOWED_ORIGINS`` holds them: ``scheme://host[:port]``,
    lower case."""
    return f"{parts.scheme}://{parts.netloc}".lower()


def _check_entitlement_domain(app: Flask) -> None:
    """The token cookie's domain must hold the service's host, or the browser would
    never send the cookie back (and every answer would sign a new token)."""
    domain = (app.config["ENTITLEMENT_COOKIE_DOMAIN"] or "").strip().lstrip(".").lower()
    if not domain:
        app.config["ENTITLEMENT_COOKIE_DOMAIN"] = None
        return
    host = (urlsplit(app.config["PUBLIC_URL"]).hostname or "").lower()
    if host != domain and not host.endswith("." + domain):
        raise ConfigurationError(
            f"ENTITLEMENT_COOKIE_DOMAIN {domain!r} must be the domain of PUBLIC_URL's host "
            f"{host!r} or a parent of it (e.g. news.example for auth.news.example)."
        )
    app.config["ENTITLEMENT_COOKIE_DOMAIN"] = domain


def _check_webhook(app: Flask) -> None:
    """The publisher's webhook: an http(s) URL and a Standard Webhooks secret."""
    url, secret = app.config["PUBLISHER_WEBHOOK_URL"], app.config["PUBLISHER_WEBHOOK_SECRET"]
    if not url and not secret:
        return
    if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigurationError(
            "PUBLISHER_WEBHOOK_URL must be an http(s) URL, set with PUBLISHER_WEBHOOK_SECRET."
        )
    try:
        key = base64.b64decode(str(secret).removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 24:
        raise ConfigurationError(
            "PUBLISHER_WEBHOOK_SECRET must be 'whsec_' and the base64 of 24 to 64 random "
            'bytes, e.g. the output of: python -c "import base64, os; '
            "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
        )


def _whole_number(key: str, value) -> int:
    """A setting that must be a whole number, zero or more."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise ConfigurationError(f"{key} must be a whole number, zero or more (got {value!r}).")
    return number


def _sender_address(app: Flask) -> str:
    """The bare From address: mails always show ``SITE_NAME`` as the name."""
    configured = app.config["MAIL_DEFAULT_SENDER"]
    if not configured:
        return f"no-reply@{public_host(app)}"
    if isinstance(configured, (list, tuple)):  # Flask-Mail's (name, address) form
        configured = configured[-1]
    _, address = parseaddr(str(configured))
    if "@" not in address or not address.isascii():
        raise ConfigurationError(
            f"MAIL_DEFAULT_SENDER {configured!r} is not an email address we can send from; "
            "give a plain ASCII address such as no-reply@news.example."
        )
    return address


def signing_keys(app: Flask) -> list[str]:
    """The secret keys for itsdangerous, oldest first: it signs with the last (current)
    one and accepts all, which is how Flask 3.1 rotates ``SECRET_KEY``."""
    return [*app.config.get("SECRET_KEY_FALLBACKS", []), app.config["SECRET_KEY"]]


def public_host(app: Flask) -> str:
    """The host name of ``PUBLIC_URL``: the domain of Message-IDs."""
    return urlsplit(app.config["PUBLIC_URL"]).hostname or "localhost"
