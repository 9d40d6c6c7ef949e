"""``auth-service serve``: gunicorn as production runs it, started by the test on the
test's database (SQLite and PostgreSQL): two worker processes whose counts add up at
/metrics, JSON access lines carrying the proxy's request id, a graceful reload that
drops no request, and a clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.live import service_environment
from support.network import free_port

COMMAND = Path(sys.executable).parent / "auth-service"
REQUESTS = 40


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    out: Path
    err: Path
    metrics: Path

    def get(self, path: str, **headers) -> tuple[int, dict, str]:
        request = urllib.request.Request(
            self.url + path, headers={"Connection": "close", **headers}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()

    def access_lines(self) -> list[dict]:
        return [
            json.loads(line)
            for line in self.out.read_text().splitlines()
            if line.startswith("{") and '"logger": "gunicorn.access"' in line
        ]

    def counted(self, route: str) -> float:
        text = self.get("/metrics")[2]
        prefix = f'auth_http_requests_total{{method="GET",route="{route}",status="200"}} '
        return sum(
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        )


def wait_until_serving(served: Served) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(served.err.read_text())
        try:
            if served.get("/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"serve did not answer:\n{served.err.read_text()}")


@pytest.fixture
def served(database_url, tmp_path) -> Iterator[Served]:
    port = free_port()
    environment = service_environment(database_url, tmp_path, port, {})
    metrics = tmp_path / "metrics"
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [str(COMMAND), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=environment,
            stdout=stdout,
            stderr=stderr,
        )
    result = Served(f"http://127.0.0.1:{port}", process, out, err, metrics)
    try:
        wait_until_serving(result)
        yield result
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


def test_the_counts_of_both_workers_add_up_at_metrics(served):
    before = served.counted("/healthz")
    for _ in range(REQUESTS):
        assert served.get("/healthz")[0] == 200
    # Each request came on its own connection: both processes took some.
    assert len({path.name.rsplit("_", 1)[-1] for path in served.metrics.glob("counter_*.db")}) == 2
    assert served.counted("/healthz") == before + REQUESTS


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
    served.process.send_signal(signal.SIGHUP)  # new workers, old ones finish their requests
    answered = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert served.get("/healthz")[0] == 200
        answered += 1
    assert served.counted("/healthz") == before + answered


def test_sigterm_stops_it_cleanly(served):
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=40) == 0
