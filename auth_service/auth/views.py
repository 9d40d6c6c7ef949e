"""Routes of signing in. Each parses the request, calls ``signin``, and renders."""

from __future__ import annotations

from dataclasses import dataclass

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from ..extensions import csrf, db
from ..mail.rendering import public_url_for
from ..metrics import count_sign_in
from ..security import private_page, token_page
from . import abuse, flow, signin, social
from .browser import (
    remembered_attempts,
    safe_next,
    sign_out_this_browser,
)
from .forms import (
    NEWSLETTER_WORDING,
    REFUSALS,
    CodeForm,
    ConfirmLinkForm,
    LoginForm,
    SocialSignInForm,
    blank_login_form,
)
from .limits import (
    per_address,
    per_address_and_network,
    per_ip_checks,
    per_ip_posts,
    resends_per_chain,
)

bp = Blueprint("auth", __name__)

MAX_TOKEN_LENGTH = 1024


@dataclass
class Decoy:
    """Stands in for an attempt on the "check your email" page shown to a bot."""

    email: str
    next_url: str = "/"
    newsletter: bool = False


@bp.get("/login")
def login():
    """The sign-up-or-sign-in form."""
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url, 303)
    form = blank_login_form(next_url)
    return render_template("auth/login.html", form=form)


@bp.post("/login")
@per_ip_posts
@per_address_and_network
@per_address
@resends_per_chain
def request_link():
    """Send a link and code to a valid address; explain an invalid one.

    Before mailing: a likely typo of a common domain is offered as a correction, then
    blocked and disposable domains are refused, then the service-wide ceiling checked.
    A bot that filled the hidden honeypot field is told "check your email" and sent
    nothing.
    """
    form = LoginForm()  # CSRFProtect has already refused a form without its token
    private_page()  # every answer below may show the address typed
    if not form.validate():
        return render_template("auth/login.html", form=form), 422
    asked = flow.ask_for_link(
        form.address,
        next_url=form.next.data,
        newsletter=bool(form.newsletter.data),
        honeypot=form.website.data or "",
        as_typed=bool(form.as_typed.data),
    )
    if asked.outcome == "decoy":
        return _pretend_sent(form.address)
    if asked.outcome == "suggest":
        return render_template("auth/login.html", form=form, suggestion=asked.suggestion)
    if asked.outcome == "refuse":
        form.email.errors.append(str(REFUSALS[asked.refusal]))
        return render_template("auth/login.html", form=form), 422
    db.session.commit()
    response = redirect(url_for("auth.sent"), 303)
    flow.remember_sent(response, asked.issued)
    return response


def _pretend_sent(address: str):
    """What a bot that filled the honeypot sees: the usual answer, and no mail."""
    session["decoy_address"] = address
    return redirect(url_for("auth.sent"), 303)


@bp.get("/login/sent")
def sent():
    """ "Check your email": the exact address, the code form, "send again"."""
    attempts = signin.open_attempts(remembered_attempts(request))
    if not attempts and session.get("decoy_address"):
        attempts = [Decoy(email=session["decoy_address"], next_url=safe_next(None))]
    if not attempts:
        return redirect(url_for("auth.login"), 303)
    private_page()
    return render_template(
        "auth/sent.html", attempt=attempts[0], form=CodeForm(), resend=_resend_form(attempts[0])
    )


def _resend_form(attempt) -> LoginForm:
    """The hidden form behind "send again", pre-filled from the open attempt."""
    return LoginForm(
        formdata=None,
        email=attempt.email,
        next=attempt.next_url,
        newsletter=attempt.newsletter,
    )


@bp.post("/login/code")
@per_ip_checks
def enter_code():
    """Sign in the browser that asked for the link, with the code from the mail."""
    form = CodeForm()
    try:
        attempt = flow.consume_code(form.code.data or "")
    except signin.SignInError as error:
        if error.reason not in ("wrong_code", "malformed_code"):
            return _failed(error, method="code")
        ids = remembered_attempts(request)
        attempts = signin.open_attempts(ids)
        if not attempts:  # closed in the instant since the code was checked
            return _failed(signin.why_none_is_open(ids), method="code")
        count_sign_in("code", error.reason)
        private_page()
        form.code.errors = [_code_error(error)]
        return render_template(
            "auth/sent.html", attempt=attempts[0], form=form, resend=_resend_form(attempts[0])
        ), 422
    # The code is only taken with the attempt cookie: this is the browser that asked.
    return _sign_in(attempt, method="code", same_browser=True)


def _code_error(error: signin.SignInError) -> str:
    """What to tell a reader whose code was refused."""
    if error.reason == "malformed_code":
        return _("The code is the 6 digits in the email, for example 123456.")
    message = _("This code is not the one in the email.")
    if error.tries_left > 1:
        return message + " " + _("You can try %(count)d more times.", count=error.tries_left)
    return message + " " + _("You can try one more time.")


@bp.route("/login/verify", methods=["GET"])
@per_ip_checks
def verify():
    """The link from the mail.

    In the browser that asked, it signs in at once. Anywhere else (another device, a
    mail scanner, a ``HEAD``) it changes nothing and shows a confirm button.
    """
    token_page()
    token = request.args.get("token", "")[:MAX_TOKEN_LENGTH]
    try:
        attempt_id = signin.attempt_id_of(token)
        same_browser = attempt_id in remembered_attempts(request)
        if same_browser and request.method == "GET":
            return _sign_in(signin.consume_link(token), method="link", same_browser=True)
        attempt = signin.check_link(token)
    except signin.SignInError as error:
        return _failed(error, method="link")
    return render_template("auth/confirm.html", attempt=attempt, form=ConfirmLinkForm(token=token))


@bp.post("/login/verify")
@per_ip_checks
def confirm():
    """The confirm button: consume the link and sign in this browser."""
    token_page()
    form = ConfirmLinkForm()
    try:
        attempt = signin.consume_link((form.token.data or "")[:MAX_TOKEN_LENGTH])
    except signin.SignInError as error:
        return _failed(error, method="link")
    newsletter = bool(form.newsletter.data)
    return _sign_in(attempt, method="link", newsletter=newsletter)


@bp.post("/login/with/<name>")
@per_ip_posts
def social_start(name: str):
    """A provider's button: off to the provider, with what the reader chose on the wall."""
    provider = _provider_or_404(name)
    form = SocialSignInForm()  # CSRFProtect has already refused a form without its token
    next_url = safe_next(form.next.data)
    if current_user.is_authenticated:
        return redirect(next_url, 303)
    carried = social.Carried(
        next_url=next_url,
        newsletter_wording=str(NEWSLETTER_WORDING) if form.newsletter.data else None,
    )
    callback = public_url_for("auth.social_callback", name=provider.name)
    try:
        url = social.start(provider, callback, carried)
    except social.SocialSignInError as error:
        return _social_failed(provider, error, next_url)
    private_page()
    return redirect(url, 303)


@bp.route("/login/with/<name>/callback", methods=["GET", "POST"])
@csrf.exempt  # the provider's answer: the state parameter is what ties it to this browser
@per_ip_checks
def social_callback(name: str):
    """The provider's answer: sign the reader in with the address it vouches for."""
    provider = _provider_or_404(name)
    token_page()  # the URL carries a one-time code
    if request.method == "POST":
        # Apple's form_post: a cross-site POST, so the browser sent no SameSite=Lax
        # session cookie (and the session must not be touched, or it would be replaced
        # by an empty one). The same fields as a GET bring the cookie back.
        fields = social.callback_parameters()
        return redirect(url_for("auth.social_callback", name=provider.name, **fields), 303)
    try:
        address, carried = social.finish(provider)
    except social.SocialSignInError as error:
        return _social_failed(provider, error, error.next_url)
    if abuse.refusal(address) == "blocked":
        return _social_failed(provider, social.SocialSignInError("blocked"), carried.next_url)
    signed_in = flow.complete_social_sign_in(
        address,
        method=provider.name,
        next_url=carried.next_url,
        newsletter_wording=carried.newsletter_wording,
    )
    db.session.commit()
    count_sign_in(provider.name, "signed_in")
    response = redirect(signed_in.next_url, 303)
    flow.open_session(signed_in, response)
    return response


def _provider_or_404(name: str):
    provider = social.providers().get(name)
    if provider is None:
        abort(404)
    return provider


SOCIAL_STATUS = {"cancelled": 200, "unavailable": 503, "unverified": 403, "no_email": 403}
SOCIAL_STATUS |= {"invalid_email": 403, "blocked": 403}


def _social_failed(provider, error: social.SocialSignInError, next_url: str | None):
    """The page for a sign-in with a provider that did not happen, offering the mail."""
    private_page()
    current_app.logger.info(
        "Sign-in with %s refused: %s %s", provider.name, error.reason, error.detail
    )
    count_sign_in(provider.name, error.reason)
    status = SOCIAL_STATUS.get(error.reason, 400)
    back = url_for("auth.login", next=safe_next(next_url)) if next_url else url_for("auth.login")
    return render_template(
        "auth/social_failed.html", provider=provider, reason=error.reason, back=back
    ), status


@bp.post("/logout")
def logout():
    """Sign this browser out."""
    sign_out_this_browser()
    db.session.commit()
    return redirect(url_for("articles.front_page"), 303)


def _sign_in(attempt, *, method: str, same_browser: bool = False, newsletter: bool = False):
    """Sign the reader of a consumed attempt in and send them back where they were."""
    signed_in = flow.complete_sign_in(
        attempt, method=method, same_browser=same_browser, newsletter=newsletter
    )
    db.session.commit()
    count_sign_in(method, "signed_in")
    response = redirect(signed_in.next_url, 303)
    flow.open_session(signed_in, response)
    return response


STATUS_OF = {"invalid": 400, "expired": 410, "used": 410, "too_many_tries": 410}


def _failed(error: signin.SignInError, *, method: str):
    """The page for a link or code that cannot sign in, offering a new link."""
    count_sign_in(method, error.reason)
    token_page()  # it may have been reached with a token, and offers the address
    status = STATUS_OF.get(error.reason, 400)
    resend = _resend_form(error.attempt) if error.attempt is not None else None
    if resend is not None:
        # This page may be shown to whoever holds the link: a new link asked from here
        # carries no newsletter choice made by someone else.
        resend.newsletter.data = False
    current_app.logger.info("Sign-in refused: %s", error.reason)
    return render_template("auth/failed.html", reason=error.reason, resend=resend), status
