"""The API's one error shape: {"error": {"code", "message", "details"}}, whatever went
wrong (a refused token, a validation error, a rule of the app, an unexpected bug).

errors.py (the site's handler) hands every error of a request under /api/v1 to
json_error(), so an API client never receives an HTML page."""
import marshmallow as ma
from flask import current_app, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from ..extensions import db

# werkzeug's names, as stable snake_case codes: "not_found", "method_not_allowed"...
MESSAGES = {
    400: "The request is not valid.",
    404: "There is nothing here, or it is not yours to see.",
    405: "This URL does not take that method.",
    413: "The request body is too large.",
    429: "Too many requests for this account. Wait and try again.",
    500: "Something went wrong on our side. Nothing was saved; please try again.",
    503: "The service is briefly unavailable; retry after Retry-After seconds. A change may or may not have "
         "been saved: read it back before sending it again.",
}


class ErrorBody(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "A stable, machine-readable code."})
    message = ma.fields.String(required=True, metadata={"description": "What went wrong, for a person."})
    details = ma.fields.Dict(allow_none=True, metadata={"description": "Per-field messages, or other context."})


class ErrorResponse(ma.Schema):
    error = ma.fields.Nested(ErrorBody, required=True)


ERROR_RESPONSE_SCHEMA = ErrorResponse


class ApiError(HTTPException):
    """An API refusal with its code, message and details."""

    def __init__(self, status, code, message, details=None, headers=None):
        super().__init__(message)
        self.code = status
        self.error_code = code
        self.details = details
        self.headers = headers or {}


def has_own_message(error):
    """A rate limit that says what it limits (throttle.py) speaks for itself; others get
    the generic 429 message."""
    return bool(getattr(getattr(error, "limit", None), "error_message", None))


def _code(error):
    return getattr(error, "error_code", None) or error.name.lower().replace(" ", "_").replace("'", "")


def json_error(error):
    """The JSON answer for any exception raised while serving the API."""
    if not isinstance(error, HTTPException):
        db.session.rollback()
        current_app.logger.exception("Unhandled API error", exc_info=error)
        error = InternalServerError()
    headers = dict(getattr(error, "headers", None) or {})
    details = getattr(error, "details", None)
    message = error.description if isinstance(error, ApiError) or has_own_message(error) \
        else MESSAGES.get(error.code, error.description)
    data = getattr(error, "data", None)  # webargs' validation errors
    if data and "messages" in data:
        details = data["messages"]
        message = "The request is not valid: see details."
        error_code = "validation_error"
    else:
        error_code = _code(error)
    if getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if error.code in (429, 503):
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(retry_after)
    body = {"error": {"code": error_code, "message": message, "details": details}}
    return jsonify(body), error.code, headers
