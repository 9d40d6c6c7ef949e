"""The sign-in mail: rendered in the reader's language, queued with the attempt."""

from flask import current_app
from flask_babel import lazy_gettext as _l

from ..mail import outbox, rendering
from ..models import SIGN_IN_MAIL
from . import addresses, signin


def queue_sign_in_mail(issued: signin.IssuedLogin) -> None:
    """Put the link and code of ``issued`` in the outbox, in the same transaction."""
    attempt = issued.attempt
    site = current_app.config["SITE_NAME"]
    rendered = rendering.render(
        "signin",
        to=addresses.transport_address(attempt.email),
        locale=attempt.locale,
        subject=_l("Your sign-in link for %(site)s", site=site),
        link=rendering.public_url_for("auth.verify", token=issued.token),
        code=issued.code,
        minutes=current_app.config["LOGIN_TOKEN_MAX_AGE"] // 60,
        address=attempt.email,
    )
    outbox.queue(rendered, kind=SIGN_IN_MAIL)
