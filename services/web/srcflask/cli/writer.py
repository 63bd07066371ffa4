"""`flask writer run | status | fetch`: the same writer as the app's threads, as a command."""
import signal
import sys
import time

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from ..extensions import db
from ..services import autodoc_queue
from ..static.data.processeddata.models import Autodoc
from ..writer import NO_MODEL_HELP, model_installed, writer_runtime

writer = AppGroup("writer", help="Run, inspect and install the GPT-2 autodoc writer.")


@writer.command("run")
@click.option("--threads", type=int, default=None, help="Writer threads (default: WRITER_THREADS).")
@click.option("--until-idle", is_flag=True, help="Exit once no autodoc is waiting (or no model is installed).")
def run(threads, until_idle):
    """Write queued autodocs in this process, beside or instead of the app's own writer.
    Any number of these may run on any machines against one database."""
    app = current_app._get_current_object()
    if until_idle:
        writer_runtime.run(app, until_idle=True)
        if writer_runtime.failure:  # its jobs are back in the queue; the traceback is in the log
            sys.exit(f"The writer failed: {writer_runtime.failure}")
        if writer_runtime.model_error:
            sys.exit(f"No model: {writer_runtime.model_error}")
        return
    signal.signal(signal.SIGTERM, lambda *_: writer_runtime.stop())
    writer_runtime.start(app, threads=threads)
    click.echo(f"Writer running with {threads or app.config['WRITER_THREADS']} thread(s); Ctrl+C stops it.")
    try:
        while writer_runtime.running:
            time.sleep(1)
    except KeyboardInterrupt:
        writer_runtime.stop()


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
    model_dir = current_app.config["WRITER_MODEL_DIR"]
    if model_installed(model_dir):
        click.echo(f"Model: {model_dir}")
    else:
        click.echo(f"Model: none in {model_dir}. {NO_MODEL_HELP}")


@writer.command("fetch")
@click.option("--model", "model_name", default=None, help="Hub model name (default: WRITER_MODEL_NAME, gpt2).")
@click.option("--if-missing", is_flag=True, help="Do nothing when a model is installed; say once if the hub is out of reach.")
def fetch(model_name, if_missing):
    """Download the model from the Hugging Face hub into WRITER_MODEL_DIR."""
    from ..static.mlmodels.seedmlmodels.headmodel import ModelFetchFailed, fetch_model, hub_reachable

    model_dir = current_app.config["WRITER_MODEL_DIR"]
    model_name = model_name or current_app.config["WRITER_MODEL_NAME"]
    if if_missing:
        if model_installed(model_dir):
            return
        if not hub_reachable():
            click.echo("The Hugging Face hub cannot be reached: the writer will wait for a model "
                       f"(autodocs stay queued). {NO_MODEL_HELP}")
            return
    click.echo(f"Fetching {model_name} into {model_dir} ...")
    try:
        fetch_model(model_name, model_dir)
    except ModelFetchFailed as error:
        if if_missing:  # the quick start carries on without a model
            click.echo(f"{error} The writer will wait for a model (autodocs stay queued).")
            return
        raise click.ClickException(str(error)) from None
    click.echo("Model installed; queued autodocs will now be written.")
