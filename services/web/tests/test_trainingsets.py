"""Training sets from the editors' reviews: what goes in (approved autodocs only, each once,
split by document), that the same reviews give the same bytes, the refusals, that a set's
file is never changed unnoticed, and `flask model dataset`."""
import hashlib
import json
import shutil
import stat
import uuid

import pytest
from sqlalchemy import func, select, update

from srcflask.extensions import db
from srcflask.models import AuditEvent, Document, TrainingSet, User, Verdict
from srcflask.services import registry, reviews, trainingsets
from srcflask.services.archive import archive_document
from srcflask.services.documents import update_document
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, make_user, write_autodocs
from .tinygpt2 import tiny_model_dir  # noqa: F401  (the fixture)


@pytest.fixture
def sets_dir(app, tmp_path, monkeypatch):
    """Where this test's training-set files go."""
    folder = tmp_path / "trainingsets"
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def tiny_model(app, tiny_model_dir):  # noqa: F811
    """The tiny GPT-2, registered (the first model registered is the active one): its id."""
    with app.app_context():
        model = registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
        db.session.commit()
        return model.id


@pytest.fixture
def people(app_context):
    """(sponsor, editor) of the documents under review."""
    return make_user("sponsor"), make_user("editor")


def written(people, title, body=None, continuation=None):
    """A new document whose first autodoc is written: (document id, autodoc id)."""
    sponsor, editor = people
    document = make_document(sponsor, editor, title=title, body=body or f"The body of {title}, café ✓.")
    [autodoc_id] = write_autodocs(continuation if continuation is not None else f"{title} goes on — naïvely.")
    return document.id, autodoc_id


def rewritten(people, document_id, body):
    """The document saved again and its new autodoc written: the new autodoc's id."""
    document = db.session.get_one(Document, document_id)
    update_document(document, document.version, document.title, body, db.session.get_one(User, people[0].id))
    db.session.commit()
    [autodoc_id] = write_autodocs(f"After the edit: {body}")
    return autodoc_id


def judge(people, autodoc_id, decision, comment="", correction=None):
    """The editor's verdict through the service, with the correction the review form stores."""
    verdict = reviews.give_verdict(db.session.get_one(Autodoc, autodoc_id), db.session.get_one(User, people[1].id),
                                   decision, comment)
    if correction is not None:
        db.session.execute(update(Verdict).where(Verdict.id == verdict.id).values(correction=correction))
    db.session.commit()


def approved_documents(people, count, prefix="Approved"):
    """`count` documents with one approved autodoc each: {autodoc id: document id}."""
    approved = {}
    for number in range(count):
        document_id, autodoc_id = written(people, f"{prefix} {number}")
        judge(people, autodoc_id, "approve")
        approved[autodoc_id] = document_id
    return approved


def archived_approval(people):
    """A document with an approved autodoc, archived by its sponsor."""
    document_id, autodoc_id = written(people, "Archived")
    judge(people, autodoc_id, "approve")
    archive_document(db.session.get_one(Document, document_id), db.session.get_one(User, people[0].id))
    db.session.commit()


def build():
    training_set = trainingsets.build()
    db.session.commit()
    return training_set


def count_tokens(tokenizer, pairs):
    return sum(len(tokenizer(text, split_special_tokens=True)["input_ids"])
               for pair in pairs for text in (pair["prompt"], pair["continuation"]))


# --- what a set holds -----------------------------------------------------------------------

def test_a_set_holds_every_approved_pair_once_split_by_document(
        people, sets_dir, tiny_model, tiny_model_dir):  # noqa: F811
    approved = approved_documents(people, 5)
    # Two approved versions of one document: two pairs, always on the same side.
    document_id, first = written(people, "Two versions")
    judge(people, first, "approve")
    # Text that looks like a special token is counted as the plain text it is.
    second = rewritten(people, document_id, "The second version of the body, <|endoftext|> included.")
    judge(people, second, "approve")
    approved |= {first: document_id, second: document_id}
    # Rejected first, then approved: the approval is the current verdict.
    document_id, changed_mind = written(people, "Rejected, then approved")
    judge(people, changed_mind, "reject", "Not like this.")
    judge(people, changed_mind, "approve")
    approved[changed_mind] = document_id
    # Left out: rejected, sent back, approved then rejected (a superseded verdict), approved
    # but archived, approved but empty.
    judge(people, written(people, "Rejected")[1], "reject", "No.")
    judge(people, written(people, "Sent back")[1], "request_changes", "Shorter, please.")
    superseded = written(people, "Approved, then rejected")[1]
    judge(people, superseded, "approve")
    judge(people, superseded, "reject", "On second thought, no.")
    archived_approval(people)
    judge(people, written(people, "Empty", continuation="  \n ")[1], "approve")

    training_set = build()

    train = trainingsets.read_pairs(training_set, "train")
    validation = trainingsets.read_pairs(training_set, "validation")
    assert sorted(pair["autodoc_id"] for pair in train + validation) == sorted(approved)
    texts = {row.id: (row.prompt, row.continuation)
             for row in db.session.execute(select(Autodoc.id, Autodoc.prompt, Autodoc.continuation))}
    for pair in train + validation:
        assert pair["document_id"] == approved[pair["autodoc_id"]]
        assert (pair["prompt"], pair["continuation"]) == texts[pair["autodoc_id"]]
    train_documents = {pair["document_id"] for pair in train}
    validation_documents = {pair["document_id"] for pair in validation}
    assert not train_documents & validation_documents
    # 7 documents: a fifth (1.4) rounds to 1, below the minimum of 2 for validation.
    assert (training_set.train_documents, training_set.validation_documents) == (5, 2)
    assert (len(train_documents), len(validation_documents)) == (5, 2)
    assert (training_set.train_pairs, training_set.validation_pairs) == (len(train), len(validation))
    assert training_set.train_pairs + training_set.validation_pairs == 8

    from transformers import GPT2TokenizerFast

    tokenizer = GPT2TokenizerFast.from_pretrained(str(tiny_model_dir))
    assert training_set.train_tokens == count_tokens(tokenizer, train) > 0
    assert training_set.validation_tokens == count_tokens(tokenizer, validation) > 0
    assert training_set.tokenizer_model_id == tiny_model
    assert training_set.verdicts == ["approve"]
    assert training_set.seed == 1234
    assert training_set.last_verdict_id == db.session.scalar(select(func.max(Verdict.id)))
    assert training_set.created_by_id is None
    path = trainingsets.file_path(training_set)
    assert path == sets_dir / f"{training_set.sha256}.jsonl"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == training_set.sha256
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [line["split"] for line in lines] == ["train"] * len(train) + ["validation"] * len(validation)
    assert list(lines[0]) == ["split", "document_id", "autodoc_id", "prompt", "continuation", "source"]
    assert {line["source"] for line in lines} == {"approved"} and training_set.corrections == 0
    assert "café ✓" in path.read_text("utf-8")  # UTF-8, not \u escapes
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "trainingset.build"))
    assert (event.actor_id, event.target_type, event.target_id) == (None, "training_set", training_set.id)
    assert event.details["sha256"] == training_set.sha256


def test_a_correction_is_the_target_instead_of_the_writers_text(people, sets_dir, tiny_model):
    approved = approved_documents(people, 3)
    sent_back = written(people, "Sent back")[1]
    judge(people, sent_back, "request_changes", "Shorter.", correction=" It reads shorter — naïvely.")
    rejected = written(people, "Rejected")[1]
    judge(people, rejected, "reject", "Wrong.", correction=" It reads right.")
    # Left out: a rejection without a correction, a correction of whitespace only, one an
    # approval replaced, and one on an archived document.
    judge(people, written(people, "Plain rejection")[1], "reject", "No.")
    judge(people, written(people, "Blank correction")[1], "request_changes", "Fill it.", correction=" \n\t")
    replaced = written(people, "Corrected, then approved")[1]
    judge(people, replaced, "reject", "No.", correction=" Replaced correction.")
    judge(people, replaced, "approve")
    approved[replaced] = None
    archived = written(people, "Archived correction")
    judge(people, archived[1], "reject", "No.", correction=" Archived.")
    archive_document(db.session.get_one(Document, archived[0]), db.session.get_one(User, people[0].id))
    db.session.commit()

    training_set = build()
    pairs = trainingsets.read_pairs(training_set, "train") + trainingsets.read_pairs(training_set, "validation")
    targets = {pair["autodoc_id"]: pair["continuation"] for pair in pairs}
    continuations = dict(db.session.execute(select(Autodoc.id, Autodoc.continuation)).all())
    assert targets == {**{autodoc_id: continuations[autodoc_id] for autodoc_id in approved},
                       sent_back: " It reads shorter — naïvely.", rejected: " It reads right."}
    assert training_set.corrections == 2
    assert training_set.train_pairs + training_set.validation_pairs == 6
    lines = [json.loads(line) for line in trainingsets.file_path(training_set).read_text("utf-8").splitlines()]
    assert {line["autodoc_id"]: line["source"] for line in lines} == {
        **dict.fromkeys(approved, "approved"), sent_back: "correction", rejected: "correction"}
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "trainingset.build"))
    assert event.details["corrections"] == 2

    # The same reviews, the same bytes: a rebuild is refused as a repeat.
    with pytest.raises(trainingsets.NotEnoughReviews, match="already holds exactly these approved and corrected"):
        trainingsets.build()
    db.session.rollback()


@pytest.mark.parametrize(("settings", "sides"), [
    ({}, (8, 2)),
    ({"TRAINING_VALIDATION_SHARE": 0.5}, (5, 5)),
    ({"TRAINING_MIN_VALIDATION_DOCUMENTS": 4}, (6, 4)),
])
def test_the_validation_side_is_its_share_of_the_documents_and_at_least_the_minimum(
        app, people, sets_dir, tiny_model, monkeypatch, settings, sides):
    for name, value in settings.items():
        monkeypatch.setitem(app.config, name, value)
    approved_documents(people, 10)
    training_set = build()
    assert (training_set.train_documents, training_set.validation_documents) == sides


def test_the_same_reviews_give_the_same_file_byte_for_byte(people, sets_dir, tiny_model):
    approved_documents(people, 6)
    first = build()
    sha256, path = first.sha256, trainingsets.file_path(first)
    content = path.read_bytes()

    with pytest.raises(trainingsets.NotEnoughReviews, match=r"Training set #1 already holds exactly these"):
        trainingsets.build()
    db.session.rollback()
    assert db.session.scalar(select(func.count(TrainingSet.id))) == 1

    # Forget the set and its file: the same reviews build the same bytes again.
    db.session.delete(first)
    db.session.commit()
    path.unlink()
    again = build()
    assert again.sha256 == sha256
    assert trainingsets.file_path(again).read_bytes() == content

    # Another approval is another set.
    approved_documents(people, 1, prefix="Later")
    assert build().sha256 != again.sha256


# --- refusals -------------------------------------------------------------------------------

def refusal(sets_dir, error=trainingsets.NotEnoughReviews):
    """Build, expecting `error`; check that nothing was left behind (no row, no file) and
    return the error."""
    with pytest.raises(error) as refused:
        trainingsets.build()
    db.session.rollback()
    assert db.session.scalar(select(func.count(TrainingSet.id))) == 0
    assert not sets_dir.exists()
    return refused.value


def test_no_approved_autodocs_is_refused_saying_how_many_documents_it_takes(people, sets_dir, tiny_model):
    judge(people, written(people, "Rejected")[1], "reject", "No.")
    refused = refusal(sets_dir)
    assert refused.needed == 4
    assert str(refused) == (
        "No approved autodocs yet: a training set is made of the autodocs editors approved (or corrected), from at "
        "least 4 documents (2 for training and 2 for validation). Approve autodocs of 4 documents first.")


def test_too_few_documents_for_a_validation_side_is_refused_with_the_number_needed(
        app, people, sets_dir, tiny_model, monkeypatch):
    approved = approved_documents(people, 3)
    judge(people, rewritten(people, next(iter(approved.values())), "A second version."), "approve")
    archived_approval(people)  # does not count

    refused = refusal(sets_dir)
    assert refused.needed == 1
    assert str(refused) == (
        "Approved (or corrected) autodocs come from 3 documents; a training set needs at least 4 (2 for training "
        "and 2 for validation). Approve autodocs of 1 more document first.")
    monkeypatch.setitem(app.config, "TRAINING_MIN_VALIDATION_DOCUMENTS", 3)
    refused = refusal(sets_dir)
    assert refused.needed == 2
    assert str(refused).endswith("Approve autodocs of 2 more documents first.")


def test_without_an_installed_model_no_set_is_made(people, sets_dir):
    approved_documents(people, 4)
    assert str(refusal(sets_dir, trainingsets.NoTokenizer)).startswith("No model is installed")


# --- a set never changes --------------------------------------------------------------------

def test_the_file_is_read_only_and_a_changed_or_missing_file_is_caught(people, sets_dir, tiny_model):
    approved_documents(people, 4)
    training_set = build()
    path = trainingsets.file_path(training_set)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert [entry.name for entry in sets_dir.iterdir()] == [path.name]  # no temporary file left
    assert trainingsets.verify_file(training_set) == path.read_bytes()

    path.chmod(0o644)
    path.write_text(path.read_text("utf-8").replace("naïvely", "naively"), "utf-8")
    with pytest.raises(trainingsets.TrainingSetChanged, match=r"was changed after it was made"):
        trainingsets.verify_file(training_set)
    with pytest.raises(trainingsets.TrainingSetChanged):
        trainingsets.read_pairs(training_set, "train")
    path.unlink()
    with pytest.raises(trainingsets.TrainingSetChanged, match=r"is missing"):
        trainingsets.read_pairs(training_set, "validation")


def test_reviews_since_the_newest_set_count_every_verdict_after_it(people, sets_dir, tiny_model):
    assert trainingsets.reviews_since_newest() == 0
    approved = approved_documents(people, 5)
    assert trainingsets.reviews_since_newest() == 5
    build()
    assert trainingsets.reviews_since_newest() == 0

    judge(people, written(people, "Rejected")[1], "reject", "No.")
    judge(people, next(iter(approved)), "request_changes", "Shorter, please.")  # replaces an approval
    assert trainingsets.reviews_since_newest() == 2
    newer = build()
    assert newer.train_pairs + newer.validation_pairs == 4
    assert trainingsets.reviews_since_newest() == 0


# --- flask model dataset --------------------------------------------------------------------

def test_flask_model_dataset_prints_the_set_or_the_refusal(app, sets_dir, tiny_model):
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["model", "dataset"])
    assert refused.exit_code == 1
    assert "No approved autodocs yet" in refused.output

    with app.app_context():
        approved_documents((make_user("sponsor"), make_user("editor")), 10)
    result = runner.invoke(args=["model", "dataset"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        training_set = db.session.scalar(select(TrainingSet))
        assert result.output.splitlines()[0] == f"Training set #{training_set.id}, sha256 {training_set.sha256}"
        assert f"training:   8 documents, 8 pairs, {training_set.train_tokens:,} tokens" in result.output
        assert f"validation: 2 documents, 2 pairs, {training_set.validation_tokens:,} tokens" in result.output
        assert str(trainingsets.file_path(training_set)) in result.output
        assert training_set.created_by_id is None

    again = runner.invoke(args=["model", "dataset"])
    assert again.exit_code == 1
    assert "Training set #1 already holds exactly these approved and corrected autodocs" in again.output


def test_a_set_in_the_apps_data_folder_is_recorded_relative_to_it(app, people, tiny_model, monkeypatch):
    folder = trainingsets.DATA_ROOT / "processed_data" / "trainingsets" / f"test-{uuid.uuid4().hex}"
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(folder))
    approved_documents(people, 4)
    try:
        training_set = build()
        assert training_set.path == f"processed_data/trainingsets/{folder.name}/{training_set.sha256}.jsonl"
        assert trainingsets.read_pairs(training_set, "validation")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
