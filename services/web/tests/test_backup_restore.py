"""Backups and restores end to end: `flask backup create` on a populated site (users of every
role, documents with revisions, written and queued autodocs, verdicts, a model registry with
its model folder and training set), `flask backup restore` into a fresh database with the
files gone, then the restored site serves every page of every role, takes a new save, and
its writer drains the queue with the restored model. Refusals: a database that is not empty
(unless --replace), a damaged backup. Real PostgreSQL, real pg_dump/pg_restore, the tiny GPT-2."""
import json
import shutil
from pathlib import Path

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from srcflask import create_app
from srcflask.extensions import db
from srcflask.models import Notification, TrainingSet, User, WriterModel
from srcflask.services import backups, passwords, registry, trainingsets
from srcflask.static.data.processeddata.models import Autodoc
from srcflask.writer import WriterRuntime

from .factories import DEFAULT_PASSWORD, make_document, make_registry, make_user, write_autodocs
from .helpers import FormClient, database_fingerprint
from .prodstack import throwaway_database
from .test_access_matrix import ROUTES, VISITORS, World, expected, same_location
from .test_production import compose_config, compose_folder, environment, mounts  # noqa: F401  (fixture)
from .test_writer_runtime import WRITER_SETTINGS
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
QUEUED = 2  # autodocs waiting for the writer when the backup is made


@pytest.fixture
def site(app, tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    """The session's database, populated; its model folder and training set files live in
    this test's folders (so the test may delete them). Returns the ids a visitor needs."""
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "tiny-model")
    with app.app_context():
        rows = {name: row.id for name, row in make_registry(model_dir, make_user("admin")).items()}
        owner, editor = make_user("sponsor"), make_user("editor")
        document = make_document(owner, editor, title="Original title", body="The committee reviewed the budget")
        (autodoc_id,) = write_autodocs(" and approved it.")
        for number in range(QUEUED):
            make_document(owner, editor, title=f"Queued {number}", body=f"The project started in spring {number}")
        ids = {"owner": owner.id, "editor": editor.id, "spare": make_user("editor").id, "document": document.id,
               "autodoc": autodoc_id, "target": make_user("sponsor").id, "registry": rows,
               "model_dir": model_dir, "training_file": trainingsets.file_path(db.session.get(
                   TrainingSet, rows["training_set"]))}
    return ids


def restored_app(app, url):
    """The app on the database at `url`, with the same files' folders as `app`."""
    folders = {key: app.config[key] for key in ("SEED_MODELS_DIR", "RETRAINED_MODELS_DIR", "TRAINING_DATA_DIR",
                                                  "BACKUP_DIR")}
    return create_app("testing", SQLALCHEMY_DATABASE_URI=url, **folders, **WRITER_SETTINGS)


def backup_of(app):
    result = app.test_cli_runner().invoke(args=["backup", "create"])
    assert result.exit_code == 0, result.output
    (made,) = backups.list_backups(app.config["BACKUP_DIR"])
    return made.path


def restore(app, path, *options):
    return app.test_cli_runner().invoke(args=["backup", "restore", str(path), *options])


def visitor_world(app, site, key):
    """test_access_matrix's World for `key` ("owner", "assigned_editor", "admin",
    "anonymous") on the restored site, logged in through the real form."""
    make_client = lambda: FormClient(app.test_client())  # noqa: E731
    client = make_client()
    user_id = {"owner": site["owner"], "assigned_editor": site["editor"], "admin": None}.get(key)
    with app.app_context():
        if key == "admin":
            user_id = db.session.scalar(select(User.id).where(User.role == "admin").order_by(User.id).limit(1))
        owner = db.session.get(User, site["owner"])
        notification_id = db.session.scalar(select(Notification.id).where(
            Notification.user_id == site["editor"], Notification.kind == "document_assigned"))
        reset_token = passwords.reset_token(owner)
        email = db.session.get(User, user_id).email if user_id else None
        owner_email = owner.email
    if email:
        assert client.post("/auth/login", {"email": email, "password": DEFAULT_PASSWORD}).status_code == 302
    client.csrf_token()
    return World(app=app, make_client=make_client, client=client, visitor=VISITORS[key], visitor_id=user_id,
                 owner_email=owner_email, owner_id=site["owner"], editor_id=site["editor"], spare_id=site["spare"],
                 document_id=site["document"], autodoc_id=site["autodoc"], notification_id=notification_id,
                 targets={endpoint: site["target"] for endpoint, route in ROUTES.items() if route.target},
                 reset_token=reset_token, registry=site["registry"])


def wrong_pages(world):
    """Every GET of the access matrix as this visitor, against the matrix's rules."""
    wrong = []
    for route in ROUTES.values():
        if "GET" not in route.methods:
            continue
        status, location = expected(route, "GET", world)
        response = world.browser().get(world.path(route))
        if location == "success":
            location = route.success(world, None)
        actual = response.headers.get("Location")
        if response.status_code != status or (location is None) != (actual is None) or (
                location and not same_location(actual, location)):
            wrong.append(f"GET {world.path(route)}: {response.status_code} {actual!r}, expected {status} {location!r}")
    return wrong


def test_a_backup_restored_into_a_fresh_database_serves_every_page_and_drains_the_queue(app, site):
    path = backup_of(app)
    manifest = json.loads((path / "manifest.json").read_text())
    assert sorted(entry["kind"] for entry in manifest["files"]) == ["model", "training_set"]
    with app.app_context():
        before = database_fingerprint()
    # The machine lost its files too: the restore brings them back.
    shutil.rmtree(site["model_dir"])
    site["training_file"].unlink()

    with throwaway_database("srcflask_restore") as url:
        restored = restored_app(app, url)
        result = restore(restored, path)
        assert result.exit_code == 0, result.output
        assert f"Restored {path}" in result.output and "migrated" not in result.output
        with restored.app_context():
            assert database_fingerprint() == before
            for model in db.session.scalars(select(WriterModel)):
                registry.verify(model)  # raises when a file differs
            for training_set in db.session.scalars(select(TrainingSet)):
                trainingsets.verify_file(training_set)

        for key in ("anonymous", "owner", "assigned_editor", "admin"):
            assert not wrong_pages(visitor_world(restored, site, key)), key
        owner = visitor_world(restored, site, "owner").client
        saved = owner.post("/sponsor/documents/new", {"title": "After the restore", "body": "It saves.",
                                                      "editor": site["editor"]})
        assert saved.status_code == 302  # the sequences were restored past the ids in use

        WriterRuntime().run(restored, until_idle=True)
        with restored.app_context():
            statuses = db.session.execute(select(Autodoc.status, Autodoc.model_id)).all()
            active = registry.active_model().id
        assert len(statuses) == before["autodocs"][0] + 1
        assert {status for status, _ in statuses} == {"done"}
        assert sum(model_id == active for _, model_id in statuses) >= QUEUED + 1  # the queued ones and the new save's


def test_restore_refuses_a_database_that_is_not_empty_unless_told_to_replace_it(app, site):
    path = backup_of(app)
    with throwaway_database("srcflask_restore") as url:
        other = restored_app(app, url)
        with other.app_context():
            upgrade()
            make_user("sponsor", email="someone.else@example.org")
            kept = database_fingerprint()
        refused = restore(other, path)
        assert refused.exit_code == 1
        assert "The database is not empty" in refused.output and "--replace" in refused.output
        assert "Traceback" not in refused.output
        with other.app_context():
            assert database_fingerprint() == kept

        replaced = restore(other, path, "--replace")
        assert replaced.exit_code == 0, replaced.output
        with app.app_context():
            wanted = database_fingerprint()
        with other.app_context():
            assert database_fingerprint() == wanted
            assert db.session.scalar(select(User).where(User.email == "someone.else@example.org")) is None


def test_a_damaged_backup_is_refused_before_anything_changes(app, site):
    path = backup_of(app)
    dump = path / "database.dump"
    damaged = bytearray(dump.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    dump.write_bytes(bytes(damaged))
    with throwaway_database("srcflask_restore") as url:
        result = restore(restored_app(app, url), path)
        assert result.exit_code == 1
        assert "does not match its manifest (changed: database.dump)" in result.output
        with restored_app(app, url).app_context():
            assert db.session.scalar(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")) == 0


def test_a_backup_from_an_older_schema_is_migrated_to_head_after_the_restore(app, tmp_path):
    with throwaway_database("srcflask_old") as old_url, throwaway_database("srcflask_restore") as url:
        old = restored_app(app, old_url)
        old.config["BACKUP_DIR"] = str(tmp_path / "backups")
        with old.app_context():
            upgrade()
            make_user("editor", email="kept.editor@example.org")
            downgrade(revision="0010")
            path = backups.create().path
        new = restored_app(app, url)
        result = restore(new, path)
        assert result.exit_code == 0, result.output
        assert "The backup's schema (0010) was older than this code's: migrated to" in result.output
        with new.app_context():
            assert db.session.scalar(select(User.role).where(User.email == "kept.editor@example.org")) == "editor"
            assert new.test_client().get("/readyz").status_code == 200


def test_create_keeps_the_newest_backups_and_list_shows_them(app, app_context, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setitem(app.config, "BACKUP_KEEP", 2)
    made = [backups.create() for _ in range(2)]
    result = app.test_cli_runner().invoke(args=["backup", "create"])
    assert result.exit_code == 0 and f"Deleted the older backup {made[0].path}" in result.output
    kept = backups.list_backups()
    assert [backup.path for backup in kept][0] == made[1].path and len(kept) == 2
    assert not made[0].path.exists()
    listed = app.test_cli_runner().invoke(args=["backup", "list"])
    assert all(str(backup.path) in listed.output for backup in kept)
    assert not any(Path(app.config["BACKUP_DIR"]).glob(".*"))  # no half-written backup left


def test_the_backup_compose_file_runs_flask_backup_on_the_production_volumes(compose_folder):  # noqa: F811
    services = compose_config(compose_folder, "docker-compose.prod.yml", "docker-compose.backup.yml")
    backup, web = services["backup"], services["web"]
    assert backup["entrypoint"] == ["flask", "backup"] and backup["command"] == ["create"]  # never migrates
    assert backup["build"] == web["build"]
    assert {("models", "/models"), ("backups", "/backups")} <= mounts(backup)
    env = environment(backup)
    assert env["BACKUP_DIR"] == "/backups" and env["DATABASE_URL"] == environment(web)["DATABASE_URL"]
    # Every folder the registry writes is on the models volume the backup reads.
    for key in ("SEED_MODELS_DIR", "RETRAINED_MODELS_DIR", "TRAINING_DATA_DIR", "WRITER_MODEL_DIR"):
        assert env[key].startswith("/models/") and env[key] == environment(web)[key], key


def test_the_quick_starts_sqlite_file_is_backed_up_and_restored_the_same_way(tmp_path):
    def sqlite_app(name):
        return create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / name}",
                          BACKUP_DIR=str(tmp_path / "backups"))

    def emails(app):
        with app.app_context():
            found = db.session.scalars(select(User.email).order_by(User.id)).all()
            db.session.remove()
            return found

    source = sqlite_app("source.sqlite3")
    unmigrated = source.test_cli_runner().invoke(args=["backup", "create"])
    assert unmigrated.exit_code == 1 and "The database has no schema yet" in unmigrated.output
    with source.app_context():
        upgrade()
        make_user("sponsor", email="quick.start@example.org")
        make_document(make_user("sponsor"), make_user("editor"))
    path = backup_of(source)
    assert (path / "database.sqlite3").is_file()

    target = sqlite_app("target.sqlite3")
    assert restore(target, path).exit_code == 0
    assert emails(target) == emails(source)
    with source.app_context():
        make_user("admin")  # the source moves on; restoring over it needs --replace
    refused = restore(source, path)
    assert refused.exit_code == 1 and "The database is not empty" in refused.output
    assert restore(source, path, "--replace").exit_code == 0
    assert emails(source) == emails(target)

    with throwaway_database("srcflask_restore") as url:
        wrong_kind = restore(restored_app(source, url), path)
    assert wrong_kind.exit_code == 1 and "This is a backup of a sqlite database" in wrong_kind.output
