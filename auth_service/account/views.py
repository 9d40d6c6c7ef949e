"""Routes of the account page. Signed-in readers only."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..auth import addresses, sessions
from ..auth.browser import forget_device, sign_out_this_browser
from ..extensions import db
from ..i18n import current_language
from ..newsletter import subscriptions
from ..security import private_page
from . import personal_data

bp = Blueprint("account", __name__)


def _render_account(**extra):
    """The account page of the signed-in reader."""
    private_page()
    return render_template(
        "account/account.html",
        reader=current_user,
        choices=subscriptions.subscriptions(current_user),
        suppression=subscriptions.suppression_of(current_user),
        sign_ins=personal_data.recent_sign_ins(current_user),
        devices=sessions.live_sessions(current_user),
        this_device=sessions.key_hash(current_user.session_key),
        **extra,
    )


@bp.get("/account")
@login_required
def account():
    """Address, newsletters, recent sign-ins, and the three actions."""
    return _render_account()


@bp.post("/account/sign-out-everywhere")
@login_required
def sign_out_everywhere():
    """End every session of this reader, on every device."""
    sessions.end_every_session(current_user._get_current_object())
    sign_out_this_browser()
    db.session.commit()
    flash(_("You are signed out on every device."), "success")
    return redirect(url_for("articles.front_page"), 303)


@bp.post("/account/devices/<device_id>/sign-out")
@login_required
def sign_out_device(device_id: str):
    """End one session of this reader: a device they no longer use, or this one."""
    if device_id == sessions.key_hash(current_user.session_key):
        sign_out_this_browser()  # which ends this session, wherever it was copied
        db.session.commit()
        flash(_("You are signed out."), "success")
        return redirect(url_for("articles.front_page"), 303)
    if not sessions.end_device(current_user._get_current_object(), device_id):
        abort(404)
    db.session.commit()
    flash(_("That device is signed out."), "success")
    return redirect(url_for("account.account"), 303)


@bp.get("/account/export")
@login_required
def export():
    """The reader's data as a JSON download."""
    private_page()
    body = json.dumps(personal_data.export(current_user), ensure_ascii=False, indent=2)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
    )


@bp.post("/account/delete")
@login_required
def delete():
    """Delete the account once the reader has typed their address to confirm."""
    typed = (request.form.get("confirm") or "").strip()
    try:
        confirmed = addresses.normalise_address(typed) == current_user.email
    except addresses.InvalidAddress:
        confirmed = False
    if not confirmed:
        error = _("Type your email address exactly as shown above to delete your account.")
        return _render_account(delete_error=error, typed=typed[:320]), 422
    personal_data.delete_reader(current_user._get_current_object())
    sign_out_this_browser()
    db.session.commit()
    flash(_("Your account and its data have been deleted."), "success")
    response = redirect(url_for("articles.front_page"), 303)
    forget_device(response)
    return response


@bp.post("/account/newsletters")
@login_required
def newsletters():
    """Subscribe to the ticked newsletters, unsubscribe from the others."""
    chosen = set(request.form.getlist("newsletter"))
    subscriptions.choose_ticked(
        current_user._get_current_object(), chosen, locale=current_language(), source=request.path
    )
    db.session.commit()
    flash(_("Your newsletter choices are saved."), "success")
    return redirect(url_for("account.account"), 303)


@bp.post("/account/mail-problem/clear")
@login_required
def clear_mail_problem():
    """The reader says their address works again: newsletters may go out to it."""
    subscriptions.clear_suppression(current_user._get_current_object())
    db.session.commit()
    flash(_("Thank you: we will write to your address again."), "success")
    return redirect(url_for("account.account"), 303)
