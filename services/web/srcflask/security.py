"""Who is logged in, what standing they have, and the headers every response carries."""
from urllib.parse import urljoin, urlsplit

from flask import current_app, redirect, request, session, url_for
from flask_login import current_user, logout_user

from .api.paths import is_api_request
from .extensions import db, login_manager

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# The standing page is the only place a rejected or suspended user is sent to.
ENDED_STANDINGS = ("rejected", "suspended")


@login_manager.user_loader
def load_user(user_id):
    from .models import User

    if not user_id.isdigit():
        return None
    return db.session.get(User, int(user_id))


def end_session_of_blocked_user():
    """A user rejected or suspended while logged in loses the session on the next request.
    The API is left alone: cookies do not authenticate it, and it checks its token's user
    on every request itself."""
    if is_api_request():
        return None
    if current_user.is_authenticated and current_user.status in ENDED_STANDINGS:
        standing = {"status": current_user.status, "reason": current_user.decision_reason or ""}
        logout_user()
        session["standing"] = standing
        if request.endpoint not in ("auth.standing", "static"):
            return redirect(url_for("auth.standing"))
    return None


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
