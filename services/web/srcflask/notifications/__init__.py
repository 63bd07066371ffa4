"""Everyone's in-app notifications (any approved role), and the navigation's counts."""
from flask import Blueprint

from ..models import ROLES
from ..roles import require_role

bp = Blueprint("notifications", __name__)
bp.before_request(require_role(*ROLES))

from . import routes  # noqa: E402,F401
