"""The OpenAPI document says what the routes do: checked against the URL map here, and
against a live server's answers by schemathesis (``test_schemathesis.py``)."""

from __future__ import annotations

import re


def test_the_document_names_every_api_route_and_no_other(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    routed = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == routed


def test_every_reference_in_the_document_resolves(client):
    document = client.get("/api/v1/openapi.json").get_json()
    text = str(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in document["components"]["schemas"], name


def test_every_error_code_the_api_can_answer_is_in_the_document():
    from pathlib import Path

    from auth_service.api import openapi

    source = (
        "".join(path.read_text() for path in Path(openapi.__file__).parent.glob("*.py"))
        + Path(openapi.__file__).parent.parent.joinpath("errors.py").read_text()
    )
    raised = set(re.findall(r'ApiError\(\s*\d+,\s*"(\w+)"', source))
    raised |= set(re.findall(r'code="(\w+)"', source))
    raised |= set(re.findall(r'error_code = "(\w+)"', source))
    # Forms only: a CSRF token or a form where JSON came; the API has neither.
    assert raised - {"csrf_failed", "form_expected"} <= set(openapi.ERROR_CODES)
