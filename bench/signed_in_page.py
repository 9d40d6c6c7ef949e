"""The gated article for a signed-in reader, against a bare Flask route rendering the
same template from constants, both under the same gunicorn settings, measured with wrk
side by side.

The ratio (ours / bare) is what issue 13 asks to bring to 0.8: the distance between
them is what the service does per request (session lookup, the reader, the article and
its comments, Babel's locale choice, the headers). The bare route is
``bench/bare_article.py``. A third server returns the page's bytes from a constant, to
show what rendering costs at all. Each side runs ``--rounds`` times, alternating, and
the median of each is compared, since this machine is noisy. It only prints figures.

    python bench/signed_in_page.py                     # SQLite
    python bench/signed_in_page.py --database-url postgresql+psycopg://user@host/db
    python bench/signed_in_page.py --duration 10 --rounds 3 --connections 16

Needs Debian's ``wrk`` (apt-get install wrk). The database must be an empty one: the
script migrates it and loads the demo articles.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from flask_migrate import upgrade  # noqa: E402
from support.network import free_port  # noqa: E402

from auth_service import create_app  # noqa: E402
from auth_service.articles.store import import_articles  # noqa: E402
from auth_service.cli import demo_articles  # noqa: E402
from auth_service.extensions import db  # noqa: E402

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
GUNICORN = [
    sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "2",
    "--threads", "8", "--keep-alive", "5", "--log-level", "warning",
]  # fmt: skip
BYTES_APP = """
from pathlib import Path
from flask import Flask, Response

app = Flask(__name__)
BODY = Path({body!r}).read_bytes()
HEADERS = {headers!r}


@app.get("/articles/<slug>")
def article(slug):
    return Response(BODY, headers=HEADERS)
"""


def prepare(database_url: str, folder: Path) -> tuple[str, str, bytes, dict]:
    """Migrate, load the articles, sign a reader in: the page's path, the reader's
    cookie header, and the page's bytes and content headers as the service sends them."""
    os.environ["AUTH_SERVICE_INSTANCE_PATH"] = str(folder / "instance")
    config = {"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": database_url}
    app = create_app({**config, "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        import_articles(demo_articles())
    gated = next(item for item in demo_articles() if item["access"] == "registered")
    path = f"/articles/{gated['slug']}"
    # The requests run outside that app context, each in its own, as in a server (one
    # shared context would share ``g``, and its CSRF token, between them).
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"email": "bench@example.com", "csrf_token": token})
    with app.app_context():
        body = db.session.execute(
            db.text("SELECT text_body FROM outbox_messages ORDER BY id DESC LIMIT 1")
        ).scalar()
    link = re.search(r"(/login/verify\?token=\S+)", body).group(1)
    assert client.get(link).status_code == 303, "the bench reader could not sign in"
    client.get(path)  # a browser's first page after sign-in: its cookie then holds a CSRF token
    cookie = "; ".join(f"{c.key}={c.value}" for c in client._cookies.values())
    answer = app.test_client(use_cookies=False).get(path, headers={"Cookie": cookie})
    assert b'class="wall' not in answer.data, "the bench reader is not signed in"
    assert answer.headers.get("Set-Cookie") is None, "the page re-sends the session cookie"
    headers = {"Content-Type": answer.headers["Content-Type"]}
    with app.app_context():
        db.engine.dispose()
    return path, cookie, answer.data, headers


def start(
    arguments: list[str], port: int, environment: dict, cwd: Path, threads: int = 8
) -> subprocess.Popen:
    process = subprocess.Popen(
        # gunicorn takes the last --threads given
        [*GUNICORN, "--threads", str(threads), "--bind", f"127.0.0.1:{port}", *arguments],
        env=environment,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return process
        except urllib.error.HTTPError:
            return process  # answering (the bare apps have no /healthz)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start") from None
            time.sleep(0.1)


def wrk(url: str, cookie: str, duration: int, connections: int) -> float:
    """Requests a second wrk measured (two threads, ``connections`` keep-alive)."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-H", f"Cookie: {cookie}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"some answers were not 2xx:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per process")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="bench-page-"))
    url = options.database_url or f"sqlite:///{folder}/bench.sqlite3"
    path, cookie, body, headers = prepare(url, folder)
    (folder / "page.html").write_bytes(body)
    (folder / "constant.py").write_text(
        textwrap.dedent(BYTES_APP.format(body=str(folder / "page.html"), headers=headers))
    )
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AUTH_SERVICE_")},
        "AUTH_SERVICE_SECRET_KEY": SECRET,
        "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": url,
        "AUTH_SERVICE_INSTANCE_PATH": str(folder / "instance"),
        "XDG_RUNTIME_DIR": str(folder),
        "BENCH_SLUG": path.rsplit("/", 1)[1],
        "BENCH_LANG": re.search(rb'<html lang="(\w+)"', body).group(1).decode(),
    }
    sides = {  # name: (gunicorn's app, its folder)
        "ours": ("auth_service:create_app()", ROOT),
        "bare": ("bare_article:app", ROOT / "bench"),
        "constant": ("constant:app", folder),
    }
    ports = {name: free_port() for name in sides}
    servers = []
    rates: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for name, (app, cwd) in sides.items():
            servers.append(start([app], ports[name], environment, cwd, options.threads))
        bare_page = fetch(f"http://127.0.0.1:{ports['bare']}{path}", cookie)
        if len(bare_page) != len(body):
            raise SystemExit(f"the bare page is {len(bare_page)} bytes, ours {len(body)}")
        targets = {name: f"http://127.0.0.1:{port}{path}" for name, port in ports.items()}
        for target in targets.values():  # a warm-up, not counted
            wrk(target, cookie, 2, options.connections)
        for number in range(options.rounds):  # the order reversed every other round
            order = list(targets) if number % 2 == 0 else list(reversed(targets))
            for name in order:
                rates[name].append(
                    wrk(targets[name], cookie, options.duration, options.connections)
                )
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)
    median = {name: statistics.median(each) for name, each in rates.items()}
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    server = f"gunicorn 2x{options.threads} gthread"
    print(f"signed-in gated article, {len(body):,} bytes, {database}, {server}")
    for name, rate in median.items():
        rounds = ", ".join(f"{each:.0f}" for each in rates[name])
        print(f"  {name:8}: {rate:8.0f} req/s  (rounds: {rounds})")
    print(f"  ours/bare: {median['ours'] / median['bare']:.2f}  (issue 13's target: at least 0.8)")
    print(f"  ours/constant: {median['ours'] / median['constant']:.2f}  (bytes, no rendering)")


def fetch(url: str, cookie: str) -> bytes:
    """The body of a GET with the reader's cookie."""
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


if __name__ == "__main__":
    main()
