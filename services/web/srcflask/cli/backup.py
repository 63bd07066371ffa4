"""`flask backup create | list | prune | restore`: services/backups.py at the console.

Refusals (a non-empty database, a damaged backup, a missing pg_dump) end with exit code 1
and one sentence; the app's pages are not involved."""
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from ..services import backups

backup = AppGroup("backup", help="Back up and restore the database and the model registry's files.")


@backup.command("create")
@click.option("--keep", type=click.IntRange(min=1), default=None,
              help="How many of the newest backups to keep afterwards (default: BACKUP_KEEP).")
def create(keep):
    """Back up the database (pg_dump, or SQLite's online backup for the quick start's file) and
    the registry's model and training-set files into a new folder of BACKUP_DIR, then delete
    all but the newest backups."""
    made = _refusing(backups.create)
    click.echo(f"Backed up to {made.path} ({made.size_bytes:,} bytes, schema "
               f"{', '.join(made.manifest['schema_heads'])}, {len(made.manifest['files'])} model folders and "
               "training-set files).")
    for stored in made.manifest["missing"]:
        click.echo(f"Warning: the files of {stored} were already missing; they are not in the backup.", err=True)
    for pruned in backups.prune(keep or current_app.config["BACKUP_KEEP"]):
        click.echo(f"Deleted the older backup {pruned.path}.")


@backup.command("list")
def list_():
    """The backups in BACKUP_DIR, oldest first."""
    found = backups.list_backups()
    if not found:
        click.echo(f"No backups in {backups.backup_dir()}.")
    for item in found:
        click.echo(f"{item.path}  {item.manifest['created_at']}  schema {', '.join(item.manifest['schema_heads'])}  "
                   f"{item.size_bytes:,} bytes")


@backup.command("prune")
@click.option("--keep", type=click.IntRange(min=1), default=None, help="How many to keep (default: BACKUP_KEEP).")
def prune(keep):
    """Delete all but the newest backups in BACKUP_DIR."""
    deleted = backups.prune(keep or current_app.config["BACKUP_KEEP"])
    click.echo(f"Deleted {len(deleted)} backup(s).")


@backup.command("restore")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Drop what the database (and the model folders) hold and restore "
              "over it. Without it, a database that is not empty is refused.")
def restore(archive, replace):
    """Restore the backup folder ARCHIVE (made by `flask backup create`) into DATABASE_URL's
    database and put its model and training-set files back, after checking every part
    against the manifest. Stop the web, writer and trainer processes first."""
    restored = _refusing(backups.restore, archive, replace=replace)
    click.echo(f"Restored {restored.backup.path} (made {restored.backup.manifest['created_at']}).")
    if restored.migrated_from:
        click.echo(f"The backup's schema ({', '.join(restored.migrated_from)}) was older than this code's: migrated "
                   f"to {', '.join(restored.heads)}.")


def _refusing(action, *arguments, **options):
    try:
        return action(*arguments, **options)
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from None
