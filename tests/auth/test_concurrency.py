"""Concurrent readers: no "database is locked", no lost attempt, one winner per link."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from support.web import csrf_token

from auth_service.extensions import db
from auth_service.models import LoginAttempt, OutboxMessage

READERS = 8
REQUESTS_EACH = 4


def test_many_readers_asking_at_once_all_get_their_mail(app):
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(READERS)

    def reader(number: int) -> None:
        client = app.test_client()
        token = csrf_token(client)
        start.wait()
        for request in range(REQUESTS_EACH):
            response = client.post(
                "/login",
                data={
                    "email": f"reader{number}.{request}@example.com",
                    "csrf_token": token,
                },
            )
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [303] * READERS * REQUESTS_EACH
    db.session.rollback()  # see the other threads' commits
    assert db.session.scalar(select(func.count(LoginAttempt.id))) == READERS * REQUESTS_EACH
    assert db.session.scalar(select(func.count(OutboxMessage.id))) == READERS * REQUESTS_EACH


def test_racing_clicks_on_one_link_sign_in_one_browser(app, reader):
    reader.ask_for_link("race@example.com")
    token = reader.last_mail().token
    results: list[int] = []
    start = threading.Barrier(4)

    def click() -> None:
        client = app.test_client()
        form = {"token": token, "csrf_token": csrf_token(client, f"/login/verify?token={token}")}
        start.wait()
        results.append(client.post("/login/verify", data=form).status_code)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [303, 410, 410, 410]
