"""The JSON API under /api/v1, for scripts and integrations, and its OpenAPI docs.

The same accounts, roles and rules as the pages: every endpoint calls the services the
pages call. Only personal API tokens (Authorization: Bearer ...) authenticate it: never
the session cookie, so CSRF does not apply. Rate limits are per user (srcflask/throttle.py).
"""
from flask import Blueprint as FlaskBlueprint
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.flaskparser import FlaskParser

from ..extensions import csrf, limiter
from .errors import ERROR_RESPONSE_SCHEMA

from .paths import PREFIX


class SrcflaskApi(Api):
    """flask-smorest's Api without its app-wide error handler: errors.py answers every
    error, as JSON under PREFIX (api.errors) and as a page elsewhere."""

    ERROR_SCHEMA = ERROR_RESPONSE_SCHEMA

    def _register_error_handlers(self):
        pass


api = SrcflaskApi(spec_kwargs={
    "title": "srcflask API",
    "version": "1",
    "openapi_version": "3.0.3",
    "info": {"description": "Documents, their revisions and autodocs, reviews and accounts, "
                            "with the same roles and rules as the site. Authenticate with a personal "
                            "API token from your account page: `Authorization: Bearer <token>`."},
    "security": [{"bearerAuth": []}],
})
class ArgumentsParser(FlaskParser):
    # A request that breaks the schema is a bad request (400, with per-field details);
    # 422 is kept for a valid request the rules refuse (an edit that changes nothing).
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = ArgumentsParser()


bp = Blueprint("api", __name__, description="srcflask API v1")
# A separate, plain blueprint for the human-readable docs page (/api/docs): it is a page of
# the site, not an operation of the API.
docs_bp = FlaskBlueprint("api_docs", __name__)

from . import auth, exports, registry, routes  # noqa: E402,F401


def init_app(app):
    api.init_app(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    csrf.exempt(bp)
    # Shared: one allowance for the whole API, not one per endpoint.
    limiter.shared_limit(auth.rate_limit, "api", key_func=auth.rate_limit_key)(bp)
    api.register_blueprint(bp, url_prefix=PREFIX)
    app.register_blueprint(docs_bp, url_prefix="/api")
