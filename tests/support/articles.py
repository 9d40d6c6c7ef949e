"""Articles to import: a gated one, a public one, one scheduled for later."""

from __future__ import annotations

OPENING = "Le premier train de nuit depuis dix ans a quitté Port-Ardent hier soir."


GATED_SENTENCE = "Seuls les lecteurs inscrits apprennent que le voyage a duré onze heures."


PUBLIC_SENTENCE = "Cette suite reste lisible par tous les lecteurs du site."


STANDFIRST = "La ligne rouvre après une décennie de silence."


ARTICLES = [
    {
        "slug": "train-de-nuit",
        "title": "Le train de nuit revient",
        "kicker": "Transports",
        "standfirst": STANDFIRST,
        "body_html": f"<p>{OPENING}</p><p>{GATED_SENTENCE}</p><p>Dernier paragraphe.</p>",
        "image": {
            "url": "/static/demo/train-de-nuit.svg",
            "caption": "Un quai de gare",
            "credit": "Photo : Rédaction",
        },
        "tags": ["Rail"],
        "access": "registered",
        "published_at": "2025-01-05T07:00:00Z",
    },
    {
        "slug": "rivieres",
        "title": "Les rivières retrouvent leurs méandres",
        "standfirst": "Une réussite.",
        "body_html": f"<p>Ouverture publique.</p><p>{PUBLIC_SENTENCE}</p>"
        "<script>alert('body')</script>",
        "access": "public",
        "published_at": "2025-01-04T07:00:00Z",
    },
    {
        "slug": "a-venir",
        "title": "Un article programmé pour plus tard",
        "body_html": "<p>Pas encore.</p>",
        "access": "public",
        "published_at": "2099-01-01T07:00:00Z",
    },
]


# One article with every field, and markup the import must clean.
ARTICLE = {
    "slug": "un-article",
    "title": "Un article",
    "kicker": "Essai",
    "standfirst": "Le chapeau.",
    "body_html": "<p>Premier paragraphe.</p><script>alert(1)</script>"
    '<p onclick="x()">Second <a href="javascript:alert(1)">lien</a>.</p>',
    "image": {"url": "/static/demo/train-de-nuit.svg", "caption": "Légende", "credit": "Crédit"},
    "tags": ["un", "deux"],
    "access": "registered",
    "published_at": "2026-11-27T07:30:00+01:00",
}
