"""WSGI entry point for gunicorn and `flask --app wsgi`: the environment picks the config."""
from srcflask import create_app

app = create_app()
