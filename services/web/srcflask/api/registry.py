"""The model registry's operations: the models, the training sets and the training runs,
with the same rules as the admin's Models pages (admin/model_pages.py) and the same
services behind them.

Who may do what: editors and admins read (editors' reviews are what training sets are
made of, and which model wrote an autodoc is in its stamp); only admins start or cancel a
run, promote a candidate or roll back. A service's refusal is a 409 whose code names it;
a body that breaks the schema is a 400, like everywhere in the API.
"""
from flask import url_for

from ..extensions import db
from ..models import TrainingRun, WriterModel
from ..services import registry, training, trainingsets
from ..services.pages import paginate
from . import bp
from . import registry_schemas as schemas
from .auth import current_api_user, roles
from .envelope import page_envelope
from .errors import ApiError

READERS = ("editor", "admin")
# Each refusal's stable code (a 409 unless said otherwise).
REFUSAL_CODES = (
    (registry.ModelNotFound, 404, "not_found"),
    (registry.NotACandidate, 409, "not_a_candidate"),
    (registry.GateRefused, 409, "gate_refused"),
    (registry.AlreadyActive, 409, "already_active"),
    (registry.ModelIntegrityError, 409, "integrity_error"),
    (registry.RegistryError, 409, "registry_refused"),
    (trainingsets.TrainingSetError, 409, "training_set_refused"),
    (training.RunNotFound, 404, "not_found"),
    (training.TrainingRefused, 409, "training_refused"),
    (training.RunFinished, 409, "run_finished"),
    (training.TrainingError, 409, "training_refused"),
)
REFUSALS = tuple(kind for kind, _, _ in REFUSAL_CODES)


def _change(change, *args, **kwargs):
    """Call one service change as the caller and commit it; a refusal is rolled back and
    answered as its JSON error."""
    try:
        result = change(*args, **kwargs)
    except REFUSALS as refusal:
        db.session.rollback()
        status, code = next((status, code) for kind, status, code in REFUSAL_CODES if isinstance(refusal, kind))
        raise ApiError(status, code, str(refusal)) from None
    db.session.commit()
    return result


def _model(model_id):
    model = db.session.get(WriterModel, model_id)
    if model is None:
        raise ApiError(404, "not_found", "There is no such model.")
    return model


def _run(run_id):
    run = db.session.get(TrainingRun, run_id)
    if run is None:
        raise ApiError(404, "not_found", "There is no such training run.")
    return run


# registry.figures() of a model that wrote nothing yet.
NO_FIGURES = {"written": 0, "approved": 0, "reviewed": 0, "approval_rate": None, "median_write_seconds": None}


def _detail(model):
    """The model as ModelDetail dumps it: with its figures and, for a candidate, its
    comparison with the active model, kept on the instance for this response only (not
    columns)."""
    model.figures = registry.figures().get(model.id, NO_FIGURES)
    model.comparison = registry.comparison(model) if model.state == "candidate" else None
    return model


# --- models -----------------------------------------------------------------------------------

@bp.get("/models")
@bp.arguments(schemas.PageArgs, location="query")
@bp.response(200, schemas.ModelPage)
@roles(*READERS)
def list_models(args):
    """Every registered model, newest first; exactly one is `active`."""
    return page_envelope(paginate(registry.models_query(), args["page"]), "api.list_models")


@bp.get("/models/<id:model_id>")
@bp.response(200, schemas.ModelDetail)
@roles(*READERS)
def get_model(model_id):
    """One model, with what it wrote (autodocs, editors' approval rate, median write time)
    and its evaluations."""
    return _detail(_model(model_id))


@bp.post("/models/<id:model_id>/promote")
@bp.arguments(schemas.PromoteIn)
@bp.response(200, schemas.ModelDetail)
@roles("admin")
def promote_model(data, model_id):
    """Make a candidate the active model. 409 `gate_refused` when its validation perplexity
    does not beat the active model's on the same validation set (send `override` with a
    `reason` to promote anyway), `not_a_candidate` for any other model."""
    model = _model(model_id)
    _change(registry.promote, model.id, current_api_user(), reason=data["reason"].strip(), override=data["override"])
    return _detail(model)


@bp.post("/models/<id:model_id>/rollback")
@bp.arguments(schemas.RollbackIn)
@bp.response(200, schemas.ModelDetail)
@roles("admin")
def rollback_model(data, model_id):
    """Make an earlier model active again. 409 when it is already active."""
    model = _model(model_id)
    _change(registry.rollback, model.id, current_api_user(), reason=data["reason"].strip())
    return _detail(model)


# --- training sets ----------------------------------------------------------------------------

@bp.get("/training-sets")
@bp.arguments(schemas.PageArgs, location="query")
@bp.response(200, schemas.TrainingSetPage)
@roles(*READERS)
def list_training_sets(args):
    """The training sets, newest first: what each holds (documents, pairs, tokens per side)."""
    return page_envelope(paginate(trainingsets.sets_query(), args["page"]), "api.list_training_sets")


# --- training runs ----------------------------------------------------------------------------

@bp.get("/training-runs")
@bp.arguments(schemas.TrainingRunArgs, location="query")
@bp.response(200, schemas.TrainingRunPage)
@roles(*READERS)
def list_training_runs(args):
    """The training runs, newest first, optionally of one status, with their progress."""
    query = training.runs_query()
    if args["status"]:
        query = query.where(TrainingRun.status == args["status"])
    return page_envelope(paginate(query, args["page"]), "api.list_training_runs",
                 **({"status": args["status"]} if args["status"] else {}))


@bp.get("/training-runs/<id:run_id>")
@bp.response(200, schemas.TrainingRunOut)
@roles(*READERS)
def get_training_run(run_id):
    """One run: its status, progress (poll it) and, once it succeeded, the candidate it made."""
    return _run(run_id)


@bp.post("/training-runs")
@bp.arguments(schemas.TrainingRunIn)
@bp.response(201, schemas.TrainingRunOut)
@roles("admin")
def start_training_run(data):
    """Queue a run; a trainer process (`flask model train --queued`) picks it up. 409
    `training_refused` for a retired or unknown parent, a training set whose file changed,
    or settings the trainer refuses."""
    run = _change(training.request_run, data["parent_id"], data["training_set_id"], {"epochs": data["epochs"]},
                  current_api_user())
    return run, 201, {"Location": url_for("api.get_training_run", run_id=run.id)}


@bp.post("/training-runs/<id:run_id>/cancel")
@bp.response(200, schemas.TrainingRunOut)
@roles("admin")
def cancel_training_run(run_id):
    """Cancel a queued run, or stop a running one at its next step. 409 `run_finished` for a
    run that already ended."""
    return _change(training.cancel_run, run_id, current_api_user())  # RunNotFound: 404
