"""The service as an operator runs it: a built wheel installed in a fresh venv.

``pip install .`` (not editable), then ``auth-service db upgrade``, ``articles import``,
``run`` and ``worker --once`` as separate processes, a real SMTP server, and an HTTP
client that holds its own cookies. This is where a template or migration missing from
the wheel, or a route that differs from the contract (docs/contract.md §2), shows up.
"""

from __future__ import annotations

import email
import email.policy
import http.cookiejar
import os
import re
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support.network import free_port
from support.settings import REPOSITORY

ROOT = REPOSITORY
ARTICLE = "train-de-nuit-port-ardent-montcalvel"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding only the wheel of this project; dependencies come from ours."""
    folder = tmp_path_factory.mktemp("installed")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(folder / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((folder / "dist").glob("auth_service-*.whl"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Our dependencies, without downloading them again: appended after the venv's own
    # site-packages, so the installed wheel wins over the source tree.
    site = run_python(venv, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def run_python(venv: Path, code: str) -> str:
    """Run ``code`` with the venv's Python, outside the repository; return its output."""
    done = subprocess.run(
        [venv / "bin" / "python", "-c", code], check=True, capture_output=True, text=True, cwd="/"
    )
    return done.stdout.strip()


def command(venv: Path, environment: dict, *args: str, **options):
    """Run ``auth-service ARGS`` from an empty folder outside the repository."""
    return subprocess.run(
        [str(venv / "bin" / "auth-service"), *args],
        env=environment,
        cwd=environment["AUTH_SERVICE_INSTANCE_PATH"],
        capture_output=True,
        text=True,
        timeout=120,
        **options,
    )


@pytest.fixture
def environment(tmp_path, smtp_server) -> dict:
    """The settings an operator exports, with a fresh SQLite database."""
    instance = tmp_path / "instance"
    instance.mkdir()
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTH_SERVICE_", "FLASK_"))
    }
    return {
        **base,
        "AUTH_SERVICE_SECRET_KEY": "operator-secret-key-0123456789-abcdefghij",
        "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/prod.sqlite3",
        "AUTH_SERVICE_INSTANCE_PATH": str(instance),
        "AUTH_SERVICE_MAIL_SERVER": "127.0.0.1",
        "AUTH_SERVICE_MAIL_PORT": str(smtp_server.port),
        "AUTH_SERVICE_MAIL_DEFAULT_SENDER": "no-reply@news.example",
        "AUTH_SERVICE_RATELIMIT_ENABLED": "false",
    }


class Browser:
    """An HTTP client with its own cookie jar that does not follow redirects."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect
        )

    def request(self, path: str, data: dict | None = None, method: str | None = None):
        """Return (status, headers, body) of one request."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def csrf(self, path: str) -> str:
        """The CSRF token of the form on ``path``."""
        _, _, page = self.request(path)
        return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def serve(venv: Path, environment: dict, port: int) -> subprocess.Popen:
    """Start ``auth-service run`` and wait until it answers /healthz."""
    server = subprocess.Popen(
        [str(venv / "bin" / "auth-service"), "run", "--port", str(port)],
        env={**environment, "AUTH_SERVICE_PUBLIC_URL": f"http://127.0.0.1:{port}"},
        cwd=environment["AUTH_SERVICE_INSTANCE_PATH"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise AssertionError("auth-service run never answered /healthz")


def test_wheel_ships_templates_migrations_and_catalog(installed):
    package = installed_package(installed)
    assert str(installed) in str(package)
    for part in (
        "templates/base.html",
        "templates/mail/signin.txt",
        "migrations/env.py",
        "migrations/versions/0001_initial_schema.py",
        "translations/fr/LC_MESSAGES/messages.mo",
        "static/site.css",
        "demo/articles.json",
    ):
        assert (package / part).is_file(), part


def test_installed_service_refuses_to_start_without_a_secret(installed, environment):
    del environment["AUTH_SERVICE_SECRET_KEY"]
    done = command(installed, environment, "db", "upgrade")
    assert done.returncode != 0
    assert "SECRET_KEY is not set" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def test_operator_journey_from_install_to_unlocked_article(installed, environment, smtp_server):
    assert command(installed, environment, "db", "upgrade").returncode == 0
    articles = installed_articles(installed)
    done = command(installed, environment, "articles", "import", str(articles))
    assert done.returncode == 0 and "created" in done.stdout, done.stderr
    port = free_port()
    server = serve(installed, environment, port)
    try:
        reader = Browser(f"http://127.0.0.1:{port}")
        status, _, page = reader.request(f"/articles/{ARTICLE}")
        assert status == 200 and 'action="/login"' in page
        status, headers, _ = reader.request(
            "/login",
            {
                "email": "Lectrice@Example.com",
                "next": f"/articles/{ARTICLE}",
                "newsletter": "y",
                "csrf_token": reader.csrf("/login"),
            },
        )
        assert (status, headers["Location"]) == (303, "/login/sent")
        _, _, sent = reader.request("/login/sent")
        assert "lectrice@example.com" in sent
        assert smtp_server.messages == []  # the request did not talk to SMTP
        done = command(
            installed,
            {**environment, "AUTH_SERVICE_PUBLIC_URL": f"http://127.0.0.1:{port}"},
            "worker",
            "--once",
        )
        assert done.returncode == 0 and "sent 1" in done.stdout, done.stderr
        link = sign_in_link(smtp_server.recorder.wait_for(1)[0])
        path = link.removeprefix(f"http://127.0.0.1:{port}")
        stranger = Browser(f"http://127.0.0.1:{port}")
        status, headers, _ = stranger.request(path)
        assert status == 200 and headers["Referrer-Policy"] == "no-referrer"
        assert reader.request(path, method="HEAD")[0] == 200
        status, headers, _ = reader.request(path)
        assert (status, headers["Location"]) == (303, f"/articles/{ARTICLE}")
        _, _, article = reader.request(f"/articles/{ARTICLE}")
        assert 'action="/login"' not in article
        assert reader.request("/account")[0] == 200
        assert stranger.request("/account")[0] in (302, 303)
    finally:
        server.terminate()
        server.wait(timeout=10)


def installed_articles(venv: Path) -> Path:
    """The demo articles file inside the installed package."""
    return installed_package(venv) / "demo" / "articles.json"


def installed_package(venv: Path) -> Path:
    """The folder of the ``auth_service`` package the venv imports."""
    return Path(run_python(venv, "import auth_service; print(auth_service.__file__)")).parent


def sign_in_link(envelope) -> str:
    """The link line of the text part of a received sign-in mail."""
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    return next(line for line in text.splitlines() if re.fullmatch(r"https?://\S+", line))
