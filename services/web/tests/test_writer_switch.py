"""Writers follow the registry: two real `flask writer run` processes switch to a newly
promoted model between batches, and every autodoc records the model that wrote it; an
installation without a registry has its model folder registered by the writer's first round.
Real subprocesses, real PostgreSQL, the tiny GPT-2 (tests/tinygpt2.py) and a second one
with one weight changed."""
import os
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select, text

from srcflask.extensions import db
from srcflask.models import WriterModel
from srcflask.services import registry
from srcflask.static.data.processeddata.models import Autodoc
from srcflask.writer import WriterRuntime

from .factories import make_document, make_user
from .faultkit import wait_until
from .test_writer_runtime import WRITER_SETTINGS
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
WEB_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # two processes importing TensorFlow and compiling two models each, on a shared machine


def perturbed_copy(source, target):
    """The GPT-2 in `source` with one weight moved, saved to `target`: another model (other
    hashes, other weights_sha256 in the stamps) that writes the same way."""
    from transformers import TFGPT2LMHeadModel

    model = TFGPT2LMHeadModel.from_pretrained(source)
    weight = model.weights[-1]
    weight.assign(weight + 0.01)
    model.save_pretrained(target)
    for path in source.iterdir():
        if not (target / path.name).exists():
            shutil.copy(path, target)
    return target


@pytest.fixture
def two_models(app_context, tiny_model_dir, tmp_path):  # noqa: F811
    """v1 (the tiny GPT-2, active) and v2 (one weight moved, a retrained candidate)."""
    first_dir = shutil.copytree(tiny_model_dir, tmp_path / "first")
    second_dir = perturbed_copy(first_dir, tmp_path / "second")
    first = registry.register_folder(first_dir, kind="seed", name="tiny")
    second = registry.register_folder(second_dir, kind="retrained", name="tiny", parent=first)
    db.session.commit()
    assert second.state == "candidate" and first.files["tf_model.h5"] != second.files["tf_model.h5"]
    return first, second


def autodocs():
    db.session.expire_all()
    return db.session.scalars(select(Autodoc).order_by(Autodoc.id)).all()


def process_of(autodoc):
    """The writer process (host:pid) of an autodoc's stamp, without the thread's name."""
    return autodoc.worker.rsplit(":", 1)[0]


def feed(sponsor, editor, count=4):
    """Queue `count` documents when nothing is waiting, so that the writers always have work
    while a test waits for something they do."""
    waiting = db.session.scalar(select(db.func.count()).select_from(Autodoc)
                                .where(Autodoc.status.in_(("queued", "running"))))
    if not waiting:
        for _ in range(count):
            number = db.session.scalar(select(db.func.count()).select_from(Autodoc))
            make_document(sponsor, editor, title=f"Doc {number}", body=f"Document number {number} says that")


def test_two_writer_processes_switch_to_a_promoted_model_between_batches(app, database_url, two_models):
    first, second = two_models
    admin, sponsor, editor = make_user("admin"), make_user("sponsor"), make_user("editor")
    env = {**os.environ, "SRCFLASK_ENV": "development", "SECRET_KEY": "test", "DATABASE_URL": database_url,
           "FLASK_APP": "wsgi", **{key: str(value) for key, value in WRITER_SETTINGS.items()},
           "WRITER_BATCH_SIZE": "2", "WRITER_POLL_SECONDS": "0.2",
           # Where the registry's model is not: the writers must load the active model's folder.
           "WRITER_MODEL_DIR": str(Path(registry.model_folder(first)).parent / "elsewhere")}
    writers = [subprocess.Popen([sys.executable, "-m", "flask", "writer", "run"], cwd=WEB_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        def both_wrote(model):
            feed(sponsor, editor)
            return len({process_of(a) for a in autodocs() if a.status == "done" and a.model_id == model.id}) == 2

        wait_until(lambda: both_wrote(first), TIMEOUT, "both writers writing with v1")
        registry.promote(second.id, admin, override=True, reason="Testing the switch.")
        db.session.commit()
        wait_until(lambda: both_wrote(second), TIMEOUT, "both writers switching to v2")
        # From now on both writers hold v2: whatever is queued now is written by it.
        written_before = {a.id for a in autodocs()}
        for number in range(6):
            make_document(sponsor, editor, title=f"Late {number}", body=f"A late document {number} says")
        wait_until(lambda: all(a.status == "done" for a in autodocs()), TIMEOUT, "the last documents written")
    finally:
        for writer in writers:
            writer.send_signal(signal.SIGTERM)
        outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs

    rows = autodocs()
    hashes = {first.id: first.files["tf_model.h5"], second.id: second.files["tf_model.h5"]}
    labels = {first.id: "tiny v1", second.id: "tiny v2"}
    batches, sequence = defaultdict(set), defaultdict(list)
    for autodoc in rows:
        assert autodoc.status == "done" and autodoc.model_id in hashes
        # The model recorded is the one whose weights wrote the text.
        assert autodoc.stamp["weights_sha256"] == hashes[autodoc.model_id]
        assert (autodoc.stamp["model_id"], autodoc.stamp["model_label"]) == \
            (autodoc.model_id, labels[autodoc.model_id])
        batches[autodoc.attempt_token].add(autodoc.model_id)
    for autodoc in sorted(rows, key=lambda a: a.started_at):
        sequence[process_of(autodoc)].append(autodoc.model_id)
    # No batch is written half by one model and half by the other.
    assert all(len(models) == 1 for models in batches.values())
    # Each process switched once, between batches, and never went back.
    assert len(sequence) == 2
    for models in sequence.values():
        switch = models.index(second.id)
        assert switch > 0 and set(models[:switch]) == {first.id} and set(models[switch:]) == {second.id}
    assert {a.model_id for a in rows if a.id not in written_before} == {second.id}


def test_the_first_round_registers_the_installed_model_and_notices_a_refilled_registry(
        app, app_context, monkeypatch, tiny_model_dir, tmp_path):  # noqa: F811
    """Upgrade path: no registry yet, WRITER_MODEL_DIR holds a model. Then the registry is
    emptied (ids start again at 1, as after a restore) and another model registered first:
    same id, other files, so the writer must load it rather than trust the id."""
    for key, value in {**WRITER_SETTINGS, "WRITER_MODEL_DIR": str(tiny_model_dir)}.items():
        monkeypatch.setitem(app.config, key, value)
    sponsor, editor = make_user("sponsor"), make_user("editor")
    make_document(sponsor, editor, title="T", body="The committee reviewed the budget and")
    runtime = WriterRuntime()
    runtime.run(app, until_idle=True)

    (model,) = db.session.scalars(select(WriterModel)).all()
    assert (model.kind, model.state, model.path) == ("seed", "active", str(tiny_model_dir.resolve()))
    (autodoc,) = autodocs()
    assert autodoc.model_id == model.id and autodoc.stamp["weights_sha256"] == model.files["tf_model.h5"]

    db.session.remove()
    tables = ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables)
    with db.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    other = registry.register_folder(perturbed_copy(tiny_model_dir, tmp_path / "other"), kind="seed", name="other")
    db.session.commit()
    assert other.id == model.id  # the same id, other files
    sponsor, editor = make_user("sponsor"), make_user("editor")
    make_document(sponsor, editor, title="T", body="The committee reviewed the budget and")
    runtime.run(app, until_idle=True)

    (autodoc,) = autodocs()
    assert autodoc.model_id == other.id and autodoc.stamp["model_label"] == "other v1"
    assert autodoc.stamp["weights_sha256"] == other.files["tf_model.h5"] != model.files["tf_model.h5"]
