"""What the model registry's API reads and writes, as marshmallow schemas (the library and
the conventions of schemas.py: ordered fields, NUL refused in text, per-field errors)."""
import marshmallow as ma
from marshmallow import fields, validate

from ..models import MODEL_KINDS, MODEL_STATES, TRAINING_RUN_STATUSES
from ..services.users import REASON_MAX_LENGTH
from .schemas import MAX_ID, ModelRef, Page, PageArgs, Person, Schema, Text


class Evaluation(Schema):
    training_set_id = fields.Integer(required=True)
    loss = fields.Float(required=True)
    perplexity = fields.Float(required=True)
    tokens = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class ModelOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    version = fields.Integer(required=True)
    label = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(MODEL_KINDS))
    state = fields.String(required=True, validate=validate.OneOf(MODEL_STATES),
                          metadata={"description": "Exactly one model is active: the one the writers use."})
    parent = fields.Nested(ModelRef, allow_none=True, required=True)
    files = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                        metadata={"description": "Each file's sha256, taken at registration."})
    size_bytes = fields.Integer(required=True)
    parameters = fields.Integer(required=True)
    shape = fields.Dict(required=True)
    generation = fields.Dict(required=True)
    training = fields.Dict(allow_none=True, required=True,
                           metadata={"description": "The metadata.json of a retrained model."})
    training_set_id = fields.Integer(allow_none=True, required=True)
    integrity_error = fields.String(allow_none=True, required=True,
                                    metadata={"description": "Why the writer refused the folder, if it did."})
    created_by = fields.Nested(Person, allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    promoted_at = fields.DateTime(allow_none=True, required=True)
    retired_at = fields.DateTime(allow_none=True, required=True)


class Figures(Schema):
    """What the model wrote and how editors judged it (registry.figures)."""

    written = fields.Integer(required=True, metadata={"description": "Autodocs it wrote."})
    approved = fields.Integer(required=True)
    reviewed = fields.Integer(required=True)
    approval_rate = fields.Float(allow_none=True, required=True, metadata={"description": "approved / reviewed."})
    median_write_seconds = fields.Float(allow_none=True, required=True)


class SideFigures(Schema):
    """One model's validation figures on the candidate's training set (registry.comparison)."""

    model_id = fields.Integer(required=True)
    label = fields.String(required=True)
    loss = fields.Float(allow_none=True, required=True)
    perplexity = fields.Float(allow_none=True, required=True)
    tokens = fields.Integer(allow_none=True, required=True)


class BlindComparisons(Schema):
    """Editors' blind comparisons of the candidate's drafts with the active model's (services/win_rate.py)."""

    comparisons = fields.Integer(required=True)
    wins = fields.Integer(required=True)
    ties = fields.Integer(required=True)
    losses = fields.Integer(required=True)
    win_rate = fields.Float(allow_none=True, required=True, metadata={
        "description": "(wins + ties / 2) / comparisons; null before any comparison."})
    low = fields.Float(required=True, metadata={"description": "The Wilson 95 % interval's lower end."})
    high = fields.Float(required=True, metadata={"description": "The Wilson 95 % interval's upper end."})
    min_comparisons = fields.Integer(required=True, metadata={
        "description": "The gate's PROMOTION_MIN_COMPARISONS (0: the gate does not look at comparisons)."})
    min_lower_bound = fields.Float(required=True, metadata={
        "description": "The gate's PROMOTION_MIN_WIN_LOWER_BOUND: the interval's lower end must be above it."})


class ModelComparison(Schema):
    """A candidate against the active model, and what the promotion gate says (registry.comparison)."""

    training_set_id = fields.Integer(allow_none=True, required=True)
    candidate = fields.Nested(SideFigures, required=True)
    active = fields.Nested(SideFigures, allow_none=True, required=True)
    parent = fields.Nested(SideFigures, allow_none=True, required=True)
    blind = fields.Nested(BlindComparisons, allow_none=True, required=True,
                          metadata={"description": "null while no other model is active."})
    passes = fields.Boolean(required=True, metadata={"description": "Whether the gate lets the candidate through."})
    message = fields.String(required=True, metadata={"description": "How each rule of the gate went, with its numbers."})


class ModelDetail(ModelOut):
    figures = fields.Nested(Figures, required=True)
    evaluations = fields.List(fields.Nested(Evaluation), required=True,
                              metadata={"description": "Validation loss and perplexity, per training set."})
    comparison = fields.Nested(ModelComparison, allow_none=True, required=True,
                               metadata={"description": "For a candidate: against the active model, and the gate's "
                                                        "answer; null for other models."})


class ModelPage(Page):
    items = fields.List(fields.Nested(ModelOut), required=True)


class TrainingSetOut(Schema):
    id = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    verdicts = fields.List(fields.String(), required=True)
    seed = fields.Integer(required=True)
    train_documents = fields.Integer(required=True)
    train_pairs = fields.Integer(required=True)
    train_tokens = fields.Integer(required=True)
    validation_documents = fields.Integer(required=True)
    validation_pairs = fields.Integer(required=True)
    validation_tokens = fields.Integer(required=True)
    corrections = fields.Integer(required=True, metadata={
        "description": "How many of its pairs (both sides) take an editor's correction as their target."})
    created_by = fields.Nested(Person, allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


class TrainingSetPage(Page):
    items = fields.List(fields.Nested(TrainingSetOut), required=True)


class TrainingRunOut(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(TRAINING_RUN_STATUSES))
    parent = fields.Nested(ModelRef, required=True)
    training_set_id = fields.Integer(required=True)
    settings = fields.Dict(required=True)
    progress = fields.Dict(allow_none=True, required=True,
                           metadata={"description": "epoch, epochs, step, steps, loss, seconds_left, updated_at."})
    cancel_requested = fields.Boolean(required=True)
    result_model = fields.Nested(ModelRef, allow_none=True, required=True)
    error = fields.String(allow_none=True, required=True)
    requested_by = fields.Nested(Person, allow_none=True, required=True)
    queued_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True, required=True)
    finished_at = fields.DateTime(allow_none=True, required=True)


class TrainingRunPage(Page):
    items = fields.List(fields.Nested(TrainingRunOut), required=True)


class TrainingRunArgs(PageArgs):
    status = fields.String(load_default="", validate=validate.OneOf(("", *TRAINING_RUN_STATUSES)))


class TrainingRunIn(Schema):
    parent_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID),
                               metadata={"description": "The model to fine-tune (GET /api/v1/models)."})
    training_set_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))
    epochs = fields.Integer(load_default=None, strict=True, metadata={
        "description": "Defaults to the TRAINING_EPOCHS setting; 409 training_refused outside its bounds."})


_REASON = {"validate": validate.Length(max=REASON_MAX_LENGTH), "metadata": {"description": "Kept in the audit log."}}


class PromoteIn(Schema):
    reason = Text(load_default="", **_REASON)
    override = fields.Boolean(load_default=False, metadata={
        "description": "Promote although the candidate does not beat the active model: needs a reason."})

    @ma.validates_schema
    def override_needs_a_reason(self, data, **kwargs):
        if data.get("override") and not data.get("reason", "").strip():
            raise ma.ValidationError("Write why you override the promotion gate.", "reason")


class RollbackIn(Schema):
    reason = Text(required=True, **_REASON)

    @ma.validates_schema
    def reason_is_written(self, data, **kwargs):
        if not data.get("reason", "").strip():
            raise ma.ValidationError("Write why you roll back.", "reason")
