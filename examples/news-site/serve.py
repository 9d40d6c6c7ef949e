"""Serve the example news site with the strict Content-Security-Policy of a real one.

Standard library only:

    python3 examples/news-site/serve.py [--port 8000] [--service http://auth.news.test:5000]

The pages name the service as ``http://auth.news.test:5000`` (the script tag, pictures,
links); when the service is elsewhere (``--service`` or ``PAYWALL_SERVICE_URL``), they are
served with that address instead. The CSP allows scripts, styles, pictures and requests
from the service's origin and the site itself, and nothing inline: the wall must work
under it.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

FOLDER = Path(__file__).resolve().parent
# What the site serves of its folder: pages, stylesheets, pictures.
PUBLIC_SUFFIXES = {".html", ".css", ".svg"}
WRITTEN_SERVICE = "http://auth.news.test:5000"  # the service as the pages name it
DEFAULT_PORT = 8000
SITE_HOST = "www.news.test"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(service: str) -> str:
    """What the news site allows: itself and the service, nothing inline, no eval, and
    HTML only through a Trusted Types policy."""
    origin = origin_of(service)
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {origin}",
            f"connect-src {origin}",
            f"style-src 'self' {origin}",
            f"img-src 'self' {origin}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            # DOM sinks take only Trusted Types; the wall parses the article's body
            # through its own policy, "paywall".
            "require-trusted-types-for 'script'",
            "trusted-types paywall",
        )
    )


class NewsSiteHandler(SimpleHTTPRequestHandler):
    """Files of the folder, with the site's headers; pages point at the service."""

    service = WRITTEN_SERVICE

    def end_headers(self):
        """Add the site's security headers to every answer."""
        self.send_header("Content-Security-Policy", content_security_policy(self.service))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "strict-origin-when-cross-origin")
        super().end_headers()

    def send_head(self):
        """A page, with the service's address written in; a stylesheet or picture as it
        is; nothing else of the folder (not bodies/, the scripts or the README)."""
        name = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
        path = FOLDER / name
        public = path.suffix in PUBLIC_SUFFIXES and path.is_file()
        if "/" in name or "\\" in name or not public:
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        if path.suffix != ".html":
            return super().send_head()
        page = path.read_text(encoding="utf-8").replace(WRITTEN_SERVICE, self.service)
        body = page.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        return _Body(body)

    def log_message(self, format, *args):
        """One line per request on standard error, as http.server does."""
        sys.stderr.write(f"news-site: {format % args}\n")


class _Body:
    """The bytes of a page, read by ``SimpleHTTPRequestHandler`` as if from a file."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self, *_):
        data, self.data = self.data, b""
        return data

    def close(self):
        pass


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(description="Serve the example news site.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--service",
        default=os.environ.get("PAYWALL_SERVICE_URL", WRITTEN_SERVICE),
        help="the auth-service's public URL (default: $PAYWALL_SERVICE_URL or %(default)s)",
    )
    options = parser.parse_args(argv)
    service = options.service.rstrip("/")
    origin_of(service)  # refuse a service that is not an http(s) URL
    handler = type("Handler", (NewsSiteHandler,), {"service": service})
    server = ThreadingHTTPServer(
        (options.bind, options.port), functools.partial(handler, directory=str(FOLDER))
    )
    port = server.server_address[1]
    print(
        f"The news site: http://{SITE_HOST}:{port}/ (the article: "
        f"http://{SITE_HOST}:{port}/article.html)\n"
        f"The service it embeds: {service}\n"
        f"*.news.test must resolve to 127.0.0.1: a line in /etc/hosts, or\n"
        f'  chromium --host-resolver-rules="MAP *.news.test 127.0.0.1" '
        f"http://{SITE_HOST}:{port}/article.html\n"
        "Ctrl+C to stop.",
        flush=True,
    )
    serve_until_stopped(server)


def serve_until_stopped(server: ThreadingHTTPServer) -> None:
    """Serve until Ctrl+C, then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
