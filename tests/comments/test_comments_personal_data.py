"""A reader's comments are in their export; deleting the account removes every trace."""

from __future__ import annotations

import json

import pytest
from support.comments import ARTICLE_PATH, comments, post_comment
from support.web import csrf_token, in_english, rows, sign_in, text_of

from auth_service.models import CommentReport

AUTHOR, OTHER = "author@example.com", "other@example.com"


@pytest.fixture
def author(app, client, articles):
    sign_in(app, in_english(client), AUTHOR)
    return client


@pytest.fixture
def other(app, browser, articles):
    sign_in(app, in_english(browser), OTHER)
    return browser


def test_the_export_holds_the_reader_s_comments(author):
    post_comment(author, "Mon avis\nen deux lignes", name="Plume")
    post_comment(author, "Deuxième", slug="train-de-nuit")
    data = json.loads(author.get("/account/export").get_data(as_text=True))
    assert data["display_name"] == "Plume"
    assert [
        (item["article"], item["body"], item["status"], item["display_name"], item["reply"])
        for item in data["comments"]
    ] == [
        ("rivieres", "Mon avis\nen deux lignes", "visible", "Plume", False),
        ("train-de-nuit", "Deuxième", "visible", "Plume", False),
    ]
    assert data["comments"][0]["created_at"].endswith("Z")
    assert data["comments"][0]["edited_at"] is None


def test_the_export_holds_the_comments_the_reader_reported(author, other):
    post_comment(other, "Un avis discutable", name="Autre")
    (comment,) = comments()
    path = f"/comments/{comment.public_id}/report"
    author.post(path, data={"csrf_token": csrf_token(author, ARTICLE_PATH)})
    data = json.loads(author.get("/account/export").get_data(as_text=True))
    (report,) = data["comment_reports"]
    assert report["comment"] == comment.public_id and report["reported_at"].endswith("Z")
    assert json.loads(other.get("/account/export").get_data(as_text=True))["comment_reports"] == []


def test_deleting_the_account_removes_every_trace_of_the_author(author, other):
    """Defence: ``discussion.forget_author``, called by ``delete_reader``."""
    post_comment(author, "Commentaire seul", name="Plume")
    post_comment(author, "Commentaire discuté")
    post_comment(other, "Avis de l'autre", name="Autre")
    alone, discussed, theirs = comments()
    post_comment(other, "Réponse de l'autre", parent=discussed.public_id)
    post_comment(author, "Réponse à l'autre", parent=theirs.public_id)
    author.post(
        f"/comments/{theirs.public_id}/report",
        data={"csrf_token": csrf_token(author, ARTICLE_PATH)},
    )
    other.post(
        f"/comments/{alone.public_id}/report", data={"csrf_token": csrf_token(other, ARTICLE_PATH)}
    )

    response = author.post(
        "/account/delete", data={"confirm": AUTHOR, "csrf_token": csrf_token(author, "/account")}
    )
    assert response.status_code == 303

    left = comments()
    assert [comment.body for comment in left] == ["", "Avis de l'autre", "Réponse de l'autre"]
    tombstone = left[0]
    assert tombstone.reader_id is None and tombstone.deleted_at is not None
    assert rows(CommentReport) == []
    page = text_of(other.get(ARTICLE_PATH))
    assert "This comment was removed." in page and "Réponse de l'autre" in page
    for trace in ("Plume", "Commentaire", "Réponse à l'autre", AUTHOR):
        assert trace not in page
    assert "2 comments" in page


def test_deleting_the_account_leaves_no_tombstone_nobody_answered(author, other):
    post_comment(author, "Question", name="Plume")
    (question,) = comments()
    post_comment(author, "Je me réponds", parent=question.public_id)
    author.post(
        "/account/delete", data={"confirm": AUTHOR, "csrf_token": csrf_token(author, "/account")}
    )
    assert comments() == []
    assert "0 comments" in text_of(other.get(ARTICLE_PATH))
