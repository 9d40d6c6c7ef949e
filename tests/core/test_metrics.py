"""Prometheus metrics (/metrics) and the request id, in one process (docs/operations.md,
"Observing"). Several processes adding up: tests/core/test_serve.py."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from support.settings import SECRET
from support.web import Visitor, csrf_token

from auth_service import create_app, logs
from auth_service.config import ConfigurationError
from auth_service.extensions import db
from auth_service.mail.worker import deliver_due
from auth_service.models import OutboxMessage, utcnow


def value(name: str, **labels) -> float:
    """A sample of the process's registry (0 when never counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client, **kwargs) -> str:
    answer = client.get("/metrics", **kwargs)
    assert answer.status_code == 200, answer.status_code
    assert answer.mimetype == "text/plain"
    return answer.get_data(as_text=True)


def test_requests_are_counted_by_route_and_status_with_their_latency(app, client):
    labels = {"route": "/articles/<slug>", "method": "GET", "status": "404"}
    before = value("auth_http_requests_total", **labels)
    timed = value(
        "auth_http_request_duration_seconds_count", route="/articles/<slug>", method="GET"
    )
    client.get("/articles/nothing-here")
    client.get("/articles/nor-here")
    assert value("auth_http_requests_total", **labels) == before + 2
    assert (
        value("auth_http_request_duration_seconds_count", route="/articles/<slug>", method="GET")
        == timed + 2
    )
    text = scrape(client)
    assert 'auth_http_requests_total{method="GET",route="/articles/<slug>",status="404"}' in text
    assert "auth_http_request_duration_seconds_bucket" in text


def test_unknown_paths_share_one_label(app, client):
    before = value("auth_http_requests_total", route="unmatched", method="GET", status="404")
    client.get("/no/such/page/1")
    client.get("/no/such/page/2")
    assert value("auth_http_requests_total", route="unmatched", method="GET", status="404") == (
        before + 2
    )


def test_links_sign_ins_and_mails_are_counted(app, client, smtp_server):
    sent = value("auth_links_requested_total", outcome="sent")
    signed = value("auth_sign_ins_total", method="link", outcome="signed_in")
    queued, delivered = (
        value("auth_mails_total", event="queued"),
        value("auth_mails_total", event="sent"),
    )
    Visitor(app, client).sign_in("metrique@example.com")
    deliver_due()
    assert value("auth_links_requested_total", outcome="sent") == sent + 1
    assert value("auth_sign_ins_total", method="link", outcome="signed_in") == signed + 1
    assert value("auth_mails_total", event="queued") == queued + 1
    assert value("auth_mails_total", event="sent") == delivered + 1


def test_a_wrong_code_is_counted_as_such(app, client):
    Visitor(app, client).ask_for_link("code@example.com")
    before = value("auth_sign_ins_total", method="code", outcome="wrong_code")
    client.post(
        "/login/code", data={"code": "000000", "csrf_token": csrf_token(client, "/login/sent")}
    )
    assert value("auth_sign_ins_total", method="code", outcome="wrong_code") == before + 1


def test_the_outbox_s_oldest_due_message_is_read_at_each_scrape(app, client):
    assert "auth_outbox_oldest_due_seconds 0.0" in scrape(client)
    db.session.add(
        OutboxMessage(
            message_id="<late@news.test>",
            to_address="late@example.com",
            subject="s",
            text_body="t",
            html_body="h",
            next_attempt_at=utcnow() - timedelta(seconds=90),
        )
    )
    db.session.commit()
    line = next(
        line for line in scrape(client).splitlines() if line.startswith("auth_outbox_oldest_due")
    )
    assert 90 <= float(line.split()[1]) < 120


def test_metrics_are_not_found_from_elsewhere(app, client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 404


@pytest.mark.settings(METRICS_TOKEN="a-long-metrics-token-0123456789")
def test_a_scraper_elsewhere_reads_them_with_the_token(app, client):
    elsewhere = {"REMOTE_ADDR": "203.0.113.9"}
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/metrics", environ_base=elsewhere, headers=wrong).status_code == 404
    right = {"Authorization": "Bearer a-long-metrics-token-0123456789"}
    assert "auth_mails_total" in scrape(client, environ_base=elsewhere, headers=right)


@pytest.mark.settings(METRICS_ALLOW_FROM="10.0.0.0/8, 192.168.1.0/24")
def test_the_allowed_networks_come_from_a_setting(app, client):
    assert client.get("/metrics").status_code == 404  # 127.0.0.1 is not listed any more
    assert scrape(client, environ_base={"REMOTE_ADDR": "10.1.2.3"})


@pytest.mark.settings(METRICS_ENABLED=False)
def test_metrics_can_be_turned_off(app, client):
    assert client.get("/metrics").status_code == 404


def test_a_wrong_network_stops_the_service_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="METRICS_ALLOW_FROM"):
        create_app({"SECRET_KEY": SECRET, "METRICS_ALLOW_FROM": ["not-a-network"]})


@pytest.mark.parametrize(
    "sent, kept",
    [
        ("nginx-7f3a9c2e-0001", True),
        ("a" * 128, True),
        ("short", False),
        ("a" * 129, False),
        ("bad id with spaces", False),
        ("<script>", False),
        ("", False),
    ],
)
def test_each_answer_carries_the_request_id_the_proxy_sent_or_a_new_one(client, sent, kept):
    answer = client.get("/healthz", headers={"X-Request-ID": sent} if sent else {})
    given = answer.headers["X-Request-ID"]
    if kept:
        assert given == sent
    else:
        assert given != sent and len(given) == 32


def test_every_line_logged_during_a_request_carries_its_id_as_json(app, client):
    stream = io.StringIO()
    handler = logs.json_handler(stream)
    app.logger.addHandler(handler)
    app.logger.setLevel(logging.INFO)  # as serve's logging sets it
    try:
        answer = client.get("/login/verify?token=forged", headers={"X-Request-ID": "req-12345678"})
    finally:
        app.logger.removeHandler(handler)
        app.logger.setLevel(logging.NOTSET)
    assert answer.headers["X-Request-ID"] == "req-12345678"
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["request_id"] == "req-12345678"
    assert line["level"] == "INFO" and line["message"].startswith("Sign-in refused")
    assert {"time", "logger"} <= set(line)


def test_a_line_logged_outside_a_request_says_so():
    stream = io.StringIO()
    logger = logging.getLogger("auth_service.test")
    logger.addHandler(logs.json_handler(stream))
    try:
        logger.warning("outside")
    finally:
        logger.handlers.clear()
    assert json.loads(stream.getvalue())["request_id"] == "-"


def test_invented_methods_share_one_label(app, client):
    before = value("auth_http_requests_total", route="unmatched", method="other", status="405")
    before += value("auth_http_requests_total", route="/healthz", method="other", status="405")
    for name in ("FOO", "BAR", "BAZ"):
        client.open("/healthz", method=name)
    after = value("auth_http_requests_total", route="unmatched", method="other", status="405")
    after += value("auth_http_requests_total", route="/healthz", method="other", status="405")
    assert after == before + 3
    assert 'method="FOO"' not in scrape(client)
