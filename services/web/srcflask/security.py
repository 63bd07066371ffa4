"""Who is logged in, what standing they have, and the headers every response carries."""
from urllib.parse import urljoin, urlsplit

from flask import current_app, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user

from .api.paths import is_api_request
from .extensions import db, login_manager
from .routing import MAX_ROW_ID

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# The standing page is the only place a rejected or suspended user is sent to.
ENDED_STANDINGS = ("rejected", "suspended")


def _user_and_generation(session_id):
    """The user a cookie's id ("<user id>:<session generation>", User.get_id) names, and the
    generation it carries; (None, None) when the id is malformed or the user is gone."""
    from .models import User

    user_id, _, generation = (session_id or "").partition(":")
    if not (user_id.isascii() and user_id.isdigit() and generation.isascii() and generation.isdigit()):
        return None, None
    if len(user_id) > len(str(MAX_ROW_ID)) or int(user_id) > MAX_ROW_ID:  # beyond PostgreSQL's integers
        return None, None
    return db.session.get(User, int(user_id)), int(generation)


@login_manager.user_loader
def load_user(session_id):
    """The user of a session or remember-me cookie, unless the account's sessions were
    ended after the cookie was issued (User.session_generation): then nobody."""
    user, generation = _user_and_generation(session_id)
    return user if user is not None and user.session_generation == generation else None


def standing_of(user):
    """What the standing page tells a rejected or suspended account: its status and why."""
    return {"status": user.status, "reason": user.decision_reason or ""}


def _ended_by_a_decision(session_id):
    """The standing to show a cookie that load_user refused, when it is the one that was
    open when an admin rejected or suspended the account (the decision moved the generation
    on by one); None for any other refused cookie, which simply opens nothing."""
    user, generation = _user_and_generation(session_id)
    if user is not None and user.status in ENDED_STANDINGS and generation == user.session_generation - 1:
        return standing_of(user)
    return None


def end_session_of_blocked_user():
    """A user rejected or suspended while logged in loses the session on the next request,
    and is sent to the standing page that says why. A refused cookie's id is dropped from
    the session. The API is left alone: cookies do not authenticate it, and it checks its
    token's user on every request itself."""
    if is_api_request():
        return None
    standing = None
    if current_user.is_authenticated:
        if current_user.status not in ENDED_STANDINGS:
            return None
        standing = standing_of(current_user)
    elif "_user_id" in session:
        standing = _ended_by_a_decision(session["_user_id"])
    else:
        return None
    logout_user()
    if standing is not None:
        session["standing"] = standing
        if request.endpoint not in ("auth.standing", "static"):
            return redirect(url_for("auth.standing"))
    return None


def start_session(user):
    """Log `user` in on a new session: nothing from before log-in carries over (the CSRF
    token included, so a session or token planted in the browser beforehand is worthless),
    and the session is permanent so that its lifetime (SESSION_LIFETIME_DAYS) applies."""
    session.clear()
    session.permanent = True
    login_user(user)


def set_security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def is_safe_next(target):
    """True when `target` is a path on this site (never another host, scheme or '//')."""
    if not target or "\\" in target or any(ord(ch) < 32 for ch in target):
        return False
    resolved = urlsplit(urljoin(request.host_url, target))
    return resolved.scheme in ("http", "https") and resolved.netloc == request.host and target.startswith("/") \
        and not target.startswith("//")


def init_app(app):
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    app.before_request(end_session_of_blocked_user)
    app.after_request(set_security_headers)
