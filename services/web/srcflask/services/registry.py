"""The model registry: every GPT-2 the writers may use, which one is active, and how it got there.

A model is a folder in save_pretrained layout with TF weights (seed: fetched or copied in;
retrained: made by the trainer) and a `models` row. Registration hashes each file once
(sha256); the writer checks the folder against those hashes before it loads it (`verify`) and
refuses a changed one, recording why on the row (`integrity_error`). Folders are only ever
read by transformers' from_pretrained without remote code, so a model folder can hold weights
and tokenizer files but never code that runs.

Exactly one model is active: a partial unique index on models.state enforces it in the
database. Changes to which model is active (promote, rollback) and registrations run one at a
time: on PostgreSQL each takes a transaction-level advisory lock and then locks the rows it
reads (FOR UPDATE), so two admins acting at the same moment each get one clear outcome —
the second sees the first one's result — and the index is the last word if anything else
tried. Every promotion, override and rollback is audited with who and why, in the same
transaction.

The promotion gate: a candidate is promoted only when its validation perplexity beats the
active model's on the candidate's own training set (both figures from model_evaluations,
written by the trainer) and, when PROMOTION_MIN_COMPARISONS is above 0, when editors have
compared its drafts blind with the active model's at least that many times and the lower
end of the 95 % interval of its win rate is above PROMOTION_MIN_WIN_LOWER_BOUND
(services/win_rate.py): a lower perplexity says the candidate fits the approved texts
better, the comparisons that editors find it writes better. Otherwise it is promoted only
with an override and a written reason.

Functions here flush, never commit: the caller (a view, a command, the writer) commits once.
"""
import hashlib
import os
import re
import shutil
import statistics
import tempfile
from inspect import signature
from pathlib import Path

from flask import current_app
from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import aliased, joinedload

from ..extensions import db
from ..models import ModelEvaluation, Verdict, WriterModel
from ..static.data.processeddata.models import Autodoc
from ..static.mlmodels.seedmlmodels.headmodel import ModelNotInstalled, registrable_config
from ..static.src.evaluation.autodocwriter import AutodocWriter
from . import audit, leases, win_rate

MLMODELS = Path(__file__).resolve().parents[1] / "static" / "mlmodels"
# A family name doubles as a folder name in SEED_MODELS_DIR.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
KINDS = ("seed", "retrained")
SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size")
# Any fixed number: the key of the PostgreSQL advisory lock that runs registry changes one at a time.
REGISTRY_LOCK = 150_001


class RegistryError(ValueError):
    """A registry action refused; the message is a sentence for the person who asked."""


class ModelNotFound(RegistryError):
    pass


class NotACandidate(RegistryError):
    pass


class AlreadyActive(RegistryError):
    pass


class GateRefused(RegistryError):
    """The candidate does not beat the active model (its validation perplexity, or the
    editors' blind comparisons when the gate asks for them; or it cannot be compared with
    it), or an override came without a reason."""


class ModelIntegrityError(RegistryError):
    """The model's folder no longer holds the files registered."""


class NotAModelFolder(RegistryError):
    pass


class NameTaken(RegistryError):
    pass


def seed_folder(name):
    """Where a seed model named `name` is copied or downloaded (SEED_MODELS_DIR/<name>)."""
    return Path(current_app.config["SEED_MODELS_DIR"]) / name


def models_query():
    """Every registered model, newest first, with its parent and its maker in the same query
    (the Models page and the API list them)."""
    return (select(WriterModel).options(joinedload(WriterModel.parent), joinedload(WriterModel.created_by))
            .order_by(WriterModel.created_at.desc(), WriterModel.id.desc()))


def model_folder(model):
    """The model's folder as an absolute path."""
    path = Path(model.path)
    return path if path.is_absolute() else MLMODELS / path


def _stored_path(folder):
    """Relative to static/mlmodels/ when inside it (the app may be moved), absolute otherwise."""
    folder = folder.resolve()
    try:
        return str(folder.relative_to(MLMODELS.resolve()))
    except ValueError:
        return str(folder)


def hash_folder(folder):
    """{relative file name: sha256} of every file in `folder` (recursively). Hidden files and
    folders (a download's `.cache`) are left out: from_pretrained reads none of them."""
    folder = Path(folder)
    hashes = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        hashes[relative.as_posix()] = digest.hexdigest()
    return hashes


def parameter_count(config):
    """GPT-2's trainable parameters from its config (the LM head shares the token embedding):
    124,439,808 for gpt2. Counted from the shape so that registering reads no weights twice."""
    n, inner = config["n_embd"], config.get("n_inner") or 4 * config["n_embd"]
    layer = (2 * n) + (n * 3 * n + 3 * n) + (n * n + n) + (2 * n) + (n * inner + inner) + (inner * n + n)
    return config["vocab_size"] * n + config["n_positions"] * n + config["n_layer"] * layer + 2 * n


def generation_settings():
    """The writer's generation settings as they are now, recorded with each registered model."""
    defaults = signature(AutodocWriter).parameters
    return {"num_beams": defaults["num_beams"].default,
            "no_repeat_ngram_size": defaults["no_repeat_ngram_size"].default,
            "early_stopping": True,
            "max_new_tokens": current_app.config["WRITER_MAX_NEW_TOKENS"],
            "context_tokens": current_app.config["WRITER_CONTEXT_TOKENS"]}


def next_version(name):
    """The version the next model of family `name` gets (1 for a new family)."""
    return (db.session.scalar(select(func.max(WriterModel.version)).where(WriterModel.name == name)) or 0) + 1


def serialise():
    """Run registry changes one at a time, until the caller's transaction ends (PostgreSQL;
    SQLite has a single writer anyway): promotions, rollbacks, registrations and the making
    of training sets, whose checks would otherwise race."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(select(func.pg_advisory_xact_lock(REGISTRY_LOCK)))


def register_folder(path, *, kind, name, parent=None, created_by=None, training=None, training_set=None,
                    copy_to=None):
    """Register the GPT-2 folder at `path` (copied to `copy_to` first when given) and return
    its row. Hashes every file once, reads the shape from config.json. A seed starts a family
    (`name` must be new); a retrained model continues its family with the next version. The
    first model ever registered becomes active; every other one is a candidate. Refuses a
    folder that is not a save_pretrained GPT-2 with TF weights (NotAModelFolder) and a name or
    destination already taken (NameTaken), before copying anything. Flushes; the caller
    commits (and, with `copy_to`, removes the copy if its commit fails)."""
    if kind not in KINDS:
        raise RegistryError(f"Unknown kind of model {kind!r}: it is one of {', '.join(KINDS)}.")
    if not NAME.fullmatch(name or ""):
        raise RegistryError(f"{name!r} cannot name a model: use letters, digits, '.', '_' and '-' "
                            "(up to 100, starting with a letter or digit).")
    source = Path(path).resolve()
    try:
        config = registrable_config(source)
    except ModelNotInstalled as error:
        raise NotAModelFolder(str(error)) from None
    serialise()
    if kind == "seed":
        check_new_seed(name)
    folder = source
    if copy_to is not None:
        folder = Path(copy_to).resolve()
        if folder.exists():
            raise NameTaken(f"{folder} already exists; choose another name or remove the folder.")
        _copy_folder(source, folder)
    try:
        model = _add(folder, config, kind=kind, name=name, parent=parent, created_by=created_by,
                     training=training, training_set=training_set)
    except BaseException:
        if copy_to is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return model


def check_new_seed(name, folder=None):
    """Raise NameTaken when a model named `name` is registered (a seed starts a family), or a
    registered model lives in `folder` (new files there would break its hashes)."""
    if db.session.scalar(select(WriterModel.id).where(WriterModel.name == name).limit(1)):
        raise NameTaken(f"A model named {name} is already registered; choose another name.")
    if folder is not None:
        stored = _stored_path(Path(folder))
        taken = db.session.scalar(select(WriterModel).where(WriterModel.path == stored).limit(1))
        if taken is not None:
            raise NameTaken(f"{folder} holds the registered model {taken.label}: its files must not change. "
                            "Fetch into another folder (`--model NAME`).")


def _copy_folder(source, target):
    """Copy into a hidden folder beside `target`, then rename: a copy cut short never looks
    like a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-copy-", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True,
                        ignore=lambda directory, names: [name for name in names if name.startswith(".")])
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _add(folder, config, *, kind, name, parent, created_by, training, training_set):
    files = hash_folder(folder)
    first = db.session.scalar(select(WriterModel.id).limit(1)) is None
    model = WriterModel(
        name=name, version=next_version(name), kind=kind, parent_id=parent.id if parent is not None else None,
        path=_stored_path(folder), files=files,
        size_bytes=sum((folder / relative).stat().st_size for relative in files),
        parameters=parameter_count(config), shape={key: config[key] for key in SHAPE_KEYS},
        generation=generation_settings(), training=training,
        training_set_id=training_set.id if training_set is not None else None,
        state="active" if first else "candidate", promoted_at=func.now() if first else None,
        created_by_id=created_by.id if created_by is not None else None,
    )
    db.session.add(model)
    db.session.flush()
    audit.record(created_by, "model.register", "model", model.id, label=model.label, kind=kind,
                 path=model.path, state=model.state)
    return model


def adopt_installed(path):
    """The upgrade path: when no model is registered yet, register the folder at `path` (an
    existing installation's WRITER_MODEL_DIR) in place as the first seed model, which makes
    it active. Returns the active model afterwards (another writer may have registered one
    first), or None when models are registered but none is active."""
    serialise()
    if db.session.scalar(select(WriterModel.id).limit(1)) is not None:
        return active_model()
    name = re.sub(r"[^A-Za-z0-9._-]", "-", Path(path).resolve().name).lstrip("._-")[:100] or "gpt2"
    return register_folder(path, kind="seed", name=name)


def active_model():
    """The model the writers use, or None while none is registered."""
    return db.session.scalar(select(WriterModel).where(WriterModel.state == "active"))


def verify(model):
    """Check the model's folder against the hashes recorded at registration; raises
    ModelIntegrityError naming what differs (changed, missing or added files)."""
    folder = model_folder(model)
    if not folder.is_dir():
        raise ModelIntegrityError(f"The folder of {model.label} is missing: the writer will not load it.")
    found = hash_folder(folder)
    changed = sorted(name for name in model.files if name in found and found[name] != model.files[name])
    missing = sorted(name for name in model.files if name not in found)
    added = sorted(name for name in found if name not in model.files)
    if changed or missing or added:
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("changed:", changed), ("missing:", missing), ("added:", added)) if names]
        raise ModelIntegrityError(f"The files of {model.label} no longer match the hashes recorded when it was "
                                  f"registered ({'; '.join(parts)}): the writer will not load it.")


def record_integrity(model_id, error):
    """Keep why the writer refused the model (None: its last check passed) on its row."""
    db.session.execute(update(WriterModel).where(WriterModel.id == model_id,
                                                    WriterModel.integrity_error.is_distinct_from(error))
                       .values(integrity_error=error))


def _locked(model_id):
    model = db.session.scalar(select(WriterModel).where(WriterModel.id == model_id)
                              .with_for_update().execution_options(populate_existing=True))
    if model is None:
        raise ModelNotFound(f"There is no model #{model_id}.")
    return model


def _locked_active():
    return db.session.scalar(select(WriterModel).where(WriterModel.state == "active")
                             .with_for_update().execution_options(populate_existing=True))


def _evaluation(model_id, training_set_id):
    if model_id is None or training_set_id is None:
        return None
    return db.session.scalar(select(ModelEvaluation).where(ModelEvaluation.model_id == model_id,
                                                           ModelEvaluation.training_set_id == training_set_id))


def _gate(candidate, active):
    """(passes, sentence): does the candidate pass the perplexity rule and, when it is on,
    the comparison rule? The sentence says how each rule went, with its numbers."""
    if active is None:
        return True, "No model is active yet: nothing to compare with."
    passes, sentence = _perplexity_rule(candidate, active)
    if not current_app.config["PROMOTION_MIN_COMPARISONS"]:
        return passes, sentence
    compared, because = _comparison_rule(candidate, active)
    return passes and compared, f"{sentence} {because}"


def _comparison_rule(candidate, active):
    """(passes, sentence): has the candidate been compared blind with the active model often
    enough, and is the lower end of its win rate's interval above the threshold?"""
    tally = win_rate.tally(candidate.id, active.id)
    needed = current_app.config["PROMOTION_MIN_COMPARISONS"]
    bound = current_app.config["PROMOTION_MIN_WIN_LOWER_BOUND"]
    if tally.comparisons < needed:
        return False, (f"Editors compared {candidate.label}'s drafts blind with {active.label}'s {tally.comparisons} "
                       f"time{'s' if tally.comparisons != 1 else ''}; the gate needs at least {needed}.")
    low, high = tally.interval
    record = (f"In {tally.comparisons} blind comparisons with {active.label}'s drafts, {candidate.label}'s won "
              f"{tally.wins}, tied {tally.ties} and lost {tally.losses}: a win rate of {tally.win_rate:.1%} "
              f"(ties count half; 95% interval {low:.1%} to {high:.1%})")
    if low > bound:
        return True, f"{record}, whose lower end is above {bound:.1%}."
    return False, f"{record}, whose lower end is not above {bound:.1%}."


def _perplexity_rule(candidate, active):
    """(passes, sentence): does the candidate's validation perplexity beat the active model's
    on the candidate's training set?"""
    if candidate.training_set_id is None:
        return False, (f"{candidate.label} has no training set, so there is no validation perplexity to compare "
                       f"with {active.label}'s.")
    mine = _evaluation(candidate.id, candidate.training_set_id)
    theirs = _evaluation(active.id, candidate.training_set_id)
    if mine is None or theirs is None:
        missing = candidate if mine is None else active
        return False, (f"{missing.label} has not been evaluated on training set #{candidate.training_set_id}'s "
                       "validation side, so the two cannot be compared.")
    if mine.perplexity < theirs.perplexity:
        return True, (f"{candidate.label}'s validation perplexity ({mine.perplexity:.2f}) beats {active.label}'s "
                      f"({theirs.perplexity:.2f}) on training set #{candidate.training_set_id}.")
    return False, (f"{candidate.label}'s validation perplexity ({mine.perplexity:.2f}) does not beat "
                   f"{active.label}'s ({theirs.perplexity:.2f}) on training set #{candidate.training_set_id}.")


def promote(model_id, admin, *, reason="", override=False):
    """Make the candidate `model_id` the active model, retiring the active one. Refused
    (GateRefused) when it does not beat the active model, unless `override` with a reason;
    NotACandidate / AlreadyActive / ModelNotFound otherwise. Audited. Returns the model."""
    reason = (reason or "").strip()
    serialise()
    model = _locked(model_id)
    if model.state == "active":
        raise AlreadyActive(f"{model.label} is already the active model.")
    if model.state != "candidate":
        raise NotACandidate(f"{model.label} is {model.state}, not a candidate: only a candidate can be promoted "
                            "(a model that was active before comes back by a rollback).")
    previous = _locked_active()
    passes, verdict = _gate(model, previous)
    if not passes:
        if not override:
            raise GateRefused(f"{verdict} An admin may still promote it with an override and a written reason.")
        if not reason:
            raise GateRefused(f"{verdict} An override needs a written reason.")
    _activate(model, previous)
    overridden = not passes
    audit.record(admin, "model.override" if overridden else "model.promote", "model", model.id,
                 label=model.label, previous=previous.label if previous is not None else None,
                 previous_id=previous.id if previous is not None else None, gate=verdict, reason=reason)
    return model


def rollback(model_id, admin, *, reason):
    """Make `model_id`, a model that was active before (now retired), active again, retiring
    the active one. Needs a reason; no gate (it wrote autodocs before). Audited."""
    reason = (reason or "").strip()
    if not reason:
        raise RegistryError("A rollback needs a written reason.")
    serialise()
    model = _locked(model_id)
    if model.state == "active":
        raise AlreadyActive(f"{model.label} is already the active model.")
    if model.promoted_at is None:
        raise NotACandidate(f"{model.label} was never active, so there is nothing to roll back to: promote it "
                            "instead (the promotion gate applies).")
    previous = _locked_active()
    _activate(model, previous)
    audit.record(admin, "model.rollback", "model", model.id, label=model.label,
                 previous=previous.label if previous is not None else None,
                 previous_id=previous.id if previous is not None else None, reason=reason)
    return model


def _activate(model, previous):
    now = leases.database_now()
    if previous is not None:
        previous.state, previous.retired_at = "retired", now
        # Before the new one turns active: the unique index is checked row by row.
        db.session.flush()
    model.state, model.promoted_at, model.retired_at = "active", now, None
    db.session.flush()


def record_evaluation(model, training_set, loss, perplexity, tokens):
    """Keep (or replace) `model`'s loss and perplexity on `training_set`'s validation side."""
    evaluation = db.session.scalar(
        select(ModelEvaluation).where(ModelEvaluation.model_id == model.id,
                                      ModelEvaluation.training_set_id == training_set.id).with_for_update())
    if evaluation is None:
        evaluation = ModelEvaluation(model_id=model.id, training_set_id=training_set.id)
        db.session.add(evaluation)
    evaluation.loss, evaluation.perplexity, evaluation.tokens = float(loss), float(perplexity), int(tokens)
    db.session.flush()
    return evaluation


def comparison(candidate):
    """What the Models page shows side by side for `candidate`: the training set, the
    candidate's, the active model's and the parent's validation figures on it (each
    {model_id, label, loss, perplexity, tokens}, or None where there is no such model), the
    editors' blind comparisons of its drafts with the active model's (`blind`: the
    win_rate.Tally as a dict, with the comparison rule's settings, `min_comparisons` 0 when
    it is off; None while no other model is active), and the gate's outcome as `passes`
    with a sentence."""
    active = active_model()
    training_set_id = candidate.training_set_id

    def figures(model):
        if model is None:
            return None
        evaluation = _evaluation(model.id, training_set_id)
        return {"model_id": model.id, "label": model.label,
                "loss": evaluation.loss if evaluation else None,
                "perplexity": evaluation.perplexity if evaluation else None,
                "tokens": evaluation.tokens if evaluation else None}

    baseline = active if active is not None and active.id != candidate.id else None
    passes, message = _gate(candidate, baseline)
    blind = None
    if baseline is not None:
        blind = {**win_rate.tally(candidate.id, baseline.id).as_dict(),
                 "min_comparisons": current_app.config["PROMOTION_MIN_COMPARISONS"],
                 "min_lower_bound": current_app.config["PROMOTION_MIN_WIN_LOWER_BOUND"]}
    return {"training_set_id": training_set_id, "candidate": figures(candidate),
            "active": figures(active), "parent": figures(candidate.parent), "blind": blind,
            "passes": passes, "message": message}


def figures():
    """{model id: {written, approved, reviewed, approval_rate, median_write_seconds}} for every
    model that wrote autodocs. Reviewed and approved count the autodocs' current verdicts;
    the write time is the generate call's (stamp) or else claim to finish. Two grouped
    queries on PostgreSQL."""
    current = aliased(Verdict)
    counts = db.session.execute(
        select(Autodoc.model_id, func.count(Autodoc.id),
               func.count(current.id), func.count(case((current.decision == "approve", 1))))
        .outerjoin(current, and_(current.autodoc_id == Autodoc.id, current.current))
        .where(Autodoc.status == "done", Autodoc.model_id.is_not(None))
        .group_by(Autodoc.model_id)
    ).all()
    result = {}
    for model_id, written, reviewed, approved in counts:
        result[model_id] = {"written": written, "approved": approved, "reviewed": reviewed,
                            "approval_rate": approved / reviewed if reviewed else None,
                            "median_write_seconds": None}
    for model_id, seconds in _median_write_seconds().items():
        if model_id in result:
            result[model_id]["median_write_seconds"] = seconds
    return result


def _median_write_seconds():
    written = (Autodoc.status == "done", Autodoc.model_id.is_not(None))
    if db.session.get_bind().dialect.name == "postgresql":
        seconds = func.coalesce(Autodoc.stamp["generate_seconds"].as_float(),
                                func.extract("epoch", Autodoc.finished_at - Autodoc.started_at))
        return dict(db.session.execute(
            select(Autodoc.model_id, func.percentile_cont(0.5).within_group(seconds))
            .where(*written).group_by(Autodoc.model_id)).all())
    # SQLite (the quick start) has no percentile: the medians are taken here.
    by_model = {}
    for model_id, stamp_seconds, started, finished in db.session.execute(
            select(Autodoc.model_id, Autodoc.stamp["generate_seconds"].as_float(), Autodoc.started_at,
                   Autodoc.finished_at).where(*written)):
        if stamp_seconds is None and started and finished:
            stamp_seconds = (finished - started).total_seconds()
        if stamp_seconds is not None:
            by_model.setdefault(model_id, []).append(stamp_seconds)
    return {model_id: statistics.median(values) for model_id, values in by_model.items()}
