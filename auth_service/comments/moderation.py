"""Staff's side of comments: what waits for a decision, hiding, approving.

Waiting: comments held for their links, and visible comments readers reported (most
reported first). Hiding takes a comment off the page for everyone but its author;
approving ("show") puts it back and clears its reports. No request here; the view
commits and checks that the reader is staff.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import (
    COMMENT_HELD,
    COMMENT_HIDDEN,
    COMMENT_VISIBLE,
    Comment,
    CommentReport,
    Reader,
)

SHOWN_HIDDEN = 50  # the latest hidden comments listed, for a second look


@dataclass
class Waiting:
    """A comment waiting for staff, and how many readers reported it."""

    comment: Comment
    reports: int


def may_moderate(reader) -> bool:
    """Whether ``reader`` is staff (signed in, marked ``is_staff``)."""
    return bool(getattr(reader, "is_authenticated", False) and getattr(reader, "is_staff", False))


def waiting() -> list[Waiting]:
    """Held comments and reported visible ones: most reported first, then oldest."""
    reports = (
        select(CommentReport.comment_id, func.count().label("count"))
        .group_by(CommentReport.comment_id)
        .subquery()
    )
    reported = func.coalesce(reports.c.count, 0)
    rows = db.session.execute(
        select(Comment, reported)
        .outerjoin(reports, reports.c.comment_id == Comment.id)
        .options(joinedload(Comment.author), joinedload(Comment.article))
        .where(
            Comment.deleted_at.is_(None),
            or_(
                Comment.status == COMMENT_HELD,
                and_(Comment.status == COMMENT_VISIBLE, reported > 0),
            ),
        )
        .order_by(reported.desc(), Comment.created_at, Comment.id)
    ).all()
    return [Waiting(comment, count) for comment, count in rows]


def recently_hidden(limit: int = SHOWN_HIDDEN) -> list[Comment]:
    """The latest hidden comments, newest first, so that staff can put one back."""
    return list(
        db.session.scalars(
            select(Comment)
            .options(joinedload(Comment.author), joinedload(Comment.article))
            .where(Comment.status == COMMENT_HIDDEN, Comment.deleted_at.is_(None))
            .order_by(Comment.created_at.desc(), Comment.id.desc())
            .limit(limit)
        )
    )


def hide(comment: Comment, staff: Reader) -> None:
    """Take ``comment`` off the page for everyone but its author; its reports are dealt
    with. ``staff`` is who decided (checked by the caller)."""
    comment.status = COMMENT_HIDDEN
    _clear_reports(comment)


def show(comment: Comment, staff: Reader) -> None:
    """Approve ``comment``: shown to everyone, its reports cleared."""
    comment.status = COMMENT_VISIBLE
    _clear_reports(comment)


def _clear_reports(comment: Comment) -> None:
    """Forget the reports of ``comment``: staff has decided."""
    db.session.execute(delete(CommentReport).where(CommentReport.comment_id == comment.id))
