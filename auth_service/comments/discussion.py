"""The rules of commenting: post, reply, edit, delete, report; what a reader owns.

Signed-in readers write under their display name; replies go one level deep; authors
edit for 15 minutes and delete at any time; a comment with more links than
``MAX_LINKS`` waits for staff (``held``). A deleted comment that others replied to
stays as a tombstone with no author and no text, so the replies keep their place.

No request and no session here: the views pass the reader and ``now``; nothing is
committed (the view commits).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import (
    COMMENT_HELD,
    COMMENT_HIDDEN,
    COMMENT_VISIBLE,
    Article,
    Comment,
    CommentReport,
    Reader,
    iso_utc,
    utcnow,
)
from . import names, text

MAX_LENGTH = 4_000  # characters, counted after normalisation
MAX_LINKS = 3  # more, and the comment waits for staff
EDIT_WINDOW = timedelta(minutes=15)


class Refused(ValueError):
    """What the reader sent cannot be posted; ``reason`` says why (a key of the form's
    messages): ``empty``, ``too_long``, ``no_name``, ``reply_to_reply``, ``no_parent``;
    or the name's reason when the display name was refused."""

    def __init__(self, reason: str, field: str = "body"):
        super().__init__(reason)
        self.reason = reason
        self.field = field


class NotAllowed(PermissionError):
    """This reader may not do this to this comment; ``reason``: ``not_author``,
    ``too_late``, ``hidden``, ``own_comment``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def clean_body(typed: str) -> str:
    """The body as stored, or :class:`Refused` (empty, or longer than ``MAX_LENGTH``)."""
    body = text.normalise(typed)
    if not body:
        raise Refused("empty")
    if len(body) > MAX_LENGTH:
        raise Refused("too_long")
    return body


def status_for(body: str) -> str:
    """``held`` for a body with more links than ``MAX_LINKS``, else ``visible``."""
    return COMMENT_HELD if len(text.addresses(body)) > MAX_LINKS else COMMENT_VISIBLE


def find(public_id: str) -> Comment | None:
    """The comment with this public id, tombstones included."""
    if not public_id or len(public_id) > 32:
        return None
    return db.session.scalar(select(Comment).where(Comment.public_id == public_id))


def find_parent(article: Article, public_id: str) -> Comment:
    """The comment of ``article`` a reply answers, or :class:`Refused`: it must be a
    comment (not a reply) that readers can see."""
    parent = find(public_id)
    # Locked until the reply is committed, so that the parent's deletion, which checks
    # for replies first, waits for it (see _remove).
    if parent is not None and not _lock(parent):
        parent = None
    if parent is None or parent.article_id != article.id or not is_shown(parent):
        raise Refused("no_parent")
    if parent.parent_id is not None:
        raise Refused("reply_to_reply")
    return parent


def is_shown(comment: Comment) -> bool:
    """Whether every reader sees this comment's text."""
    return comment.status == COMMENT_VISIBLE and comment.deleted_at is None


def post(
    reader: Reader,
    article: Article,
    typed: str,
    *,
    parent: Comment | None = None,
    display_name: str | None = None,
    now: datetime | None = None,
) -> Comment:
    """Add ``reader``'s comment (or reply to ``parent``) to ``article``.

    A reader without a display name must choose one (``display_name``) with their first
    comment. Raises :class:`Refused`; nothing is written then.
    """
    body = clean_body(typed)
    if parent is not None and parent.parent_id is not None:
        raise Refused("reply_to_reply")
    if reader.display_name is None:
        if not (display_name or "").strip():
            raise Refused("no_name", field="display_name")
        try:
            names.choose(reader, display_name)
        except names.NameRefused as refused:
            raise Refused(refused.reason, field="display_name") from None
    comment = Comment(
        article_id=article.id,
        reader_id=reader.id,
        parent_id=parent.id if parent is not None else None,
        body=body,
        status=status_for(body),
        created_at=now or utcnow(),
    )
    db.session.add(comment)
    db.session.flush()  # its public id, for the redirect to it
    return comment


def may_edit(comment: Comment, reader, now: datetime | None = None) -> bool:
    """Whether ``reader`` may still edit ``comment``: its author, within the window."""
    try:
        check_edit(comment, reader, now or utcnow())
    except NotAllowed:
        return False
    return True


def check_edit(comment: Comment, reader, now: datetime | None = None) -> None:
    """Raise :class:`NotAllowed` unless ``reader`` may edit ``comment`` at ``now``: its
    author, within ``EDIT_WINDOW`` of posting, and not hidden by staff."""
    now = now or utcnow()
    _check_author(comment, reader)
    if comment.status == COMMENT_HIDDEN:
        raise NotAllowed("hidden")
    if now - comment.created_at > EDIT_WINDOW:
        raise NotAllowed("too_late")


def _check_author(comment: Comment, reader) -> None:
    """Raise :class:`NotAllowed` unless ``reader`` wrote ``comment``."""
    if reader is None or comment.reader_id is None or comment.reader_id != reader.id:
        raise NotAllowed("not_author")


def edit(comment: Comment, reader: Reader, typed: str, *, now: datetime | None = None) -> None:
    """Replace the text of ``reader``'s own comment, within ``EDIT_WINDOW`` of posting.

    The link rule applies again: a comment edited to hold many links waits for staff.
    Raises :class:`NotAllowed` or :class:`Refused`.
    """
    now = now or utcnow()
    check_edit(comment, reader, now)
    body = clean_body(typed)
    if body != comment.body:
        comment.body = body
        comment.edited_at = now
        comment.status = status_for(body)


def remove(comment: Comment, reader: Reader, *, now: datetime | None = None) -> None:
    """Delete ``reader``'s own comment, at any time. Raises :class:`NotAllowed`."""
    _check_author(comment, reader)
    _remove(comment, now or utcnow())


def _lock(comment: Comment) -> bool:
    """Lock ``comment``'s row for the transaction and read it again (PostgreSQL; SQLite
    serialises writers anyway); ``False`` when it was deleted meanwhile."""
    found = db.session.execute(
        select(Comment.id).where(Comment.id == comment.id).with_for_update()
    ).first()
    if found is None:
        return False
    db.session.refresh(comment)
    return True


def _remove(comment: Comment, now: datetime) -> None:
    """Delete ``comment``, or leave a tombstone if others replied to it.

    The row is locked first: a reply being posted to it locks it too, so the check for
    replies cannot miss one committed in between (the delete would cascade to it).
    """
    if not _lock(comment):
        return  # deleted meanwhile
    db.session.execute(delete(CommentReport).where(CommentReport.comment_id == comment.id))
    if comment.parent_id is None and _has_replies(comment.id):
        comment.body = ""
        comment.reader_id = None
        comment.edited_at = None
        comment.deleted_at = now
        return
    parent_id = comment.parent_id
    db.session.delete(comment)
    db.session.flush()
    if parent_id is not None:
        _drop_bare_tombstones([parent_id])


def _has_replies(comment_id: int) -> bool:
    """Whether any reply (of any status) hangs from the comment."""
    return bool(db.session.scalar(select(exists().where(Comment.parent_id == comment_id))))


def _drop_bare_tombstones(comment_ids) -> None:
    """Delete the tombstones among ``comment_ids`` that no reply hangs from any more."""
    reply = aliased(Comment)
    db.session.execute(
        delete(Comment)
        .where(
            Comment.id.in_(comment_ids),
            Comment.deleted_at.is_not(None),
            ~exists().where(reply.parent_id == Comment.id),
        )
        .execution_options(synchronize_session=False)
    )
    db.session.expire_all()


def report(comment: Comment, reader: Reader, *, now: datetime | None = None) -> bool:
    """Record that ``reader`` reports ``comment`` to staff; ``False`` if they already had.

    Raises :class:`NotAllowed` for one's own comment.
    """
    if comment.reader_id == reader.id:
        raise NotAllowed("own_comment")
    already = db.session.scalar(
        select(CommentReport.id).where(
            CommentReport.comment_id == comment.id, CommentReport.reader_id == reader.id
        )
    )
    if already is not None:
        return False
    try:
        with db.session.begin_nested():
            db.session.add(
                CommentReport(
                    comment_id=comment.id, reader_id=reader.id, reported_at=now or utcnow()
                )
            )
    except IntegrityError:  # the same report, sent twice at once (a double click)
        return False
    return True


# --- What a reader owns -------------------------------------------------------------


def export_of(reader: Reader) -> list[dict]:
    """The reader's comments for their data export, oldest first."""
    rows = db.session.execute(
        select(Comment, Article.slug, Article.title)
        .join(Article, Article.id == Comment.article_id)
        .where(Comment.reader_id == reader.id)
        .order_by(Comment.created_at, Comment.id)
    ).all()
    return [
        {
            "article": slug,
            "article_title": title,
            "reply": comment.parent_id is not None,
            "created_at": iso_utc(comment.created_at),
            "edited_at": iso_utc(comment.edited_at),
            "status": comment.status,
            "body": comment.body,
            "display_name": reader.display_name,
        }
        for comment, slug, title in rows
    ]


def reports_of(reader: Reader) -> list[dict]:
    """The comments ``reader`` reported to the moderators, for their data export."""
    rows = db.session.execute(
        select(CommentReport.reported_at, Comment.public_id, Article.slug)
        .join(Comment, Comment.id == CommentReport.comment_id)
        .join(Article, Article.id == Comment.article_id)
        .where(CommentReport.reader_id == reader.id)
        .order_by(CommentReport.reported_at, CommentReport.id)
    ).all()
    return [
        {"article": slug, "comment": public_id, "reported_at": iso_utc(reported_at)}
        for reported_at, public_id, slug in rows
    ]


def forget_author(reader: Reader, *, now: datetime | None = None) -> None:
    """Remove every trace of ``reader`` from the comments (account deletion).

    Their comments and replies are deleted, with their reports; a comment of theirs
    that others replied to becomes a tombstone (no author, no text, no date shown), so
    the others' replies stay. Tombstones left with no reply go too.
    """
    now = now or utcnow()
    # Their comments are locked first, as _remove locks one: a reply being posted to one
    # of them is either committed before (the comment stays as a tombstone) or refused.
    db.session.execute(
        select(Comment.id)
        .where(Comment.reader_id == reader.id, Comment.parent_id.is_(None))
        .with_for_update()
    ).all()
    answered = list(
        db.session.scalars(
            select(Comment.parent_id)
            .where(Comment.reader_id == reader.id, Comment.parent_id.is_not(None))
            .distinct()
        )
    )
    db.session.execute(delete(CommentReport).where(CommentReport.reader_id == reader.id))
    mine = select(Comment.id).where(Comment.reader_id == reader.id).scalar_subquery()
    db.session.execute(delete(CommentReport).where(CommentReport.comment_id.in_(mine)))
    db.session.execute(
        delete(Comment)
        .where(Comment.reader_id == reader.id, Comment.parent_id.is_not(None))
        .execution_options(synchronize_session=False)
    )
    reply = aliased(Comment)
    db.session.execute(
        update(Comment)
        .where(Comment.reader_id == reader.id, exists().where(reply.parent_id == Comment.id))
        .values(body="", reader_id=None, edited_at=None, deleted_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        delete(Comment)
        .where(Comment.reader_id == reader.id)
        .execution_options(synchronize_session=False)
    )
    if answered:
        _drop_bare_tombstones(answered)
    db.session.expire_all()
