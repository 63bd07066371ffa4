"""Role checks shared by the role blueprints: done once per blueprint in before_request."""
from flask import abort, redirect, request, url_for
from flask_login import current_user


def require_role(*roles):
    """A before_request hook: anonymous users go to log-in (with a `next`), users who are
    not yet approved go to their standing page, users of another role get 403."""

    def check():
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if not current_user.is_approved:
            return redirect(url_for("auth.standing"))
        if current_user.role not in roles:
            abort(403)
        return None

    return check
