"""Who is calling the API: the bearer token, checked on every request, and the role
each endpoint is for. The rate limit's key is the token's owner, so a user's tokens share
one allowance (more tokens buy no more requests) and one user cannot use up another's;
requests without a valid token share their client address's."""
import functools

from flask import current_app, request
from flask_limiter.util import get_remote_address
from sqlalchemy.exc import SQLAlchemyError

from .. import throttle
from ..extensions import db
from ..services import tokens
from . import bp
from .errors import ApiError

# Endpoints anyone may read: the specification itself (the docs page loads it).
PUBLIC_ENDPOINTS = {"api.openapi_json"}
BODY_METHODS = ("POST", "PUT", "PATCH")
ENVIRON_KEY = "srcflask.api_token"


def _presented_secret():
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


def current_token():
    """The live token of this request (None when missing, unknown, revoked, or its user is
    not approved), looked up once per request. Kept in the request's environ, not in `g`:
    `g` belongs to the app context, which a caller's own context may share across requests."""
    if ENVIRON_KEY not in request.environ:
        request.environ[ENVIRON_KEY] = tokens.authenticate(_presented_secret())
    return request.environ[ENVIRON_KEY]


def current_api_user():
    return current_token().user


def rate_limit():
    return current_app.config["API_RATE_LIMIT"]


def rate_limit_key():
    try:
        token = current_token()
    except SQLAlchemyError:
        # The database is down: authenticate() answers 503 next. An error raised here would
        # make Flask-Limiter take its own storage for dead and count in memory meanwhile.
        token = None
    return throttle.account_key(token.user) if token is not None else f"api-anonymous:{get_remote_address()}"


@bp.before_request
def authenticate():
    """Every operation but the spec needs a live token; bodies must be JSON. The token's
    last-used mark is committed here, apart from the view's own transaction."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    token = current_token()
    db.session.commit()
    if token is None:
        raise ApiError(401, "unauthorized", "Send a valid API token: Authorization: Bearer <token>. "
                       "Tokens of accounts that are not approved, and revoked tokens, do not work.",
                       headers={"WWW-Authenticate": 'Bearer realm="srcflask"'})
    if request.method in BODY_METHODS and request.content_length and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the request body as JSON (Content-Type: application/json).")


def roles(*allowed):
    """The operation is for these roles only: 403 for the others."""

    def decorate(view):
        @functools.wraps(view)
        def check(*args, **kwargs):
            if current_api_user().role not in allowed:
                raise ApiError(403, "forbidden", f"This operation is for {' and '.join(allowed)} accounts.")
            return view(*args, **kwargs)

        return check

    return decorate
