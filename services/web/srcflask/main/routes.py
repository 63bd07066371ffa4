from flask import redirect, render_template, url_for
from flask_login import current_user

from . import bp

HOME_BY_ROLE = {"sponsor": "sponsor.dashboard", "editor": "editor.dashboard", "admin": "admin.dashboard"}


@bp.get("/")
def index():
    """Send each user to their own area; visitors see what the app is."""
    if not current_user.is_authenticated:
        return render_template("main/index.html")
    if not current_user.is_approved:
        return redirect(url_for("auth.standing"))
    return redirect(url_for(HOME_BY_ROLE[current_user.role]))
