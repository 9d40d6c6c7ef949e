"""Setting the scene for newsletter tests: a day's articles, readers, sending, reading copies."""

from __future__ import annotations

import html
import re
from datetime import date
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from sqlalchemy import select

from auth_service.articles.store import import_articles
from auth_service.extensions import db
from auth_service.mail import worker
from auth_service.models import NewsletterConsent, Reader
from auth_service.newsletter import subscriptions
from support.web import csrf_token

SITE = "http://news.test"  # PUBLIC_URL in the app fixture


DAY = date(2025, 3, 10)  # a Monday, long past: the edition's day in Europe/Paris


NEXT_DAY = date(2025, 3, 11)


EMPTY_DAY = date(2025, 3, 12)  # nothing was published that day


def article(slug: str, title: str, published_at: str, **extra) -> dict:
    """One article of the import format, with a photo on this site."""
    return {
        "slug": slug,
        "title": title,
        "kicker": "Essai",
        "standfirst": f"Le chapeau de « {title} ».",
        "body_html": "<p>Premier paragraphe.</p><p>La suite, pour les inscrits.</p>",
        "image": {"url": "/static/demo/train-de-nuit.svg", "caption": "Un train", "credit": "AFP"},
        "tags": ["essai"],
        "access": "registered",
        "published_at": published_at,
        **extra,
    }


# Paris is at UTC+1 in March: 23:30 UTC on the 9th is 00:30 on the 10th in Paris.
ARTICLES = [
    article("le-train-de-nuit", "Le train de nuit revient", "2025-03-10T07:30:00+01:00"),
    article("minuit-a-paris", "Minuit à Paris", "2025-03-09T23:30:00Z"),
    article("le-soir", "Le soir tombe", "2025-03-10T18:00:00+01:00", access="public"),
    article("le-lendemain", "Déjà le lendemain", "2025-03-10T23:30:00Z"),
    article("le-mardi", "Un mardi ordinaire", "2025-03-11T09:00:00+01:00"),
]


DAY_TITLES = ["Le soir tombe", "Le train de nuit revient", "Minuit à Paris"]  # newest first


NOT_THAT_DAY = ["Déjà le lendemain", "Un mardi ordinaire"]


def publish(items: list[dict] = ARTICLES) -> None:
    """Import articles as the newsroom does."""
    import_articles(items)


def daily():
    """The daily front-page newsletter, there from the first migration."""
    letter = subscriptions.newsletter("daily")
    assert letter is not None
    return letter


def new_reader(email: str, *, locale: str = "fr", subscribed: bool = True) -> Reader:
    """A reader with an account, subscribed to the daily newsletter unless told not to."""
    reader = Reader(email=email, locale=locale)
    db.session.add(reader)
    db.session.commit()
    if subscribed:
        subscriptions.subscribe(reader, daily(), wording="Recevoir La Une du jour", source="test")
        db.session.commit()
    return reader


def reader_named(email: str) -> Reader:
    """The reader who owns ``email`` now."""
    db.session.commit()  # see what the requests committed
    found = db.session.scalar(select(Reader).where(Reader.email == email))
    assert found is not None, f"no reader {email}"
    return found


def is_subscribed(email: str) -> bool:
    """Whether ``email``'s reader holds an open consent to the daily newsletter."""
    return subscriptions.open_consent(reader_named(email), daily()) is not None


def consents_of(email: str) -> list[NewsletterConsent]:
    """Every consent row of a reader, oldest first."""
    return list(
        db.session.scalars(
            select(NewsletterConsent)
            .where(NewsletterConsent.reader_id == reader_named(email).id)
            .order_by(NewsletterConsent.id)
        )
    )


def send(runner, day: date = DAY, *options: str):
    """Run ``auth-service newsletter send daily --date DAY`` and return click's result."""
    return runner.invoke(args=["newsletter", "send", "daily", "--date", day.isoformat(), *options])


def parse(envelope) -> EmailMessage:
    """An envelope's bytes as a mail client reads them."""
    content = envelope.original_content or envelope.content
    if isinstance(content, str):
        content = content.encode("utf-8")
    return BytesParser(policy=policy.default).parsebytes(content)


def newsletters_at(smtp_server) -> list[EmailMessage]:
    """Every newsletter copy the SMTP server accepted so far (sign-in mails left out)."""
    return [m for m in map(parse, smtp_server.messages) if m["List-Id"] is not None]


def newsletter_recipients(smtp_server) -> list[str]:
    """The envelope recipient of every newsletter copy accepted so far."""
    return [
        address
        for envelope in smtp_server.messages
        if parse(envelope)["List-Id"] is not None
        for address in envelope.rcpt_tos
    ]


def send_and_deliver(runner, smtp_server, day: date = DAY) -> list[EmailMessage]:
    """Queue the day's edition, deliver the outbox, return the copies that just arrived."""
    before = len(newsletters_at(smtp_server))
    result = send(runner, day)
    assert result.exit_code == 0, result.output
    worker.deliver_due()
    return newsletters_at(smtp_server)[before:]


def copy_for(copies: list[EmailMessage], email: str) -> EmailMessage:
    """The one copy addressed to ``email``."""
    found = [m for m in copies if m["To"] == email]
    assert len(found) == 1, [m["To"] for m in copies]
    return found[0]


def text_part(message: EmailMessage) -> str:
    """The plain-text part, decoded, lines as a mail client shows them."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None and part.get_content_type() == "text/plain"
    return part.get_content().replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str:
    """The HTML part, decoded."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None and part.get_content_type() == "text/html"
    return part.get_content().replace("\r\n", "\n")


def link_line(message: EmailMessage, path: str) -> str:
    """The line of the text part that is a link to ``path`` on the public site."""
    found = re.findall(rf"^({re.escape(SITE + path)}\S*)$", text_part(message), re.MULTILINE)
    assert len(found) == 1, text_part(message)
    return found[0]


def preferences_link(message: EmailMessage) -> str:
    """The signed "choose your newsletters" link of a newsletter copy."""
    return link_line(message, "/newsletter/preferences?token=")


def swap_token(link: str, token: str) -> str:
    """``link`` with another ``token=`` value."""
    return re.sub(r"token=[^&\s]+", f"token={token}", link)


def token_of(link: str) -> str:
    """The ``token=`` value of a link."""
    return re.search(r"token=([^&\s]+)", link).group(1)


def tampered(token: str) -> str:
    """``token`` with the first character of its signature changed."""
    payload, _, signature = token.rpartition(".")
    first = "A" if signature[0] != "A" else "B"
    return f"{payload}.{first}{signature[1:]}"


def label_of(page: str, input_id: str) -> str:
    """The text of the label of a form field, as the reader reads it."""
    match = re.search(rf'<label for="{input_id}">(.*?)</label>', page, re.DOTALL)
    assert match, f"no label for {input_id}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def is_ticked(page: str, input_id: str) -> bool:
    """Whether a checkbox starts ticked."""
    match = re.search(rf'<input[^>]*\bid="{input_id}"[^>]*>', page)
    assert match, f"no box {input_id}"
    return re.search(r"\schecked\b", match.group(0)) is not None


def form_actions(page: str) -> list[str]:
    """The ``action`` of every form on a page, unescaped."""
    return [html.unescape(action) for action in re.findall(r'<form[^>]*action="([^"]*)"', page)]


def save_choices(client, page: str, chosen: list[str]):
    """Tick exactly ``chosen`` in the newsletter form of ``page`` and submit it."""
    data = {"csrf_token": csrf_token(client, page), "newsletter": chosen}
    action = "/account/newsletters" if page == "/account" else page
    return client.post(action, data=data)


def unsubscribe_header_links(message) -> list[str]:
    """The addresses between angle brackets of ``List-Unsubscribe``."""
    return re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
