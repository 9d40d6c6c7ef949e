"""Sign up or sign in, check your email, verify the link or code, sign out."""

from flask import Flask, g, redirect, request, url_for
from sqlalchemy.exc import OperationalError

from ..extensions import db, login_manager
from ..models import Reader
from . import sessions, social
from .views import bp

__all__ = ["bp", "init_app"]


def load_reader(session_key: str) -> Reader | None:
    """The reader of the live server-side session whose key the cookie carries, if any.

    During a database outage nobody is signed in: the error page must still render.
    """
    try:
        return sessions.reader_for(session_key)
    except OperationalError:
        db.session.rollback()
        g.reader_unknown = True  # not "signed out": the entitlement cookie stays
        return None


def ask_to_sign_in():
    """Send a signed-out reader to the form, with a way back to where they were."""
    here = request.full_path.rstrip("?") if request.query_string else request.path
    target = request.script_root + here  # under the service's public path prefix, if any
    return redirect(url_for("auth.login", next=target), 303)


def init_app(app: Flask) -> None:
    """Attach Flask-Login (how a session names its reader, where a signed-out reader is
    sent) and this blueprint to ``app``."""
    login_manager.init_app(app)
    login_manager.user_loader(load_reader)
    login_manager.unauthorized_handler(ask_to_sign_in)
    # Flask-Login's own protection would tie sessions to an IP and user agent hash;
    # sign-in already rotates the session, and mobile readers change networks often.
    login_manager.session_protection = None
    social.init_app(app)  # OIDC_PROVIDERS, registered with Authlib
    app.context_processor(lambda: {"sign_in_providers": list(social.providers().values())})
    app.register_blueprint(bp)
