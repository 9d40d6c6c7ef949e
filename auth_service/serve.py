"""``auth-service serve``: the service under gunicorn, as it runs in production.

gunicorn because it is the WSGI server Flask's own deployment docs lead with, it is
maintained, and its master process gives what an operator needs without more parts:
a fixed set of worker processes restarted when one dies, graceful reloads on SIGHUP
(new code, no dropped request), graceful stops on SIGTERM, and hooks. Defaults:

- ``gthread`` workers, one per core, 8 threads each: requests mostly wait on the
  database, so threads serve them cheaply and a slow client holds a thread, not a
  process;
- ``timeout`` 30 s (a worker stuck longer is replaced), ``graceful_timeout`` 30 s,
  ``keepalive`` 5 s (behind a load balancer that keeps connections open);
- ``max_requests`` 20,000 with jitter: workers are recycled now and then, so slow leaks
  in libraries cannot grow without end;
- an access log on stdout and the errors on stderr, both JSON lines with the request
  id (``logs``); the app's own lines too;
- ``PROMETHEUS_MULTIPROC_DIR``: a folder where every process counts, so that
  ``/metrics`` adds them up (``metrics``); a dead worker's live gauges are dropped.

Every default can be changed with gunicorn's own ``GUNICORN_CMD_ARGS``
(e.g. ``--workers 8``) or the command's options.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from . import logs

THREADS = 8


def default_workers() -> int:
    """One worker process per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class JsonLogger(glogging.Logger):
    """gunicorn's logs as JSON lines: its errors, and one access line per request with
    the request id the app gave it (its ``X-Request-ID``)."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(logs.json_formatter())
                handler.addFilter(logs.RequestIdFilter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        headers = {name.lower(): value for name, value in (resp.headers or [])}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        self.access_log.info(
            "%s %s %s",
            environ.get("REQUEST_METHOD"),
            environ.get("PATH_INFO"),
            status,
            extra={
                "request_id": headers.get("x-request-id", "-"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "status": int(status) if str(status).isdigit() else status,
                "duration_ms": round(request_time.total_seconds() * 1000, 2),
                "bytes": getattr(resp, "sent", None),
                "remote_addr": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT", "")[:256],
            },
        )


def _child_exit(server, worker) -> None:
    """A worker is gone: its live gauges must not be summed any more."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def _post_worker_init(worker) -> None:
    """Every line the app logs in this worker goes out as JSON, with its request id."""
    logs.configure_json_logging(logging.INFO)


class Server(BaseApplication):
    """gunicorn with this service's defaults and the app of ``create_app``."""

    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)
        # GUNICORN_CMD_ARGS wins, as in gunicorn's own command.
        arguments = self.cfg.get_cmd_args_from_env()
        if arguments:
            parsed = self.cfg.parser().parse_args(arguments)
            for key, value in vars(parsed).items():
                if value is not None and key in self.cfg.settings:
                    self.cfg.set(key.lower(), value)

    def load(self):
        from . import create_app

        return create_app()


def options(bind: str, workers: int | None, threads: int | None) -> dict:
    """The settings gunicorn starts with."""
    return {
        "bind": bind,
        "workers": workers or default_workers(),
        "worker_class": "gthread",
        "threads": threads or THREADS,
        "timeout": 30,
        "graceful_timeout": 30,
        "keepalive": 5,
        "max_requests": 20_000,
        "max_requests_jitter": 2_000,
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": JsonLogger,
        "child_exit": _child_exit,
        "post_worker_init": _post_worker_init,
        "proc_name": "auth-service",
        # Behind a proxy the service trusts X-Forwarded-* only as PROXY_FIX_* says.
        "forwarded_allow_ips": "127.0.0.1,::1",
    }


def prepare_metrics_folder(instance_path: str) -> str:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for the workers.

    An operator's own folder is used as it is: they run the mail workers of the machine
    with the same one, so that one scrape sees every process, and empty it before
    starting them all (counts of an earlier run must not be added to this one). Without
    one, the instance folder's ``metrics`` is emptied and used.
    """
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        folder = str(Path(instance_path) / "metrics")
        shutil.rmtree(folder, ignore_errors=True)
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def run(bind: str, workers: int | None = None, threads: int | None = None) -> None:
    """Serve until stopped (SIGTERM, SIGINT); SIGHUP reloads the workers gracefully."""
    Server(options(bind, workers, threads)).run()
