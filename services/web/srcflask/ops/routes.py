import functools
import logging

from alembic.script import ScriptDirectory
from flask import current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from .. import metrics as app_metrics
from ..extensions import db
from ..writer import server_writer
from . import bp

log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers. Touches nothing else, so a database outage never
    gets a healthy web process restarted."""
    return _no_store(jsonify(status="ok"))


@bp.get("/readyz")
def readyz():
    """Readiness: the database answers and its schema is the code's (migrations at head);
    503 otherwise. The writer's state is reported but does not decide, not even `failed`:
    without a working writer the site still serves every page and every save (autodocs
    wait in the queue), while a 503 would take a healthy web replica out of rotation, or
    the whole site with one replica, for a fault no restart mends (a corrupt weights file).
    A failing writer is alerted on through `srcflask_writer_alive`, and it retries itself."""
    database, migrations = _schema_state()
    ready = database["ok"] and migrations["ok"]
    body = {"status": "ready" if ready else "not ready", "database": database, "migrations": migrations,
            "writer": server_writer().state()}
    return _no_store(jsonify(body)), 200 if ready else 503


@bp.get("/metrics")
def metrics():
    """Prometheus text format; who may read it is metrics.check_access's decision."""
    app_metrics.check_access()
    body = app_metrics.exposition()
    return _no_store(current_app.response_class(body, mimetype=CONTENT_TYPE_LATEST))


def _schema_state():
    """(database, migrations) checks from one query: the revision Alembic recorded."""
    code_heads = _code_heads(current_app.extensions["migrate"].directory)
    try:
        applied = sorted(db.session.scalars(text("SELECT version_num FROM alembic_version")))
    except ProgrammingError:  # no alembic_version table: the database was never migrated
        db.session.rollback()
        return {"ok": True}, {"ok": False, "database": [], "code": code_heads,
                              "detail": "The database has no schema yet: run `flask db upgrade`."}
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("readyz: the database cannot be read: %s", error, extra={"event": "readyz_database_error"})
        # The probe is public: the class of the error only, the details are in the log.
        return {"ok": False, "detail": f"{type(error).__name__} (details in the log)"}, \
            {"ok": False, "database": None, "code": code_heads, "detail": "The database cannot be read."}
    migrations = {"ok": applied == code_heads, "database": applied, "code": code_heads}
    if not migrations["ok"]:
        # During a rolling upgrade the first new replica migrates the database before it
        # serves: from then on the old replicas see a schema ahead of their code and answer
        # 503, so the load balancer sends traffic to the new replicas only (README, "Upgrades").
        known = _code_revisions(current_app.extensions["migrate"].directory)
        if any(revision not in known for revision in applied):
            migrations["schema"] = "ahead"
            migrations["detail"] = ("The database is at a revision this code does not know: a newer release ran "
                                    "`flask db upgrade`. This replica stays out of rotation until that release "
                                    "replaces it.")
        else:
            migrations["schema"] = "behind"
            migrations["detail"] = "The database schema is older than this code: run `flask db upgrade`."
    return {"ok": True}, migrations


@functools.cache
def _code_heads(directory):
    """The head revision(s) of the migration scripts; read from disk once per process."""
    return sorted(ScriptDirectory(directory).get_heads())


@functools.cache
def _code_revisions(directory):
    """Every revision this code's migration scripts know; read from disk once per process."""
    return frozenset(script.revision for script in ScriptDirectory(directory).walk_revisions())


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response
