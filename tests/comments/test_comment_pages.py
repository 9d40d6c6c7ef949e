"""Comments through the article page, as readers use them: forms, redirects, pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from support.comments import ARTICLE_PATH, comments, post_comment, reader_named
from support.web import (
    assert_calm_page,
    csrf_token,
    forms_of,
    in_english,
    query_of,
    sign_in,
    text_of,
)

from auth_service.extensions import db

ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture
def alice(app, client, articles):
    """A signed-in reader, reading in English, who has not commented yet."""
    sign_in(app, in_english(client), ALICE)
    return client


@pytest.fixture
def bob(app, browser, articles):
    """A second signed-in reader in another browser."""
    sign_in(app, in_english(browser), BOB)
    return browser


def _anchor_of(response) -> str:
    return response.headers["Location"].rsplit("#", 1)[1]


def test_signed_out_readers_read_comments_and_are_offered_to_sign_in(app, alice, articles):
    post_comment(alice, "Un premier avis")
    reader = in_english(app.test_client())
    page = reader.get(ARTICLE_PATH)
    assert "Un premier avis" in text_of(page)
    assert forms_of(page, f"{ARTICLE_PATH}/comments") == []
    link = re.search(r'href="(/login\?next=[^"]+)"[^>]*>Sign in to comment', text_of(page))
    assert query_of(link.group(1))["next"] == [f"{ARTICLE_PATH}#comments"]


def test_a_signed_out_post_is_sent_to_sign_in_and_stores_nothing(client, articles):
    """Defence: only signed-in readers write."""
    token = csrf_token(client, "/login")  # a signed-out reader's token, from any form
    response = client.post(
        f"{ARTICLE_PATH}/comments", data={"body": "Anonyme", "csrf_token": token}
    )
    assert response.status_code == 303
    assert query_of(response.headers["Location"])["next"] == [f"{ARTICLE_PATH}#comments"]
    assert comments() == []


def test_a_first_comment_chooses_the_name_and_never_shows_the_address(alice):
    page = alice.get(ARTICLE_PATH)
    (form,) = forms_of(page, f"{ARTICLE_PATH}/comments")
    assert form.field("display_name") is not None
    response = post_comment(alice, "Belle enquête.", name="Alice des Prés")
    assert response.status_code == 303
    (comment,) = comments()
    assert _anchor_of(response) == f"comment-{comment.public_id}"
    page = alice.get(ARTICLE_PATH)
    shown = text_of(page)
    assert "Belle enquête." in shown and "Alice des Prés" in shown
    assert ALICE not in shown and "alice@" not in shown
    assert "1 comment" in shown
    # The name is chosen: the next forms no longer ask for it.
    forms = forms_of(page, f"{ARTICLE_PATH}/comments")
    assert len(forms) == 2  # a new comment, a reply
    assert all(form.field("display_name") is None for form in forms)


def test_a_name_that_looks_like_an_address_is_refused_and_the_text_kept(alice):
    """Defence: ``names.check`` refuses any name holding ``@``."""
    response = post_comment(alice, "Mon texte\nsur deux lignes", name="alice@example.com")
    assert_calm_page(response, 422)
    shown = text_of(response)
    assert "cannot contain @" in shown
    assert "Mon texte\nsur deux lignes</textarea>" in shown
    assert comments() == [] and reader_named(ALICE).display_name is None


def test_a_name_taken_by_another_reader_is_refused(alice, bob):
    """Defence: the unique ``display_name_key`` (capitals, spacing, width folded)."""
    post_comment(alice, "Premier", name="Camille")
    response = post_comment(bob, "Second", name="CAMILLE")
    assert_calm_page(response, 422)
    assert "Another reader already comments under this name" in text_of(response)
    assert len(comments()) == 1


def test_hostile_input_is_shown_as_text(alice, bob):
    """Defence: bodies are plain text, escaped when shown; bidi controls stripped."""
    hostile = (
        "<script>alert(1)</script> <img src=x onerror=alert(2)> "
        '<a href="javascript:alert(3)">clic</a> javascript:alert(4) \u202eevil'
    )
    post_comment(alice, hostile)
    page = bob.get(ARTICLE_PATH).get_data(as_text=True)
    body = re.search(r'<div class="comment__body">(.*?)</div>', page, re.S).group(1)
    assert "<script" not in body and "<img" not in body and "<a " not in body
    assert "&lt;script&gt;" in body and "onerror=alert(2)" in body
    assert "\u202e" not in page


def test_a_link_is_nofollow_ugc_and_line_breaks_are_kept(alice, bob):
    """Defence: only http(s) addresses become links, each ``rel="nofollow ugc"``."""
    post_comment(alice, "Source :\nhttps://example.org/rapport.pdf\n\nMerci")
    page = bob.get(ARTICLE_PATH).get_data(as_text=True)
    assert (
        '<p>Source :<br>\n<a href="https://example.org/rapport.pdf" rel="nofollow ugc">'
        "https://example.org/rapport.pdf</a></p><p>Merci</p>"
    ) in page


def test_a_body_too_long_is_refused_with_the_text_kept(alice):
    """Defence: ``discussion.MAX_LENGTH``, counted after normalisation."""
    typed = "Trop long. " * 400  # 4,400 characters
    response = post_comment(alice, typed)
    assert_calm_page(response, 422)
    assert "Your comment is too long: at most 4000 characters" in text_of(response)
    assert typed.strip() in text_of(response)
    assert comments() == []


def test_a_hundred_kilobyte_body_is_a_413_and_nothing_is_stored(alice):
    """Defence: ``MAX_CONTENT_LENGTH`` refuses the body before any view runs."""
    response = post_comment(alice, "x" * 100_000)
    assert_calm_page(response, 413)
    assert comments() == []


def test_a_post_without_a_form_token_is_refused(alice):
    """Defence: CSRFProtect on every comment form."""
    response = alice.post(
        f"{ARTICLE_PATH}/comments", data={"body": "Sans jeton", "display_name": "Al"}
    )
    assert_calm_page(response, 400)
    assert "This form has expired" in text_of(response)
    assert comments() == []


def test_a_reply_goes_under_its_comment_and_a_reply_to_a_reply_is_refused(alice, bob):
    post_comment(alice, "La question")
    (question,) = comments()
    response = post_comment(bob, "La réponse", name="Bob", parent=question.public_id)
    assert response.status_code == 303
    answer = comments()[1]
    assert answer.parent_id == question.id
    page = alice.get(ARTICLE_PATH).get_data(as_text=True)
    replies = re.search(r'<ol class="comments__replies".*?</ol>', page, re.S).group(0)
    assert "La réponse" in replies
    # The reply has no reply form of its own.
    assert page.count('name="parent"') == 1

    response = post_comment(alice, "Réponse à la réponse", parent=answer.public_id)
    assert_calm_page(response, 422)
    assert "You can answer a comment, not a reply" in text_of(response)
    assert len(comments()) == 2


def test_the_author_edits_within_fifteen_minutes(alice):
    post_comment(alice, "Premier jet")
    (comment,) = comments()
    edit_path = f"/comments/{comment.public_id}/edit"
    assert alice.get(edit_path).status_code == 200
    response = alice.post(
        edit_path, data={"body": "Version finale", "csrf_token": csrf_token(alice, edit_path)}
    )
    assert response.status_code == 303
    page = text_of(alice.get(ARTICLE_PATH))
    assert "Version finale" in page and "(edited)" in page


def test_an_edit_after_fifteen_minutes_is_refused_with_a_clear_page(alice):
    """Defence: ``discussion.EDIT_WINDOW``: no rewriting a comment once others read it."""
    post_comment(alice, "Premier jet")
    (comment,) = comments()
    edit_path = f"/comments/{comment.public_id}/edit"
    token = csrf_token(alice, edit_path)
    comment.created_at -= timedelta(minutes=16)
    db.session.commit()
    for response in (
        alice.get(edit_path),
        alice.post(edit_path, data={"body": "Trop tard", "csrf_token": token}),
    ):
        assert_calm_page(response, 403)
        assert "can be edited for 15 minutes after it is posted" in text_of(response)
    assert comments()[0].body == "Premier jet"
    assert "Trop tard" in text_of(response)  # what was typed is not lost
    assert f'href="{edit_path}"' not in alice.get(ARTICLE_PATH).get_data(as_text=True)


def test_another_reader_can_neither_edit_nor_delete(alice, bob):
    """Defence: ``discussion.check_edit`` and ``remove`` check the author."""
    post_comment(alice, "À moi")
    (comment,) = comments()
    token = csrf_token(bob, ARTICLE_PATH)
    for response in (
        bob.get(f"/comments/{comment.public_id}/edit"),
        bob.post(f"/comments/{comment.public_id}/edit", data={"body": "x", "csrf_token": token}),
        bob.get(f"/comments/{comment.public_id}/delete"),
        bob.post(f"/comments/{comment.public_id}/delete", data={"csrf_token": token}),
    ):
        assert_calm_page(response, 403)
        assert "Only the author of a comment can edit or delete it." in text_of(response)
    assert comments()[0].body == "À moi"


def test_the_author_deletes_their_comment_after_a_confirmation(alice):
    post_comment(alice, "À effacer")
    (comment,) = comments()
    confirm = f"/comments/{comment.public_id}/delete"
    assert f'href="{confirm}"' in alice.get(ARTICLE_PATH).get_data(as_text=True)
    page = in_english(alice).get(confirm)  # WCAG 3.3.4: deleting asks first
    assert page.status_code == 200
    assert "Delete my comment?" in text_of(page) and "À effacer" in text_of(page)
    assert len(comments()) == 1
    response = alice.post(confirm, data={"csrf_token": csrf_token(alice, confirm)})
    assert response.status_code == 303
    assert comments() == []
    assert "0 comments" in text_of(alice.get(ARTICLE_PATH))


def test_a_deleted_comment_with_replies_shows_removed_and_keeps_the_replies(alice, bob):
    post_comment(alice, "Question")
    question = comments()[0]
    post_comment(bob, "Réponse", name="Bob", parent=question.public_id)
    alice.post(
        f"/comments/{question.public_id}/delete",
        data={"csrf_token": csrf_token(alice, ARTICLE_PATH)},
    )
    page = text_of(bob.get(ARTICLE_PATH))
    assert "This comment was removed." in page and "Réponse" in page
    assert "Question" not in page and "Lectrice" not in page
    assert "1 comment" in page


def test_a_comment_with_many_links_waits_for_moderation(alice, bob):
    """Defence: ``discussion.MAX_LINKS``: link spam waits for staff."""
    links = "\n".join(f"https://shop.test/{n}" for n in range(4))
    post_comment(alice, f"Promo\n{links}")
    mine = text_of(alice.get(ARTICLE_PATH))
    assert "Awaiting moderation" in mine and "https://shop.test/3" in mine
    theirs = text_of(bob.get(ARTICLE_PATH))
    assert "shop.test" not in theirs and "0 comments" in theirs


def test_a_reader_reports_a_comment(alice, bob):
    post_comment(alice, "Discutable")
    (comment,) = comments()
    response = bob.post(
        f"/comments/{comment.public_id}/report", data={"csrf_token": csrf_token(bob, ARTICLE_PATH)}
    )
    assert response.status_code == 303
    assert _anchor_of(response) == f"comment-{comment.public_id}"
    assert "Reported to the moderators" in text_of(bob.get(ARTICLE_PATH))
    # The author has no report button on their own comment.
    assert forms_of(alice.get(ARTICLE_PATH), f"/comments/{comment.public_id}/report") == []


def test_comments_are_ordered_newest_or_oldest_first_and_paged(app, alice):
    from auth_service.comments import discussion
    from auth_service.models import Article, utcnow

    reader = reader_named(ALICE)
    reader.display_name, reader.display_name_key = "Alice", "alice"
    article = db.session.scalar(db.select(Article).where(Article.slug == "rivieres"))
    start = utcnow() - timedelta(hours=1)
    for number in range(25):
        discussion.post(
            reader, article, f"Avis n°{number:02d}", now=start + timedelta(minutes=number)
        )
    db.session.commit()

    def numbers(path):
        return re.findall(r"Avis n°(\d\d)", text_of(alice.get(path)))

    first = numbers(ARTICLE_PATH)
    assert first == [f"{n:02d}" for n in range(24, 4, -1)]  # newest first, 20 a page
    assert numbers(f"{ARTICLE_PATH}?page=2") == [f"{n:02d}" for n in range(4, -1, -1)]
    assert numbers(f"{ARTICLE_PATH}?order=oldest") == [f"{n:02d}" for n in range(20)]
    assert numbers(f"{ARTICLE_PATH}?order=oldest&page=2") == ["20", "21", "22", "23", "24"]
    assert numbers(f"{ARTICLE_PATH}?page=99") == numbers(f"{ARTICLE_PATH}?page=2")
    page = text_of(alice.get(ARTICLE_PATH))
    assert "25 comments" in page and "Page 1 of 2" in page
    assert f'href="{ARTICLE_PATH}?page=2#comments"' in alice.get(ARTICLE_PATH).get_data(
        as_text=True
    )


def test_a_reply_redirects_to_the_page_of_its_thread(app, alice, bob):
    from auth_service.comments import discussion
    from auth_service.models import Article, utcnow

    reader = reader_named(ALICE)
    reader.display_name, reader.display_name_key = "Alice", "alice"
    article = db.session.scalar(db.select(Article).where(Article.slug == "rivieres"))
    start = utcnow() - timedelta(hours=1)
    oldest = discussion.post(reader, article, "Le plus ancien", now=start)
    for number in range(20):
        discussion.post(
            reader, article, f"Avis {number}", now=start + timedelta(minutes=1 + number)
        )
    db.session.commit()
    response = post_comment(bob, "Je réponds", name="Bob", parent=oldest.public_id)
    assert response.status_code == 303
    assert query_of(response.headers["Location"])["page"] == ["2"]


def test_the_count_is_shown_near_the_article_meta(alice, bob):
    post_comment(alice, "Un")
    post_comment(bob, "Deux", name="Bob")
    page = alice.get(ARTICLE_PATH).get_data(as_text=True)
    meta = re.search(r'<p class="article__meta".*?</p>', page, re.S).group(0)
    assert '<a href="#comments">2 comments</a>' in meta


def test_comments_show_on_a_gated_article_under_the_wall(app, alice, articles):
    post_comment(alice, "Sous le mur", slug="train-de-nuit")
    page = text_of(in_english(app.test_client()).get("/articles/train-de-nuit"))
    assert "Sous le mur" in page and "1 comment" in page


@pytest.mark.settings(RATELIMIT_ENABLED=True, COMMENT_LIMIT_PER_READER="2 per minute")
def test_too_many_comments_in_a_minute_answer_429(alice):
    """Defence: ``COMMENT_LIMIT_PER_READER``, keyed by the reader's public id."""
    assert post_comment(alice, "Un").status_code == 303
    assert post_comment(alice, "Deux").status_code == 303
    response = post_comment(alice, "Trois")
    assert_calm_page(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    assert [comment.body for comment in comments()] == ["Un", "Deux"]


def test_edit_delete_and_report_without_a_form_token_change_nothing(alice, bob):
    """Defence: CSRFProtect on every comment form, not only the new comment's."""
    post_comment(alice, "Intact")
    (comment,) = comments()
    for browser, action, data in (
        (alice, "edit", {"body": "Forgé"}),
        (alice, "delete", {}),
        (bob, "report", {}),
    ):
        response = browser.post(f"/comments/{comment.public_id}/{action}", data=data)
        assert_calm_page(response, 400)
    (comment,) = comments()
    assert comment.body == "Intact" and comment.deleted_at is None
    assert "Reported to the moderators" not in text_of(bob.get(ARTICLE_PATH))


def test_an_edit_too_long_is_refused_with_the_text_kept(alice):
    post_comment(alice, "Court")
    (comment,) = comments()
    edit_path = f"/comments/{comment.public_id}/edit"
    typed = "Beaucoup trop long. " * 250
    response = alice.post(
        edit_path, data={"body": typed, "csrf_token": csrf_token(alice, edit_path)}
    )
    assert_calm_page(response, 422)
    assert "at most 4000 characters" in text_of(response)
    assert typed.strip() in text_of(response)
    assert comments()[0].body == "Court"


def test_comments_of_an_unknown_or_unpublished_article_are_a_404(alice):
    token = csrf_token(alice, ARTICLE_PATH)
    for slug in ("no-such-article", "a-venir"):
        response = alice.post(f"/articles/{slug}/comments", data={"body": "x", "csrf_token": token})
        assert_calm_page(response, 404)
    assert_calm_page(alice.post("/comments/nope/report", data={"csrf_token": token}), 404)
