"""Backups and restores: the database and the model registry's files, in one folder per backup.

A backup is a folder BACKUP_DIR/srcflask-<UTC time>/ holding:

- `database.dump`: PostgreSQL's `pg_dump --format=custom` of the whole database (or
  `database.sqlite3`, a copy of the quick start's SQLite file made by SQLite's online backup);
- `files/`: every file the registry's rows point to, one copy per distinct path — each
  model's folder (`files/models/<n>/`) and each training set's file (`files/trainingsets/`).
  Model folders hold the weights, which are not in the database and cannot be rebuilt (a
  retrained model is hours of training), while the code under static/mlmodels is not copied:
  the installed code, not the backup's, runs after a restore;
- `manifest.json`: when, the schema head the dump is at, the sha256 of every other part, and
  which stored path each copied file or folder belongs to.

The dump and the list of files come from one snapshot: the backup opens a REPEATABLE READ
transaction, exports its snapshot, reads the models and training sets in it and hands it to
`pg_dump --snapshot`. A model registered while the backup runs is either in both or in
neither, so a restore never has a row without its files. Files are copied after the dump;
they are written once and never changed (registry.verify and trainingsets.verify_file
check them against the hashes in their rows), so copying them later is safe. The folder is
written under a hidden name and renamed when complete: a backup cut short never shows up.

A restore checks the manifest's hashes before touching anything, refuses a target database
that is not empty (it has an alembic_version table or a row in any table) and files that
differ from the backup's unless asked to replace them, then restores the dump in one
transaction (`pg_restore --single-transaction --no-owner --no-privileges`: the target's user
owns everything, whoever made the dump), puts the files back where their rows say, and
migrates to the code's head when the backup is older. A backup made by newer code (a schema
head this code does not know) is refused: restore it with the version that made it.

A SQLite backup restores into a SQLite file only (the online backup copies it over the
target's content in one step) and a PostgreSQL one into PostgreSQL only: moving from the
quick start to PostgreSQL is not a restore.
"""
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from alembic.script import ScriptDirectory
from flask import current_app
from flask_migrate import upgrade
from sqlalchemy import create_engine, inspect, select, text

from ..extensions import db
from ..models import TrainingSet, WriterModel
from . import registry, trainingsets

FORMAT = 1
PREFIX = "srcflask-"
# The database's part of a backup, by dialect.
DUMPS = {"postgresql": "database.dump", "sqlite": "database.sqlite3"}
MANIFEST = "manifest.json"


class BackupError(RuntimeError):
    """A backup or restore refused or failed; the message is a sentence for the operator."""


@dataclass(frozen=True)
class Backup:
    path: Path
    manifest: dict

    @property
    def size_bytes(self):
        return sum(item.stat().st_size for item in self.path.rglob("*") if item.is_file())


def backup_dir():
    return Path(current_app.config["BACKUP_DIR"])


# --- making backups -------------------------------------------------------------------------


def create(folder=None):
    """Back up the database and the registry's files into a new folder under `folder`
    (default BACKUP_DIR); return the Backup. Nothing is left behind when it fails."""
    dialect = _dialect()
    folder = Path(folder or backup_dir())
    folder.mkdir(parents=True, exist_ok=True)
    created_at = datetime.now(timezone.utc)
    name = f"{PREFIX}{created_at:%Y%m%dT%H%M%S.%f}Z"
    partial = folder / f".{name}.partial"
    partial.mkdir()
    try:
        dump = _pg_dump if dialect == "postgresql" else _sqlite_copy
        heads, models, training_sets = dump(partial / DUMPS[dialect])
        files, missing = _copy_files(partial, models, training_sets)
        manifest = {
            "format": FORMAT, "created_at": created_at.isoformat(), "schema_heads": heads,
            "code_heads": _code_heads(), "database": dialect, "files": files, "missing": missing,
            "parts": registry.hash_folder(partial),
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(partial, folder / name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Backup(folder / name, manifest)


def _pg_dump(path):
    """pg_dump into `path` from one exported snapshot; (schema heads, model paths, training
    set paths) read in that same snapshot."""
    with db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
            rows = _rows(connection)
            _run(["pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={path}"], "pg_dump")
    return rows


def _sqlite_copy(path):
    """The quick start's SQLite file copied into `path` with SQLite's online backup (a
    consistent copy while the app runs); the rows are read from the copy."""
    with closing(sqlite3.connect(_sqlite_file())) as source, closing(sqlite3.connect(path)) as target:
        source.backup(target)
    copy = create_engine(f"sqlite:///{path}")
    try:
        with copy.connect() as connection:
            return _rows(connection)
    finally:
        copy.dispose()


def _rows(connection):
    """(schema heads, model paths, training set paths) as `connection` sees them."""
    if not inspect(connection).has_table("alembic_version"):
        raise BackupError("The database has no schema yet (`flask db upgrade` makes it): there is nothing to back up.")
    return (sorted(connection.scalars(text("SELECT version_num FROM alembic_version"))),
            sorted(set(connection.scalars(select(WriterModel.path)))),
            sorted(set(connection.scalars(select(TrainingSet.path)))))


def _copy_files(archive, model_paths, training_set_paths):
    """Copy each model folder and training set file into `archive`/files; returns the
    manifest's entries and the stored paths whose files were already missing."""
    files, missing = [], []
    for number, stored in enumerate(model_paths, 1):
        source = _model_folder(stored)
        if not source.is_dir():
            missing.append(stored)
            continue
        registry._copy_folder(source, archive / "files" / "models" / str(number))
        files.append({"kind": "model", "path": stored, "archive": f"files/models/{number}"})
    for stored in training_set_paths:
        source = _training_set_file(stored)
        if not source.is_file():
            missing.append(stored)
            continue
        target = archive / "files" / "trainingsets" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        files.append({"kind": "training_set", "path": stored, "archive": f"files/trainingsets/{source.name}"})
    return files, missing


# --- listing and pruning --------------------------------------------------------------------


def list_backups(folder=None):
    """The complete backups in `folder` (default BACKUP_DIR), oldest first."""
    folder = Path(folder or backup_dir())
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(f"{PREFIX}*")):
        try:
            found.append(Backup(path, json.loads((path / MANIFEST).read_text())))
        except (OSError, ValueError):
            continue  # not a backup of ours (or its manifest is unreadable): never pruned either
    return found


def prune(keep, folder=None):
    """Delete all but the newest `keep` backups; returns the deleted ones."""
    backups = list_backups(folder)
    doomed = backups[:max(len(backups) - keep, 0)]
    for backup in doomed:
        shutil.rmtree(backup.path)
    return doomed


# --- restoring ------------------------------------------------------------------------------


def verify(path):
    """The backup at `path` with its manifest, once every part matches the manifest's
    sha256; raises BackupError naming what differs."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{path} is not a backup: it has no {MANIFEST}.") from None
    except (OSError, ValueError) as error:
        raise BackupError(f"The manifest of {path} cannot be read ({error}).") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("parts"), dict):
        raise BackupError(f"{path} was not written by this version's `flask backup create` (format "
                          f"{manifest.get('format')!r}, expected {FORMAT}).")
    found = registry.hash_folder(path)
    found.pop(MANIFEST, None)
    expected = manifest["parts"]
    problems = [f"{label} {', '.join(names)}" for label, names in (
        ("changed:", sorted(n for n in expected if n in found and found[n] != expected[n])),
        ("missing:", sorted(n for n in expected if n not in found)),
        ("added:", sorted(n for n in found if n not in expected))) if names]
    if problems:
        raise BackupError(f"{path} does not match its manifest ({'; '.join(problems)}): it was changed or "
                          "damaged since it was made. Nothing was restored.")
    return Backup(path, manifest)


@dataclass(frozen=True)
class Restored:
    backup: Backup
    migrated_from: list  # the backup's schema heads when they were older than the code's, else []
    heads: list


def restore(path, replace=False):
    """Restore the backup at `path` into the app's database and put its files back.
    Refuses a non-empty database, or files that differ, unless `replace`."""
    dialect = _dialect()
    backup = verify(path)
    if backup.manifest["database"] != dialect:
        raise BackupError(f"This is a backup of a {backup.manifest['database']} database; DATABASE_URL is a {dialect} "
                          "database. Restore it into the kind of database it came from.")
    code = _code_heads()
    known = {script.revision for script in _scripts().walk_revisions()}
    unknown = [head for head in backup.manifest["schema_heads"] if head not in known]
    if unknown:
        raise BackupError(f"The backup's schema ({', '.join(unknown)}) is newer than this code's "
                          f"({', '.join(code)}): restore it with the version of srcflask that made it, then upgrade.")
    contents = _contents()
    if contents and not replace:
        raise BackupError(f"The database is not empty ({contents}): restoring would overwrite it. Pass --replace "
                          "to drop everything in it and restore the backup instead.")
    placements = _placements(backup)
    conflicts = [str(target) for _, target, same in placements if same is False]
    if conflicts and not replace:
        raise BackupError(f"These files differ from the backup's: {', '.join(conflicts)}. Pass --replace to "
                          "overwrite them.")
    dump = backup.path / DUMPS[dialect]
    if dialect == "postgresql":
        # pg_restore must be able to read the dump before anything is dropped (an older
        # pg_restore refuses a newer dump's format).
        _run(["pg_restore", "--list", str(dump)], "pg_restore", database=False)
    db.session.remove()
    db.engine.dispose()
    if dialect == "sqlite":
        # The online backup replaces the whole file's content in one step.
        with closing(sqlite3.connect(dump)) as source, closing(sqlite3.connect(_sqlite_file())) as target:
            source.backup(target)
    else:
        if contents:
            _empty_database()
        _run(["pg_restore", "--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges", str(dump)],
             "pg_restore")
    for source, target, same in placements:
        if not same:
            _put_back(backup.path / source, target)
    migrated_from = []
    if sorted(backup.manifest["schema_heads"]) != code:
        migrated_from = backup.manifest["schema_heads"]
        upgrade()
    return Restored(backup, migrated_from, code)


def _contents():
    """'' for an empty database, else a short description of what is in it."""
    with db.engine.connect() as connection:
        tables = inspect(connection).get_table_names()
        filled = [table for table in tables if table != "alembic_version"
                  and connection.scalar(text(f'SELECT EXISTS (SELECT 1 FROM "{table}")'))]
    if "alembic_version" in tables:
        return f"it is migrated, {len(filled)} of its {len(tables) - 1} tables hold rows"
    return f"{len(filled)} of its {len(tables)} tables hold rows" if tables else ""


def _empty_database():
    """Drop everything in the public schema (--replace): tables a newer migration made
    would otherwise survive and clash with the migrations run after the restore."""
    with db.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    db.engine.dispose()


def _placements(backup):
    """(archive part, target path, same) for each copied file or folder: `same` is True when
    the target already holds exactly the backup's files, False when it holds others, None
    when there is nothing there."""
    placements = []
    for entry in backup.manifest["files"]:
        if entry["kind"] == "model":
            target = _model_folder(entry["path"])
            prefix = entry["archive"] + "/"
            wanted = {name.removeprefix(prefix): digest for name, digest in backup.manifest["parts"].items()
                      if name.startswith(prefix)}
            same = (registry.hash_folder(target) == wanted) if target.exists() else None
        else:
            target = _training_set_file(entry["path"])
            wanted = backup.manifest["parts"][entry["archive"]]
            same = (hashlib.sha256(target.read_bytes()).hexdigest() == wanted) if target.exists() else None
        placements.append((entry["archive"], target, same))
    return placements


def _put_back(source, target):
    if source.is_dir():
        if target.exists():
            shutil.rmtree(target)
        registry._copy_folder(source, target)
    else:
        if target.exists():
            target.unlink()
        trainingsets._write_once(target, source.read_bytes())


# --- helpers --------------------------------------------------------------------------------


def _model_folder(stored):
    """Where a model row's stored path points (registry's rule: relative to static/mlmodels)."""
    return registry.model_folder(SimpleNamespace(path=stored))


def _training_set_file(stored):
    return trainingsets.file_path(SimpleNamespace(path=stored))


def _scripts():
    return ScriptDirectory(current_app.extensions["migrate"].directory)


def _code_heads():
    return sorted(_scripts().get_heads())


def _dialect():
    name = db.engine.dialect.name
    if name not in DUMPS or (name == "sqlite" and db.engine.url.database in (None, "", ":memory:")):
        raise BackupError(f"Backups are made of PostgreSQL or SQLite file databases, not of {db.engine.url!r}.")
    return name


def _sqlite_file():
    return db.engine.url.database


def _run(command, program, database=True):
    """Run pg_dump or pg_restore against the app's database; the password goes through the
    environment, never on a command line other users can read."""
    url = db.engine.url.set(drivername="postgresql")
    environment = {**os.environ, "PGPASSWORD": url.password or os.environ.get("PGPASSWORD", "")}
    libpq_url = url.set(password=None).render_as_string(hide_password=False)
    try:
        done = subprocess.run([*command, f"--dbname={libpq_url}"] if database else command, env=environment,
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupError(f"{program} is not installed: install PostgreSQL's client programs (the same major "
                          "version as the server, or newer).") from None
    if done.returncode != 0:
        raise BackupError(f"{program} failed: {done.stderr.strip() or done.stdout.strip()}")
