"""The editors' reviews as training data for fine-tuning tools outside srcflask: three JSON
Lines exports, in the field names those tools read (`prompt`/`completion`,
`prompt`/`chosen`/`rejected`, `prompt`/`completion`/`label`), each record also naming where
it came from — the model that wrote the text (`model`, or `chosen_model` and
`rejected_model`), the revision it continued, the review that judged it and the autodoc.

- supervised: the pairs a training set takes (trainingsets.pairs_select: the approved
  continuation, or the editor's correction where there is one), without the split.
- preferences: from blind comparisons, the draft the editor chose over the other (a tie
  says neither is better: left out); from corrections, the editor's text over the
  writer's. A comparison's pair is kept only when both drafts continue the same prompt.
- labels: the writer's text with `label` true for an approval, false for a rejection. A
  request for changes is left out: it says the text is close but not right, neither
  "good" nor "bad", and a binary label would have to pretend it says one of them.

What they read is what training sets read: current verdicts only, written autodocs of
documents that are not archived, texts with more than whitespace (trainingsets.has_text);
a preference's two texts must differ. Each record's JSON Schema is in export_schemas/
(the admin's Exports page shows it; the tests validate every record against it).

However many reviews there are, an export is streamed: rows come from a server-side cursor
EXPORT_BATCH at a time (as the other exports: services/reviews.py, services/export.py) and
are sent a batch of lines at a time, so memory stays flat.
"""
import json
from itertools import islice
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Comparison, Retention, ShadowDraft, Verdict, WriterModel
from ..static.data.processeddata.models import Autodoc, Revision
from .export import streamed_download
from .reviews import EXPORT_BATCH
from .trainingsets import has_text, pairs_select, reviewed_select

KINDS = ("supervised", "preferences", "labels")
SCHEMAS = Path(__file__).resolve().parent / "export_schemas"
MEDIA_TYPE = "application/jsonl; charset=utf-8"
# The verdicts a binary label is read from, and the label each gives.
LABELS = {"approve": True, "reject": False}

_CANDIDATE, _BASELINE = aliased(WriterModel), aliased(WriterModel)


def schema(kind):
    """The JSON Schema of one record of export `kind`."""
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text("utf-8"))


def records(kind):
    """The records of export `kind` (one of KINDS), in order, as dicts."""
    return _EXPORTS[kind]()


def counts():
    """{kind: how many records the export holds now}: one COUNT per query it streams."""
    return {kind: sum(db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
                      for statement in _STATEMENTS[kind]()) for kind in KINDS}


def attachment(kind):
    """The download of export `kind`: the one answer the Exports page's link and the API give."""
    return streamed_download(_chunks(records(kind)), f"srcflask-{kind}", "jsonl", MEDIA_TYPE)


def _chunks(records):
    """JSON Lines, EXPORT_BATCH lines to a piece of the response."""
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    while chunk := "".join(islice(lines, EXPORT_BATCH)):
        yield chunk


def _streamed(statement):
    return db.session.execute(statement.execution_options(yield_per=EXPORT_BATCH))


# --- what each export reads ---------------------------------------------------------------------

# The columns every verdict-based record names its sources with.
_VERDICT_SOURCES = (Revision.id.label("revision_id"), Revision.version, Verdict.id.label("verdict_id"),
                    Verdict.decision, Verdict.editor_id, Verdict.created_at.label("reviewed_at"),
                    Autodoc.model_id, WriterModel.label.label("model_label"))


def _with_writer(statement):
    return statement.outerjoin(WriterModel, WriterModel.id == Autodoc.model_id)


def _supervised_statement():
    return _with_writer(pairs_select(*_VERDICT_SOURCES))


def _comparisons_statement():
    """Blind comparisons with a winner, with both drafts, on documents that are not archived."""
    return (
        select(Comparison.id, Comparison.winner, Comparison.editor_id, Comparison.created_at,
               Comparison.shadow_draft_id, Comparison.autodoc_id, Comparison.candidate_model_id,
               Comparison.baseline_model_id, Autodoc.prompt, Autodoc.continuation.label("baseline_text"),
               ShadowDraft.continuation.label("candidate_text"), Revision.id.label("revision_id"),
               Revision.document_id, Revision.version, _CANDIDATE.label.label("candidate_label"),
               _BASELINE.label.label("baseline_label"))
        .join(Autodoc, Autodoc.id == Comparison.autodoc_id)
        .join(ShadowDraft, ShadowDraft.id == Comparison.shadow_draft_id)
        .join(Revision, Revision.id == Comparison.revision_id)
        .join(Retention, Retention.document_id == Revision.document_id)
        .join(_CANDIDATE, _CANDIDATE.id == Comparison.candidate_model_id)
        .join(_BASELINE, _BASELINE.id == Comparison.baseline_model_id)
        .where(Comparison.winner != "tie", Retention.archived_at.is_(None), Autodoc.prompt.is_not(None),
               ShadowDraft.prompt == Autodoc.prompt, has_text(Autodoc.continuation),
               has_text(ShadowDraft.continuation), Autodoc.continuation != ShadowDraft.continuation)
        .order_by(Comparison.id)
    )


def _corrections_statement():
    return _with_writer(reviewed_select(
        Autodoc.id.label("autodoc_id"), Autodoc.prompt, Autodoc.continuation, Verdict.correction,
        Revision.document_id, *_VERDICT_SOURCES,
    ).where(Verdict.correction.is_not(None), has_text(Verdict.correction), has_text(Autodoc.continuation),
            Verdict.correction != Autodoc.continuation))


def _labels_statement():
    return _with_writer(reviewed_select(
        Autodoc.id.label("autodoc_id"), Autodoc.prompt, Autodoc.continuation, Revision.document_id,
        *_VERDICT_SOURCES,
    ).where(Verdict.decision.in_(list(LABELS)), has_text(Autodoc.continuation)))


_STATEMENTS = {
    "supervised": lambda: [_supervised_statement()],
    "preferences": lambda: [_comparisons_statement(), _corrections_statement()],
    "labels": lambda: [_labels_statement()],
}


# --- the records ----------------------------------------------------------------------------------

def supervised():
    """prompt → completion: the approved continuation, or the editor's correction."""
    for row in _streamed(_supervised_statement()):
        yield {"prompt": row.prompt, "completion": row.target, "source": row.source,
               "model": _model(row.model_id, row.model_label), "revision": _revision(row),
               "review": _verdict(row), "autodoc_id": row.autodoc_id}


def preferences():
    """prompt, chosen, rejected: the blind comparisons with a winner (by comparison id), then
    the corrections (by autodoc id)."""
    for row in _streamed(_comparisons_statement()):
        candidate = (row.candidate_text, _model(row.candidate_model_id, row.candidate_label))
        baseline = (row.baseline_text, _model(row.baseline_model_id, row.baseline_label))
        (chosen, chosen_model), (rejected, rejected_model) = (
            (candidate, baseline) if row.winner == "candidate" else (baseline, candidate))
        yield {"prompt": row.prompt, "chosen": chosen, "rejected": rejected, "source": "comparison",
               "chosen_model": chosen_model, "rejected_model": rejected_model, "revision": _revision(row),
               "review": {"kind": "comparison", "id": row.id, "winner": row.winner, "editor_id": row.editor_id,
                          "created_at": _iso(row.created_at), "shadow_draft_id": row.shadow_draft_id},
               "autodoc_id": row.autodoc_id}
    for row in _streamed(_corrections_statement()):
        yield {"prompt": row.prompt, "chosen": row.correction, "rejected": row.continuation, "source": "correction",
               "chosen_model": None, "rejected_model": _model(row.model_id, row.model_label),
               "revision": _revision(row), "review": _verdict(row), "autodoc_id": row.autodoc_id}


def labels():
    """prompt, completion, label: the writer's text, approved (true) or rejected (false)."""
    for row in _streamed(_labels_statement()):
        yield {"prompt": row.prompt, "completion": row.continuation, "label": LABELS[row.decision],
               "source": "verdict", "model": _model(row.model_id, row.model_label), "revision": _revision(row),
               "review": _verdict(row), "autodoc_id": row.autodoc_id}


_EXPORTS = {"supervised": supervised, "preferences": preferences, "labels": labels}


def _model(model_id, label):
    return {"id": model_id, "label": label} if model_id is not None else None


def _revision(row):
    return {"id": row.revision_id, "document_id": row.document_id, "version": row.version}


def _verdict(row):
    return {"kind": "verdict", "id": row.verdict_id, "decision": row.decision, "editor_id": row.editor_id,
            "created_at": _iso(row.reviewed_at)}


def _iso(moment):
    return moment.isoformat()

