"""A comment's text: hostile input shown as text, line breaks kept, web links only."""

from __future__ import annotations

import re

import pytest

from auth_service.comments.text import addresses, normalise, to_html


def test_script_tags_and_event_handlers_are_shown_as_text():
    typed = '<script>alert(1)</script><img src=x onerror="alert(2)"> & <b>bold</b>'
    shown = str(to_html(normalise(typed)))
    assert "<script" not in shown and "<img" not in shown and "<b>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "onerror=&#34;alert(2)&#34;" in shown
    assert "&amp; &lt;b&gt;bold&lt;/b&gt;" in shown


@pytest.mark.parametrize(
    "typed",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        '<a href="javascript:alert(1)">x</a>',
    ],
)
def test_only_http_addresses_become_links(typed):
    """Defence: ``text._is_web_address``: http(s) with a host, nothing else."""
    shown = str(to_html(normalise(typed)))
    assert "<a " not in shown
    assert addresses(normalise(typed)) == []


def test_web_addresses_become_nofollow_ugc_links_without_the_sentence_punctuation():
    body = normalise(
        "See https://example.org/a?b=1&c=2. Or (https://fr.wikipedia.org/wiki/Loire_(fleuve)), "
        'and http://x.test/"onmouseover=alert(1)'
    )
    shown = str(to_html(body))
    links = re.findall(r"<a [^>]*>", shown)
    assert links == [
        '<a href="https://example.org/a?b=1&amp;c=2" rel="nofollow ugc">',
        '<a href="https://fr.wikipedia.org/wiki/Loire_(fleuve)" rel="nofollow ugc">',
        '<a href="http://x.test/" rel="nofollow ugc">',
    ]
    assert "onmouseover" not in "".join(links)
    assert "</a>. Or (" in shown and "</a>), and" in shown


def test_an_address_with_a_user_name_or_no_host_is_not_a_link():
    assert addresses("https://bank.example@evil.test/ and https:// and http:///x") == []


def test_line_breaks_are_kept_and_blank_lines_make_paragraphs():
    body = normalise("Premier paragraphe\r\nsa suite\r\n\r\n\r\n\r\nSecond\rfin  \n")
    assert body == "Premier paragraphe\nsa suite\n\nSecond\nfin"
    assert str(to_html(body)) == "<p>Premier paragraphe<br>\nsa suite</p><p>Second<br>\nfin</p>"


def test_bidi_overrides_controls_and_invisible_characters_are_removed():
    """Defence: ``text.normalise`` drops format characters that reorder text."""
    typed = "\u202egnp.exe\u202c a\u200bb\u2066c\u2069 \x07bell\x1b[31m\ttab \ufeff"
    assert normalise(typed) == "gnp.exe abc bell[31m tab"


def test_emoji_sequences_and_joiners_are_kept():
    family = "\U0001f469\u200d\U0001f469\u200d\U0001f467"
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    assert normalise(f"{family} {scotland} \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == (
        f"{family} {scotland} \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    )


def test_text_is_nfc_normalised():
    assert normalise("Cafe\u0301") == "Caf\u00e9"


def test_nothing_but_spaces_and_invisible_characters_is_empty():
    assert normalise(" \n\u200b\u202e\t\r\n ") == ""
