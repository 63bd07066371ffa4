"""Routes that belong to no role: the front door."""
from flask import Blueprint

bp = Blueprint("main", __name__)

from . import events, routes  # noqa: E402,F401
