"""Newsletter consent is given by the reader who signs in, in the browser that ticked.

An attacker can ask a link for someone else's address with the newsletter box ticked;
the victim then opens the mail in their own browser. Consent is only recorded from the
box ticked in the browser that signs in: the asking browser itself (its attempt cookie
proves it), or the unticked box of the confirm page that any other browser sees.
"""

from __future__ import annotations

from support.web import ADDRESS, Visitor, csrf_token, forms_of, in_english, rows, text_of

from auth_service.models import NewsletterConsent

WORDING = (
    "Send me the daily front page newsletter (free, one email each morning; "
    "unsubscribe in one click)."
)


def confirm_form(response) -> dict:
    """What a browser sends from the confirm page, its boxes left as they are."""
    [form] = forms_of(response, "/login/verify")
    return {
        attrs["name"]: attrs.get("value", "")
        for attrs in form.inputs
        if attrs.get("name") and (attrs.get("type") != "checkbox" or "checked" in attrs)
    }


def test_a_box_ticked_by_someone_else_subscribes_nobody(app, reader, browser):
    """Defence: the attacker's ticked box is not the victim's consent."""
    attacker = Visitor(app, app.test_client())
    attacker.ask_for_link(ADDRESS, newsletter=True)
    page = in_english(browser).get(f"/login/verify?token={reader.last_mail().token}")
    assert browser.post("/login/verify", data=confirm_form(page)).status_code == 303
    assert rows(NewsletterConsent) == []


def test_the_confirm_page_offers_the_newsletter_unticked(app, reader, browser):
    """The reader who opens the link elsewhere chooses for themself, from a clear box."""
    Visitor(app, app.test_client()).ask_for_link(ADDRESS, newsletter=True)
    page = in_english(browser).get(f"/login/verify?token={reader.last_mail().token}")
    [form] = forms_of(page, "/login/verify")
    box = form.field("newsletter")
    assert box is not None and box["type"] == "checkbox" and "checked" not in box
    assert 'for="newsletter"' in page.get_data(as_text=True)
    assert "daily front page newsletter" in text_of(page)


def test_ticking_the_box_on_the_confirm_page_records_that_consent(app, reader, browser):
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    page = in_english(browser).get(f"/login/verify?token={reader.last_mail().token}")
    assert (
        browser.post("/login/verify", data={**confirm_form(page), "newsletter": "y"}).status_code
        == 303
    )
    [consent] = rows(NewsletterConsent)
    assert consent.wording == WORDING
    assert consent.source == "/login/verify"


def test_the_box_ticked_in_the_asking_browser_counts_when_that_browser_signs_in(
    app, reader, client
):
    """The same browser, by link or by code, carries its own choice."""
    in_english(client)
    response = reader.sign_in(ADDRESS, next_url="/articles/x", newsletter=True)
    assert response.status_code == 303
    [consent] = rows(NewsletterConsent)
    assert consent.wording == WORDING and consent.source == "/articles/x"


def test_the_box_ticked_in_the_asking_browser_counts_with_the_code(app, reader, client):
    reader.ask_for_link(ADDRESS, newsletter=True)
    code = reader.last_mail().code
    data = {"code": code, "csrf_token": csrf_token(client, "/login/sent")}
    assert client.post("/login/code", data=data).status_code == 303
    assert len(rows(NewsletterConsent)) == 1


def test_a_new_link_asked_from_a_failure_page_carries_no_one_elses_choice(
    app, reader, client, browser
):
    """The "send me a new link" button of a used link's page, which anyone holding the
    link sees, does not pass on the newsletter box the asking browser ticked."""
    reader.ask_for_link(ADDRESS, newsletter=True)
    token = reader.last_mail().token
    assert client.get(f"/login/verify?token={token}").status_code == 303  # used
    page = browser.get(f"/login/verify?token={token}")
    assert page.status_code == 410
    [form] = forms_of(page, "/login")
    assert form.field("newsletter") is None
