"""The moderators' page: staff only; held and reported comments; hide and approve."""

from __future__ import annotations

import pytest
from support.comments import ARTICLE_PATH, comments, post_comment, reader_named
from support.web import assert_calm_page, csrf_token, forms_of, in_english, sign_in, text_of

from auth_service.extensions import db

AUTHOR, READER, STAFF = "author@example.com", "reader@example.com", "desk@example.com"
LINKS = "\n".join(f"https://shop.test/{n}" for n in range(4))


@pytest.fixture
def author(app, client, articles):
    sign_in(app, in_english(client), AUTHOR)
    return client


@pytest.fixture
def reader(app, browser, articles):
    sign_in(app, in_english(browser), READER)
    return browser


@pytest.fixture
def staff(app, articles):
    desk = in_english(app.test_client())
    sign_in(app, desk, STAFF)
    reader_named(STAFF).is_staff = True
    db.session.commit()
    return desk


def _post(browser, path):
    return browser.post(path, data={"csrf_token": csrf_token(browser, ARTICLE_PATH)})


def test_readers_who_are_not_staff_are_refused(reader, client):
    """Defence: ``moderation.may_moderate`` (``Reader.is_staff``) on every moderation route."""
    response = reader.get("/moderation")
    assert_calm_page(response, 403)
    assert "Only the newsroom's moderators can see this page." in text_of(response)
    signed_out = client.application.test_client()
    assert signed_out.get("/moderation").status_code == 303
    assert "/login?next=" in signed_out.get("/moderation").headers["Location"]


def test_a_reader_who_is_not_staff_cannot_hide(author, reader):
    """Defence: ``moderation.may_moderate`` on the POST routes too."""
    post_comment(author, "Un avis")
    (comment,) = comments()
    assert_calm_page(_post(reader, f"/moderation/{comment.public_id}/hide"), 403)
    assert comments()[0].status == "visible"


def test_staff_see_held_and_reported_comments_and_approve_a_held_one(author, reader, staff):
    post_comment(author, f"Promo\n{LINKS}", name="Vendeur")
    post_comment(author, "Un avis tranché")
    held, reported = comments()
    _post(reader, f"/comments/{reported.public_id}/report")
    page = staff.get("/moderation")
    shown = text_of(page)
    assert "Held: more than 3 links." in shown and "Reported by 1 reader." in shown
    assert "shop.test/3" in shown and "Un avis tranché" in shown
    assert AUTHOR not in shown  # staff see the display name, not the address

    assert _post(staff, f"/moderation/{held.public_id}/show").status_code == 303
    assert comments()[0].status == "visible"
    assert "shop.test/3" in text_of(reader.get(ARTICLE_PATH))


def test_staff_hide_a_reported_comment_from_everyone_but_its_author(author, reader, staff):
    post_comment(author, "Propos injurieux", name="Auteur")
    (comment,) = comments()
    _post(reader, f"/comments/{comment.public_id}/report")
    assert _post(staff, f"/moderation/{comment.public_id}/hide").status_code == 303
    assert comments()[0].status == "hidden"
    assert "Propos injurieux" not in text_of(reader.get(ARTICLE_PATH))
    mine = text_of(author.get(ARTICLE_PATH))
    assert "Propos injurieux" in mine and "Hidden by the moderators" in mine
    page = text_of(staff.get("/moderation"))
    assert "Nothing is waiting." in page and "Propos injurieux" in page  # recently hidden
    # Shown again from the list of hidden comments.
    _post(staff, f"/moderation/{comment.public_id}/show")
    assert "Propos injurieux" in text_of(reader.get(ARTICLE_PATH))


def test_staff_hide_from_the_article_page(author, staff):
    post_comment(author, "À masquer")
    (comment,) = comments()
    page = staff.get(ARTICLE_PATH)
    (form,) = forms_of(page, f"/moderation/{comment.public_id}/hide")
    assert form.field("back")["value"] == "article"
    response = staff.post(
        f"/moderation/{comment.public_id}/hide",
        data={"back": "article", "csrf_token": csrf_token(staff, ARTICLE_PATH)},
    )
    assert response.headers["Location"].endswith(f"{ARTICLE_PATH}#comments")
    assert comments()[0].status == "hidden"
