"""Routes for machines, not people: health and readiness probes, Prometheus metrics.

They answer JSON (or Prometheus text), take no session and no CSRF, and stay cheap: a
load balancer or docker's healthcheck calls them every few seconds.
"""
from flask import Blueprint

bp = Blueprint("ops", __name__)

from . import routes  # noqa: E402,F401
