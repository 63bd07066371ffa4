"""The user's own account: personal API tokens (any approved role)."""
from flask import Blueprint

from ..models import ROLES
from ..roles import require_role

bp = Blueprint("account", __name__)
bp.before_request(require_role(*ROLES))

from . import routes  # noqa: E402,F401
