"""The forms of comments; each carries a CSRF token in ``csrf_token``.

The rules live in ``discussion`` and ``names``; these forms carry the fields and say,
in the reader's language, why something was refused.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField

from .discussion import EDIT_WINDOW, MAX_LENGTH
from .names import MAX_LENGTH as NAME_MAX
from .names import MIN_LENGTH as NAME_MIN

EDIT_MINUTES = int(EDIT_WINDOW.total_seconds() // 60)

REFUSALS = {
    "empty": _l("Write your comment before sending it."),
    "too_long": _l(
        "Your comment is too long: at most %(max)d characters. Shorten it and send it again.",
        max=MAX_LENGTH,
    ),
    "no_parent": _l("The comment you answered is no longer shown. Your reply was not posted."),
    "reply_to_reply": _l(
        "You can answer a comment, not a reply. Answer the comment the reply is under."
    ),
    "no_name": _l("Choose the name your comments will be signed with."),
    "length": _l("A name has %(min)d to %(max)d characters.", min=NAME_MIN, max=NAME_MAX),
    "characters": _l("This name holds characters that cannot be shown. Use letters and spaces."),
    "letters": _l("A name needs at least one letter or digit."),
    "address": _l(
        "A name cannot contain @: it must not look like an email address, which is never shown."
    ),
    "taken": _l("Another reader already comments under this name. Choose another."),
}

NOT_ALLOWED = {
    "not_author": (
        _l("This is not your comment"),
        _l("Only the author of a comment can edit or delete it."),
    ),
    "too_late": (
        _l("This comment can no longer be edited"),
        _l(
            "A comment can be edited for %(minutes)d minutes after it is posted. "
            "You can still delete it.",
            minutes=EDIT_MINUTES,
        ),
    ),
    "hidden": (
        _l("This comment was hidden by the moderators"),
        _l("A hidden comment cannot be edited. You can still delete it."),
    ),
    "own_comment": (
        _l("This is your own comment"),
        _l("You cannot report your own comment. You can edit or delete it."),
    ),
    "not_staff": (
        _l("For the moderators only"),
        _l("Only the newsroom's moderators can see this page."),
    ),
}


class CommentForm(FlaskForm):
    """A new comment, or a reply (``parent``); the name field is shown only to a reader
    who has none yet."""

    body = TextAreaField(_l("Your comment"))
    display_name = StringField(_l("Your name as shown on your comments"))
    parent = HiddenField()


class EditForm(FlaskForm):
    """The new text of one's own comment."""

    body = TextAreaField(_l("Your comment"))
