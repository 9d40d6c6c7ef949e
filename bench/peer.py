"""Our service beside a peer doing the same job, Flask-Security-Too's unified sign-in by
mail, measured side by side in one run: ours/peer for three things.

1. The signed-in gated article, the same bytes on both sides (the peer's is a route
   behind ``@auth_required()``), driven by wrk in alternating rounds; the medians'
   ratio. Also each side's response header bytes, and whether it sends Set-Cookie.
2. The sign-in mail, from the POST of the form to the SMTP server's 250, for N readers
   one after the other: ours queues it for a separate, idle ``auth-service worker``;
   the peer sends it with Flask-Mail inside the request. p50, p95, p99.
3. How long that POST itself takes to answer. p50, p99.

Both sides run under gunicorn with the settings of bench/signed_in_page.py and are asked
over HTTP from here, where the SMTP server (aiosmtpd) runs too. The peer runs in a venv
of its own (~/.cache/auth-service-bench/peer-venv, made from bench/peer-requirements.txt
on first use), from bench/peer_app.py. It only prints figures.

    python bench/peer.py                     # SQLite
    python bench/peer.py --database-url postgresql+psycopg://user@host/db
    python bench/peer.py -n 100 --duration 10 --rounds 5

The database must be an empty one (it is migrated); with ``--database-url`` the peer
uses a database of its own beside it, ``<name>_peer``, created if missing and emptied.
Needs Debian's ``wrk``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import requests  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from mail_latency import percentile  # noqa: E402
from signed_in_page import GUNICORN, ROOT, SECRET, free_port, prepare, wrk  # noqa: E402
from sqlalchemy import create_engine, make_url, text  # noqa: E402
from urllib3.util import SKIP_HEADER  # noqa: E402

PEER_VENV = Path.home() / ".cache" / "auth-service-bench" / "peer-venv"
REQUIREMENTS = BENCH / "peer-requirements.txt"
ARRIVAL_TIMEOUT = 10.0  # seconds to wait for one mail before counting it lost
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# What the issue says today, and what our speed work aims at.
ISSUE = [  # the rows of the last table, in order: today, the target
    ("peer 1.2-1.4x ours: 0.71-0.83", "ratio at least 1.2"),
    ("peer ~5x sooner: ~5", "ratio at most 1"),
    ("", ""),
    ("", "ours under 100 ms"),
    ("ours ~2.6x faster: ~0.38", ""),
    ("", ""),
]


class Mailbox:
    """An aiosmtpd handler that notes when each recipient's mail came, and its text."""

    def __init__(self):
        self.arrived: dict[str, tuple[float, str]] = {}
        self.condition = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Accept a message: note the time, then read its plain text."""
        now = time.perf_counter()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        plain = message.get_body(("plain",))
        words = plain.get_content() if plain is not None else ""
        with self.condition:
            for address in envelope.rcpt_tos:
                self.arrived.setdefault(address, (now, words))
            self.condition.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, address: str) -> tuple[float, str] | None:
        """When the mail to ``address`` came and its text, or ``None`` if it did not."""
        with self.condition:
            self.condition.wait_for(lambda: address in self.arrived, ARRIVAL_TIMEOUT)
            return self.arrived.get(address)


@dataclass
class Side:
    """One service as the benchmark drives it: where it listens, its sign-in form, and
    the figures measured on it."""

    name: str
    port: int
    form: str  # the path of the sign-in form (GET)
    action: str  # where the form is posted to ask for mail
    answer: int  # the status of that POST when it worked
    address_field: str  # the form field of the address
    reader: str  # readers' addresses are <reader>-<number>@example.com
    extra: dict = field(default_factory=dict)  # the form's other fields
    rates: list[float] = field(default_factory=list)
    posts: list[float] = field(default_factory=list)
    mails: list[float] = field(default_factory=list)
    lost: int = 0

    def url(self, path: str) -> str:
        """The URL of ``path`` on this side."""
        return f"http://127.0.0.1:{self.port}{path}"

    def address(self, number: int) -> str:
        """The address of reader ``number``."""
        return f"{self.reader}-{number}@example.com"

    def fields(self, number: int) -> dict:
        """The sign-in form as reader ``number`` fills it in (CSRF token aside)."""
        return {self.address_field: self.address(number), **self.extra}


@dataclass
class Run:
    """What both sides share in one run."""

    folder: Path
    python: Path  # the peer venv's
    mailbox: Mailbox
    path: str  # of the gated article
    size: int  # of its body, in bytes
    environments: dict  # side name -> its processes' environment
    processes: list = field(default_factory=list)


def peer_python() -> Path:
    """The interpreter of the peer's venv, made (or made again) when the requirements
    differ from those it was made with."""
    python = PEER_VENV / "bin" / "python"
    made_from = PEER_VENV / "peer-requirements.txt"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and made_from.exists() and made_from.read_text() == wanted:
        return python
    print(f"Making the peer's venv in {PEER_VENV} ...", flush=True)
    venv.create(PEER_VENV, clear=True, with_pip=True)
    install = [python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS]
    subprocess.run(install, check=True)
    made_from.write_text(wanted)
    return python


def peer_database(url: str | None, folder: Path) -> str:
    """The peer's own database: a SQLite file, or ``<name>_peer`` beside ours."""
    if url is None or url.startswith("sqlite"):
        return f"sqlite:///{folder}/peer.sqlite3"
    ours = make_url(url)
    peer = ours.set(database=f"{ours.database}_peer")
    engine = create_engine(ours, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": peer.database}
        ).scalar()
        if not found:
            connection.execute(text(f'CREATE DATABASE "{peer.database}"'))
    engine.dispose()
    return peer.render_as_string(hide_password=False)


def environments(database_url: str, peer_url: str, folder: Path, smtp: int) -> dict:
    """The environment of our processes and that of the peer's, by side name."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTH_SERVICE_", "PEER_"))
        and key not in ("PYTHONPATH", "PUBLIC_URL", "VIRTUAL_ENV")
    }
    ours = {
        **inherited,
        "AUTH_SERVICE_SECRET_KEY": SECRET,
        "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": database_url,
        "AUTH_SERVICE_INSTANCE_PATH": str(folder / "instance"),
        "AUTH_SERVICE_RATELIMIT_ENABLED": "false",
        "AUTH_SERVICE_MAIL_SERVER": "127.0.0.1",
        "AUTH_SERVICE_MAIL_PORT": str(smtp),
        "XDG_RUNTIME_DIR": str(folder),
    }
    peer = {
        **inherited,
        "PEER_DATABASE_URL": peer_url,
        "PEER_SECRET_KEY": SECRET,
        "PEER_MAIL_PORT": str(smtp),
        "PEER_PAGE": str(folder / "page.html"),
    }
    return {"ours": ours, "peer": peer}


def launch(run: Run, name: str, command: list, cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``command`` in side ``name``'s environment, its output going to ``log``."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env=run.environments[name], cwd=cwd, stdout=output, stderr=output
        )
    run.processes.append(process)
    return process


def serve(run: Run, side: Side, python: Path, app: str, cwd: Path) -> None:
    """``app`` under gunicorn with signed_in_page.py's settings, once it answers."""
    command = [str(python), *GUNICORN[1:], "--bind", f"127.0.0.1:{side.port}", app]
    process = launch(run, side.name, command, cwd, run.folder / f"{side.name}-gunicorn.log")
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(side.url("/"), timeout=30)  # any answer: a worker has booted
            return
        except (requests.ConnectionError, requests.Timeout):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{side.name}: gunicorn did not start; see {run.folder}") from None
            time.sleep(0.1)


def start_worker(run: Run) -> None:
    """Our separate worker (``auth-service worker``), left idle until the first mail."""
    command = [str(Path(sys.executable).parent / "auth-service"), "worker"]
    log = run.folder / "ours-worker.log"
    process = launch(run, "ours", command, ROOT, log)
    deadline = time.monotonic() + 30
    while b"Outbox worker running" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"our worker did not start; see {log}")
        time.sleep(0.1)
    time.sleep(1.0)  # past its first look at the outbox: idle


def ask_for_mail(side: Side, number: int) -> tuple[float, float]:
    """Get the form (its CSRF token) and post it for reader ``number``, both on one
    keep-alive connection of a new browser: when the POST started, how long it took."""
    browser = requests.Session()
    form = browser.get(side.url(side.form), timeout=30)
    fields = {**side.fields(number), "csrf_token": CSRF_FIELD.search(form.text).group(1)}
    started = time.perf_counter()
    answer = browser.post(side.url(side.action), data=fields, allow_redirects=False, timeout=30)
    took = time.perf_counter() - started
    if answer.status_code != side.answer:
        raise SystemExit(f"{side.name}: POST {side.action} answered {answer.status_code}")
    return started, took


def sign_in_peer(peer: Side, mailbox: Mailbox) -> str:
    """Sign reader 0 into the peer with the code it mails: the Cookie header it then has.

    Without a User-Agent, as wrk asks: Flask-Login ties the session to it, and a session
    seen with another one is marked not fresh on every request, in a new cookie.
    """
    browser = requests.Session()
    browser.headers["User-Agent"] = SKIP_HEADER  # nor urllib3's own
    token = CSRF_FIELD.search(browser.get(peer.url(peer.form), timeout=30).text).group(1)
    fields = {**peer.fields(0), "csrf_token": token}
    browser.post(peer.url(peer.action), data=fields, timeout=30)
    mail = mailbox.wait_for(peer.address(0))
    if mail is None:
        raise SystemExit("the peer's sign-in code never came")
    code = re.search(r"following code: (\d+)", mail[1]).group(1)
    fields = {"identity": peer.address(0), "passcode": code, "csrf_token": token}
    signed_in = browser.post(peer.url("/us-signin"), data=fields, allow_redirects=False, timeout=30)
    if signed_in.status_code != 302:
        raise SystemExit(f"the peer refused its own code: {signed_in.status_code}")
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


def page_answer(side: Side, path: str, cookie: str) -> tuple[int, int, list[str], int]:
    """The page asked once on a plain socket: status, header bytes (status line and
    blank line included), the names of the cookies set, body bytes."""
    asked = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{side.port}\r\nCookie: {cookie}\r\n"
    with socket.create_connection(("127.0.0.1", side.port), timeout=30) as connection:
        connection.sendall(f"{asked}Connection: close\r\n\r\n".encode())
        received = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    cookies = [
        line.split(":", 1)[1].split("=", 1)[0].strip()
        for line in lines[1:]
        if line.lower().startswith("set-cookie:")
    ]
    return int(lines[0].split()[1]), len(head) + 4, cookies, len(body)


def measure_page(sides: list[Side], path: str, cookies: dict, options) -> None:
    """Rounds of wrk on each side in turn, the order swapped every round, after a
    warm-up that is not counted."""
    for side in sides:
        wrk(side.url(path), cookies[side.name], 3, options.connections)
    for number in range(options.rounds):
        for side in sides if number % 2 == 0 else reversed(sides):
            rate = wrk(side.url(path), cookies[side.name], options.duration, options.connections)
            side.rates.append(rate)


def measure_mail(sides: list[Side], mailbox: Mailbox, count: int) -> None:
    """Readers 1 to ``count + 1`` ask each side for mail in turn, the order swapped for
    every reader (the side after another meets its last mail's bookkeeping); reader 1
    warms up."""
    for number in range(1, count + 2):
        for side in sides if number % 2 == 0 else reversed(sides):
            started, took = ask_for_mail(side, number)
            mail = mailbox.wait_for(side.address(number))
            if number == 1:
                continue
            side.posts.append(took)
            if mail is None:
                side.lost += 1
            else:
                side.mails.append(mail[0] - started)


def measure(run: Run, ours: Side, peer: Side, our_cookie: str, options) -> dict:
    """Serve both sides, measure the page then the mail; each side's page answer."""
    try:
        serve(run, ours, Path(sys.executable), "auth_service:create_app()", ROOT)
        serve(run, peer, run.python, "peer_app:create_app()", BENCH)
        cookies = {"ours": our_cookie, "peer": sign_in_peer(peer, run.mailbox)}
        answers = {}
        for side in (ours, peer):
            answer = answers[side.name] = page_answer(side, run.path, cookies[side.name])
            status, size = answer[0], answer[3]
            if status != 200 or size != run.size:
                raise SystemExit(f"{side.name}: the page answered {status} with {size:,} bytes")
        measure_page([ours, peer], run.path, cookies, options)
        start_worker(run)
        measure_mail([ours, peer], run.mailbox, options.count)
    finally:
        for process in run.processes:
            process.terminate()
            process.wait(timeout=30)
    return answers


def print_page(sides: list[Side], answers: dict, size: int, database: str) -> None:
    """The page's rates, and each side's headers."""
    print(f"\n1. signed-in gated article, {size:,} bytes, {database}, gunicorn 2x8 gthread, wrk")
    for side in sides:
        status, header_bytes, cookies, body_bytes = answers[side.name]
        rounds = ", ".join(f"{rate:.0f}" for rate in side.rates)
        print(f"  {side.name}: {statistics.median(side.rates):7.0f} req/s  (rounds: {rounds})")
        sets = f"Set-Cookie: {', '.join(cookies)}" if cookies else "no Set-Cookie"
        print(f"        {status}, {header_bytes} header bytes, {body_bytes:,} body bytes, {sets}")


def print_mail(sides: list[Side], count: int) -> None:
    """Mail latency and the POST's own time, in milliseconds."""
    print(f"\n2-3. sign-in mail for {count} readers one after the other (ms)")
    print(f"  {'':6}{'mail p50':>9}{'p95':>8}{'p99':>8}{'POST p50':>10}{'p99':>8}  lost")
    widths = (9, 8, 8, 10, 8)
    for side in sides:
        figures = [percentile(side.mails, share) for share in (0.5, 0.95, 0.99)]
        figures += [percentile(side.posts, share) for share in (0.5, 0.99)]
        pairs = zip(figures, widths, strict=True)
        cells = "".join(f"{value * 1000:>{width}.1f}" for value, width in pairs)
        print(f"  {side.name:6}{cells}  {side.lost:>4}")
    print("  ours: queued, sent by a separate idle `auth-service worker`; peer: sent in the POST")


def print_ratios(ours: Side, peer: Side) -> None:
    """Each figure of both sides, their ratio ours/peer, and what the issue says of it."""
    pairs = {"page (req/s)": (statistics.median(ours.rates), statistics.median(peer.rates))}
    for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        pairs[f"mail {name} (ms)"] = (percentile(ours.mails, share), percentile(peer.mails, share))
    for name, share in (("p50", 0.5), ("p99", 0.99)):
        pairs[f"POST {name} (ms)"] = (percentile(ours.posts, share), percentile(peer.posts, share))
    print(f"\n{'':16}{'ours':>7}{'peer':>7}{'ours/peer':>10}  {'the issue, today':<30}target")
    for (name, (mine, theirs)), (today, target) in zip(pairs.items(), ISSUE, strict=True):
        scale, digits = (1, 0) if name.startswith("page") else (1000, 1)
        figures = f"{mine * scale:>7.{digits}f}{theirs * scale:>7.{digits}f}{mine / theirs:>10.2f}"
        print(f"  {name:<14}{figures}  {today:<30}{target}")
    print("  ratio of req/s: above 1, ours serves more; of times: below 1, ours is sooner")


def create_readers(run: Run, count: int) -> None:
    """The peer's tables, and ``count`` readers in them, reader-0@example.com onwards."""
    command = [run.python, "-m", "flask", "--app", "peer_app:create_app()", "create-readers"]
    subprocess.run([*command, str(count)], env=run.environments["peer"], cwd=BENCH, check=True)


def both_sides() -> tuple[Side, Side]:
    """Ours and the peer, each with its sign-in form, on ports of their own."""
    ours = Side(
        name="ours", port=free_port(), form="/login", action="/login", answer=303,
        address_field="email", reader="ours",
    )  # fmt: skip
    peer = Side(
        name="peer", port=free_port(), form="/us-signin", action="/us-signin/send-code",
        answer=200, address_field="identity", reader="reader",
        extra={"chosen_method": "email"},
    )  # fmt: skip
    return ours, peer


def main() -> None:
    """Parse the options, make the peer's venv, set both sides up, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    # 100 at least, or the nearest-rank p99 is simply the slowest mail
    parser.add_argument("-n", "--count", type=int, default=100, help="readers (default: 100)")
    parser.add_argument("--duration", type=int, default=8, help="seconds of each wrk round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    python = peer_python()
    folder = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    database_url = options.database_url or f"sqlite:///{folder}/bench.sqlite3"
    path, our_cookie, body, headers = prepare(database_url, folder)
    (folder / "page.html").write_bytes(body)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    smtp.start()
    peer_url = peer_database(options.database_url, folder)
    settings = environments(database_url, peer_url, folder, smtp.port)
    settings["peer"]["PEER_PAGE_TYPE"] = headers["Content-Type"]
    run = Run(folder, python, mailbox, path, len(body), settings)
    create_readers(run, options.count + 2)
    ours, peer = both_sides()
    try:
        answers = measure(run, ours, peer, our_cookie, options)
    finally:
        smtp.stop()
    database = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    print_page([ours, peer], answers, len(body), database)
    print_mail([ours, peer], options.count)
    print_ratios(ours, peer)
    print(f"\nlogs and databases in {folder}")


if __name__ == "__main__":
    main()
