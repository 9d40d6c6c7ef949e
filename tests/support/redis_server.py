"""Debian's redis-server on 127.0.0.1, memory only, for the tests of one module."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from support.network import free_port, stop_process

REDIS_SERVER = Path("/usr/bin/redis-server")
START_TIMEOUT = 30  # seconds


def _wait_for(client: redis.Redis, server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.poll() is not None:
            raise AssertionError(f"redis-server exited with status {server.returncode}")
        try:
            client.ping()
            return
        except redis.RedisError:  # not listening yet
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {port} did not answer") from None
            time.sleep(0.1)


def start_redis(folder: Path, port: int | None = None) -> tuple[str, subprocess.Popen]:
    """Start a memory-only redis-server on ``port`` (a free one by default); its URL and
    process."""
    if not REDIS_SERVER.is_file():
        pytest.fail(
            f"{REDIS_SERVER} is missing: these tests need Debian's redis-server. "
            "tests/run.sh installs it (apt-get install redis-server)."
        )
    port = port or free_port()
    with (folder / "redis.log").open("a") as log:
        server = subprocess.Popen(
            [
                str(REDIS_SERVER),
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        _wait_for(client, server, port)
    except BaseException:
        stop_redis(server)
        raise
    finally:
        client.close()
    return url, server


def stop_redis(server: subprocess.Popen) -> None:
    """Stop a redis-server started by :func:`start_redis`."""
    stop_process(server, timeout=10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A private, memory-only Redis on 127.0.0.1, stopped when the module is done.

    Register it by importing it into a test module.
    """
    url, server = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_redis(server)


@pytest.fixture
def shared_redis(redis_url) -> Iterator[redis.Redis]:
    """The Redis of the module, emptied: each test starts with no counters."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    client.flushall()
    yield client
    client.close()
