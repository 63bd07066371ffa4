"""The user's own account (any approved role): the account page (profile, password,
email: profile.py), personal API tokens (routes.py) and which notifications are emailed
(notification_settings.py)."""
from flask import Blueprint

from ..models import ROLES
from ..roles import require_role

bp = Blueprint("account", __name__)
bp.before_request(require_role(*ROLES))

from . import notification_settings, profile, routes  # noqa: E402,F401
