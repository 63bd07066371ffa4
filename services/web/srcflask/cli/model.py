"""`flask model ...`: the model registry at the console (`register`; the training commands
attach themselves here too)."""
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
