"""Memory of each web process and of the mail worker over 100,000 requests: flat or not.

The issue's target: "memory per web process and per worker after 100,000 requests: flat",
that is, growth within a few MB from the end of the warm-up to the end of the run.

Starts ``auth-service serve`` (gunicorn, 2 processes × 8 ``gthread`` threads, JSON access
log, metrics) and an ``auth-service worker`` process sending to an aiosmtpd sink on
127.0.0.1, on a fresh SQLite database with the demo articles (or the empty PostgreSQL
one given with ``--database-url``). Then drives ``--requests`` requests in a mix:

- wrk (2 threads, 16 keep-alive connections) with a Lua script that picks each request
  among the gated article for a signed-in reader, the same article behind the wall, the
  front page signed in and out, and the sign-in page;
- meanwhile, from 4 Python threads, new readers asking for a link: ``GET /login`` for
  the CSRF token and cookie, then ``POST /login``, which queues a mail that the worker
  sends (``--sign-in-share`` of the requests are such POSTs, as many again their GETs).

At the checkpoints (after the warm-up, 5 % of the requests, then 25, 50, 75 and 100 %)
it waits until the worker has sent every queued mail, then reads RSS, PSS and USS of the
gunicorn workers, of the mail worker and of the gunicorn master from
``/proc/<pid>/smaps_rollup`` (psutil is not in the venv), and their anonymous memory
(heaps, as against mapped files such as the metrics' ones), and prints them with the growth
from the warm-up to the end.

``auth-service serve`` recycles each worker after 20,000 requests (plus up to 2,000 of
jitter) by default, which would hide a leak: this run sets ``max_requests`` to 0 (never)
unless ``--max-requests`` says otherwise, e.g. 20000 to see production's setting (a
recycled worker shows as a new pid). It only prints figures; the machine's 2 cores are
shared, which changes the speed of the run, not what memory it ends with.

    python bench/memory.py                          # SQLite, 100,000 requests (~10 min)
    python bench/memory.py --requests 20000
    python bench/memory.py --database-url postgresql+psycopg://user@host/db

Needs Debian's ``wrk`` (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.live import (  # noqa: E402
    CSRF_FIELD,
    Browser,
    LiveServer,
    service_environment,
    start_serve,
    stop_gunicorn,
)
from support.postgres import migrate  # noqa: E402
from support.settings import SECRET  # noqa: E402
from support.smtp import SmtpServer  # noqa: E402

from auth_service import create_app  # noqa: E402
from auth_service.articles.store import import_articles  # noqa: E402
from auth_service.cli import demo_articles  # noqa: E402
from auth_service.extensions import db  # noqa: E402

COMMAND = Path(sys.executable).parent / "auth-service"
CHECKPOINTS = (0.05, 0.25, 0.50, 0.75, 1.0)  # of --requests; the first ends the warm-up
WRK = ["wrk", "-t2", "-c16"]
LONGEST_RUN = 10  # seconds of one wrk run; the last one of a stretch is cut to fit
POSTERS = 4  # Python threads asking for links
READER = "memory-bench-reader@example.com"
# What wrk asks for, each line once per unit of weight.
MIX = """
local choices = {}
local function add(weight, path, signed_in)
  local headers = {["Accept-Language"] = "fr"}
  if signed_in then headers["Cookie"] = [==[%(cookie)s]==] end
  for _ = 1, weight do choices[#choices + 1] = {path = path, headers = headers} end
end
add(4, "%(article)s", true)   -- the gated article, signed in
add(1, "%(article)s", false)  -- the same article behind the wall
add(1, "/", true)             -- the front page, signed in
add(2, "/", false)            -- the front page, signed out
add(2, "/login", false)       -- the sign-in page

function init(args)
  math.randomseed(tonumber(args[1]))
end
function request()
  local choice = choices[math.random(#choices)]
  return wrk.format("GET", choice.path, choice.headers)
end
"""


@dataclass
class Tally:
    """Requests sent so far, by who sent them, and the answers that were not right."""

    wrk: int = 0
    sign_ins: int = 0  # each a GET /login and a POST /login
    wrong: int = 0  # wrk's non-2xx/3xx and socket errors, POSTs not answered 303
    wrong_examples: list[str] = field(default_factory=list)
    rate: float | None = None  # wrk's requests a second in its latest run

    @property
    def requests(self) -> int:
        return self.wrk + 2 * self.sign_ins


def prepare(database_url: str, folder: Path) -> None:
    """Migrate the database and load the demo articles."""
    os.environ["AUTH_SERVICE_INSTANCE_PATH"] = str(folder / "setup")
    with contextlib.redirect_stderr(io.StringIO()):  # Alembic's INFO lines
        migrate(database_url)
    app = create_app({"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        import_articles(demo_articles())
        db.engine.dispose()


def signed_in_reader(server: LiveServer, article: str) -> str:
    """Sign a reader in through the live server; the Cookie header of their browser.

    Done before the worker starts: once sent, a sign-in mail loses its link.
    """
    browser = Browser(server)
    browser.sign_in(READER)
    if 'class="wall' in browser.get(article).body:
        raise SystemExit("the signed-in reader still sees the wall")
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in browser.jar)


def start_worker(url: str, server: LiveServer, folder: Path, settings: dict) -> subprocess.Popen:
    """``auth-service worker`` on the server's database, its output in worker.log."""
    environment = service_environment(url, folder, server.port, settings)
    with (folder / "worker.log").open("w") as log:
        return subprocess.Popen(
            [str(COMMAND), "worker"], env=environment, stdout=log, stderr=subprocess.STDOUT
        )


def run_wrk(server: LiveServer, script: Path, seconds: int, tally: Tally) -> float:
    """Send the mix with wrk for ``seconds``; add what it did to ``tally``; its rate.

    wrk runs for a duration, not a number of requests (a Lua script may stop its
    threads, but wrk itself still waits out the duration), so a stretch of the run is
    a few runs of wrk, each at most as long as the rate so far says is left.
    """
    out = subprocess.run(
        [*WRK, f"-d{seconds}s", "-s", str(script), server.url, "--", str(tally.requests)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = int(re.search(r"(\d+) requests in", out).group(1))
    tally.wrk += done
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        if found := re.search(pattern, out):
            tally.wrong_examples.append(found.group(0))
            numbers = [int(n) for n in re.findall(r"\d+", found.group(1))]
            tally.wrong += sum(numbers)
    return done / seconds


def ask_for_links(server: LiveServer, addresses: list[str], tally: Tally, lock) -> None:
    """New readers, one after the other: open /login, post the form."""
    with requests.Session() as session:
        for address in addresses:
            session.cookies.clear()
            page = session.get(f"{server.url}/login", timeout=60)
            token = CSRF_FIELD.search(page.text).group(1)
            form = {"email": address, "next": "/", "csrf_token": token}
            answer = session.post(
                f"{server.url}/login", data=form, allow_redirects=False, timeout=60
            )
            with lock:
                tally.sign_ins += 1
                if answer.status_code != 303:
                    tally.wrong += 1
                    tally.wrong_examples.append(f"POST /login {answer.status_code}")


def drive(server: LiveServer, script: Path, target: int, share: float, tally: Tally) -> None:
    """Send requests until ``tally`` reaches ``target``: wrk and the sign-ins together."""
    wanted = target - tally.requests
    sign_ins = round(wanted * share)
    first = tally.sign_ins
    addresses = [f"reader-{first + number}@example.com" for number in range(sign_ins)]
    lock = threading.Lock()
    posters = [
        threading.Thread(target=ask_for_links, args=(server, addresses[n::POSTERS], tally, lock))
        for n in range(POSTERS)
    ]
    for poster in posters:
        poster.start()
    wrk_target = tally.wrk + wanted - 2 * sign_ins
    while (left := wrk_target - tally.wrk) > 0:
        rate = tally.rate
        # Rather a short run too many than overshooting the checkpoint by a long one:
        # the rate of the first, cold run is low.
        seconds = 1 if rate is None else min(max(math.floor(0.6 * left / rate), 1), LONGEST_RUN)
        tally.rate = run_wrk(server, script, seconds, tally)
    for poster in posters:
        poster.join()


def wait_for_mail(sink: SmtpServer, count: int, timeout: float = 120) -> None:
    """Wait until the sink has ``count`` mails (the worker is idle again), or time out."""
    recorder = sink.recorder
    with recorder.arrived:
        recorder.arrived.wait_for(lambda: len(recorder.messages) >= count, timeout)


def gunicorn_workers(master: int) -> list[int]:
    """The pids of the master's children, the gunicorn workers."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def memory(pid: int) -> tuple[float, float, float, float]:
    """RSS, PSS, USS and anonymous memory of a process, in MB, from smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields["Rss"] / 1024, fields["Pss"] / 1024, uss / 1024, fields["Anonymous"] / 1024


def sample(server: LiveServer, worker: subprocess.Popen) -> dict[str, tuple]:
    """Each process's memory now, by a label that names it."""
    master = server.process.pid
    processes = {f"web worker {pid}": pid for pid in gunicorn_workers(master)}
    processes[f"mail worker {worker.pid}"] = worker.pid
    processes[f"gunicorn master {master}"] = master
    return {label: memory(pid) for label, pid in processes.items()}


def print_table(
    samples: list[tuple[int, dict]], tally: Tally, options, seconds: float, mails: int
) -> None:
    """Memory at each checkpoint, per process, and the growth after the warm-up."""
    database = "PostgreSQL" if options.database_url else "SQLite"
    recycling = options.max_requests or "0, never recycled"
    print(
        f"{tally.requests:,} requests ({tally.wrk:,} by wrk, {tally.sign_ins:,} GET+POST "
        f"/login sign-ins) in {seconds:.0f} s, {tally.requests / seconds:.0f} req/s, "
        f"{database}, auth-service serve 2x8 gthread, max_requests {recycling}"
    )
    wrong = "; ".join(dict.fromkeys(tally.wrong_examples)) or "none"
    print(f"answers not 2xx/3xx (or a POST not 303): {tally.wrong} ({wrong})")
    print(f"mails at the sink: {mails:,} of {tally.sign_ins + 1:,} queued (the bench reader's too)")
    print(
        "memory in MB, from /proc/<pid>/smaps_rollup (USS: Private_Clean + Private_Dirty;"
        " anon: Anonymous, the heaps, not files)"
    )
    heads = "".join(f"{done:>10,}" for done, _ in samples)
    print(f"{'process (pid)':<24}{'':<5}{heads}{'growth':>10}")
    labels = list(dict.fromkeys(label for _, taken in samples for label in taken))
    for label in labels:
        for index, metric in enumerate(("RSS", "PSS", "USS", "anon")):
            values = [taken[label][index] if label in taken else None for _, taken in samples]
            cells = "".join(f"{v:>10.1f}" if v is not None else f"{'-':>10}" for v in values)
            present = [value for value in values if value is not None]
            growth = f"{present[-1] - present[0]:>+10.1f}" if len(present) > 1 else f"{'-':>10}"
            print(f"{label if index == 0 else '':<24}{metric:<5}{cells}{growth}")
    print(
        f"growth: last checkpoint minus the first ({samples[0][0]:,} requests, the warm-up); "
        "the issue's target: flat, within a few MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument(
        "--sign-in-share", type=float, default=0.04, help="of the requests, POST /login"
    )
    parser.add_argument(
        "--max-requests", type=int, default=0, help="gunicorn's max_requests (serve: 20000)"
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    url = options.database_url or f"sqlite:///{folder}/bench.sqlite3"
    prepare(url, folder)
    article = next(f"/articles/{a['slug']}" for a in demo_articles() if a["access"] == "registered")
    sink = SmtpServer()
    sink.start()
    settings = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAIL_HOURLY_CEILING": 0}
    gunicorn = {"GUNICORN_CMD_ARGS": f"--max-requests {options.max_requests}"}
    server = start_serve(url, folder, settings, environment=gunicorn)
    worker = None
    try:
        cookie = signed_in_reader(server, article)
        script = folder / "mix.lua"
        script.write_text(MIX % {"cookie": cookie, "article": article})
        worker = start_worker(url, server, folder, settings)
        tally, samples = Tally(), []
        began = time.perf_counter()
        for fraction in CHECKPOINTS:
            drive(server, script, round(options.requests * fraction), options.sign_in_share, tally)
            wait_for_mail(sink, tally.sign_ins + 1)  # and the bench reader's own
            time.sleep(1)  # let the last requests' threads go back to waiting
            samples.append((tally.requests, sample(server, worker)))
        seconds = time.perf_counter() - began
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGINT)
            worker.wait(timeout=30)
        stop_gunicorn(server)
        sink.stop()
    print_table(samples, tally, options, seconds, len(sink.messages))


if __name__ == "__main__":
    main()
