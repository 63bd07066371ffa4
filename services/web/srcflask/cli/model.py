"""`flask model ...`: the model registry at the console (`register`, `promote`, `rollback`;
the training commands attach themselves here too)."""
import shutil
from pathlib import Path

import click
from flask.cli import AppGroup

from ..extensions import db
from ..services import registry
from .model_dataset import dataset
from .model_train import train

model = AppGroup("model", help="The writer's models: register them, build training sets, retrain.")
model.add_command(dataset)
model.add_command(train)


@model.command("register")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="The model's name (default: the folder's name); also its folder "
              "in SEED_MODELS_DIR (static/mlmodels/seedmlmodels/).")
def register(path, name):
    """Copy the GPT-2 folder PATH (save_pretrained layout, TF weights) into the app's seed
    models and register it: active if it is the first model, a candidate otherwise."""
    name = name or path.resolve().name
    try:
        registered = registry.register_folder(path, kind="seed", name=name, copy_to=registry.seed_folder(name))
    except registry.RegistryError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    try:
        db.session.commit()
    except BaseException:  # not registered after all: the copy goes too
        db.session.rollback()
        shutil.rmtree(registry.model_folder(registered), ignore_errors=True)
        raise
    click.echo(f"Registered {registered.label} ({registered.parameters:,} parameters, {len(registered.files)} files) "
               f"in {registry.model_folder(registered)} as {registered.state}.")


@model.command("promote")
@click.argument("model_id", type=int)
@click.option("--override", is_flag=True, help="Promote although it does not beat the active model (needs --reason).")
@click.option("--reason", default="", help="Why (required with --override); kept in the audit log.")
def promote(model_id, override, reason):
    """Make the candidate MODEL_ID the active model, under the Models page's promotion gate;
    audited as done at the console. Every writer switches to it before its next batch."""
    _change_active(registry.promote, model_id, reason=reason, override=override)


@model.command("rollback")
@click.argument("model_id", type=int)
@click.option("--reason", required=True, help="Why; kept in the audit log.")
def rollback(model_id, reason):
    """Make MODEL_ID, a model that was active before, the active model again; audited."""
    _change_active(registry.rollback, model_id, reason=reason)


def _change_active(action, model_id, **arguments):
    """One registry change at the console, with the pages' rules and refusals (exit code 1)."""
    try:
        changed = action(model_id, None, **arguments)
    except registry.RegistryError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"{changed.label} is now the active model; the writers switch to it before their next batch.")
