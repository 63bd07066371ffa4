"""`flask writer run | status | fetch`: the same writer as the app's threads, as a command."""
import logging
import os
import signal
import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from .. import metrics
from ..extensions import db
from ..services import autodoc_queue, registry
from ..static.data.processeddata.models import Autodoc
from ..writer import NO_MODEL_HELP, model_installed, writer_runtime
from ..writer_supervisor import report_forever

writer = AppGroup("writer", help="Run, inspect and install the GPT-2 autodoc writer.")


@writer.command("run")
@click.option("--threads", type=int, default=None, help="Writer threads (default: WRITER_THREADS).")
@click.option("--until-idle", is_flag=True, help="Exit once no autodoc is waiting (or no model is installed).")
@click.option("--report-to", type=click.Path(dir_okay=False), default=None,
              help="Write the writer's state to this file every few seconds, for the page workers of the gunicorn "
                   "whose master started this process (srcflask/writer_supervisor.py).")
@click.option("--stop-with-parent", is_flag=True,
              help="Stop once the process that started this one is gone: a writer started by gunicorn's master "
                   "never outlives it.")
def run(threads, until_idle, report_to, stop_with_parent):
    """Write queued autodocs in this process, beside or instead of the app's own writer.
    Any number of these may run on any machines against one database."""
    app = current_app._get_current_object()
    parent = os.getppid()
    if until_idle:
        writer_runtime.run(app, until_idle=True)
        if writer_runtime.failure:  # its jobs are back in the queue; the traceback is in the log
            sys.exit(f"The writer failed: {writer_runtime.failure}")
        if writer_runtime.model_error:
            sys.exit(f"No model: {writer_runtime.model_error}")
        return
    signal.signal(signal.SIGTERM, lambda *_: writer_runtime.stop())
    metrics.serve_writer_metrics(app, app.config["WRITER_METRICS_PORT"])
    writer_runtime.start(app, threads=threads)
    if report_to:  # gunicorn's master started it, and logged so
        report_forever(app, writer_runtime, report_to)
    else:
        click.echo(f"Writer running with {threads or app.config['WRITER_THREADS']} thread(s); Ctrl+C stops it.")
    try:
        while writer_runtime.running:
            if stop_with_parent and os.getppid() != parent:  # adopted by init: the parent is gone
                click.echo(f"The process that started this writer (pid {parent}) is gone; stopping.", err=True)
                writer_runtime.stop()
                break
            time.sleep(1)
    except KeyboardInterrupt:
        writer_runtime.stop()
    # A stopped writer leaves at once, without the interpreter's shutdown: TensorFlow's own
    # threads (an XLA compile of a larger batch size still in flight, its pools) crash it
    # (SIGSEGV), and by now every job of this writer is written or given back.
    logging.shutdown()
    os._exit(0)


@writer.command("status")
def status():
    """Queue depth, running jobs, recent latency and the model."""
    depth = autodoc_queue.queue_depth()
    click.echo("Autodocs: " + ", ".join(f"{name} {depth.get(name, 0)}" for name in ("queued", "running", "done", "failed")))
    running = db.session.execute(
        select(Autodoc.id, Autodoc.worker, Autodoc.attempts, Autodoc.lease_expires_at)
        .where(Autodoc.status == "running").order_by(Autodoc.id)
    ).all()
    for row in running:
        click.echo(f"  running #{row.id} on {row.worker} (attempt {row.attempts}, lease until {row.lease_expires_at:%H:%M:%S})")
    seconds = autodoc_queue.recent_seconds_per_autodoc()
    click.echo(f"Recent median: {seconds:.2f} s per autodoc" if seconds is not None else "Recent median: no autodoc written yet")
    active = registry.active_model()
    model_dir = current_app.config["WRITER_MODEL_DIR"]
    if active is not None:
        click.echo(f"Model: {active.label} (active) in {registry.model_folder(active)}")
        if active.integrity_error:
            click.echo(f"  refused by the writers: {active.integrity_error}")
    elif model_installed(model_dir):
        click.echo(f"Model: {model_dir} (registered by the writer's first round)")
    else:
        click.echo(f"Model: none in {model_dir}. {NO_MODEL_HELP}")


@writer.command("fetch")
@click.option("--model", "model_name", default=None,
              help="Hub model name (gpt2, distilgpt2, gpt2-medium ...): downloaded into "
                   "SEED_MODELS_DIR/<name>/. Default: WRITER_MODEL_NAME into WRITER_MODEL_DIR.")
@click.option("--if-missing", is_flag=True, help="Do nothing when a model is registered; register WRITER_MODEL_DIR "
              "when it holds one; say once if the hub is out of reach.")
def fetch(model_name, if_missing):
    """Download a GPT-2 with TF weights from the Hugging Face hub and register it as a seed
    model (active if it is the first; a candidate otherwise, for an admin to promote)."""
    from ..static.mlmodels.seedmlmodels.headmodel import ModelFetchFailed, fetch_model, hub_reachable

    model_dir = current_app.config["WRITER_MODEL_DIR"]
    if if_missing:
        if registry.active_model() is not None:
            return
        if model_installed(model_dir):  # an installation from before the registry
            _register(lambda: registry.adopt_installed(model_dir))
            return
        if not hub_reachable():
            click.echo("The Hugging Face hub cannot be reached: the writer will wait for a model "
                       f"(autodocs stay queued). {NO_MODEL_HELP}")
            return
    target = registry.seed_folder(_family(model_name)) if model_name else Path(model_dir)
    model_name = model_name or current_app.config["WRITER_MODEL_NAME"]
    name = _family(model_name)
    try:  # before the download, not after it
        registry.check_new_seed(name, target)
    except registry.RegistryError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Fetching {model_name} into {target} ...")
    try:
        fetch_model(model_name, target)
    except ModelFetchFailed as error:
        if if_missing:  # the quick start carries on without a model
            click.echo(f"{error} The writer will wait for a model (autodocs stay queued).")
            return
        raise click.ClickException(str(error)) from None
    _register(lambda: registry.register_folder(target, kind="seed", name=name))


def _family(model_name):
    """The registry's name for a hub model: its last part (openai-community/gpt2 -> gpt2)."""
    return model_name.rstrip("/").rsplit("/", 1)[-1]


def _register(register):
    try:
        model = register()
        db.session.commit()
    except registry.RegistryError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    if model is None:
        return
    click.echo(f"Registered {model.label} ({model.parameters:,} parameters) from {registry.model_folder(model)} "
               f"as {model.state}" + ("; queued autodocs will now be written." if model.state == "active"
                                      else ": an admin promotes it on the Models page."))
