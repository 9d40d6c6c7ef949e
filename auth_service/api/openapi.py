"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written by hand, next to the routes it describes; ``tests/api/test_openapi.py`` checks
that it names every route (and nothing else), and a schemathesis run against a live
server checks that every answer matches it.
"""

from __future__ import annotations

from flask import Flask

from ..auth.browser import MAX_NEXT_LENGTH
from ..auth.forms import FORMAT_HINT
from ..models import DAILY_NEWSLETTER

ERROR_CODES = [
    "bad_request",
    "invalid_json",
    "json_too_deep",
    "unstorable_text",
    "invalid_field",
    "invalid_email",
    "address_refused",
    "malformed_code",
    "wrong_code",
    "no_attempt",
    "invalid",
    "expired",
    "used",
    "too_many_tries",
    "origin_not_allowed",
    "json_required",
    "not_found",
    "method_not_allowed",
    "too_large",
    "unsupported_media_type",
    "rate_limited",
    "server_error",
    "unavailable",
    "provider_unavailable",
    "account_gone",
    "not_signed_in",
    "invalid_api_key",
    "invalid_article",
]


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str, headers: dict | None = None) -> dict:
    answer = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _body(schema: str) -> dict:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


# What every route that changes something may answer besides its own outcomes.
CHANGING = {
    "400": _error("Not a JSON object, too deep, or text the service cannot store."),
    "403": _error("`origin_not_allowed`: not from this site or an allowed one."),
    "413": _error("`too_large`: the body is over the size limit."),
    "415": _error("`json_required`: the body must be application/json."),
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
UNAVAILABLE = _error("`unavailable`: the database does not answer; try again shortly.")
SLUG = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 200},
    # One of the demo articles (auth-service demo).
    "example": "train-de-nuit-port-ardent-montcalvel",
}
RATE_LIMITED = {
    "description": "`rate_limited`: too many requests; the message says how long to wait.",
    "headers": RETRY_AFTER,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _schemas() -> dict:
    text = {"type": "string"}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": ERROR_CODES},
                        "message": {
                            "type": "string",
                            "description": "A sentence for the reader, in their language.",
                        },
                        "hint": {"type": "string", "examples": [FORMAT_HINT]},
                        "suggestion": {"type": "string", "description": "A likely correction."},
                        "tries_left": {"type": "integer", "minimum": 0},
                        "field": text,
                        "where": text,
                    },
                }
            },
        },
        "LoginRequest": {
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "maxLength": 320, "examples": ["lea@example.com"]},
                "next": {
                    "type": "string",
                    "maxLength": MAX_NEXT_LENGTH,
                    "description": "Where the link leads back: a path here, or an absolute "
                    "URL on an allowed origin; anything else leads to /.",
                },
                "newsletters": {
                    "type": "array",
                    "items": {"type": "string", "enum": [DAILY_NEWSLETTER]},
                    "uniqueItems": True,
                    "description": "Newsletters the reader ticked (consent).",
                },
                "as_typed": {
                    "type": "boolean",
                    "description": "Send to the address as typed despite a suggested correction.",
                },
                "website": {
                    "type": "string",
                    "maxLength": 200,
                    "description": "Leave empty: a field only bots fill in.",
                },
            },
        },
        "ProviderLoginRequest": {
            "type": "object",
            "properties": {
                "next": {
                    "type": "string",
                    "maxLength": MAX_NEXT_LENGTH,
                    "description": "Where the provider leads back: a path here, or an "
                    "absolute URL on an allowed origin; anything else leads to /.",
                },
                "newsletters": {
                    "type": "array",
                    "items": {"type": "string", "enum": [DAILY_NEWSLETTER]},
                    "uniqueItems": True,
                    "description": "Newsletters the reader ticked (consent).",
                },
            },
        },
        "ProviderStart": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string"}},
        },
        "Providers": {
            "type": "object",
            "required": ["providers"],
            "properties": {
                "providers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "label", "brand", "icon"],
                        "properties": {
                            "name": {"type": "string"},
                            "label": {"type": "string"},
                            "brand": {
                                "type": "string",
                                "description": "Whose branding rules the button follows.",
                                "enum": ["google", "microsoft", "apple", "generic"],
                            },
                            "icon": {"type": ["string", "null"]},
                        },
                    },
                }
            },
        },
        "LinkSent": {
            "type": "object",
            "required": ["sent_to"],
            "properties": {"sent_to": {"type": "string"}},
        },
        "CodeRequest": {
            "type": "object",
            "required": ["code"],
            "properties": {"code": {"type": "string", "maxLength": 64, "examples": ["123456"]}},
        },
        "Me": {
            "type": "object",
            "required": ["signed_in"],
            "properties": {
                "signed_in": {"type": "boolean"},
                "email": text,
                "newsletters": {"type": "array", "items": text},
                "next": {"type": "string", "description": "Where the reader was going."},
            },
        },
        "Empty": {"type": "object"},
        "ArticleImport": {
            "type": "object",
            "required": ["title", "published_at"],
            "description": "The schema of `auth-service articles import`; body_html is "
            "sanitised (no script, no event handlers, no javascript: links).",
            "properties": {
                "slug": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
                "title": {"type": "string", "maxLength": 500},
                "kicker": {"type": "string", "maxLength": 200},
                "standfirst": {"type": "string", "maxLength": 5000},
                "body_html": {"type": "string", "maxLength": 500000},
                "image": {
                    "type": "object",
                    "properties": {
                        "url": {"type": "string", "maxLength": 2048},
                        "caption": {"type": "string", "maxLength": 2000},
                        "credit": {"type": "string", "maxLength": 500},
                        "alt": {"type": "string", "maxLength": 2000},
                    },
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "access": {"type": "string", "enum": ["public", "registered"]},
                "published_at": {"type": "string", "format": "date-time"},
            },
        },
        "ArticleStored": {
            "type": "object",
            "required": ["slug", "title", "access", "published_at"],
            "properties": {
                "slug": text,
                "title": text,
                "access": {"type": "string", "enum": ["public", "registered"]},
                "published_at": {"type": "string"},
            },
        },
        "Entitlement": {
            "type": "object",
            "required": ["token", "expires_at"],
            "properties": {
                "token": {"type": "string"},
                "expires_at": {"type": "string", "format": "date-time"},
            },
        },
        "Meter": {
            "type": "object",
            "required": ["free_articles", "left", "period_days"],
            "properties": {
                "free_articles": {"type": "integer", "minimum": 0},
                "left": {"type": "integer", "minimum": 0},
                "period_days": {"type": "integer", "minimum": 0},
            },
        },
        "Article": {
            "type": "object",
            "required": [
                "slug",
                "title",
                "kicker",
                "standfirst",
                "opening_html",
                "access",
                "entitled",
                "signed_in",
                "meter",
            ],
            "properties": {
                "slug": text,
                "title": text,
                "kicker": text,
                "standfirst": text,
                "opening_html": text,
                "access": {"type": "string", "enum": ["public", "registered"]},
                "entitled": {"type": "boolean"},
                "signed_in": {"type": "boolean"},
                "meter": {"$ref": "#/components/schemas/Meter"},
                "body_html": {"type": "string", "description": "Only when entitled."},
            },
        },
    }


def _paths() -> dict:
    return {
        "/api/v1/login": {
            "post": {
                "summary": "Mail a sign-in link and code (sign up or sign in).",
                "requestBody": _body("LoginRequest"),
                "responses": {
                    "202": _json(
                        "Sent (the same answer whether an account exists); sets the "
                        "attempt cookie.",
                        "LinkSent",
                    ),
                    **CHANGING,
                    "422": _error(
                        "`invalid_email` (with `hint`, and `suggestion` for a likely typo), "
                        "`address_refused`, or `invalid_field`."
                    ),
                    "429": RATE_LIMITED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/api/v1/login/code": {
            "post": {
                "summary": "Sign in the browser that asked, with the 6-digit code.",
                "requestBody": _body("CodeRequest"),
                "responses": {
                    "200": _json("Signed in; sets the session cookie.", "Me"),
                    **CHANGING,
                    "400": _error("`no_attempt`: this browser asked for no link; or bad JSON."),
                    "410": _error(
                        "`expired`, `used` or `too_many_tries`: ask for a new link; "
                        "`account_gone`: the account was deleted meanwhile."
                    ),
                    "422": _error("`wrong_code` (with `tries_left`), `malformed_code`."),
                    "429": RATE_LIMITED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/api/v1/providers": {
            "get": {
                "summary": "The sign-in providers (OpenID Connect) the wall offers, in order.",
                "responses": {"200": _json("Their names, labels and branding.", "Providers")},
            }
        },
        "/api/v1/login/with/{name}": {
            "post": {
                "summary": "Start a sign-in with a provider: where to send the browser.",
                "description": "Sets the session cookie that holds the round trip's state; "
                "send the browser (top level) to `url`. A signed-in browser gets `next`.",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 16},
                        # The name the tests' provider goes by (tests/api).
                        "example": "idp",
                    }
                ],
                "requestBody": _body("ProviderLoginRequest"),
                "responses": {
                    "200": _json("The provider's authorization URL.", "ProviderStart"),
                    **CHANGING,
                    "404": _error("`not_found`: no provider of this name."),
                    "422": _error("`invalid_field`."),
                    "503": _error("`provider_unavailable`: the provider does not answer."),
                },
            }
        },
        "/api/v1/me": {
            "get": {
                "summary": "Who is signed in in this browser (never cached).",
                "responses": {"200": _json("The reader, or signed_in false.", "Me")},
            }
        },
        "/api/v1/entitlement": {
            "get": {
                "summary": "The signed entitlement token (a JWT) of the signed-in reader.",
                "description": "Verify it with the keys of /.well-known/jwks.json (ES256).",
                "responses": {
                    "200": _json("The token and when it expires.", "Entitlement"),
                    "401": _error("`not_signed_in`."),
                },
            }
        },
        "/api/v1/logout": {
            "post": {
                "summary": "Sign this browser out.",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Empty"}}
                    },
                },
                "responses": {"204": {"description": "Signed out."}, **CHANGING},
            }
        },
        "/api/v1/articles/{slug}": {
            "get": {
                "summary": "An article as the wall shows it; the body only when entitled.",
                "parameters": [SLUG],
                "responses": {
                    "200": _json(
                        "The article; counts it on a signed-out browser's meter.", "Article"
                    ),
                    "400": _error("`unstorable_text`: the slug holds text no article has."),
                    "404": _error("`not_found`."),
                },
            },
            "put": {
                "summary": "Create or replace an article (the publisher's CMS, with an API key).",
                "security": [{"apiKey": []}],
                "parameters": [SLUG],
                "requestBody": _body("ArticleImport"),
                "responses": {
                    "200": _json("Replaced.", "ArticleStored"),
                    "201": _json("Created.", "ArticleStored"),
                    "400": _error("Not a JSON object, too deep, or unstorable text."),
                    "401": _error("`invalid_api_key`: missing, wrong or revoked key."),
                    "413": _error("`too_large`."),
                    "415": _error("`unsupported_media_type`: the body must be JSON."),
                    "422": _error("`invalid_article`: the message says which field."),
                    "429": RATE_LIMITED,
                    "503": UNAVAILABLE,
                },
            },
            "delete": {
                "summary": "Delete an article (the publisher's CMS, with an API key).",
                "security": [{"apiKey": []}],
                "parameters": [SLUG],
                "responses": {
                    "204": {"description": "Deleted."},
                    "400": _error("`unstorable_text`."),
                    "401": _error("`invalid_api_key`: missing, wrong or revoked key."),
                    "404": _error("`not_found`."),
                    "429": RATE_LIMITED,
                    "503": UNAVAILABLE,
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def document(app: Flask) -> dict:
    """The whole document, its server being this deployment's ``PUBLIC_URL``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{app.config['SITE_NAME']}: registration wall API",
            "version": "1.0.0",
            "description": "Sign up or sign in by email link and code, who is signed in, "
            "and articles as the wall shows them. Requests that change something must "
            "be JSON from this site's origin or an allowed one (the Origin header). "
            'Errors are {"error": {"code", "message"}}, the message in the '
            "reader's language (Accept-Language).",
        },
        "servers": [{"url": app.config["PUBLIC_URL"]}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from `auth-service api-keys create NAME`.",
                }
            },
        },
    }
