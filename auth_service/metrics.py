"""Prometheus metrics at ``/metrics``, with ``prometheus-client``.

Correct with several processes: ``auth-service serve`` and ``auth-service worker`` set
``PROMETHEUS_MULTIPROC_DIR`` (one folder per machine, emptied at start), every process
writes its counts there, and a scrape of any web process adds up every process of the
machine, workers included (``multiprocess.MultiProcessCollector``). Without the folder
(``flask run``, tests) each process counts for itself.

What is counted: requests by route and status with their latency, links requested by
outcome, sign-ins by method and outcome, mails queued, sent, retried and failed; and at
each scrape, from the database, how long the oldest due message has waited.
"""

from __future__ import annotations

import ipaddress
import os
import time

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db
from .models import OutboxMessage, utcnow

REQUESTS = Counter(
    "auth_http_requests_total", "HTTP requests answered.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "auth_http_request_duration_seconds",
    "Time from the request's arrival in the app to its answer.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LINKS_REQUESTED = Counter(
    "auth_links_requested_total",
    "Requests for a sign-in link, by outcome (sent, decoy, suggest, refuse).",
    ["outcome"],
)
SIGN_INS = Counter(
    "auth_sign_ins_total",
    "Sign-in tries by method (link, code, or a provider's name) and outcome.",
    ["method", "outcome"],
)
MAILS = Counter("auth_mails_total", "Mails by event: queued, sent, retried, failed.", ["event"])

bp = Blueprint("metrics", __name__)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_sign_in(method: str, outcome: str) -> None:
    """One sign-in try: ``signed_in``, or why it was refused (``wrong_code``,
    ``expired``, ``unverified``...)."""
    SIGN_INS.labels(method, outcome).inc()


def multiprocess_folder() -> str | None:
    """The folder every process of this machine writes its counts to, if set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class OutboxCollector:
    """Read at each scrape: the age of the oldest message due and not sent."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        """One gauge, in seconds (0 when nothing waits); absent when the database is down."""
        with self.app.app_context():
            try:
                oldest = db.session.scalar(
                    select(func.min(OutboxMessage.next_attempt_at)).where(
                        OutboxMessage.sent_at.is_(None),
                        OutboxMessage.failed_at.is_(None),
                        OutboxMessage.next_attempt_at <= utcnow(),
                    )
                )
            except SQLAlchemyError:
                db.session.rollback()
                return
            finally:
                db.session.remove()
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        gauge = GaugeMetricFamily(
            "auth_outbox_oldest_due_seconds",
            "How long the oldest mail due has waited to be sent.",
        )
        gauge.add_metric([], max(age, 0.0))
        yield gauge


def _allowed() -> bool:
    """Whether this request may read the metrics: a network of ``METRICS_ALLOW_FROM``,
    or the bearer token ``METRICS_TOKEN`` when one is set."""
    token = current_app.config.get("METRICS_TOKEN")
    if token and request.headers.get("Authorization", "") == f"Bearer {token}":
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    networks = current_app.config["METRICS_ALLOW_FROM"]
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


@bp.get("/metrics")
def metrics():
    """The metrics in Prometheus' text format; 404 for whoever may not read them."""
    if not current_app.config["METRICS_ENABLED"] or not _allowed():
        abort(404)
    scrape = CollectorRegistry()
    scrape.register(OutboxCollector(current_app._get_current_object()))
    if multiprocess_folder():
        multiprocess.MultiProcessCollector(scrape)
        body = generate_latest(scrape)
    else:
        body = generate_latest(REGISTRY) + generate_latest(scrape)
    response = Response(body, mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _answered(response):
    """Count the answer under its route (the URL rule, not the path: bounded labels)."""
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    if rule == "/metrics":
        return response
    # Any token is a method to HTTP: only the known ones become labels, or a client
    # inventing methods would grow the series without end.
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(rule, method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        LATENCY.labels(rule, method).observe(time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    """Time and count every request; serve ``/metrics``."""
    app.before_request(_started)
    app.after_request(_answered)
    app.register_blueprint(bp)
