"""WSGI entry point for gunicorn and `flask --app wsgi`: the environment picks the settings.

Settings that must not run stop the process with their one-line reasons, not a traceback."""
from srcflask import create_app
from srcflask.config import ConfigurationError

try:
    app = create_app()
except ConfigurationError as refused:
    raise SystemExit(f"srcflask cannot start with these settings:\n{refused}") from None
