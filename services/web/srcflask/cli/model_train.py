"""`flask model train`: fine-tune a model on a training set, here and now with a progress
bar, or (`--queued`) be the trainer service that trains the runs admins queue.

Either way the run is a `training_runs` row going through services/training.py (the same
checks, the same audit, the same registration of the result as a candidate) and is trained
by srcflask/trainer.py; from the console nobody is logged in, so the run names no person.
"""
import signal
import sys

import click
from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import TrainingRun, TrainingSet
from ..services import registry, training
from ..trainer import trainer

RUN_OPTIONS = ("epochs", "batch_size", "learning_rate", "weight_decay", "patience", "seed", "max_tokens",
               "jit_compile")


@click.command("train")
@click.option("--parent", "parent_id", type=int, help="The model to start from (default: the active model).")
@click.option("--dataset", "training_set_id", type=int, help="The training set (default: the newest).")
@click.option("--epochs", type=int, help="At most this many epochs (early stopping may end sooner).")
@click.option("--batch-size", type=int)
@click.option("--learning-rate", type=float)
@click.option("--weight-decay", type=float)
@click.option("--max-tokens", type=int, help="Prompt + continuation tokens per pair.")
@click.option("--patience", type=int, help="Epochs without a better validation loss before stopping.")
@click.option("--seed", type=int)
@click.option("--jit-compile/--no-jit-compile", default=None, help="An XLA-compiled train step.")
@click.option("--queued", is_flag=True, help="Be the trainer service: train the queued runs, one at a time, forever.")
@click.option("--until-idle", is_flag=True, help="With --queued: exit once no run is queued.")
def train(parent_id, training_set_id, queued, until_idle, **settings):
    """Fine-tune the active model (or --parent) on the newest training set (or --dataset) and
    register the result as a candidate; the settings left out come from TRAINING_*."""
    app = current_app._get_current_object()
    settings = {name: value for name, value in settings.items() if value is not None}
    if queued:
        if settings or parent_id is not None or training_set_id is not None:
            raise click.UsageError("--queued trains the runs queued in the database, each with its own settings; "
                                   "leave out --parent, --dataset and the training settings.")
        _serve(app, until_idle)
        return
    if until_idle:
        raise click.UsageError("--until-idle goes with --queued.")
    run = _request(parent_id, training_set_id, settings)
    bar = _ProgressBar()
    try:
        trainer.run(app, run_id=run.id, on_progress=bar.update)
    finally:
        bar.close()
    db.session.expire_all()
    run = db.session.get(TrainingRun, run.id)
    if run.status in ("queued", "running"):
        raise click.ClickException(f"Training run #{run.id} was taken by another trainer (a `flask model train "
                                   "--queued` service); the Models page follows it.")
    if run.status != "succeeded":
        raise click.ClickException(f"Training run #{run.id} {run.status}" + (f": {run.error}" if run.error else "."))
    model, figures = run.result_model, run.result_model.training["validation"]
    click.echo(f"Registered {model.label} as a candidate in {registry.model_folder(model)}.")
    click.echo(f"  validation loss {_number(figures['parent']['loss'])} -> {_number(figures['model']['loss'])}, "
               f"perplexity {_number(figures['parent']['perplexity'])} -> {_number(figures['model']['perplexity'])} "
               f"({run.parent.label} -> {model.label}); {model.training['epochs_run']} epoch(s) in "
               f"{model.training['seconds']:.0f} s")


def _request(parent_id, training_set_id, settings):
    """Queue the run (committed: the Models page shows it at once)."""
    if parent_id is None:
        active = registry.active_model()
        if active is None:
            raise click.ClickException("No model is registered to train from; `flask writer fetch` or "
                                       "`flask model register PATH` installs one.")
        parent_id = active.id
    if training_set_id is None:
        training_set_id = db.session.scalar(select(TrainingSet.id).order_by(TrainingSet.id.desc()).limit(1))
        if training_set_id is None:
            raise click.ClickException("There is no training set yet; `flask model dataset` builds one.")
    try:
        run = training.request_run(parent_id, training_set_id, settings, None)
    except training.TrainingError as refused:
        db.session.rollback()
        raise click.ClickException(str(refused)) from None
    db.session.commit()
    click.echo(f"Training run #{run.id}: {run.parent.label} on training set #{run.training_set_id}, "
               + ", ".join(f"{name} {run.settings[name]}" for name in RUN_OPTIONS))
    return run


def _serve(app, until_idle):
    """The trainer service loop. SIGTERM stops it between runs; a run being trained when the
    process is killed is marked failed by the next claim."""
    if until_idle:
        trainer.run(app, until_idle=True)
        return
    signal.signal(signal.SIGTERM, lambda *_: trainer.stop())
    click.echo("Trainer waiting for queued training runs; Ctrl+C stops it.")
    try:
        trainer.run(app)
    except KeyboardInterrupt:
        trainer.stop()


def _number(value):
    return "n/a" if value is None else f"{value:.3f}"


class _ProgressBar:
    """A click progress bar over every step of every epoch, made once the first step says how
    many there are; its label shows the epoch and the training loss."""

    def __init__(self):
        self._bar, self._done = None, 0

    def update(self, progress):
        if self._bar is None:
            self._bar = click.progressbar(length=progress["epochs"] * progress["steps"], show_eta=True,
                                          label="Training", file=sys.stderr)
            self._bar.__enter__()
        done = (progress["epoch"] - 1) * progress["steps"] + progress["step"]
        loss = progress.get("loss")
        self._bar.label = f"Epoch {progress['epoch']}/{progress['epochs']}" + (
            f", loss {loss:.3f}" if loss is not None else "")
        self._bar.update(done - self._done)
        self._done = done

    def close(self):
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
