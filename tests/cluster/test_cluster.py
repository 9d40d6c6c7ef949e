"""The service scaled out, as in production: Debian's nginx in front of two web servers
(gunicorn, two processes each), two mail workers, one PostgreSQL and one Redis, all on
127.0.0.1 and all started here. Nothing is shared but the database and Redis, as between
machines.

- a link asked through one web server signs in through the other;
- the per-address and per-IP limits hold across both (their counters are in Redis);
- every mail arrives exactly once, however the two workers share the outbox;
- a session survives the restart of the web server that opened it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.dkim import new_key, verified, write_key
from support.live import (
    Browser,
    LiveServer,
    service_environment,
    start_gunicorn,
    stop_gunicorn,
    wait_until,
)
from support.network import free_port, stop_process
from support.postgres import empty, needs_postgresql
from support.redis_server import redis_url, shared_redis

# Fixtures, imported so that pytest finds them in this module.
__all__ = ["redis_url", "shared_redis"]
# One PostgreSQL shared by every process is the point.
pytestmark = needs_postgresql

NGINX = Path("/usr/sbin/nginx")
COMMAND = Path(sys.executable).parent / "auth-service"
PER_IP = 12  # link requests per minute from one address, in this test's settings
SELECTOR = "s2026"
SENDER_DOMAIN = "127.0.0.1"  # no-reply@ the host of PUBLIC_URL: the default d= domain


@dataclass
class Cluster:
    front: LiveServer  # nginx: what readers reach
    web: list[LiveServer]
    workers: list[subprocess.Popen]
    smtp: object
    database_url: str
    folder: Path
    settings: dict

    def restart_web(self, index: int) -> None:
        old = self.web[index]
        stop_gunicorn(old)
        folder = self.folder / f"web{index}-again"
        folder.mkdir()
        self.web[index] = start_gunicorn(self.database_url, folder, self.settings, port=old.port)


NGINX_CONF = """
worker_processes 1;
user root;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/nginx-access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream auth_service {{
        server 127.0.0.1:{first};
        server 127.0.0.1:{second};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://auth_service;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""


def start_nginx(folder: Path, port: int, upstreams: list[int]) -> subprocess.Popen:
    if not NGINX.is_file():
        pytest.fail(f"{NGINX} is missing: tests/run.sh installs it (apt-get install nginx).")
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(folder=folder, port=port, first=upstreams[0], second=upstreams[1])
    )
    with (folder / "nginx.out").open("w") as output:
        process = subprocess.Popen(
            [str(NGINX), "-c", str(conf), "-p", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process, signal.SIGQUIT)  # it would hold the port otherwise
                raise AssertionError((folder / "nginx-error.log").read_text()) from None
            time.sleep(0.1)


@pytest.fixture
def cluster_database(postgres_url) -> Iterator[str]:
    """The session's PostgreSQL, emptied after the test."""
    yield postgres_url
    empty(postgres_url)


@pytest.fixture(scope="module")
def dkim_key():
    """The key every process of the cluster signs mail with."""
    return new_key()


@pytest.fixture
def cluster(
    cluster_database, redis_url, shared_redis, smtp_server, dkim_key, tmp_path
) -> Iterator[Cluster]:
    front_port, ports = free_port(), [free_port(), free_port()]
    settings = {
        "PUBLIC_URL": f"http://127.0.0.1:{front_port}",
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": redis_url,
        "PROXY_FIX_X_FOR": "1",
        "LOGIN_LIMIT_PER_IP": f"{PER_IP} per minute",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port),
        # Every process signs: the two workers each sign ahead within their own claims.
        "DKIM_SELECTOR": SELECTOR,
        "DKIM_PRIVATE_KEY_FILE": str(write_key(tmp_path / "dkim.pem", dkim_key)),
    }
    web, workers, nginx = [], [], None
    try:
        for index, port in enumerate(ports):
            folder = tmp_path / f"web{index}"
            folder.mkdir()
            web.append(start_gunicorn(cluster_database, folder, settings, port=port))
        for index in range(2):
            folder = tmp_path / f"worker{index}"
            folder.mkdir()
            environment = service_environment(cluster_database, folder, front_port, settings)
            with (folder / "worker.log").open("w") as log:
                workers.append(
                    subprocess.Popen(
                        [str(COMMAND), "worker"],
                        env=environment,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        nginx = start_nginx(tmp_path / "nginx", front_port, ports)
        front = LiveServer(
            "127.0.0.1", front_port, nginx, tmp_path / "nginx" / "nginx-error.log", web[0].database
        )
        yield Cluster(front, web, workers, smtp_server, cluster_database, tmp_path, settings)
    finally:  # each stopped, killed if it must be, whatever happened to the others
        if nginx is not None:
            stop_process(nginx, signal.SIGQUIT)
        for worker in workers:
            stop_process(worker, signal.SIGINT)
        for server in web:
            stop_gunicorn(server)


def posts_to_login(cluster: Cluster, expected: list[int]) -> list[int]:
    """How many POST /login each web server answered, read from their access logs once
    they hold ``expected`` (gunicorn writes a line just after its answer), or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        counts = [server.log_text().count('"POST /login ') for server in cluster.web]
        if counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def wait_for_mails(cluster: Cluster, count: int) -> list:
    return cluster.smtp.recorder.wait_for(count, timeout=30)


def test_a_link_asked_through_one_web_server_signs_in_through_the_other(cluster):
    first = Browser(cluster.web[0])
    mail = first.ask_for_link("lea@example.com")
    wait_for_mails(cluster, 1)
    second = Browser(cluster.web[1], jar=first.jar)  # the same browser, the other server
    reply = second.get(f"/login/verify?token={mail.token}")
    assert reply.status == 303, reply.body[:300]
    assert second.is_signed_in() and first.is_signed_in()
    assert Browser(cluster.front, jar=first.jar).is_signed_in()


def test_the_per_address_limit_holds_across_both_web_servers(cluster):
    # Each browser on one server, in turn (through nginx, the GET of the form and the
    # POST would each take the next server, and all POSTs could land on one).
    browsers = [Browser(cluster.web[n % 2]) for n in range(6)]
    statuses = Counter()
    for browser in browsers:
        reply = browser.post(
            "/login", {"email": "zoe@example.com", "csrf_token": browser.csrf_token()}
        )
        statuses[reply.status] += 1
    assert statuses == {303: 1, 429: 5}, statuses
    assert posts_to_login(cluster, [3, 3]) == [3, 3]  # both servers took part
    assert len(cluster.front.mails_to("zoe@example.com")) == 1  # queued: the outbox says
    wait_for_mails(cluster, 1)


def test_the_per_ip_limit_holds_across_both_web_servers(cluster):
    statuses = Counter()
    for n in range(PER_IP + 4):
        browser = Browser(cluster.web[n % 2])
        form = {"email": f"r{n}@example.com", "csrf_token": browser.csrf_token()}
        statuses[browser.post("/login", form).status] += 1
    assert statuses == {303: PER_IP, 429: 4}, statuses
    half = [(PER_IP + 4) // 2] * 2
    assert posts_to_login(cluster, half) == half


def test_every_mail_arrives_exactly_once_with_two_workers(cluster, dkim_key):
    addresses = [f"lecteur{n}@example.com" for n in range(10)]
    for address in addresses:
        Browser(cluster.front).ask_for_link(address)
    wait_for_mails(cluster, len(addresses))
    unsent = "SELECT count(*) FROM outbox_messages WHERE sent_at IS NULL"
    wait_until(lambda: cluster.front.scalar(unsent) == 0, "every mail marked sent")
    for worker in cluster.workers:  # nothing more can be on its way
        stop_process(worker, signal.SIGINT)
    received = Counter(
        recipient for message in cluster.smtp.recorder.messages for recipient in message.rcpt_tos
    )
    assert received == dict.fromkeys(addresses, 1)
    # Each copy signed over its own bytes, whichever worker sent it.
    for message in cluster.smtp.recorder.messages:
        assert verified(message.original_content, dkim_key, SELECTOR, SENDER_DOMAIN), (
            message.rcpt_tos
        )


def test_a_session_survives_the_restart_of_the_web_server_that_opened_it(cluster):
    browser = Browser(cluster.web[0])
    mail = browser.ask_for_link("max@example.com")
    assert browser.get(f"/login/verify?token={mail.token}").status == 303
    cluster.restart_web(0)
    assert Browser(cluster.web[0], jar=browser.jar).is_signed_in()
    assert Browser(cluster.web[1], jar=browser.jar).is_signed_in()
