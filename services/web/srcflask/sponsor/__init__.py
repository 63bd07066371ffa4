from flask import Blueprint

from ..roles import require_role

bp = Blueprint("sponsor", __name__)
bp.before_request(require_role("sponsor"))

from . import routes  # noqa: E402,F401
