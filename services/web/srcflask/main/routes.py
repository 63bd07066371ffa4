from flask import current_app, get_template_attribute, jsonify, redirect, render_template, url_for
from flask_login import current_user

from ..services.autodoc_queue import progress_of
from ..services.documents import get_autodoc_or_404
from . import bp

HOME_BY_ROLE = {"sponsor": "sponsor.dashboard", "editor": "editor.dashboard", "admin": "admin.dashboard"}
# Where each role reviews an autodoc (the editor gives verdicts; the admin reads them).
REVIEW_BY_ROLE = {"editor": "editor.review", "admin": "admin.review"}


@bp.get("/")
def index():
    """Send each user to their own area; visitors see what the app is."""
    if not current_user.is_authenticated:
        return render_template("main/index.html")
    if not current_user.is_approved:
        return redirect(url_for("auth.standing"))
    return redirect(url_for(HOME_BY_ROLE[current_user.role]))


@bp.get("/autodocs/<int:autodoc_id>/status")
def autodoc_status(autodoc_id):
    """The live state of one autodoc for the pages' polling script: status, place in the
    queue, expected wait, and its HTML rendered by the same macros as the page itself.
    A script cannot follow a log-in redirect, so refusals are JSON too."""
    if not current_user.is_authenticated:
        return jsonify(error="Log in to see this autodoc."), 401
    if not current_user.is_approved:
        return jsonify(error="Your account is not approved."), 403
    autodoc = get_autodoc_or_404(autodoc_id, current_user)
    progress = progress_of([autodoc], current_app.config["WRITER_BATCH_SIZE"]).get(autodoc.id)
    render = get_template_attribute("_macros/documents.html", "autodoc_detail")
    badge = get_template_attribute("_macros/documents.html", "autodoc_status")
    return jsonify(
        id=autodoc.id,
        status=autodoc.status,
        position=progress.position if progress else None,
        eta_seconds=progress.eta_seconds if progress else None,
        html=str(render(autodoc, progress, regenerate=current_user.role == "sponsor",
                        review_endpoint=REVIEW_BY_ROLE.get(current_user.role))),
        badge=str(badge(autodoc)),
    )
