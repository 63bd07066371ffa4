"""Training sets: the editors' approvals and corrections, frozen into files a model can be
retrained on.

A training set is every reviewed autodoc whose current verdict gives a text to learn (it
was written, its document is not archived) as a pair: the prompt exactly as the writer
built it (Autodoc.prompt) and a target. The target is the continuation the editor
approved, or — when the editor sent the autodoc back or rejected it and wrote how it
should have read — that correction instead of the writer's text: the text the model should
have written for that prompt. A target that is empty leaves the pair out. Each line of the
file says which its target is (`source`: "approved" or "correction"); the set's row counts
the corrections. Pairs are split
into a training and a validation side BY DOCUMENT: every autodoc of one document lands on
the same side, so a model is never measured on a document it was trained on (autodocs of
successive versions of one document share most of their words).

The same reviews always give the same set, byte for byte: rows are read in id order, the
document ids are sorted and then shuffled with a fixed seed (TRAINING_SET_SEED), and the
file is written with a fixed key order. Its sha256 is the set's identity: a build that
would repeat an existing set is refused rather than stored twice.

A set is written once, as one JSON Lines file named by its sha256 under TRAINING_DATA_DIR:
to a temporary file in the same folder, made read-only, then renamed into place, so a
reader never sees half a file. Its row records the hash; verify_file and read_pairs check
the file against it, so a training run never trains on a file changed after it was made.

Tokens are counted with the active model's tokenizer (the one retraining starts from).
Functions here flush, never commit: the caller commits once.
"""
import hashlib
import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import case, func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Retention, TrainingSet, Verdict
from ..static.data.processeddata.models import Autodoc, Revision
from . import audit, registry

# Set paths are stored relative to this folder when inside it (the installation can move).
DATA_ROOT = Path(__file__).resolve().parent.parent / "static" / "data"
# The decisions whose writer's text is a target; a correction is one on any other decision.
VERDICTS = ("approve",)
SPLITS = ("train", "validation")
SOURCES = ("approved", "correction")
WHITESPACE = " \t\n\r\f\v"


class TrainingSetError(ValueError):
    """A training set that cannot be made or used; the message is for the person who asked."""


class NotEnoughReviews(TrainingSetError):
    """Too few approved or corrected autodocs (or documents) for a training set; `needed` is
    how many more documents with one it takes."""

    def __init__(self, message, needed):
        self.needed = needed
        super().__init__(message)


class NoTokenizer(TrainingSetError):
    """No active model, or one whose folder changed: no tokenizer to count the set's tokens with."""


class TrainingSetChanged(TrainingSetError):
    """The set's file is missing, or no longer what was hashed when the set was made."""


@dataclass(frozen=True)
class _Pair:
    autodoc_id: int
    document_id: int
    prompt: str
    continuation: str  # the target: the approved continuation, or the editor's correction
    source: str  # "approved" or "correction"


def build(created_by=None):
    """Make a training set from the reviews as they are now, write its file and add its row
    (audited, as `created_by`: a User, or None for the console). Raises NotEnoughReviews
    with how many more documents need an approved or corrected autodoc (or when an existing set already
    holds exactly these pairs), NoTokenizer when no unchanged model is active, before
    writing anything."""
    config = current_app.config
    # Two builds at once (a double click, two admins) take turns: the second then finds the
    # first's set and is told so, instead of both passing the "same pairs" check below.
    registry.serialise()
    # The newest verdict first, and only verdicts up to it after: the set holds no verdict
    # newer than the one it says it has seen (reviews_since_newest counts from there).
    last_verdict_id = db.session.scalar(select(func.max(Verdict.id))) or 0
    pairs = [_Pair(row.autodoc_id, row.document_id, row.prompt, row.target, row.source)
             for row in db.session.execute(pairs_select().where(Verdict.id <= last_verdict_id))]
    train_ids, validation_ids = _split(sorted({pair.document_id for pair in pairs}), config)
    train = [pair for pair in pairs if pair.document_id in train_ids]
    validation = [pair for pair in pairs if pair.document_id in validation_ids]
    content = "".join([_line("train", pair) for pair in train] +
                      [_line("validation", pair) for pair in validation]).encode("utf-8")
    sha256 = hashlib.sha256(content).hexdigest()
    same = db.session.scalar(select(TrainingSet.id).where(TrainingSet.sha256 == sha256).limit(1))
    if same is not None:
        raise NotEnoughReviews(f"Training set #{same} already holds exactly these approved and corrected autodocs: "
                               "train on it, or review more autodocs first.", needed=1)
    model, tokenizer = _tokenizer()
    path = _write_once(Path(config["TRAINING_DATA_DIR"]) / f"{sha256}.jsonl", content)
    training_set = TrainingSet(
        path=_stored_path(path), sha256=sha256, verdicts=list(VERDICTS), seed=config["TRAINING_SET_SEED"],
        train_documents=len(train_ids), train_pairs=len(train), train_tokens=_tokens(tokenizer, train),
        validation_documents=len(validation_ids), validation_pairs=len(validation),
        validation_tokens=_tokens(tokenizer, validation), tokenizer_model_id=model.id,
        corrections=sum(pair.source == "correction" for pair in pairs),
        last_verdict_id=last_verdict_id, created_by_id=created_by.id if created_by is not None else None,
    )
    db.session.add(training_set)
    db.session.flush()
    audit.record(created_by, "trainingset.build", "training_set", training_set.id, sha256=sha256,
                 path=training_set.path, last_verdict_id=last_verdict_id,
                 train_documents=training_set.train_documents, train_pairs=training_set.train_pairs,
                 validation_documents=training_set.validation_documents,
                 validation_pairs=training_set.validation_pairs, corrections=training_set.corrections)
    return training_set


def reviewed_select(*columns):
    """SELECT `columns` of every written autodoc (with its prompt) of a document that is not
    archived, joined with its current verdict and its revision, by autodoc id: what training
    sets and the training exports (services/training_exports.py) read, each with its own
    conditions."""
    return (
        select(*columns).select_from(Autodoc)
        .join(Verdict, (Verdict.autodoc_id == Autodoc.id) & Verdict.current)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Retention, Retention.document_id == Revision.document_id)
        .where(Autodoc.status == "done", Retention.archived_at.is_(None), Autodoc.prompt.is_not(None))
        .order_by(Autodoc.id)
    )


def pairs_select(*columns):
    """The SELECT of the pairs a training set takes, by autodoc id: autodoc_id, document_id,
    prompt, target and source (then `columns`), of every reviewed autodoc (reviewed_select)
    whose current verdict approves it or carries a correction, and whose target has text.
    The supervised export reads the same pairs, with columns of its own."""
    corrected = Verdict.correction.is_not(None)
    # The database holds that a correction never goes with an approval.
    target = func.coalesce(Verdict.correction, Autodoc.continuation)
    return reviewed_select(
        Autodoc.id.label("autodoc_id"), Revision.document_id, Autodoc.prompt, target.label("target"),
        case((corrected, SOURCES[1]), else_=SOURCES[0]).label("source"), *columns,
    ).where(Verdict.decision.in_(VERDICTS) | corrected, has_text(target))


def has_text(column):
    """The SQL condition that `column` holds more than whitespace: a text without any
    teaches nothing. Said in SQL (trim with the characters named, which PostgreSQL and
    SQLite both read alike) so that what the exports count is what they stream."""
    return func.trim(column, WHITESPACE) != ""


def _split(document_ids, config):
    """(training ids, validation ids) as sets: the sorted ids shuffled with the seed, the
    first share of them for validation. Raises NotEnoughReviews below the minimums."""
    have = len(document_ids)
    need = _documents_needed(have, config)
    if need > have:
        sides = (f"{config['TRAINING_MIN_TRAIN_DOCUMENTS']} for training and "
                 f"{config['TRAINING_MIN_VALIDATION_DOCUMENTS']} for validation")
        more = need - have
        if not have:
            message = (f"No approved autodocs yet: a training set is made of the autodocs editors approved (or "
                       f"corrected), from at least {need} documents ({sides}). Approve autodocs of {more} documents "
                       "first.")
        else:
            message = (f"Approved (or corrected) autodocs come from {have} document{'s' if have != 1 else ''}; a training set needs "
                       f"at least {need} ({sides}). Approve autodocs of {more} more document"
                       f"{'s' if more != 1 else ''} first.")
        raise NotEnoughReviews(message, needed=more)
    shuffled = list(document_ids)
    random.Random(config["TRAINING_SET_SEED"]).shuffle(shuffled)
    validation = _validation_count(have, config)
    return set(shuffled[validation:]), set(shuffled[:validation])


def _validation_count(documents, config):
    return max(config["TRAINING_MIN_VALIDATION_DOCUMENTS"], round(documents * config["TRAINING_VALIDATION_SHARE"]))


def _documents_needed(have, config):
    """The fewest documents, `have` or more, whose split leaves both sides their minimum."""
    need = max(have, config["TRAINING_MIN_VALIDATION_DOCUMENTS"] + config["TRAINING_MIN_TRAIN_DOCUMENTS"])
    while need - _validation_count(need, config) < config["TRAINING_MIN_TRAIN_DOCUMENTS"]:
        need += 1
    return need


def _line(split, pair):
    return json.dumps({"split": split, "document_id": pair.document_id, "autodoc_id": pair.autodoc_id,
                       "prompt": pair.prompt, "continuation": pair.continuation, "source": pair.source},
                      ensure_ascii=False) + "\n"


def _tokenizer():
    """(the active model, its tokenizer). Raises NoTokenizer when no model is installed."""
    model = registry.active_model()
    if model is None:
        raise NoTokenizer("No model is installed: a training set counts its tokens with the active model's "
                          "tokenizer. Install one first (flask writer fetch, or flask model register PATH).")
    try:
        registry.verify(model)  # only registered, unchanged folders are read
    except registry.ModelIntegrityError as error:
        raise NoTokenizer(f"{error} A training set counts its tokens with the active model's tokenizer: "
                          "restore the folder or activate another model first.") from None
    from transformers import GPT2TokenizerFast  # heavy: imported when a set is made, not with the app

    return model, GPT2TokenizerFast.from_pretrained(str(registry.model_folder(model)))


def _tokens(tokenizer, pairs):
    """The prompts' and continuations' tokens, each text tokenized on its own as the trainer
    does (static/src/pipeline/finetune.py: text that looks like a special token is plain
    text), before the trainer's end-of-text token and any cut to its window."""
    texts = [text for pair in pairs for text in (pair.prompt, pair.continuation)]
    return sum(len(ids) for ids in tokenizer(texts, split_special_tokens=True)["input_ids"]) if texts else 0


def _write_once(path, content):
    """Write `content` at `path` atomically and read-only: a temporary file in the same
    folder, flushed to disk, made read-only, then renamed over the name. The name is the
    content's hash, so a file left there by a build that was rolled back is the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o444)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _stored_path(path):
    """`path` relative to the data folder when inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(DATA_ROOT)) if path.is_relative_to(DATA_ROOT) else str(path)


def file_path(training_set):
    """The absolute path of the set's file."""
    return DATA_ROOT / training_set.path  # an absolute stored path stays as it is


def verify_file(training_set):
    """Raise TrainingSetChanged unless the set's file is there, as it was hashed; return its bytes."""
    path = file_path(training_set)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise TrainingSetChanged(f"The file of training set #{training_set.id} is missing ({path}); "
                                 "build a new training set.") from None
    if hashlib.sha256(content).hexdigest() != training_set.sha256:
        raise TrainingSetChanged(f"The file of training set #{training_set.id} ({path}) was changed after it was "
                                 "made: its sha256 no longer matches. Build a new training set.")
    return content


def read_pairs(training_set, split):
    """The pairs of one side ("train" or "validation") of the set, in the file's order, each
    {"prompt", "continuation", "document_id", "autodoc_id"} ("continuation" is the target:
    what the model learns to write after the prompt, an editor's correction where there is
    one); the file is checked against its hash in the same read (TrainingSetChanged)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: expected one of {', '.join(SPLITS)}.")
    pairs = []
    for line in verify_file(training_set).decode("utf-8").splitlines():
        row = json.loads(line)
        if row["split"] == split:
            pairs.append({key: row[key] for key in ("prompt", "continuation", "document_id", "autodoc_id")})
    return pairs


def sets_query():
    """Every training set, newest first, with its maker in the same query."""
    return select(TrainingSet).options(joinedload(TrainingSet.created_by)).order_by(TrainingSet.id.desc())


def reviews_since_newest():
    """How many verdicts (any decision) were given after the newest training set was made:
    all of them while there is none."""
    seen = select(TrainingSet.last_verdict_id).order_by(TrainingSet.id.desc()).limit(1).scalar_subquery()
    return db.session.scalar(select(func.count(Verdict.id)).where(Verdict.id > func.coalesce(seen, 0)))
