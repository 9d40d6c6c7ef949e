"""``/dev/mailbox``: read the mails of the dev mailbox in the browser.

Registered only in dev mode (``auth-service demo``, debug), never in production.
"""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from flask import Blueprint, Response, abort, current_app, render_template

from .transports import mailbox_folder

bp = Blueprint("devmail", __name__, url_prefix="/dev/mailbox")

# The HTML part runs no script and submits no form; its links may still be followed.
SANDBOX = "sandbox allow-popups allow-top-navigation-by-user-activation"
NAME = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9]+\.eml$")


def _read(name: str) -> EmailMessage:
    """Parse one stored mail; 404 for anything that is not one."""
    if not NAME.match(name):
        abort(404)
    path = mailbox_folder(current_app) / name
    if not path.is_file():
        abort(404)
    with path.open("rb") as handle:
        return BytesParser(policy=policy.default).parse(handle)


@bp.get("/")
def inbox():
    """Every mail in the dev mailbox, newest first."""
    folder = mailbox_folder(current_app)
    names = sorted((p.name for p in folder.glob("*.eml")), reverse=True) if folder.is_dir() else []
    mails = [(name, _read(name)) for name in names[:200]]
    return render_template("devmail/inbox.html", mails=mails)


@bp.get("/<name>")
def show(name: str):
    """One mail: its headers and its plain-text part."""
    message = _read(name)
    text = message.get_body(preferencelist=("plain",))
    return render_template(
        "devmail/message.html",
        name=name,
        message=message,
        text=text.get_content() if text else "",
    )


@bp.get("/<name>/html")
def show_html(name: str):
    """The HTML part on its own, sandboxed: no script, no form runs from it."""
    part = _read(name).get_body(preferencelist=("html",))
    if part is None:
        abort(404)
    return Response(
        part.get_content(),
        mimetype="text/html",
        headers={"Content-Security-Policy": SANDBOX},
    )
