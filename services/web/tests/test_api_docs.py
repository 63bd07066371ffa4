"""The OpenAPI document: it validates, it names every route under /api/v1, the docs page
renders it offline, and schemathesis finds no server error in any operation."""
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error

from srcflask.extensions import db
from srcflask.services import tokens

from .factories import make_document, make_user, write_autodocs

SEED = 20261124
MAX_EXAMPLES = 25


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_openapi_document_is_valid(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}


def test_every_api_route_is_in_the_document(app, spec):
    documented = {(path, method.upper()) for path, operations in spec["paths"].items() for method in operations
                  if method != "parameters"}
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/") and rule.endpoint != "api.openapi_json"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == documented


def test_every_error_answer_is_documented_with_the_error_shape(spec):
    assert spec["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method != "parameters":
                assert "default" in operation["responses"], (method, path)


def test_the_docs_page_lists_every_operation_without_outside_assets(client, spec):
    response = client.get("/api/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for path in spec["paths"]:
        assert f"<code>{path}</code>" in page
    assert "http://" not in page.replace("http://localhost", "") and "https://" not in page
    assert "<script>" not in page  # the CSP allows no inline script


def test_schemathesis_finds_no_server_error(app, monkeypatch):
    """Up to MAX_EXAMPLES generated requests per operation, with a fixed seed, as a
    sponsor who owns a document with a written autodoc: never a 500."""
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "100000 per minute")
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        make_document(sponsor, editor)
        write_autodocs()
        secret = tokens.create_token(sponsor, "schemathesis").secret
        db.session.commit()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {secret}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation of the API is fuzzed: as many as the url_map has /api/v1 endpoints.
    routed = {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
              and rule.endpoint != "api.openapi_json" for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert len(operations) == len(routed) >= 27

    for operation in operations:
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def no_server_error(case):
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
