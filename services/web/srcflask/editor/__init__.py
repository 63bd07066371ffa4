from flask import Blueprint

from ..roles import require_role

bp = Blueprint("editor", __name__)
bp.before_request(require_role("editor"))

from . import routes  # noqa: E402,F401
