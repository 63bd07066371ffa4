from flask import get_template_attribute, jsonify, redirect, render_template, url_for
from flask_login import current_user

from ..services.documents import autodoc_state, get_autodoc_or_404
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


@bp.get("/autodocs/<id:autodoc_id>/status")
def autodoc_status(autodoc_id):
    """The live state of one autodoc for the pages' polling script: status, place in the
    queue, expected wait, and its HTML rendered by the same macros as the page itself.
    A script cannot follow a log-in redirect, so refusals are JSON too."""
    if not current_user.is_authenticated:
        return jsonify(error="Log in to see this autodoc."), 401
    if not current_user.is_approved:
        return jsonify(error="Your account is not approved."), 403
    autodoc = get_autodoc_or_404(autodoc_id, current_user)
    # The same state the API's GET /api/v1/autodocs/<id> answers (one service function);
    # the page adds only its HTML. Cookies never authenticate the API, so the pages keep
    # this session-authenticated twin rather than calling the API.
    state = autodoc_state(autodoc, current_user)
    render = get_template_attribute("_macros/documents.html", "autodoc_detail")
    badge = get_template_attribute("_macros/documents.html", "autodoc_status")
    return jsonify(
        id=state["id"],
        status=state["status"],
        position=state["position"],
        eta_seconds=state["eta_seconds"],
        html=str(render(autodoc, state["progress"], regenerate=current_user.role == "sponsor",
                        review_endpoint=REVIEW_BY_ROLE.get(current_user.role), withheld=state["withheld"])),
        badge=str(badge(autodoc)),
    )
