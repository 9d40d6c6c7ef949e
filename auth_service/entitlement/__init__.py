"""Entitlement tokens for the news site's servers (docs/contract.md §8).

The news site's servers decide, on every page view, whether to render an article's
body, without calling the service: they verify a signed token (a JWT) against the
public keys the service publishes at ``/.well-known/jwks.json``.
"""

from flask import Blueprint, Flask, jsonify

from . import keys, tokens

bp = Blueprint("entitlement", __name__)

# Verifiers refetch on an unknown ``kid``; five minutes bounds how long a new key waits.
JWKS_MAX_AGE = 300


@bp.get("/.well-known/jwks.json")
def jwks():
    """The public keys that verify entitlement tokens: current and still-needed ones."""
    response = jsonify(keys.jwks())
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def init_app(app: Flask) -> None:
    """The JWKS route, and the cookie renewed (or cleared) after every request."""
    app.register_blueprint(bp)
    app.after_request(tokens.refresh_cookie)
