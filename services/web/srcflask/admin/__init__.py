from flask import Blueprint

from ..roles import require_role

bp = Blueprint("admin", __name__)
bp.before_request(require_role("admin"))

from . import export_pages, model_pages, routes  # noqa: E402,F401
