"""The admin's Models pages: the registry (every model the writers may use, which one is
active, what each has written and how editors judged it), promotion and rollback, the
training sets built from reviewed autodocs and the training runs the trainer process
works through, with their live progress.

The path they serve: reviews pile up → build a training set → start a run (queued here,
run by `flask model train --queued`, never by this process) → compare the candidate with
the active model → promote it, or roll back to an earlier one.

Views validate, call one service function, commit once and redirect. The services'
refusals (a gate that says no, a run that already finished, too few reviews) are turned
into answers in one place, `_attempt`: a flashed message and a redirect when there is no
input to lose, or the form's page again with its status (409) and what was typed.
"""
from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..models import TrainingRun, WriterModel
from ..services import registry, training, trainingsets, win_rate
from ..services.pages import paginate
from . import bp
from .model_forms import PromoteForm, RollbackForm, StartRunForm

# What the services refuse with, in the admin's words (their messages are user-facing).
REFUSALS = (registry.RegistryError, trainingsets.TrainingSetError, training.TrainingError)
# Runs the trainer has not finished: the page polls their progress.
LIVE_RUN_STATUSES = ("queued", "running")


def _attempt(change, *args, **kwargs):
    """Run one service change as the current admin and commit it. Returns (result, None),
    or (None, refusal) after rolling back when the service refused."""
    try:
        result = change(*args, **kwargs)
    except REFUSALS as refusal:
        db.session.rollback()
        return None, refusal
    db.session.commit()
    return result, None


def _model_or_404(model_id):
    return db.session.get(WriterModel, model_id) or abort(404)


def _run_or_404(run_id):
    return db.session.get(TrainingRun, run_id) or abort(404)


def _all_models():
    """Every registered model, newest first (a registry holds a handful)."""
    return db.session.scalars(registry.models_query()).all()


# --- the registry ----------------------------------------------------------------------------

@bp.get("/models")
def models():
    """Every model with its figures, and each candidate's blind comparisons with the active
    model; the active one first in the admin's eye."""
    models, active = _all_models(), registry.active_model()
    candidates = [model.id for model in models if model.state == "candidate"]
    blind = {model_id: tally.as_dict() for model_id, tally in win_rate.tallies(active.id, candidates).items()
             } if active else {}
    return render_template("admin/models/index.html", models=models, figures=registry.figures(), active=active,
                           blind=blind)


@bp.get("/models/<id:model_id>")
def model(model_id):
    """One model: its files and their hashes, its training metadata and evaluations."""
    model = _model_or_404(model_id)
    return render_template("admin/models/detail.html", model=model, figures=registry.figures().get(model.id),
                           active=registry.active_model())


def _decision_page(template, model, form, refusal=None):
    """The promote or rollback page, with the comparison and the form as it was posted."""
    return render_template(template, model=model, form=form, refusal=refusal, active=registry.active_model(),
                           comparison=registry.comparison(model) if model.state == "candidate" else None)


@bp.route("/models/<id:model_id>/promote", methods=["GET", "POST"])
def promote_model(model_id):
    """The candidate side by side with the active model, and the promotion: refused by the
    gate when the candidate is not better, unless overridden with a reason."""
    model = _model_or_404(model_id)
    form = PromoteForm()
    if not form.validate_on_submit():
        return _decision_page("admin/models/promote.html", model, form), 400 if form.errors else 200
    _, refusal = _attempt(registry.promote, model.id, current_user, reason=form.reason.data.strip(),
                          override=form.override.data)
    if refusal is not None:
        return _decision_page("admin/models/promote.html", _model_or_404(model_id), form, refusal), 409
    flash(f"{model.label} is now the active model: the writers switch to it before their next batch.", "success")
    return redirect(url_for(".models"))


@bp.route("/models/<id:model_id>/rollback", methods=["GET", "POST"])
def rollback_model(model_id):
    """Make an earlier model active again, with a reason."""
    model = _model_or_404(model_id)
    form = RollbackForm()
    if not form.validate_on_submit():
        return _decision_page("admin/models/rollback.html", model, form), 400 if form.errors else 200
    _, refusal = _attempt(registry.rollback, model.id, current_user, reason=form.reason.data.strip())
    if refusal is not None:
        return _decision_page("admin/models/rollback.html", _model_or_404(model_id), form, refusal), 409
    flash(f"Rolled back: {model.label} is the active model again.", "success")
    return redirect(url_for(".models"))


# --- training sets and runs ------------------------------------------------------------------

def _training_sets():
    """Every training set, newest first (one is made per round of reviews: a short list)."""
    return db.session.scalars(trainingsets.sets_query()).all()


def _training_page(form, status=200):
    runs = paginate(training.runs_query(), request.args.get("page", 1, type=int))
    return render_template("admin/models/training.html", sets=_training_sets(), runs=runs, form=form,
                           reviews_since=trainingsets.reviews_since_newest(), live=LIVE_RUN_STATUSES), status


def _start_form():
    """The start-run form, its choices the registered models and the training sets, with
    the active model and the newest set chosen by default."""
    sets = _training_sets()
    active = registry.active_model()
    return StartRunForm(_all_models(), sets, parent=active.id if active else None,
                        training_set=sets[0].id if sets else None, epochs=training.default_settings()["epochs"])


@bp.get("/models/training")
def training_runs():
    """The training sets, the runs (newest first, live ones polled) and the form to start one."""
    return _training_page(_start_form())


@bp.post("/models/training-sets")
def build_training_set():
    """A new immutable training set from every reviewed autodoc so far."""
    built, refusal = _attempt(trainingsets.build, created_by=current_user)
    if refusal is not None:
        flash(str(refusal), "warning")
    else:
        flash(f"Training set #{built.id} is built: {built.train_pairs} training and {built.validation_pairs} "
              f"validation pairs, {built.corrections} of them with an editor's correction as the target.", "success")
    return redirect(url_for(".training_runs"))


@bp.post("/models/runs")
def start_run():
    """Queue a training run; the trainer process picks it up."""
    form = _start_form()
    if not form.validate_on_submit():
        return _training_page(form, 400)
    run, refusal = _attempt(training.request_run, form.parent.data, form.training_set.data,
                            {"epochs": form.epochs.data}, current_user)
    if refusal is not None:
        form.form_errors.append(str(refusal))
        return _training_page(form, 409)
    flash(f"Training run #{run.id} is queued: the trainer starts it as soon as it is free.", "success")
    return redirect(url_for(".training_runs"))


@bp.post("/models/runs/<id:run_id>/cancel")
def cancel_run(run_id):
    """Cancel a queued run, or ask the trainer to stop a running one."""
    run = _run_or_404(run_id)
    _, refusal = _attempt(training.cancel_run, run.id, current_user)
    if refusal is not None:
        flash(str(refusal), "info")
    elif run.status == "cancelled":
        flash(f"Training run #{run.id} is cancelled.", "success")
    else:
        flash(f"Training run #{run.id} stops when its trainer reaches the next step, then shows as cancelled.",
              "success")
    return redirect(url_for(".training_runs"))


@bp.get("/models/runs/<id:run_id>/progress")
def run_progress(run_id):
    """A run's status and progress as JSON for the page's poll (models.js), with the row's
    progress cell rendered by the same macro as the page: one source of truth."""
    run = _run_or_404(run_id)
    html = render_template("admin/models/_progress.html", run=run)
    return jsonify(id=run.id, status=run.status, progress=run.progress, error=run.error,
                   result_model_id=run.result_model_id, live=run.status in LIVE_RUN_STATUSES, html=html)
