"""Webhooks to the publisher's CRM: ``reader.created``, ``reader.deleted``,
``newsletter.subscribed`` and ``newsletter.unsubscribed`` (docs/contract.md §9).

An event is written to ``webhook_events`` in the transaction of the change it reports,
so it exists if and only if the change does. The mail worker delivers it: claimed as
mail is, posted as JSON signed the Standard Webhooks way (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), marked sent on a 2xx, retried with the
outbox's backoff otherwise. A receiver that is down loses nothing; its ``webhook-id``
is the same on every try, so it can drop a repeat.
"""

from __future__ import annotations

import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import datetime

from flask import current_app
from sqlalchemy import exists, select, update
from standardwebhooks import Webhook

from ..extensions import db
from ..mail import outbox
from ..models import Newsletter, Reader, WebhookEvent, iso_utc, utcnow

log = logging.getLogger(__name__)

EVENTS = WebhookEvent.__table__
BATCH = 10
MAX_ERROR = 2000
# An event waits while an earlier one of the same reader is still to be delivered: a
# retried "subscribed" must not arrive after the "unsubscribed" that followed it.
_EARLIER = EVENTS.alias("earlier")
IN_ORDER = ~exists().where(
    _EARLIER.c.reader_key == EVENTS.c.reader_key,
    _EARLIER.c.id < EVENTS.c.id,
    _EARLIER.c.sent_at.is_(None),
    _EARLIER.c.failed_at.is_(None),
)


def enabled() -> bool:
    """Whether the publisher has a webhook (``PUBLISHER_WEBHOOK_URL`` and its secret)."""
    config = current_app.config
    return bool(config["PUBLISHER_WEBHOOK_URL"] and config["PUBLISHER_WEBHOOK_SECRET"])


def _reader(reader: Reader) -> dict:
    return {"id": reader.public_id, "email": reader.email}


def emit(kind: str, data: dict, now: datetime | None = None) -> None:
    """Queue one event in the caller's transaction (nothing if no webhook is set)."""
    if not enabled():
        return
    now = now or utcnow()
    db.session.add(
        WebhookEvent(
            event_id=f"evt_{secrets.token_urlsafe(18)}",
            reader_key=data["reader"]["id"],
            type=kind,
            payload={"type": kind, "timestamp": iso_utc(now), "data": data},
            created_at=now,
            next_attempt_at=now,
            attempts=0,
        )
    )
    outbox.wake_workers()


def reader_created(reader: Reader) -> None:
    emit("reader.created", {"reader": _reader(reader)})


def reader_deleted(reader: Reader) -> None:
    emit("reader.deleted", {"reader": _reader(reader)})


def subscribed(reader: Reader, letter: Newsletter) -> None:
    emit("newsletter.subscribed", {"reader": _reader(reader), "newsletter": letter.slug})


def unsubscribed(reader: Reader, letter: Newsletter) -> None:
    emit("newsletter.unsubscribed", {"reader": _reader(reader), "newsletter": letter.slug})


# --- Delivery, by the mail worker ---------------------------------------------------


def deliver_due(limit: int = BATCH) -> int:
    """Deliver the events that are due; return how many were accepted.

    Each claim, mark and failure is its own transaction, as for mail (the worker is a
    named exception to the transaction rule).
    """
    from ..mail import worker  # the worker calls us: imported here, not at the top

    if not current_app.config["PUBLISHER_WEBHOOK_URL"]:
        return 0
    claimed_at = utcnow()
    claimed = worker.claim_due(limit, now=claimed_at, table=EVENTS, also=(IN_ORDER,))
    if not claimed:
        return 0
    # Start no post late in the claim: another worker could take the event too.
    stop_at = claimed_at + worker.claim_length() / 2
    events = db.session.scalars(
        select(WebhookEvent).where(WebhookEvent.id.in_(claimed)).order_by(WebhookEvent.id)
    ).all()
    db.session.commit()
    accepted = 0
    for position, event in enumerate(events):
        if utcnow() > stop_at:
            rest = [later.id for later in events[position:]]
            db.session.execute(
                update(EVENTS).where(EVENTS.c.id.in_(rest)).values(claimed_until=None)
            )
            db.session.commit()
            break
        error = _post(event)
        now = utcnow()
        values = {"attempts": event.attempts + 1, "claimed_until": None}
        if error is None:
            # Handled: the event keeps no address (an erased reader's stays nowhere).
            values.update(sent_at=now, payload=_without_address(event.payload))
            accepted += 1
        elif values["attempts"] >= current_app.config["OUTBOX_MAX_ATTEMPTS"]:
            values.update(
                failed_at=now,
                last_error=error[:MAX_ERROR],
                payload=_without_address(event.payload),
            )
            log.error("Webhook: giving up on %s (%s): %s", event.event_id, event.type, error)
        else:
            values.update(
                next_attempt_at=now + worker.backoff(values["attempts"]),
                last_error=error[:MAX_ERROR],
            )
            log.warning("Webhook: %s not delivered (%s); will retry", event.event_id, error)
        db.session.execute(update(EVENTS).where(EVENTS.c.id == event.id).values(**values))
        db.session.commit()
    return accepted


def _without_address(payload: dict) -> dict:
    """The payload as kept once handled: the reader's id, not their address."""
    data = dict(payload.get("data") or {})
    if isinstance(data.get("reader"), dict):
        data["reader"] = {"id": data["reader"].get("id")}
    return {**payload, "data": data}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a delivery: urllib would follow it as a GET without the event
    and count the page it lands on as taken. It is an error, retried later."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(event: WebhookEvent) -> str | None:
    """Post one event, signed; ``None`` if the receiver took it (2xx), else why not."""
    config = current_app.config
    body = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
    sent_at = utcnow()
    signature = Webhook(config["PUBLISHER_WEBHOOK_SECRET"]).sign(event.event_id, sent_at, body)
    request = urllib.request.Request(
        config["PUBLISHER_WEBHOOK_URL"],
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "auth-service-webhooks",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        },
    )
    try:
        with _OPENER.open(request, timeout=config["MAIL_TIMEOUT"]) as response:
            response.read(4096)
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as refused:
        return f"HTTP {refused.code}"
    except (OSError, ValueError) as failure:  # refused, timed out, DNS, a bad URL
        return f"{type(failure).__name__}: {failure}"
