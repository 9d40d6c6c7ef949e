"""Routes of comments: post, reply, edit, delete, report; the moderators' page.

Every change is an HTML form with its CSRF token, answered with a 303 back to the
comment on the article page, or a page that says what went wrong. Signed-out readers
are sent to sign in, then back to the comments.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import Forbidden

from ..articles import store
from ..articles import views as article_pages
from ..extensions import db, limiter
from ..models import Article, Comment
from ..security import private_page
from . import discussion, listing, moderation
from .forms import NOT_ALLOWED, REFUSALS, CommentForm, EditForm

bp = Blueprint("comments", __name__)


def _reader_key() -> str:
    """The counter of one reader, whatever their network or device."""
    return f"reader:{current_user.public_id}"


# New comments and replies of one reader. Every try counts, a refused form too: counted
# before the view runs, in one atomic step of the limits' storage, so that parallel
# posts cannot all pass a check made before any of them is counted.
per_reader = limiter.shared_limit(
    lambda: current_app.config["COMMENT_LIMIT_PER_READER"],
    key_func=_reader_key,
    exempt_when=lambda: not current_user.is_authenticated,
    scope="comments-per-reader",
)


class CommentRefusal(Forbidden):
    """A reader may not do this to this comment: a 403 page saying why."""

    def __init__(self, reason: str):
        super().__init__()
        self.title, self.message = NOT_ALLOWED[reason]
        self.error_code = reason


def _article_or_404(slug: str) -> Article:
    """The published article ``slug``, or a 404."""
    found = store.find(slug)
    if found is None:
        abort(404)
    return found


def _comment_or_404(public_id: str) -> Comment:
    """The comment ``public_id`` (not a tombstone) of a published article, or a 404."""
    found = discussion.find(public_id)
    if found is None or found.deleted_at is not None or store.find(found.article.slug) is None:
        abort(404)
    return found


def _order() -> str:
    """The order of the page the form was sent from (``?order=``)."""
    asked = request.args.get("order", "")
    return asked if asked in listing.ORDERS else listing.ORDERS[0]


def _article_url(article: Article, anchor: str = "comments", **query) -> str:
    """The article page at ``anchor``, in the order the reader was reading it."""
    order = _order()
    if order != listing.ORDERS[0]:
        query["order"] = order
    return url_for("articles.article", slug=article.slug, _anchor=anchor, **query)


def _at_comment(comment: Comment) -> str:
    """The article page showing ``comment``: its page of threads, at its anchor."""
    viewer = current_user.id if current_user.is_authenticated else None
    number = listing.page_number_of(comment, viewer, _order())
    query = {"page": number} if number > 1 else {}
    return _article_url(comment.article, f"comment-{comment.public_id}", **query)


def _sign_in_first(article: Article):
    """Send a signed-out reader to sign in, then back to the article's comments."""
    back = url_for("articles.article", slug=article.slug, _anchor="comments")
    return redirect(url_for("auth.login", next=back), 303)


def _signed_in_reader():
    """The signed-in reader as a model object (not Flask-Login's proxy)."""
    return current_user._get_current_object()


@bp.get("/articles/<slug>/comments")
def comments(slug: str):
    """The comments are on the article page (this address is where forms are sent)."""
    return redirect(_article_url(_article_or_404(slug)), 303)


@bp.post("/articles/<slug>/comments")
@per_reader
def post(slug: str):
    """Post a comment, or a reply (``parent``), under the reader's display name."""
    article = _article_or_404(slug)
    if not current_user.is_authenticated:
        return _sign_in_first(article)
    form = CommentForm()  # CSRFProtect has already refused a form without its token
    reader = _signed_in_reader()
    parent = None
    try:
        if form.parent.data:
            parent = discussion.find_parent(article, form.parent.data)
        comment = discussion.post(
            reader,
            article,
            form.body.data or "",
            parent=parent,
            display_name=form.display_name.data,
        )
        db.session.commit()
    except discussion.Refused as refused:
        db.session.rollback()
        return _refused(article, form, parent, refused.field, refused.reason)
    except IntegrityError as error:
        db.session.rollback()
        if "display_name" in str(error.orig):  # another reader took the name just before
            return _refused(article, form, parent, "display_name", "taken")
        # The comment answered was deleted in the same instant.
        return _refused(article, form, None, "body", "no_parent")
    return redirect(_at_comment(comment), 303)


def _refused(article: Article, form: CommentForm, parent, field: str, reason: str):
    """The article page again, the form with what was typed and why it was refused: the
    reply form under its comment, or the main form when the reply has nowhere to go."""
    private_page()  # it shows what the reader typed
    getattr(form, field).errors = [str(REFUSALS[reason])]
    number = None
    if parent is None:
        form.parent.data = ""
    else:
        viewer = current_user.id
        number = listing.page_number_of(parent, viewer, _order())
    return article_pages.render_article(
        article, comment_form=form, comments_page=number, status=422
    )


@bp.route("/comments/<public_id>/edit", methods=["GET", "POST"])
def edit(public_id: str):
    """Edit one's own comment, within 15 minutes of posting it."""
    comment = _comment_or_404(public_id)
    if not current_user.is_authenticated:
        return _sign_in_first(comment.article)
    private_page()
    reader = _signed_in_reader()
    form = EditForm() if request.method == "POST" else EditForm(body=comment.body)
    try:
        if request.method == "GET":
            discussion.check_edit(comment, reader)
            return render_template("comments/edit.html", comment=comment, form=form)
        discussion.edit(comment, reader, form.body.data or "")
    except discussion.NotAllowed as refusal:
        db.session.rollback()
        if request.method == "GET" or refusal.reason == "not_author":
            raise CommentRefusal(refusal.reason) from None
        # Too late (or hidden meanwhile): the page again, with what was typed, to copy.
        form.body.errors = [str(NOT_ALLOWED[refusal.reason][1])]
        return render_template("comments/edit.html", comment=comment, form=form), 403
    except discussion.Refused as refused:
        db.session.rollback()
        form.body.errors = [str(REFUSALS[refused.reason])]
        return render_template("comments/edit.html", comment=comment, form=form), 422
    db.session.commit()
    return redirect(_at_comment(comment), 303)


@bp.get("/comments/<public_id>/delete")
def confirm_delete(public_id: str):
    """Ask before deleting: the comment, a button that deletes it, a way back."""
    comment = _comment_or_404(public_id)
    if not current_user.is_authenticated:
        return _sign_in_first(comment.article)
    private_page()
    if comment.reader_id != current_user.id:
        raise CommentRefusal("not_author")
    return render_template("comments/delete.html", comment=comment)


@bp.post("/comments/<public_id>/delete")
def delete(public_id: str):
    """Delete one's own comment, at any time (the button of the confirm page)."""
    comment = _comment_or_404(public_id)
    article = comment.article
    if not current_user.is_authenticated:
        return _sign_in_first(article)
    parent = comment.parent
    back = _at_comment(parent) if parent is not None else _article_url(article)
    try:
        discussion.remove(comment, _signed_in_reader())
    except discussion.NotAllowed as refusal:
        raise CommentRefusal(refusal.reason) from None
    db.session.commit()
    flash(_("Your comment is deleted."), "success")
    return redirect(back, 303)


@bp.post("/comments/<public_id>/report")
def report(public_id: str):
    """Report a comment to the moderators (once per reader)."""
    comment = _comment_or_404(public_id)
    if not current_user.is_authenticated:
        return _sign_in_first(comment.article)
    if not discussion.is_shown(comment):
        abort(404)
    try:
        discussion.report(comment, _signed_in_reader())
    except discussion.NotAllowed as refusal:
        raise CommentRefusal(refusal.reason) from None
    db.session.commit()
    return redirect(_at_comment(comment), 303)


# --- The moderators -------------------------------------------------------------------


def _staff_only():
    """``None`` for staff; otherwise the answer: sign in first, or 403."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=url_for("comments.moderation_page")), 303)
    if not moderation.may_moderate(current_user):
        raise CommentRefusal("not_staff")
    return None


@bp.get("/moderation")
def moderation_page():
    """Comments held for their links, and reported ones; the latest hidden ones."""
    refused = _staff_only()
    if refused is not None:
        return refused
    private_page()
    return render_template(
        "comments/moderation.html",
        waiting=moderation.waiting(),
        hidden=moderation.recently_hidden(),
    )


@bp.post("/moderation/<public_id>/hide")
def hide(public_id: str):
    """Hide a comment from everyone but its author."""
    return _decide(public_id, moderation.hide, _("The comment is hidden."))


@bp.post("/moderation/<public_id>/show")
def show(public_id: str):
    """Approve a comment: shown to everyone, its reports cleared."""
    return _decide(public_id, moderation.show, _("The comment is shown to everyone."))


def _decide(public_id: str, decision, done: str):
    """A moderator's decision on one comment, then back where they acted from."""
    refused = _staff_only()
    if refused is not None:
        return refused
    comment = _comment_or_404(public_id)
    decision(comment, _signed_in_reader())
    db.session.commit()
    flash(done, "success")
    return _back_from_moderation(comment)


def _back_from_moderation(comment: Comment):
    """Back to the moderation page, or to the article when staff acted from there."""
    if request.form.get("back") == "article":
        return redirect(_article_url(comment.article), 303)
    return redirect(url_for("comments.moderation_page"), 303)
