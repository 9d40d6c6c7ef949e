"""``auth-service serve``: gunicorn as production runs it, started by the test on the
test's database (SQLite and PostgreSQL): two worker processes whose counts add up at
/metrics, JSON access lines carrying the proxy's request id, a graceful reload that
drops no request, and a clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.live import LiveServer, start_serve, stop_gunicorn

REQUESTS = 40


@dataclass
class Served:
    server: LiveServer
    metrics: Path

    @property
    def process(self) -> subprocess.Popen:
        return self.server.process

    def get(self, path: str, **headers) -> tuple[int, dict, str]:
        url = self.server.url + path
        request = urllib.request.Request(url, headers={"Connection": "close", **headers})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()

    def access_lines(self) -> list[dict]:
        return [
            json.loads(line)
            for line in self.server.log_text().splitlines()
            if line.startswith("{") and '"logger": "gunicorn.access"' in line
        ]

    def counted(self, route: str) -> float:
        text = self.get("/metrics")[2]
        prefix = f'auth_http_requests_total{{method="GET",route="{route}",status="200"}} '
        return sum(
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        )


@pytest.fixture
def served(database_url, tmp_path) -> Iterator[Served]:
    metrics = tmp_path / "metrics"
    environment = {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    server = start_serve(database_url, tmp_path, environment=environment)
    try:
        yield Served(server, metrics)
    finally:
        if server.process.poll() is None:
            stop_gunicorn(server)
        server.database.dispose()


def test_the_counts_of_both_workers_add_up_at_metrics(served):
    before = served.counted("/healthz")
    # Each request on its own connection, until both processes have taken some (which
    # one accepts is the kernel's choice: under load one may take a long run of them).
    sent, deadline = 0, time.monotonic() + 30
    while sent < REQUESTS or len(worker_files(served)) < 2:
        assert served.get("/healthz")[0] == 200
        sent += 1
        assert time.monotonic() < deadline, f"one process took all {sent} requests"
    assert served.counted("/healthz") == before + sent


def worker_files(served) -> set[str]:
    """The processes that counted something: one counter file each."""
    return {path.name.rsplit("_", 1)[-1] for path in served.metrics.glob("counter_*.db")}


def test_access_lines_are_json_with_the_proxy_s_request_id(served):
    status, headers, _ = served.get("/healthz", **{"X-Request-ID": "nginx-req-000042"})
    assert status == 200 and headers["X-Request-ID"] == "nginx-req-000042"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in served.access_lines() if line["request_id"] == "nginx-req-000042"]
        if lines:
            break
        time.sleep(0.1)
    (line,) = lines
    assert line["path"] == "/healthz" and line["status"] == 200 and line["method"] == "GET"
    assert line["duration_ms"] >= 0 and {"time", "level", "message"} <= set(line)


def test_a_reload_drops_no_request_and_the_counts_survive_it(served):
    for _ in range(5):
        served.get("/healthz")
    before = served.counted("/healthz")
    old_workers = worker_files(served)
    served.process.send_signal(signal.SIGHUP)  # new workers, old ones finish their requests
    # Ask through the hand-over: until a new worker has answered, then a few more.
    answered, after_new, deadline = 0, 0, time.monotonic() + 30
    while after_new < 5:
        assert served.get("/healthz")[0] == 200
        answered += 1
        if worker_files(served) - old_workers:
            after_new += 1
        assert time.monotonic() < deadline, "no new worker answered within 30 s"
    assert served.counted("/healthz") == before + answered


def test_sigterm_stops_it_cleanly(served):
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=40) == 0
