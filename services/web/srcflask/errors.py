"""Error pages in the site's layout: a person never sees a traceback."""
from flask import current_app, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .api.errors import json_error
from .api.paths import is_api_request
from .extensions import db

MESSAGES = {
    400: "The request could not be understood. If you submitted a form, reload the page and try again.",
    403: "You do not have access to this page.",
    404: "There is nothing here, or it is not yours to see.",
    405: "This action cannot be done that way.",
    413: "That request is too large. Shorten the text and try again.",
    429: "Too many attempts. Wait a minute and try again.",
    500: "Something went wrong on our side. Your last change was not saved; please try again.",
    503: "The service is briefly unavailable. Your last change was not saved; please try again in a moment.",
}
CSRF_MESSAGE = "This form has expired or was not sent from this site. Reload the page and try again."


def render_error(error):
    """Render any error as a page of the site, with its own status code; an API request's
    error as the API's JSON (by path: a URL under /api/v1 that matches no route has no
    blueprint, and must still not get a page)."""
    if is_api_request():
        return json_error(error)
    if not isinstance(error, HTTPException):
        # The failed transaction must not leak into the error page's own queries.
        db.session.rollback()
        current_app.logger.exception("Unhandled error", exc_info=error)
        error = InternalServerError()
    message = CSRF_MESSAGE if isinstance(error, CSRFError) else MESSAGES.get(error.code, error.description)
    response = render_template("errors/error.html", code=error.code, title=error.name, message=message)
    # A 405 must say which methods the URL takes (RFC 9110); the page replaces werkzeug's.
    headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else {}
    if error.code == 429 and getattr(error, "retry_after", None):
        headers["Retry-After"] = str(error.retry_after)
    return response, error.code, headers


def init_app(app):
    app.register_error_handler(Exception, render_error)
