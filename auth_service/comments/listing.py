"""What a reader sees of an article's comments: the count, one page of threads.

A thread is a comment and its replies (oldest first). Threads are paged, newest or
oldest first. Everyone sees visible comments; their author also sees their own held
and hidden ones (with a note); a comment nobody may read that has replies readers see
is shown as a placeholder, so the replies keep their place. A constant number of
queries per page, whatever the number of comments. No request here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, bindparam, exists, func, or_, select
from sqlalchemy.orm import aliased, joinedload

from ..extensions import db
from ..models import COMMENT_VISIBLE, Article, Comment, CommentReport, utcnow
from . import discussion

PER_PAGE = 20
ORDERS = ("newest", "oldest")


# The article and the viewer are parameters of statements built once: building them
# for each page cost more than running them.
ARTICLE_ID = bindparam("article_id")
VIEWER_ID = bindparam("viewer_id")


def _parameters(article_id: int, viewer_id: int | None) -> dict:
    """The values of the statements' parameters for this article and viewer."""
    return {"article_id": article_id, "viewer_id": viewer_id}


def _readable_by(comment, signed_in: bool):
    """SQL: the viewer reads this comment's text (visible, or their own)."""
    shown = and_(comment.status == COMMENT_VISIBLE, comment.deleted_at.is_(None))
    if not signed_in:
        return shown
    return or_(shown, and_(comment.reader_id == VIEWER_ID, comment.deleted_at.is_(None)))


def _threads_seen_by(signed_in: bool):
    """SQL: the comments (not replies) of the article shown to the viewer, text or
    placeholder."""
    reply = aliased(Comment, name="reply")
    has_readable_reply = exists().where(
        reply.parent_id == Comment.id, _readable_by(reply, signed_in)
    )
    return and_(
        Comment.article_id == ARTICLE_ID,
        Comment.parent_id.is_(None),
        or_(_readable_by(Comment, signed_in), has_readable_reply),
    )


_SHOWN = (
    select(func.count())
    .select_from(Comment)
    .where(
        Comment.article_id == ARTICLE_ID,
        Comment.status == COMMENT_VISIBLE,
        Comment.deleted_at.is_(None),
    )
)
_SEEN = {signed_in: _threads_seen_by(signed_in) for signed_in in (False, True)}
_READABLE = {signed_in: _readable_by(Comment, signed_in) for signed_in in (False, True)}
# Both counts in one round trip: what every reader sees, and the viewer's threads.
_COUNTS = {
    signed_in: select(
        _SHOWN.scalar_subquery(),
        select(func.count()).select_from(Comment).where(seen).scalar_subquery(),
    )
    for signed_in, seen in _SEEN.items()
}


def _ordering(order: str):
    """Threads newest or oldest first; the id breaks ties of one instant."""
    if order == "oldest":
        return (Comment.created_at.asc(), Comment.id.asc())
    return (Comment.created_at.desc(), Comment.id.desc())


@dataclass
class Thread:
    """A comment and the replies the viewer sees, oldest first."""

    comment: Comment
    replies: list[Comment] = field(default_factory=list)


@dataclass
class Page:
    """One page of an article's threads, as ``viewer`` sees them."""

    threads: list[Thread]
    order: str
    number: int
    pages: int
    viewer_id: int | None
    now: datetime
    shown: int = 0  # comments and replies every reader sees (the article's count)
    reported: set[int] = field(default_factory=set)  # ids of those the viewer reported

    def has_reported(self, comment: Comment) -> bool:
        """Whether the viewer has reported this comment to staff."""
        return comment.id in self.reported

    def is_readable(self, comment: Comment) -> bool:
        """Whether the viewer reads this comment's text (not a placeholder)."""
        if comment.deleted_at is not None:
            return False
        return comment.status == COMMENT_VISIBLE or comment.reader_id == self.viewer_id

    def is_own(self, comment: Comment) -> bool:
        """Whether the viewer wrote this comment."""
        return self.viewer_id is not None and comment.reader_id == self.viewer_id

    def may_edit(self, comment: Comment) -> bool:
        """Whether the viewer may still edit this comment."""
        return self.is_own(comment) and discussion.may_edit(
            comment, _Viewer(self.viewer_id), self.now
        )

    def may_reply(self, comment: Comment) -> bool:
        """Whether a signed-in viewer may answer this comment."""
        return comment.parent_id is None and discussion.is_shown(comment)

    def may_report(self, comment: Comment) -> bool:
        """Whether a signed-in viewer may report this comment to staff."""
        return discussion.is_shown(comment) and not self.is_own(comment)


@dataclass
class _Viewer:
    """Who looks at the page, as the edit rule needs them: an id."""

    id: int | None


def page_of_threads(
    article: Article,
    viewer_id: int | None,
    *,
    order: str = "newest",
    number: int = 1,
    now: datetime | None = None,
) -> Page:
    """Page ``number`` (from 1; out of range: the nearest page) of ``article``'s threads
    in ``order``, as the reader ``viewer_id`` (``None``: signed out) sees them."""
    order = order if order in ORDERS else ORDERS[0]
    signed_in = viewer_id is not None
    parameters = _parameters(article.id, viewer_id)
    shown, total = db.session.execute(_COUNTS[signed_in], parameters).one()
    pages = max(1, math.ceil(total / PER_PAGE))
    number = min(max(1, number), pages)
    comments = []
    if total:  # most articles have no comment: then the counts were all there was to ask
        comments = db.session.scalars(
            select(Comment)
            .options(joinedload(Comment.author))
            .where(_SEEN[signed_in])
            .order_by(*_ordering(order))
            .limit(PER_PAGE)
            .offset((number - 1) * PER_PAGE),
            parameters,
        ).all()
    threads = {comment.id: Thread(comment) for comment in comments}
    if threads:
        replies = db.session.scalars(
            select(Comment)
            .options(joinedload(Comment.author))
            .where(Comment.parent_id.in_(threads), _READABLE[signed_in])
            .order_by(Comment.created_at, Comment.id),
            parameters,
        )
        for reply in replies:
            threads[reply.parent_id].replies.append(reply)
    page = Page(list(threads.values()), order, number, pages, viewer_id, now or utcnow(), shown)
    if viewer_id is not None and threads:
        on_page = [thread.comment.id for thread in page.threads]
        on_page += [reply.id for thread in page.threads for reply in thread.replies]
        page.reported = set(
            db.session.scalars(
                select(CommentReport.comment_id).where(
                    CommentReport.reader_id == viewer_id, CommentReport.comment_id.in_(on_page)
                )
            )
        )
    return page


def page_number_of(comment: Comment, viewer_id: int | None, order: str = "newest") -> int:
    """The page on which ``comment`` (or the thread of a reply) is shown in ``order``."""
    root = comment.parent if comment.parent_id is not None else comment
    if root is None:
        return 1
    if order == "oldest":
        before = or_(
            Comment.created_at < root.created_at,
            and_(Comment.created_at == root.created_at, Comment.id < root.id),
        )
    else:
        before = or_(
            Comment.created_at > root.created_at,
            and_(Comment.created_at == root.created_at, Comment.id > root.id),
        )
    seen = _SEEN[viewer_id is not None]
    earlier = db.session.scalar(
        select(func.count()).select_from(Comment).where(seen, before),
        _parameters(root.article_id, viewer_id),
    )
    return earlier // PER_PAGE + 1
