"""Flask extensions, created unbound so that create_app() can wire them to any app.

Keeping them here (and not in the factory) lets models, services and blueprints import
them without importing the app, which is what makes the factory testable.
"""
from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mailman import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData

# Named constraints make Alembic migrations reproducible and downgradable on both
# PostgreSQL and SQLite (which can only drop constraints it can name).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Objects keep their values after a commit instead of reloading them on next use: a view
# that commits and then builds its redirect from the saved object must not need the
# database again, or a connection lost just after the commit would answer "not saved"
# for a save that was (tests/test_faults.py restarts PostgreSQL under saves).
db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION),
                session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
bootstrap = Bootstrap5()
# Limits are declared on the views that need them (srcflask/throttle.py); no global default,
# so ordinary browsing is never throttled. When the shared storage (Redis) does not answer,
# each process counts in its own memory until it does again, rather than refusing every
# log-in and save or letting them all through unthrottled (throttle.py explains).
limiter = Limiter(key_func=get_remote_address, in_memory_fallback_enabled=True, swallow_errors=True)
# Used only by the mail sender (srcflask/mailer.py): requests write to the outbox.
mail = Mail()
