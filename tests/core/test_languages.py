"""French by default; English by ``?lang=``, then the cookie, then Accept-Language."""

from __future__ import annotations

from support.web import ADDRESS, in_english, text_of


def test_pages_are_in_french_by_default(client):
    response = client.get("/login")
    body = response.get_data(as_text=True)
    assert '<html lang="fr">' in body
    assert "S’inscrire ou se connecter" in body
    assert "Sign up or sign in" not in body


def test_lang_parameter_switches_to_english_and_sticks(client):
    response = client.get("/login?lang=en")
    body = response.get_data(as_text=True)
    assert '<html lang="en">' in body and "Sign up or sign in" in body
    cookie = client.get_cookie("lang")
    assert cookie is not None and cookie.value == "en"
    later = client.get("/").get_data(as_text=True)
    assert '<html lang="en">' in later and "Front page" in later


def test_lang_parameter_switches_back_to_french(client):
    client.get("/login?lang=en")
    body = client.get("/login?lang=fr").get_data(as_text=True)
    assert '<html lang="fr">' in body and "S’inscrire ou se connecter" in body
    assert client.get_cookie("lang").value == "fr"


def test_browser_asking_for_english_gets_english(client):
    body = client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(
        as_text=True
    )
    assert '<html lang="en">' in body and "Sign up or sign in" in body


def test_chosen_language_beats_the_browsers_language(client):
    client.get("/?lang=fr")
    body = client.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="fr">' in body


def test_unknown_language_falls_back_to_french_without_a_cookie(client):
    body = client.get("/login?lang=de").get_data(as_text=True)
    assert '<html lang="fr">' in body
    assert client.get_cookie("lang") is None


def test_check_your_email_is_translated(reader, client):
    reader.ask_for_link(ADDRESS)
    french = text_of(client.get("/login/sent"))
    assert "Nous avons envoyé un e-mail à" in french
    assert "We sent an email to" in text_of(client.get("/login/sent?lang=en"))


def test_mail_is_in_the_language_of_the_page(reader, client, browser):
    reader.ask_for_link(ADDRESS)
    assert reader.last_mail().subject == "Votre lien de connexion pour Le Quotidien"
    reader.ask_for_link(ADDRESS, client=in_english(browser))
    assert reader.last_mail().subject == "Your sign-in link for Le Quotidien"


def test_error_pages_are_translated(client, browser):
    assert "Page introuvable" in text_of(client.get("/nowhere"))
    assert "Page not found" in text_of(in_english(browser).get("/nowhere"))
