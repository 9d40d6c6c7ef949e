"""The forms of signing in; each carries a CSRF token in ``csrf_token``."""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import ValidationError

from . import addresses

FORMAT_HINT = "example@domain.com"

ADDRESS_ERRORS = {
    "empty": _l("Enter your email address, in the format %(hint)s.", hint=FORMAT_HINT),
    "format": _l(
        "This is not a valid email address. Enter it in the format %(hint)s.", hint=FORMAT_HINT
    ),
    "too_long": _l(
        "This address is too long: an email address has at most 254 characters. "
        "Enter it in the format %(hint)s.",
        hint=FORMAT_HINT,
    ),
    "local_too_long": _l(
        "The part before the @ is too long: it has at most 64 characters. "
        "Enter your address in the format %(hint)s.",
        hint=FORMAT_HINT,
    ),
}

REFUSALS = {
    "blocked": _l(
        "This address cannot be used to sign up here. Please use your personal or work address."
    ),
    "disposable": _l(
        "Disposable addresses cannot be used to sign up. "
        "Please use an address you will keep: we only write to send your sign-in links."
    ),
}

NEWSLETTER_WORDING = _l(
    "Send me the daily front page newsletter (free, one email each morning; "
    "unsubscribe in one click)."
)


def blank_login_form(next_url: str) -> LoginForm:
    """The empty form of the wall and the login page; the box ticked only if configured."""
    return LoginForm(next=next_url, newsletter=current_app.config["NEWSLETTER_DEFAULT_OPT_IN"])


class LoginForm(FlaskForm):
    """Sign up or sign in: one address, the newsletter opt-in, where to go back."""

    email = StringField(_l("Email address"))
    newsletter = BooleanField(NEWSLETTER_WORDING)
    next = HiddenField()
    # Set by the "use it as typed" and "use the suggestion" buttons of the typo hint.
    as_typed = HiddenField()
    # The honeypot: hidden from people (and from screen readers), filled by bots.
    website = StringField()

    address: str | None = None

    def validate_email(self, field) -> None:
        """Normalise the address, or explain what is wrong with it."""
        raw = (field.data or "").strip()
        if not raw:
            raise ValidationError(str(ADDRESS_ERRORS["empty"]))
        try:
            self.address = addresses.normalise_address(raw)
        except addresses.InvalidAddress as error:
            raise ValidationError(str(ADDRESS_ERRORS[error.reason])) from None


class CodeForm(FlaskForm):
    """The 6-digit code from the mail."""

    code = StringField(_l("6-digit code"))


class SocialSignInForm(FlaskForm):
    """A provider's button: it submits the wall's form, whose newsletter box and way
    back it carries through the round trip (the address field is not read)."""

    newsletter = BooleanField(NEWSLETTER_WORDING)
    next = HiddenField()


class ConfirmLinkForm(FlaskForm):
    """The button that consumes a link opened in another browser.

    Its newsletter box starts unticked whatever the asking browser chose: whoever asked
    for the link may not be the reader who opens it, and consent is the opener's.
    """

    token = HiddenField()
    newsletter = BooleanField(NEWSLETTER_WORDING)
