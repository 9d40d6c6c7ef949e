"""The article routes of the publisher's CMS: ``PUT`` and ``DELETE /api/v1/articles/<slug>``.

Server to server: a key in ``Authorization: Bearer`` opens them, never a cookie, and no
browser gets CORS for them. The body is the import's schema (``articles/store.parse``),
sanitised and checked the same way, stored all or nothing; every change is recorded
with the key that made it, and each key has its own rate limit.
"""

from __future__ import annotations

from flask import current_app, jsonify
from flask_babel import gettext as _

from ..articles import store
from ..extensions import db, limiter
from ..models import ArticleChange, iso_utc
from ..publisher import api_keys
from ..security import reads_json
from .views import ApiError, bp, json_object

per_key = limiter.shared_limit(
    lambda: current_app.config["PUBLISHER_LIMIT_PER_KEY"],
    key_func=api_keys.rate_key,
    scope="publisher-per-key",
)


def _key():
    """The live key of this request, or a 401 (nothing is read or changed before)."""
    row = api_keys.authenticated()
    if row is None:
        raise ApiError(
            401,
            "invalid_api_key",
            _("A valid API key is needed: Authorization: Bearer <key>."),
        )
    return row


def _record(slug: str, action: str, key) -> None:
    db.session.add(ArticleChange(slug=slug, action=action, api_key_id=key.id))


@bp.put("/articles/<slug>")
@per_key
@reads_json
def put_article(slug: str):
    """Create or replace the article ``slug``: 201 when new, 200 when replaced."""
    key = _key()
    if slug != slug.strip() or not store.SLUG.match(slug):
        raise ApiError(
            422,
            "invalid_article",
            _("The address must end with the slug: lower-case letters, digits and dashes."),
        )
    body = json_object()
    if body.get("slug", slug) != slug:
        raise ApiError(
            422, "invalid_article", _("The slug of the body differs from the address's.")
        )
    try:
        values = store.parse({**body, "slug": slug})
    except store.ArticleError as error:
        raise ApiError(422, "invalid_article", str(error)) from None
    created = store.upsert(values)
    _record(slug, "created" if created else "updated", key)
    db.session.commit()
    answer = {
        "slug": slug,
        "title": values["title"],
        "access": values["access"],
        "published_at": iso_utc(values["published_at"]),
    }
    return jsonify(answer), 201 if created else 200


@bp.delete("/articles/<slug>")
@per_key
def delete_article(slug: str):
    """Delete the article ``slug``: 204, or 404 if there is none."""
    key = _key()
    if not store.delete(slug):
        raise ApiError(404, "not_found", _("There is no article at this address."))
    _record(slug, "deleted", key)
    db.session.commit()
    return "", 204
