"""The spam-score gate: every kind of mail the service sends, scored by SpamAssassin.

Each mail is made the way the service makes it in production: queued by the real code
path (a sign-in asked for at the login form, the day's edition queued for a subscribed
reader), delivered by the worker over real SMTP to the test's aiosmtpd server, signed
with DKIM on the way. The exact bytes the server received are scored with Debian's
SpamAssassin rules, offline (``support/spamassassin.py``: local tests only, no Bayes,
nothing learnt). Above :data:`THRESHOLD` the gate fails and lists the rules that hit;
each test prints its score and rules (``pytest -rP`` shows them for passing tests too).

The mails the service sends (``outbox.queue`` and ``queue_edition`` are the only two
ways into the outbox): the sign-in mail (one template for new and returning readers)
and the daily newsletter edition, each in French and in English.

The score does not depend on the database: these tests run on SQLite only.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from email import policy
from email.parser import BytesParser
from importlib import resources

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from support import spamassassin
from support.dkim import new_key, verified, write_key
from support.newsletter import new_reader

from auth_service.articles.store import import_articles
from auth_service.mail import worker
from auth_service.newsletter.editions import queue_edition

THRESHOLD = 1.0
# What production looks like: the service on the newspaper's site, mail from its domain.
DOMAIN = "lequotidien.example"
PUBLIC_URL = f"https://www.{DOMAIN}"
SENDER = f"no-reply@{DOMAIN}"
SELECTOR = "s2026"
DAY = date(2025, 3, 10)  # the edition's day, long past: the demo articles move to it
READERS = {"fr": "lea.dupont@example.org", "en": "sam.taylor@example.com"}

MAILS = [
    pytest.param(kind, locale, id=f"{kind}-{locale}")
    for kind in ("signin", "newsletter")
    for locale in ("fr", "en")
]


# --- The app as production runs it ----------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    """A 2048-bit RSA key in a PEM file, as ``auth-service dkim keygen`` would make."""
    key = new_key()
    return key, write_key(tmp_path_factory.mktemp("dkim") / f"{SELECTOR}.pem", key)


@pytest.fixture
def database_url(sqlite_template, tmp_path):
    """SQLite only: what SpamAssassin reads does not depend on the database."""
    path = tmp_path / "spam-score.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(smtp_server, dkim_key) -> dict:
    """Production's settings: an https site, its sender, DKIM on; mail to the test's SMTP."""
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_server.port,
        "PUBLIC_URL": PUBLIC_URL,
        "MAIL_DEFAULT_SENDER": SENDER,
        "MAIL_UNSUBSCRIBE_ADDRESS": f"unsubscribe@{DOMAIN}",
        "DKIM_SELECTOR": SELECTOR,
        "DKIM_PRIVATE_KEY_FILE": str(dkim_key[1]),
    }


# --- Making each mail ------------------------------------------------------------------


def queue_sign_in(client, locale: str) -> None:
    """A reader reading in ``locale`` asks for a link at the login form."""
    client.set_cookie("lang", locale, domain=f"www.{DOMAIN}")
    page = client.get(f"{PUBLIC_URL}/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        f"{PUBLIC_URL}/login",
        data={"email": READERS[locale], "next": "/", "csrf_token": token},
    )
    assert response.status_code == 303, response.get_data(as_text=True)


def queue_newsletter(locale: str) -> None:
    """The demo articles published on DAY, and the day's edition queued for a reader."""
    text = resources.files("auth_service").joinpath("demo/articles.json").read_text("utf-8")
    articles = json.loads(text)
    for number, article in enumerate(articles):  # one a minute from 7:00, Paris time
        article["published_at"] = f"{DAY.isoformat()}T07:{number:02d}:00+01:00"
    import_articles(articles)
    new_reader(READERS[locale], locale=locale)
    report = queue_edition("daily", DAY)
    assert (report.articles, report.queued) == (len(articles), 1)


def delivered(smtp_server) -> bytes:
    """Deliver the outbox with the worker; the bytes of the one mail the server got."""
    assert worker.deliver_due().sent == 1
    (envelope,) = smtp_server.recorder.wait_for(1)
    assert isinstance(envelope.content, bytes)
    return envelope.content


def assert_signed(data: bytes, key: rsa.RSAPrivateKey) -> None:
    """The mail carries a DKIM signature of ours that holds over these very bytes."""
    assert data.startswith(b"DKIM-Signature:"), data[:200]
    assert verified(data, key, SELECTOR, DOMAIN)


# --- The gate ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "locale"), MAILS)
def test_mail_scores_low_with_spamassassin(
    app, client, smtp_server, dkim_key, kind, locale, record_property
):
    if kind == "signin":
        queue_sign_in(client, locale)
    else:
        queue_newsletter(locale)
    data = delivered(smtp_server)
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert message["Content-Language"] == locale
    assert_signed(data, dkim_key[0])

    verdict = spamassassin.score(data)

    print(f"\n{kind}-{locale} ({message['Subject']}): {verdict.describe()}")
    # Shown in every run's summary, passing or not (tests/conftest.py).
    record_property("spam_score", verdict.score)
    record_property("spam_rules", ", ".join(f"{n} {p:g}" for n, p in verdict.rules.items()))
    assert verdict.score <= THRESHOLD, (
        f"The {kind} mail in {locale} scores {verdict.score} with SpamAssassin, above "
        f"{THRESHOLD}:\n{verdict.describe()}"
    )
    # A bonus (MAILING_LIST_MULTI gives a newsletter -1) must not hide the rest.
    penalties = sum(points for points in verdict.rules.values() if points > 0)
    assert penalties <= THRESHOLD, (
        f"The {kind} mail in {locale} gets {penalties} points of spam rules, above "
        f"{THRESHOLD}, whatever its bonuses:\n{verdict.describe()}"
    )
