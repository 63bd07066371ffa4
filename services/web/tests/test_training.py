"""Retraining: a few steps on the tiny GPT-2 really lower the validation loss, the loss counts
the continuation only, the result is registered as a candidate that the real writer loads and
writes with, runs are refused before any work when they must be, cancelling has one outcome
in each state, and a trainer SIGKILLed mid-run leaves the run failed, nothing registered and
the next run able to succeed."""
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from srcflask.extensions import db
from srcflask.models import AuditEvent, ModelEvaluation, TrainingRun, User, WriterModel
from srcflask.services import registry, reviews, training, trainingsets
from srcflask.static.data.processeddata.models import Autodoc
from srcflask.static.src.pipeline import finetune
from srcflask.trainer import Trainer

from .factories import make_document, make_user, write_autodocs
from .tinygpt2 import CORPUS, tiny_model_dir  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow
WEB_ROOT = Path(__file__).resolve().parent.parent
# Each sentence of the tiny model's corpus cut in two: the document's body is the first half,
# the approved autodoc the second (the writer's prompt is the body as stored).
HALVES = {sentence[:len(sentence) // 2]: sentence[len(sentence) // 2:] for sentence in CORPUS[:20]}
# Few, quick steps that the tiny model learns from.
QUICK = {"epochs": 4, "batch_size": 4, "learning_rate": 5e-3, "patience": 1, "seed": 7, "max_tokens": 64}


@pytest.fixture
def folders(app, tmp_path, monkeypatch):
    """Where this test's training sets and retrained models go; trains in-process at normal priority."""
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))
    monkeypatch.setitem(app.config, "RETRAINED_MODELS_DIR", str(tmp_path / "retrainedmodels"))
    monkeypatch.setitem(app.config, "TRAINER_NICE", 0)
    return tmp_path


@pytest.fixture
def tiny(app_context, tiny_model_dir, folders):  # noqa: F811
    """The tiny GPT-2 registered (the first model: active)."""
    model = registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
    db.session.commit()
    return model


@pytest.fixture
def admin(app_context):
    return make_user("admin")


@pytest.fixture
def training_set(tiny, admin):
    """A training set built by the real service from 20 documents whose autodocs an editor approved."""
    sponsor, editor = make_user("sponsor"), make_user("editor")
    for body in HALVES:
        make_document(sponsor, editor, title=body[:20], body=body)
    for autodoc_id in write_autodocs(lambda job: HALVES[job.body], model_id=tiny.id):
        reviews.give_verdict(db.session.get_one(Autodoc, autodoc_id), db.session.get_one(User, editor.id),
                             "approve", "")
        db.session.commit()
    built = trainingsets.build(admin)
    db.session.commit()
    assert built.train_pairs >= 12 and built.validation_pairs >= 4
    return built


def queue(tiny, training_set, admin, **settings):
    run = training.request_run(tiny.id, training_set.id, {**QUICK, **settings}, admin)
    db.session.commit()
    return run.id


def train(app, run_id, on_progress=None):
    outcome = Trainer().run(app, run_id=run_id, on_progress=on_progress)
    db.session.expire_all()
    return outcome, db.session.get(TrainingRun, run_id)


def retrained_folder_names(folders):
    folder = folders / "retrainedmodels"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


# --- the pipeline --------------------------------------------------------------------------


def test_the_loss_counts_continuation_tokens_only(tiny_model_dir):  # noqa: F811
    from transformers import GPT2TokenizerFast, TFGPT2LMHeadModel

    tokenizer = GPT2TokenizerFast.from_pretrained(tiny_model_dir)
    pairs = [{"prompt": prompt, "continuation": rest} for prompt, rest in list(HALVES.items())[:5]]
    encoded = finetune.encode_pairs(tokenizer, pairs, 64)
    prompt_lengths = [len(tokenizer(pair["prompt"])["input_ids"]) for pair in pairs]
    continuation_lengths = [len(tokenizer(pair["continuation"])["input_ids"]) + 1 for pair in pairs]  # + end-of-text
    for row, (prompt, continuation) in enumerate(zip(prompt_lengths, continuation_lengths)):
        labels = encoded.labels[row]
        assert (labels[:prompt] == finetune.IGNORED).all()
        assert (labels[prompt:prompt + continuation] == encoded.input_ids[row, prompt:prompt + continuation]).all()
        assert (labels[prompt + continuation:] == finetune.IGNORED).all()  # padding
    assert encoded.tokens == sum(continuation_lengths)

    # The mean cross-entropy of the continuation tokens, computed here from the logits.
    model = TFGPT2LMHeadModel.from_pretrained(tiny_model_dir)
    logits = model(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask).logits.numpy()
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    def mean_loss(labels):
        targets = labels[:, 1:]
        counted = targets != finetune.IGNORED
        picked = np.take_along_axis(log_probs[:, :-1], np.maximum(targets, 0)[..., None], -1)[..., 0]
        return -picked[counted].mean()

    continuation_only = mean_loss(encoded.labels)
    loss, perplexity, tokens = finetune.evaluate(tiny_model_dir, pairs, batch_size=2, max_tokens=64)
    assert loss == pytest.approx(continuation_only, rel=1e-5)
    assert perplexity == pytest.approx(math.exp(continuation_only), rel=1e-5)
    assert tokens == encoded.tokens
    # Training uses transformers' own loss with these labels: it skips the -100s the same way.
    built_in = model(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask,
                     labels=encoded.labels).loss.numpy()[0]
    assert built_in == pytest.approx(continuation_only, rel=1e-5)
    # Had the prompt's tokens been labelled, the figure would be another one.
    labelled_prompts = np.where(encoded.attention_mask == 1, encoded.input_ids, finetune.IGNORED)
    assert abs(mean_loss(labelled_prompts) - continuation_only) > 0.01


def test_a_long_pair_loses_the_start_of_its_prompt(tiny_model_dir):  # noqa: F811
    from transformers import GPT2TokenizerFast

    tokenizer = GPT2TokenizerFast.from_pretrained(tiny_model_dir)
    pair = {"prompt": " ".join(CORPUS[:3]), "continuation": CORPUS[3]}
    continuation = tokenizer(pair["continuation"])["input_ids"] + [tokenizer.eos_token_id]
    encoded = finetune.encode_pairs(tokenizer, [pair], len(continuation) + 5)
    prompt = tokenizer(pair["prompt"])["input_ids"]
    assert list(encoded.input_ids[0]) == prompt[-5:] + continuation
    assert encoded.tokens == len(continuation)


# --- a run from request to candidate -------------------------------------------------------


def test_a_run_lowers_the_validation_loss_and_registers_a_candidate_that_writes(app, tiny, training_set, admin,
                                                                              folders):
    run_id = queue(tiny, training_set, admin)
    seen = []
    outcome, run = train(app, run_id, on_progress=seen.append)

    assert outcome == "succeeded" and run.status == "succeeded", run.error
    assert seen[-1]["epochs"] == QUICK["epochs"] and seen[-1]["steps"] == math.ceil(training_set.train_pairs / 4)
    assert run.progress["epoch"] >= 1 and run.progress["updated_at"]
    model = run.result_model
    assert (model.kind, model.state, model.name, model.version, model.parent_id, model.training_set_id) == \
        ("retrained", "candidate", "tiny", 2, tiny.id, training_set.id)
    assert registry.active_model().id == tiny.id  # a candidate until an admin promotes it
    folder = registry.model_folder(model)
    assert folder == folders / "retrainedmodels" / "tiny-v2"
    assert retrained_folder_names(folders) == ["tiny-v2"]
    registry.verify(model)  # the registered hashes are the files' (metadata.json included)

    # A real decrease, on the same validation pairs, for both figures the gate compares.
    evaluations = {row.model_id: row for row in db.session.scalars(
        select(ModelEvaluation).where(ModelEvaluation.training_set_id == training_set.id))}
    assert set(evaluations) == {tiny.id, model.id}
    parent, candidate = evaluations[tiny.id], evaluations[model.id]
    assert candidate.loss < parent.loss - 0.1
    assert candidate.perplexity < parent.perplexity
    assert candidate.tokens == parent.tokens > 0
    # Measured again from the saved folder: the best epoch's weights were the ones saved.
    validation = trainingsets.read_pairs(training_set, "validation")
    loss, perplexity, tokens = finetune.evaluate(folder, validation, batch_size=4, max_tokens=64)
    assert loss == pytest.approx(candidate.loss, rel=1e-4) and tokens == candidate.tokens

    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata == model.training
    assert metadata["parent"] == {"id": tiny.id, "label": "tiny v1", "weights_sha256": tiny.files["tf_model.h5"]}
    assert (metadata["training_set"]["id"], metadata["training_set"]["sha256"]) == (training_set.id, training_set.sha256)
    assert metadata["hyperparameters"] == run.settings
    assert metadata["validation"]["parent"]["loss"] == pytest.approx(parent.loss)
    assert metadata["validation"]["model"]["perplexity"] == pytest.approx(candidate.perplexity)
    assert 1 <= metadata["best_epoch"] <= metadata["epochs_run"] <= QUICK["epochs"]
    assert set(metadata["libraries"]) == {"tensorflow", "transformers", "tf-keras", "python"}
    assert metadata["counts"]["train_pairs"] == training_set.train_pairs

    # The writer's own loader and beam search take it as it is.
    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.evaluation.autodocwriter import AutodocWriter
    from srcflask.static.src.features.doctokenization import build_prompt

    loaded = load_model(folder)
    writer = AutodocWriter(loaded, max_new_tokens=6, context_tokens=16, batch_sizes=(1,))
    prompt = build_prompt(loaded.tokenizer, "A title", next(iter(HALVES)), 16)
    [continuation] = writer.write([prompt])
    assert continuation.token_ids

    started = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "trainingrun.start")).all()
    assert [(event.actor_id, event.target_id) for event in started] == [(admin.id, run_id)]


def test_the_active_model_is_measured_too_when_it_is_not_the_parent(app, tiny, training_set, admin, folders):
    outcome, first = train(app, queue(tiny, training_set, admin, epochs=1))
    assert outcome == "succeeded"
    candidate = first.result_model

    # From the candidate v2 while v1 stays active: the gate will compare v3 with v1.
    run_id = training.request_run(candidate.id, training_set.id, {**QUICK, "epochs": 1}, admin).id
    db.session.commit()
    outcome, second = train(app, run_id)
    assert outcome == "succeeded", second.error
    assert second.result_model.parent_id == candidate.id
    measured = set(db.session.scalars(select(ModelEvaluation.model_id)
                                      .where(ModelEvaluation.training_set_id == training_set.id)))
    assert measured == {tiny.id, candidate.id, second.result_model_id}
    assert second.result_model.training["validation"]["active"]["id"] == tiny.id
    assert retrained_folder_names(folders) == ["tiny-v2", "tiny-v3"]


# --- refusals before any work --------------------------------------------------------------


def refused(*args):
    with pytest.raises(training.TrainingRefused) as refusal:
        training.request_run(*args)
    db.session.rollback()
    assert db.session.scalar(select(func.count(TrainingRun.id))) == 0
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "trainingrun.start")) == 0
    return str(refusal.value)


def test_runs_are_refused_before_any_work(app, tiny, training_set, admin, tiny_model_dir):  # noqa: F811
    assert "no registered model #999" in refused(999, training_set.id, {}, admin)
    assert "no training set #999" in refused(tiny.id, 999, {}, admin)
    message = refused(tiny.id, training_set.id, {"epochs": 0, "learning_rate": "fast", "max_tokens": 1000,
                                                 "dropout": 0.5}, admin)
    assert "epochs: got 0" in message and "learning_rate: got 'fast'" in message
    assert "max_tokens: got 1000; tiny v1 reads at most 256 tokens" in message
    assert "dropout: not a setting of a training run" in message

    other = registry.register_folder(tiny_model_dir, kind="seed", name="other")
    registry.promote(other.id, admin, reason="to retire tiny", override=True)
    db.session.commit()
    assert "tiny v1 is retired" in refused(tiny.id, training_set.id, {}, admin)

    path = trainingsets.file_path(training_set)
    path.chmod(0o644)
    path.write_text(path.read_text().replace("the", "a"))
    assert "was changed after it was made" in refused(other.id, training_set.id, {}, admin)


def test_a_parent_changed_on_disk_after_queueing_fails_the_run_before_training(app, tiny, training_set, admin,
                                                                               tmp_path):
    copy = registry.register_folder(registry.model_folder(tiny), kind="seed", name="copy",
                                    copy_to=tmp_path / "copy")
    db.session.commit()
    run_id = training.request_run(copy.id, training_set.id, QUICK, admin).id
    db.session.commit()
    (tmp_path / "copy" / "config.json").write_text((tmp_path / "copy" / "config.json").read_text() + "\n")
    outcome, run = train(app, run_id)
    assert outcome == "failed" and run.status == "failed"
    assert "no longer match the hashes" in run.error and run.result_model_id is None


# --- cancelling ----------------------------------------------------------------------------


def test_cancelling_a_queued_run_is_at_once(app, tiny, training_set, admin):
    run_id = queue(tiny, training_set, admin)
    run = training.cancel_run(run_id, admin)
    db.session.commit()
    assert run.status == "cancelled" and run.finished_at is not None
    assert train(app, run_id)[0] is None  # no trainer takes it
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "trainingrun.cancel")).all()
    assert [(event.target_id, event.details["status"]) for event in events] == [(run_id, "queued")]


def test_cancelling_a_running_run_stops_its_trainer_and_registers_nothing(app, tiny, training_set, admin, folders):
    run_id = queue(tiny, training_set, admin, epochs=50, patience=50)

    def cancel_once(progress):
        if progress["step"] == 2 and progress["epoch"] == 1:
            with app.app_context():
                assert training.cancel_run(run_id, admin).status == "running"
                db.session.commit()

    outcome, run = train(app, run_id, on_progress=cancel_once)
    assert outcome == "cancelled" and run.status == "cancelled"
    assert run.cancel_requested and run.result_model_id is None and run.progress["epoch"] == 1
    assert db.session.scalar(select(func.count(WriterModel.id))) == 1
    assert retrained_folder_names(folders) == []


def test_a_trainer_that_lost_its_run_stops_and_registers_nothing(app, tiny, training_set, admin, folders):
    """A trainer whose lease ran out (a long pause, the database out of reach) while another
    claim ended its run hears so at its next report and keeps nothing."""
    run_id = queue(tiny, training_set, admin, epochs=50, patience=50)

    def lose_the_lease(progress):
        if progress["step"] == 1 and progress["epoch"] == 1:
            with app.app_context():
                db.session.execute(update(TrainingRun).values(lease_expires_at=func.now() - dt.timedelta(seconds=1)))
                db.session.commit()
                assert training.claim_run("another trainer", 60) is None  # ends the run, claims nothing

    outcome, run = train(app, run_id, on_progress=lose_the_lease)
    assert outcome == "lost"
    assert (run.status, run.error, run.result_model_id) == \
        ("failed", "The trainer stopped while training (attempt 1).", None)
    assert db.session.scalar(select(func.count(WriterModel.id))) == 1
    assert retrained_folder_names(folders) == []


def test_cancelling_a_finished_run_is_refused(app, tiny, training_set, admin):
    outcome, run = train(app, queue(tiny, training_set, admin, epochs=1, jit_compile=True))  # the XLA train step
    assert outcome == "succeeded" and run.settings["jit_compile"] is True
    with pytest.raises(training.RunFinished, match=f"Training run #{run.id} has already succeeded"):
        training.cancel_run(run.id, admin)
    db.session.rollback()
    with pytest.raises(training.RunNotFound):
        training.cancel_run(999, admin)


# --- a trainer killed mid-run --------------------------------------------------------------


def wait_for(condition, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        value = condition()
        db.session.rollback()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_trainer_killed_mid_run_leaves_the_run_failed_and_the_next_run_succeeds(app, database_url, tiny,
                                                                                   training_set, admin, folders):
    doomed = queue(tiny, training_set, admin, epochs=500, patience=500, batch_size=1)
    # What a trainer killed while saving its model leaves behind (one killed mid-epoch leaves nothing).
    leftover = folders / "retrainedmodels" / ".incomplete-999-0123456789abcdef"
    leftover.mkdir(parents=True)
    (leftover / "tf_model.h5").write_bytes(b"half a file")
    env = {**os.environ, "SRCFLASK_ENV": "development", "SECRET_KEY": "test", "DATABASE_URL": database_url,
           "FLASK_APP": "wsgi", "RETRAINED_MODELS_DIR": str(folders / "retrainedmodels"),
           "TRAINING_DATA_DIR": str(folders / "trainingsets"), "TRAINER_LEASE_SECONDS": "3",
           "TRAINER_POLL_SECONDS": "0.2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    trainer = subprocess.Popen([sys.executable, "-m", "flask", "model", "train", "--queued"], cwd=WEB_ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        progress = wait_for(lambda: db.session.get(TrainingRun, doomed).progress, what="the trainer's progress")
        # Mid-run: training has begun and is far from its 500 epochs. A fast machine may be past
        # epoch 1 by the first look (the poll is 0.2 s; an epoch of the tiny set can be shorter).
        assert 1 <= progress["epoch"] < progress["epochs"] == 500 and progress["steps"] == training_set.train_pairs
    finally:
        trainer.kill()  # SIGKILL: no cleanup of any kind
        output = trainer.communicate(timeout=30)[0]
    assert trainer.returncode == -9, output
    assert db.session.get(TrainingRun, doomed).status == "running"  # until its lease runs out
    wait_for(lambda: db.session.scalar(select(TrainingRun.lease_expires_at < func.now())
                                       .where(TrainingRun.id == doomed)), what="the lease to run out")

    following = queue(tiny, training_set, admin, epochs=1)
    Trainer().run(app, until_idle=True)
    db.session.expire_all()
    dead, next_run = db.session.get(TrainingRun, doomed), db.session.get(TrainingRun, following)
    assert (dead.status, dead.error, dead.result_model_id) == \
        ("failed", "The trainer stopped while training (attempt 1).", None)
    assert dead.attempts == 1  # not tried again
    assert next_run.status == "succeeded", next_run.error
    assert [(model.label, model.id) for model in db.session.scalars(
        select(WriterModel).where(WriterModel.kind == "retrained"))] == [("tiny v2", next_run.result_model_id)]
    assert retrained_folder_names(folders) == ["tiny-v2"]  # the leftover removed, the dead run left none


# --- the command ---------------------------------------------------------------------------


def test_flask_model_train_queues_a_run_and_trains_it_with_a_progress_bar(app, tiny, training_set, folders):
    result = app.test_cli_runner().invoke(args=[
        "model", "train", "--epochs", "2", "--batch-size", "4", "--learning-rate", "0.005", "--max-tokens", "64",
        "--seed", "3"])
    assert result.exit_code == 0, result.output
    run = db.session.scalars(select(TrainingRun)).one()
    assert (run.status, run.parent_id, run.training_set_id, run.requested_by_id) == \
        ("succeeded", tiny.id, training_set.id, None)  # the active model, the newest set, nobody logged in
    assert run.settings["epochs"] == 2 and run.settings["patience"] == app.config["TRAINING_PATIENCE"]
    assert f"Training run #{run.id}: tiny v1 on training set #{training_set.id}" in result.output
    assert "Registered tiny v2 as a candidate" in result.output and "Epoch" in result.stderr

    refused = app.test_cli_runner().invoke(args=["model", "train", "--parent", str(tiny.id),
                                                                  "--epochs", "0"])
    assert refused.exit_code == 1 and "epochs: got 0" in refused.stderr
    misused = app.test_cli_runner().invoke(args=["model", "train", "--queued", "--epochs", "2"])
    assert misused.exit_code == 2 and "--queued trains the runs queued" in misused.stderr
