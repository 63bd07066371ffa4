"""srcflask: documents written by people, companion texts (autodocs) drafted by GPT-2.

create_app() only wires: configuration, logs and metrics, extensions, blueprints, error
pages, commands.
Nothing here touches the database, the network or the model.
"""
import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings, flask_config, load_settings
from .request import SiteRequest


def create_app(config=None, **overrides):
    """Build the app for an environment ("development", "testing", "production"; default:
    SRCFLASK_ENV, else development); keyword overrides win over the environment's variables
    and are checked like them (config.ConfigurationError, one line per problem)."""
    # Only the public asset folder is served: static/src, static/mlmodels and static/data
    # hold Python code and weights, so they must never be reachable through /static.
    app = Flask(__name__, static_folder="static/assets", static_url_path="/static")
    app.request_class = SiteRequest  # form bodies are checked before they are parsed

    if "SQLALCHEMY_DATABASE_URI" in overrides:  # Flask's name for the DATABASE_URL setting
        overrides["DATABASE_URL"] = overrides.pop("SQLALCHEMY_DATABASE_URI")
    settings = load_settings(config, **{name: value for name, value in overrides.items() if name in Settings.model_fields})
    app.config.from_mapping(flask_config(settings, app.instance_path))
    # Flask's and the extensions' own switches, which are not settings of the site (RATELIMIT_ENABLED ...).
    app.config.from_mapping({name: value for name, value in overrides.items() if name not in Settings.model_fields})
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)

    register_observability(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_observability(app):
    """Request logs and metrics. Wired before the extensions so that their timer is the
    first before_request hook: a request that another hook answers (a redirect, a 429) is
    timed and logged too."""
    from . import logging_setup, metrics

    logging_setup.init_app(app)
    metrics.init_app(app)


def register_extensions(app):
    from . import models, security  # noqa: F401  (models: registers the tables for Alembic)
    from .extensions import bootstrap, csrf, db, limiter, login_manager, mail, migrate
    from .mailer import mail_sender
    from .writer import writer_runtime

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    bootstrap.init_app(app)
    mail.init_app(app)
    security.init_app(app)
    writer_runtime.init_app(app)
    mail_sender.init_app(app)


def register_blueprints(app):
    from . import api
    from .routing import RowIdConverter
    from .account import bp as account_bp
    from .admin import bp as admin_bp
    from .auth import bp as auth_bp
    from .editor import bp as editor_bp
    from .main import bp as main_bp
    from .notifications import bp as notifications_bp
    from .ops import bp as ops_bp
    from .sponsor import bp as sponsor_bp

    app.url_map.converters["id"] = RowIdConverter  # before any rule uses it
    app.register_blueprint(main_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(sponsor_bp, url_prefix="/sponsor")
    app.register_blueprint(editor_bp, url_prefix="/editor")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(notifications_bp, url_prefix="/notifications")
    app.register_blueprint(account_bp, url_prefix="/account")
    api.init_app(app)  # /api/v1 (the JSON API) and /api/docs


def register_errorhandlers(app):
    from .errors import init_app

    init_app(app)


def register_commands(app):
    from .cli import init_app

    init_app(app)
