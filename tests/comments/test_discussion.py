"""The rules of commenting, without a browser: post, reply, edit, delete, report, hold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from auth_service.comments import discussion
from auth_service.extensions import db
from auth_service.models import Article, Comment, CommentReport, Reader, utcnow


def _reader(email: str, name: str | None = None) -> Reader:
    reader = Reader(email=email, display_name=name, display_name_key=name and name.lower())
    db.session.add(reader)
    db.session.flush()
    return reader


@pytest.fixture
def article(articles) -> Article:
    return db.session.scalar(select(Article).where(Article.slug == "rivieres"))


@pytest.fixture
def alice():
    return _reader("alice@example.com", "Alice")


@pytest.fixture
def bob():
    return _reader("bob@example.com", "Bob")


def test_a_first_comment_needs_a_display_name_then_keeps_it(article):
    reader = _reader("new@example.com")
    with pytest.raises(discussion.Refused) as refused:
        discussion.post(reader, article, "Bonjour")
    assert (refused.value.reason, refused.value.field) == ("no_name", "display_name")
    discussion.post(reader, article, "Bonjour", display_name="  Nouvelle  Lectrice ")
    assert reader.display_name == "Nouvelle Lectrice"
    discussion.post(reader, article, "Encore", display_name="ignored once chosen")
    assert reader.display_name == "Nouvelle Lectrice"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [("", "empty"), (" \n\u200b\u202e ", "empty"), ("x" * 4_001, "too_long")],
)
def test_an_empty_or_oversized_body_is_refused_and_nothing_stored(article, alice, typed, reason):
    with pytest.raises(discussion.Refused) as refused:
        discussion.post(alice, article, typed)
    assert refused.value.reason == reason
    assert db.session.scalars(select(Comment)).all() == []


def test_the_length_is_counted_after_normalisation(article, alice):
    # 4,000 characters once the decomposed accents are composed and the controls gone.
    typed = "e\u0301" * 4_000 + "\u202e" * 50
    assert discussion.post(alice, article, typed).body == "\u00e9" * 4_000


def test_a_reply_to_a_reply_is_refused(article, alice, bob):
    first = discussion.post(alice, article, "Un commentaire")
    reply = discussion.post(bob, article, "Une réponse", parent=first)
    assert reply.parent_id == first.id
    with pytest.raises(discussion.Refused) as refused:
        discussion.post(alice, article, "Réponse à la réponse", parent=reply)
    assert refused.value.reason == "reply_to_reply"
    with pytest.raises(discussion.Refused) as refused:
        discussion.find_parent(article, reply.public_id)
    assert refused.value.reason == "reply_to_reply"


def test_a_reply_to_a_comment_of_another_article_or_a_hidden_one_is_refused(articles, alice):
    other = db.session.scalar(select(Article).where(Article.slug == "train-de-nuit"))
    article = db.session.scalar(select(Article).where(Article.slug == "rivieres"))
    elsewhere = discussion.post(alice, other, "Ailleurs")
    held = discussion.post(alice, article, " ".join(f"https://x.test/{n}" for n in range(4)))
    for public_id in (elsewhere.public_id, held.public_id, "no-such-comment"):
        with pytest.raises(discussion.Refused) as refused:
            discussion.find_parent(article, public_id)
        assert refused.value.reason == "no_parent"


def test_more_than_three_links_hold_the_comment_for_staff(article, alice):
    three = " ".join(f"https://x.test/{n}" for n in range(3))
    assert discussion.post(alice, article, three).status == "visible"
    assert discussion.post(alice, article, three + " http://y.test").status == "held"


def test_the_author_edits_within_fifteen_minutes_and_not_after(article, alice):
    posted = utcnow()
    comment = discussion.post(alice, article, "Premier jet", now=posted)
    discussion.edit(comment, alice, "Version corrigée", now=posted + timedelta(minutes=14))
    assert comment.body == "Version corrigée"
    assert comment.edited_at == posted + timedelta(minutes=14)
    with pytest.raises(discussion.NotAllowed) as refused:
        discussion.edit(comment, alice, "Trop tard", now=posted + timedelta(minutes=15, seconds=1))
    assert refused.value.reason == "too_late"
    assert comment.body == "Version corrigée"


def test_an_edit_that_adds_links_holds_the_comment_again(article, alice):
    comment = discussion.post(alice, article, "Sans lien")
    discussion.edit(comment, alice, " ".join(f"https://x.test/{n}" for n in range(5)))
    assert comment.status == "held"


def test_another_reader_can_neither_edit_nor_delete(article, alice, bob):
    comment = discussion.post(alice, article, "À moi")
    for action in (
        lambda: discussion.edit(comment, bob, "Piraté"),
        lambda: discussion.remove(comment, bob),
    ):
        with pytest.raises(discussion.NotAllowed) as refused:
            action()
        assert refused.value.reason == "not_author"
    assert comment.body == "À moi" and comment.deleted_at is None


def test_the_author_deletes_at_any_time(article, alice):
    comment = discussion.post(alice, article, "Bientôt parti", now=utcnow() - timedelta(days=400))
    discussion.remove(comment, alice)
    db.session.flush()
    assert db.session.scalars(select(Comment)).all() == []


def test_a_deleted_comment_with_replies_leaves_a_tombstone_without_author(article, alice, bob):
    first = discussion.post(alice, article, "Question ?")
    answer = discussion.post(bob, article, "Réponse.", parent=first)
    discussion.remove(first, alice)
    db.session.flush()
    assert (first.body, first.reader_id, first.deleted_at is not None) == ("", None, True)
    # The last reply gone, the tombstone goes too.
    discussion.remove(answer, bob)
    db.session.flush()
    assert db.session.scalars(select(Comment)).all() == []


def test_a_reader_reports_once_and_never_their_own_comment(article, alice, bob):
    comment = discussion.post(alice, article, "Discutable")
    assert discussion.report(comment, bob) is True
    assert discussion.report(comment, bob) is False
    with pytest.raises(discussion.NotAllowed) as refused:
        discussion.report(comment, alice)
    assert refused.value.reason == "own_comment"
    db.session.flush()
    assert len(db.session.scalars(select(CommentReport)).all()) == 1
