"""Error pages in the site's layout: a person never sees a traceback."""
from flask import current_app, render_template, request
from flask.globals import request_ctx
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .api.errors import ApiError, has_own_message, json_error
from .api.paths import is_api_request
from . import throttle
from .extensions import db, login_manager

MESSAGES = {
    400: "The request could not be understood. If you submitted a form, reload the page and try again.",
    403: "You do not have access to this page.",
    404: "There is nothing here, or it is not yours to see.",
    405: "This action cannot be done that way.",
    413: "That request is too large. Shorten the text and try again.",
    429: "Too many attempts. Wait a minute and try again.",
    500: "Something went wrong on our side. Your last change was not saved; please try again.",
    503: "The service is briefly unavailable. If you were saving, your change may not have been saved: "
         "check, then try again in a moment.",
}
CSRF_MESSAGE = "This form has expired or was not sent from this site. Reload the page and try again."
# How long a client should wait before retrying while the database is unreachable: a
# PostgreSQL restart takes a few seconds, and pool_pre_ping reconnects on the next request.
DATABASE_RETRY_AFTER_SECONDS = 5


class DatabaseUnavailable(ServiceUnavailable):
    """The database could not be reached (restarting, failing over, out of connections).
    The request's open transaction is rolled back; one that was committing when the
    connection dropped may or may not have been saved, as the page says."""

    def __init__(self):
        super().__init__(retry_after=DATABASE_RETRY_AFTER_SECONDS)


# PostgreSQL's query_canceled: the statement ran past DATABASE_STATEMENT_TIMEOUT_SECONDS.
QUERY_CANCELED = "57014"
TIMEOUT_MESSAGE = ("This took too long and was stopped, so nothing was saved. Try again; if it keeps happening, "
                   "let us know what you were doing.")


def is_statement_timeout(error):
    """True when PostgreSQL cancelled a statement of this request (its statement_timeout,
    lock waits included, see config.database_engine_options): the database is up and
    the connection still good, unlike an outage."""
    return isinstance(error, sa_exc.DBAPIError) and getattr(error.orig, "pgcode", None) == QUERY_CANCELED


def is_database_outage(error):
    """True for errors that say the database is unreachable, not that the query was wrong:
    a refused or dropped connection, a server shutting down, an exhausted pool."""
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def render_error(error):
    """Render any error as a page of the site, with its own status code; an API request's
    error as the API's JSON (by path: a URL under /api/v1 that matches no route has no
    blueprint, and must still not get a page)."""
    if is_statement_timeout(error):
        return _timed_out(error)
    if isinstance(error, RateLimitExceeded):
        error.retry_after = throttle.retry_after()
    if is_database_outage(error):
        current_app.logger.warning("Database unavailable: %s", error.__class__.__name__,
                                   extra={"event": "database_unavailable", "error": str(error).splitlines()[0]})
        # Whatever still wants to know who is logged in (every template, the request's log
        # line) would load the user from the database and fail the same way: the rest of
        # the request is served as an anonymous visitor (the session is kept: nobody is
        # logged out). The dead connection is discarded at teardown (end_session).
        login_manager._update_request_context_with_user()
        error = DatabaseUnavailable()
    if is_api_request():
        return json_error(error)
    if request_ctx.url_adapter is None:
        # The request could not even be matched against the site's URLs (a Host header that
        # is no host name): a page of the site needs url_for, so the answer is plain text.
        code = error.code if isinstance(error, HTTPException) else 400
        return f"{code} {MESSAGES.get(code, 'The request could not be understood.')}\n", code, {
            "Content-Type": "text/plain; charset=utf-8"}
    if isinstance(error, DatabaseUnavailable):
        return (render_template("errors/unavailable.html", code=error.code, message=MESSAGES[503],
                                retry_after=error.retry_after, submitted=_submitted_text(),
                                retry_url=request.url if request.method == "GET" else None),
                error.code, {"Retry-After": str(error.retry_after)})
    if not isinstance(error, HTTPException):
        # The failed transaction must not leak into the error page's own queries.
        db.session.rollback()
        current_app.logger.exception("Unhandled error", exc_info=error)
        error = InternalServerError()
    if isinstance(error, CSRFError):
        message = CSRF_MESSAGE
    elif has_own_message(error):
        message = error.description
    else:
        message = MESSAGES.get(error.code, error.description)
    # A refused save (a rate limit) shows what was sent, like an outage does: nothing is lost.
    submitted = _submitted_text() if error.code == 429 else []
    response = render_template("errors/error.html", code=error.code, title=error.name, message=message,
                               submitted=submitted)
    # A 405 must say which methods the URL takes (RFC 9110); the page replaces werkzeug's.
    headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else {}
    if error.code == 429 and getattr(error, "retry_after", None):
        headers["Retry-After"] = str(error.retry_after)
    return response, error.code, headers


def _timed_out(error):
    """503 for a request whose statement ran too long: its transaction is rolled back (so
    nothing of it was saved, as the answer says), and the text a save carried is shown
    back. No Retry-After: the same request would likely take as long again."""
    db.session.rollback()
    current_app.logger.error("Statement timeout in %s", request.endpoint,
                             extra={"event": "statement_timeout", "error": str(error.orig).splitlines()[0]})
    if is_api_request():
        return json_error(ApiError(503, "statement_timeout", TIMEOUT_MESSAGE))
    return render_template("errors/error.html", code=503, title="Took too long", message=TIMEOUT_MESSAGE,
                           submitted=_submitted_text()), 503


def _submitted_text():
    """The title and body a refused save carried, to show back to the writer: a save that
    failed because the database was down, or was over its rate limit, must not cost them
    their text."""
    if request.method != "POST" or request.content_length is None:
        return []
    return [(label, request.form[name]) for label, name in (("Title", "title"), ("Body", "body"))
            if request.form.get(name)]


def end_session(exc):
    """End the request's database session. Flask-SQLAlchemy's own teardown rolls back on a
    connection that may have died after the request's last query, and an error raised there
    escapes every handler (gunicorn's bare 500, for a request that had succeeded): here the
    dead connection is discarded instead."""
    try:
        db.session.remove()
    except sa_exc.SQLAlchemyError:
        db.session().invalidate()
        db.session.remove()


def init_app(app):
    app.register_error_handler(Exception, render_error)
    # Registered after db.init_app, so it runs before Flask-SQLAlchemy's teardown (Flask
    # runs them in reverse), which then finds nothing left to do.
    app.teardown_appcontext(end_session)
