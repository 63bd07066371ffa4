"""The model registry (services/registry.py, `flask model register`): registration, the
integrity check the writer relies on, the promotion gate, rollback, races and the figures.
Real PostgreSQL, the real tiny GPT-2 (tests/tinygpt2.py)."""
import hashlib
import json
import shutil
import threading
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from srcflask.extensions import db
from srcflask.models import AuditEvent, ModelEvaluation, TrainingSet, User, WriterModel
from srcflask.services import registry, reviews
from srcflask.static.data.processeddata.models import Autodoc
from srcflask.writer import writer_runtime

from .factories import make_document, make_user, write_autodocs
from .faultkit import wait_until
from .test_writer_runtime import WRITER_SETTINGS
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

STATE_TIMEOUT = 180  # loading and compiling the tiny GPT-2 on a shared machine


@pytest.fixture
def admin(app_context):
    return make_user("admin")


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):  # noqa: F811
    """A private copy of the tiny GPT-2, free to be changed by the test."""
    return shutil.copytree(tiny_model_dir, tmp_path / "tiny")


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_training_set():
    training_set = TrainingSet(path="processed_data/trainingsets/test.jsonl", sha256="0" * 64, verdicts=["approve"],
                               seed=1, train_documents=3, train_pairs=3, train_tokens=90, validation_documents=1,
                               validation_pairs=1, validation_tokens=30)
    db.session.add(training_set)
    db.session.flush()
    return training_set


@pytest.fixture
def registry_rows(admin, tiny_model_dir):  # noqa: F811
    """v1 active (seed), v2 a candidate trained on a training set, both evaluated on it by
    the test through `evaluate(v1, v2)`."""
    active = registry.register_folder(tiny_model_dir, kind="seed", name="tiny", created_by=admin)
    training_set = make_training_set()
    candidate = registry.register_folder(tiny_model_dir, kind="retrained", name="tiny", parent=active,
                                         created_by=admin, training_set=training_set)
    db.session.commit()

    def evaluate(active_perplexity, candidate_perplexity):
        registry.record_evaluation(active, training_set, 3.4, active_perplexity, 30)
        registry.record_evaluation(candidate, training_set, 3.2, candidate_perplexity, 30)
        db.session.commit()

    return active, candidate, training_set, evaluate


def audit_rows(action):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()


def states():
    db.session.expire_all()
    return {model.label: model.state for model in db.session.scalars(select(WriterModel).order_by(WriterModel.id))}


# --- registration ---------------------------------------------------------------------------

def test_registration_hashes_every_file_and_reads_the_shape(app, admin, tiny_model_dir):  # noqa: F811
    from transformers import TFGPT2LMHeadModel

    first = registry.register_folder(tiny_model_dir, kind="seed", name="tiny", created_by=admin)
    second = registry.register_folder(tiny_model_dir, kind="retrained", name="tiny", parent=first, created_by=admin,
                                      training={"epochs": 1})
    db.session.commit()

    files = sorted(path for path in tiny_model_dir.iterdir() if path.is_file())
    assert first.files == {path.name: sha256(path) for path in files}
    assert first.size_bytes == sum(path.stat().st_size for path in files)
    assert first.shape == {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 256,
                           "vocab_size": first.shape["vocab_size"]}
    assert first.parameters == TFGPT2LMHeadModel.from_pretrained(tiny_model_dir).count_params()
    assert first.generation["num_beams"] == 5 and first.generation["no_repeat_ngram_size"] == 4
    assert first.path == str(tiny_model_dir.resolve())  # outside static/mlmodels: absolute, registered in place
    # The first model ever registered is the active one; the next ones are candidates.
    assert (first.label, first.state, first.promoted_at is not None) == ("tiny v1", "active", True)
    assert (second.label, second.state, second.parent_id, second.training) == \
        ("tiny v2", "candidate", first.id, {"epochs": 1})
    assert [(event.actor_id, event.target_id) for event in audit_rows("model.register")] == \
        [(admin.id, first.id), (admin.id, second.id)]
    registry.verify(first)  # the folder is as registered


def test_a_seed_name_is_taken_once(admin, tiny_model_dir):  # noqa: F811
    registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
    with pytest.raises(registry.NameTaken, match="A model named tiny is already registered"):
        registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
    with pytest.raises(registry.RegistryError, match="cannot name a model"):
        registry.register_folder(tiny_model_dir, kind="seed", name="../escape")


@pytest.fixture
def seed_name(app, monkeypatch):
    """A name for `flask model register`, whose folder under seedmlmodels/ goes afterwards.
    The owner's layout (SEED_MODELS_DIR inside static/mlmodels, where paths are stored
    relative) rather than the suite's folders outside the checkout."""
    monkeypatch.setitem(app.config, "SEED_MODELS_DIR", str(registry.MLMODELS / "seedmlmodels"))
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(registry.MLMODELS / "seedmlmodels" / name, ignore_errors=True)


def test_flask_model_register_copies_the_folder_and_registers_it(app, app_context, tiny_model_dir,  # noqa: F811
                                                                 seed_name):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["model", "register", str(tiny_model_dir), "--name", seed_name])
    assert result.exit_code == 0, result.output
    assert f"Registered {seed_name} v1" in result.output and "as active" in result.output

    model = db.session.scalar(select(WriterModel))
    copy = registry.MLMODELS / "seedmlmodels" / seed_name
    assert model.path == f"seedmlmodels/{seed_name}" and registry.model_folder(model) == copy
    assert model.files == {path.name: sha256(path) for path in tiny_model_dir.iterdir() if path.is_file()}
    assert sorted(path.name for path in copy.iterdir()) == sorted(model.files)
    registry.verify(model)

    again = runner.invoke(args=["model", "register", str(tiny_model_dir), "--name", seed_name])
    assert again.exit_code == 1 and f"A model named {seed_name} is already registered" in again.output
    assert "Traceback" not in again.output
    assert db.session.scalar(select(db.func.count()).select_from(WriterModel)) == 1


def test_flask_model_register_refuses_what_is_not_a_tf_gpt2_folder(app, app_context, tiny_model_dir,  # noqa: F811
                                                                   tmp_path, seed_name):
    runner = app.test_cli_runner()
    not_gpt2 = shutil.copytree(tiny_model_dir, tmp_path / "bert")
    (not_gpt2 / "config.json").write_text('{"model_type": "bert"}')
    no_tf = shutil.copytree(tiny_model_dir, tmp_path / "pytorch-only")
    (no_tf / "tf_model.h5").unlink()
    for folder, message in ((tmp_path / "nothing", "is not a folder"), (not_gpt2, "does not hold a GPT-2"),
                            (no_tf, "has no TensorFlow weights")):
        result = runner.invoke(args=["model", "register", str(folder), "--name", seed_name])
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (registry.MLMODELS / "seedmlmodels" / seed_name).exists()
    assert db.session.scalar(select(WriterModel.id)) is None


# --- integrity ------------------------------------------------------------------------------

@pytest.fixture
def process_writer(app, monkeypatch):
    """The process's own writer (the one /readyz reports), in its thread as a web process
    runs it; stopped and forgotten afterwards."""
    monkeypatch.setitem(app.config, "WRITER_IN_PROCESS", True)

    def park():
        writer_runtime.stop()
        writer_runtime.forget_model()
        writer_runtime.failures.clear()

    park()  # an earlier test may have left it running, or its model loaded
    yield writer_runtime
    park()


def test_a_weights_file_changed_after_registration_is_refused(app, app_context, model_copy, monkeypatch, client,
                                                              process_writer):
    settings = {**WRITER_SETTINGS, "WRITER_MODEL_DIR": str(model_copy), "WRITER_POLL_SECONDS": 0.1,
                "WRITER_MODEL_RETRY_SECONDS": 0.2}
    for key, value in settings.items():
        monkeypatch.setitem(app.config, key, value)
    model = registry.register_folder(model_copy, kind="seed", name="tiny")
    db.session.commit()
    weights = model_copy / "tf_model.h5"
    good = weights.read_bytes()
    changed = bytearray(good)
    changed[len(changed) // 2] ^= 0xFF  # one flipped byte: same size, same layout
    weights.write_bytes(bytes(changed))
    sponsor, editor = make_user("sponsor"), make_user("editor")
    make_document(sponsor, editor, title="T", body="The committee reviewed the budget and")

    with pytest.raises(registry.ModelIntegrityError, match="changed: tf_model.h5"):
        registry.verify(model)
    process_writer.start(app, threads=1)
    wait_until(lambda: process_writer.refused, STATE_TIMEOUT, "the writer refusing the model")

    db.session.expire_all()
    assert db.session.scalar(select(Autodoc.status)) == "queued"  # nothing written with it
    assert process_writer.loaded_info is None and "changed: tf_model.h5" in process_writer.model_error
    error = db.session.get(WriterModel, model.id).integrity_error
    assert "tiny v1" in error and "changed: tf_model.h5" in error and "will not load it" in error
    assert f"The writer refuses the active model tiny v1: {error}" in process_writer.problem()
    state = client.get("/readyz").get_json()["writer"]
    assert (state["state"], state["model"], state["reason"]) == ("refused", "tiny v1", error)
    status = app.test_cli_runner().invoke(args=["writer", "status"]).output
    assert f"refused by the writers: {error}" in status  # what writers elsewhere found, from the row

    weights.write_bytes(good)  # the operator puts the registered file back
    wait_until(lambda: db.session.scalar(select(Autodoc.status).execution_options(populate_existing=True)) == "done",
               STATE_TIMEOUT, "the writer loading the mended model")
    db.session.expire_all()
    autodoc = db.session.scalar(select(Autodoc))
    assert autodoc.model_id == model.id
    assert (autodoc.stamp["model_id"], autodoc.stamp["model_label"]) == (model.id, "tiny v1")
    assert db.session.get(WriterModel, model.id).integrity_error is None
    state = client.get("/readyz").get_json()["writer"]
    assert (state["state"], state["registered_as"], state["model_id"]) == ("loaded", "tiny v1", model.id)


# --- promotion, override, rollback ----------------------------------------------------------

def test_promotion_refuses_a_worse_candidate_and_an_override_needs_a_reason(admin, registry_rows):
    active, candidate, training_set, evaluate = registry_rows
    with pytest.raises(registry.GateRefused, match="has not been evaluated"):
        registry.promote(candidate.id, admin)
    db.session.rollback()
    evaluate(active_perplexity=30.0, candidate_perplexity=31.5)

    with pytest.raises(registry.GateRefused) as refused:
        registry.promote(candidate.id, admin)
    assert str(refused.value) == (f"tiny v2's validation perplexity (31.50) does not beat tiny v1's (30.00) on "
                                  f"training set #{training_set.id}. An admin may still promote it with an "
                                  "override and a written reason.")
    db.session.rollback()
    with pytest.raises(registry.GateRefused, match="An override needs a written reason"):
        registry.promote(candidate.id, admin, override=True, reason="  ")
    db.session.rollback()
    assert states() == {"tiny v1": "active", "tiny v2": "candidate"}
    assert audit_rows("model.override") == [] and audit_rows("model.promote") == []

    registry.promote(candidate.id, admin, override=True, reason="Editors prefer its tone.")
    db.session.commit()
    assert states() == {"tiny v1": "retired", "tiny v2": "active"}
    (event,) = audit_rows("model.override")
    assert (event.actor_id, event.target_id) == (admin.id, candidate.id)
    assert event.details["reason"] == "Editors prefer its tone." and event.details["previous"] == "tiny v1"
    assert "does not beat" in event.details["gate"]


def test_a_better_candidate_is_promoted_and_rollback_brings_the_old_model_back(admin, registry_rows):
    active, candidate, training_set, evaluate = registry_rows
    evaluate(active_perplexity=30.0, candidate_perplexity=24.0)
    side_by_side = registry.comparison(candidate)
    assert side_by_side["passes"] is True and "beats tiny v1's (30.00)" in side_by_side["message"]
    assert (side_by_side["candidate"]["perplexity"], side_by_side["active"]["perplexity"],
            side_by_side["parent"]["label"]) == (24.0, 30.0, "tiny v1")

    registry.promote(candidate.id, admin)
    db.session.commit()
    assert states() == {"tiny v1": "retired", "tiny v2": "active"}
    (event,) = audit_rows("model.promote")
    assert event.actor_id == admin.id and event.details["previous_id"] == active.id

    with pytest.raises(registry.RegistryError, match="A rollback needs a written reason"):
        registry.rollback(active.id, admin, reason="")
    registry.rollback(active.id, admin, reason="Approval rate fell.")
    db.session.commit()
    assert states() == {"tiny v1": "active", "tiny v2": "retired"}
    (event,) = audit_rows("model.rollback")
    assert (event.actor_id, event.target_id, event.details["reason"]) == (admin.id, active.id, "Approval rate fell.")
    # ... and forward again: v2 was active before, so it too can be rolled back to.
    registry.rollback(candidate.id, admin, reason="False alarm.")
    db.session.commit()
    assert states() == {"tiny v1": "retired", "tiny v2": "active"}


def test_promoting_what_is_not_a_candidate_is_a_clear_error(admin, registry_rows, tiny_model_dir):  # noqa: F811
    active, candidate, training_set, evaluate = registry_rows
    with pytest.raises(registry.AlreadyActive, match="tiny v1 is already the active model"):
        registry.promote(active.id, admin)
    with pytest.raises(registry.ModelNotFound, match="There is no model #999"):
        registry.promote(999, admin)
    registry.promote(candidate.id, admin, override=True, reason="Testing.")
    db.session.commit()
    with pytest.raises(registry.NotACandidate, match="tiny v1 is retired, not a candidate"):
        registry.promote(active.id, admin, override=True, reason="Again.")
    db.session.rollback()
    never_active = registry.register_folder(tiny_model_dir, kind="retrained", name="tiny", parent=candidate)
    db.session.commit()
    with pytest.raises(registry.NotACandidate, match="tiny v3 was never active"):
        registry.rollback(never_active.id, admin, reason="Try it.")


def test_the_database_holds_one_active_model_whatever_the_code(registry_rows):
    active, candidate, training_set, evaluate = registry_rows
    with pytest.raises(IntegrityError, match="uq_models_one_active"):
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE models SET state = 'active' WHERE id = :id"), {"id": candidate.id})


@pytest.mark.parametrize("same_candidate", [True, False], ids=["same candidate", "two candidates"])
def test_two_admins_promoting_at_the_same_moment_get_one_clear_outcome_each(app, admin, registry_rows,
                                                                            tiny_model_dir, same_candidate):  # noqa: F811
    active, candidate, training_set, evaluate = registry_rows
    other = registry.register_folder(tiny_model_dir, kind="retrained", name="tiny", parent=active,
                                     training_set=training_set)
    second_admin = make_user("admin")
    evaluate(active_perplexity=30.0, candidate_perplexity=24.0)
    registry.record_evaluation(other, training_set, 3.1, 22.0, 30)
    db.session.commit()
    targets = [candidate.id, candidate.id if same_candidate else other.id]
    barrier, outcomes = threading.Barrier(2), [None, None]

    def promote(index, admin_id):
        with app.app_context():  # a session (and a connection) of its own
            who = db.session.get(User, admin_id)
            barrier.wait()
            try:
                outcomes[index] = registry.promote(targets[index], who).label
                db.session.commit()
            except registry.RegistryError as error:
                db.session.rollback()
                outcomes[index] = error

    threads = [threading.Thread(target=promote, args=(index, admin_id))
               for index, admin_id in enumerate((admin.id, second_admin.id))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    final = states()
    assert list(final.values()).count("active") == 1
    if same_candidate:
        promoted = [outcome for outcome in outcomes if outcome == "tiny v2"]
        refused = [outcome for outcome in outcomes if isinstance(outcome, registry.AlreadyActive)]
        assert len(promoted) == 1 and len(refused) == 1, outcomes
        assert str(refused[0]) == "tiny v2 is already the active model."
        assert final["tiny v2"] == "active"
    else:
        # One after the other: the second admin's promotion is judged against the first's result.
        assert all(outcome in ("tiny v2", "tiny v3") or isinstance(outcome, registry.GateRefused)
                   for outcome in outcomes), outcomes
        winners = [outcome for outcome in outcomes if isinstance(outcome, str)]
        assert winners and final[winners[-1]] == "active"
    assert len(audit_rows("model.promote")) == len([o for o in outcomes if isinstance(o, str)])


def test_record_evaluation_replaces_the_figures_of_a_model_on_a_set(admin, registry_rows):
    active, candidate, training_set, evaluate = registry_rows
    evaluate(30.0, 24.0)
    registry.record_evaluation(candidate, training_set, 3.0, 20.0, 31)
    db.session.commit()
    rows = db.session.scalars(select(ModelEvaluation).where(ModelEvaluation.model_id == candidate.id)).all()
    assert [(row.loss, row.perplexity, row.tokens) for row in rows] == [(3.0, 20.0, 31)]


# --- figures --------------------------------------------------------------------------------

def test_figures_count_written_reviewed_and_approved_autodocs_per_model(admin, registry_rows):
    active, candidate, training_set, evaluate = registry_rows
    sponsor, editor = make_user("sponsor"), make_user("editor")
    for number in range(4):
        make_document(sponsor, editor, title=f"Doc {number}", body=f"Document {number} says")
    first, second, third, fourth = write_autodocs(model_id=active.id)
    make_document(sponsor, editor, title="Doc 5", body="Document 5 says")
    (fifth,) = write_autodocs(model_id=candidate.id)
    verdicts = [(first, "approve", ""), (second, "approve", ""), (second, "reject", "Off topic."),
                (third, "request_changes", "Shorter."), (fifth, "approve", "")]
    for autodoc_id, decision, comment in verdicts:
        reviews.give_verdict(db.session.get(Autodoc, autodoc_id), editor, decision, comment)
        db.session.commit()

    figures = registry.figures()
    mine = figures[active.id]
    # Current verdicts only: the second autodoc's approval was replaced by a rejection.
    assert (mine["written"], mine["reviewed"], mine["approved"]) == (4, 3, 1)
    assert mine["approval_rate"] == pytest.approx(1 / 3) and mine["median_write_seconds"] >= 0
    assert (figures[candidate.id]["written"], figures[candidate.id]["approval_rate"]) == (1, 1.0)


# --- where an autodoc names its model -------------------------------------------------------

def test_an_autodoc_names_its_model_in_its_stamp_the_export_and_the_api(app, login_as, tiny_model_dir):  # noqa: F811
    from srcflask.services import autodoc_queue

    from .test_api import make_token

    browser, sponsor = login_as("sponsor")
    admin_browser, _ = login_as("admin")
    with app.app_context():
        model = registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
        editor = make_user("editor")
        document = make_document(db.session.get(User, sponsor.id), editor, title="Plan", body="The budget and")
        (job,) = autodoc_queue.claim_jobs("tests", 1, 60, 3)
        stamp = {"model": "tiny-gpt2", "model_id": model.id, "model_label": model.label, "settings": {}}
        assert autodoc_queue.complete_job(job, job.body, " more.", stamp, model.id)
        reviews.give_verdict(db.session.get(Autodoc, job.autodoc_id), editor, "approve", "")
        db.session.commit()
        token = make_token(db.session.get(User, sponsor.id))
        document_id, autodoc_id, model_id = document.id, job.autodoc_id, model.id

    page = browser.get(f"/sponsor/documents/{document_id}").get_data(as_text=True)
    assert '<span class="autodoc-model">tiny v1</span>' in page
    (line,) = admin_browser.get("/admin/reviews.jsonl").get_data(as_text=True).splitlines()
    assert json.loads(line)["model"] == {"id": model_id, "label": "tiny v1"}
    state = app.test_client().get(f"/api/v1/autodocs/{autodoc_id}", headers={"Authorization": f"Bearer {token}"})
    assert state.get_json()["model"] == {"id": model_id, "label": "tiny v1"}


# --- flask writer fetch ---------------------------------------------------------------------

def test_fetch_if_missing_registers_the_installed_model_in_place(app, app_context, tiny_model_dir,  # noqa: F811
                                                                 monkeypatch):
    monkeypatch.setitem(app.config, "WRITER_MODEL_DIR", str(tiny_model_dir))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["writer", "fetch", "--if-missing"])
    assert result.exit_code == 0, result.output
    model = db.session.scalar(select(WriterModel))
    assert (model.kind, model.state, model.path) == ("seed", "active", str(tiny_model_dir.resolve()))
    assert f"Registered {model.label}" in result.output and "as active" in result.output
    assert runner.invoke(args=["writer", "fetch", "--if-missing"]).output == ""  # registered: nothing to do
    status = runner.invoke(args=["writer", "status"]).output
    assert f"Model: {model.label} (active) in {tiny_model_dir.resolve()}" in status


def test_fetch_refuses_a_taken_name_before_downloading(app, app_context, tiny_model_dir):  # noqa: F811
    registry.register_folder(tiny_model_dir, kind="seed", name="gpt2")
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["writer", "fetch", "--model", "openai-community/gpt2"])
    assert result.exit_code == 1 and "A model named gpt2 is already registered" in result.output
    assert "Fetching" not in result.output


def test_the_console_promotes_and_rolls_back_under_the_same_rules(app, admin, registry_rows):
    active, candidate, training_set, evaluate = registry_rows
    evaluate(active_perplexity=30.0, candidate_perplexity=31.5)
    runner = app.test_cli_runner()

    refused = runner.invoke(args=["model", "promote", str(candidate.id)])
    assert refused.exit_code == 1 and "does not beat tiny v1's (30.00)" in refused.output
    assert "Traceback" not in refused.output
    no_reason = runner.invoke(args=["model", "promote", str(candidate.id), "--override"])
    assert no_reason.exit_code == 1 and "An override needs a written reason" in no_reason.output
    assert states() == {"tiny v1": "active", "tiny v2": "candidate"}

    promoted = runner.invoke(args=["model", "promote", str(candidate.id), "--override", "--reason", "Tone."])
    assert promoted.exit_code == 0 and "tiny v2 is now the active model" in promoted.output
    assert states() == {"tiny v1": "retired", "tiny v2": "active"}
    (event,) = audit_rows("model.override")
    assert event.actor_id is None and event.details["reason"] == "Tone."

    assert runner.invoke(args=["model", "rollback", str(active.id)]).exit_code == 2  # --reason is required
    rolled_back = runner.invoke(args=["model", "rollback", str(active.id), "--reason", "Approval fell."])
    assert rolled_back.exit_code == 0 and "tiny v1 is now the active model" in rolled_back.output
    assert states() == {"tiny v1": "active", "tiny v2": "retired"}
    unknown = runner.invoke(args=["model", "promote", "999999"])
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output
