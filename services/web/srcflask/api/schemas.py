"""What the API reads and writes, as marshmallow schemas: they validate requests, shape
responses and generate the OpenAPI document. Text rules are the services' own functions
(title_error, body_error, comment_error...), called from here, never restated."""
import marshmallow as ma
from marshmallow import fields, validate

from ..forms import NUL_MESSAGE
from ..models import DECISIONS, ROLES, STATUSES
from ..services import reviews, users
from ..services.documents import body_error, clean_body, clean_title, title_error
from ..services.pages import MAX_PAGE
from ..static.data.processeddata.models import AUTODOC_STATUSES
from .errors import ApiError

MAX_ID = 2**31 - 1  # PostgreSQL integer: the largest id or version that can exist


def _rule(problem_of, clean=lambda value: value):
    """A marshmallow validator from a service's `problem_of(value) -> message or None`."""

    def check(value):
        problem = problem_of(clean(value))
        if problem:
            raise ma.ValidationError(problem)

    return check


class Text(fields.String):
    """A text a request body carries. PostgreSQL cannot store NUL and no keyboard types
    it: like the pages (forms.SiteForm), the API refuses it, naming the field, rather than
    storing the text changed behind the caller's back."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ma.ValidationError(NUL_MESSAGE)
        return text


class Schema(ma.Schema):
    class Meta:
        ordered = True

    def handle_error(self, error, data, **kwargs):
        """A body whose text carries NUL is well-formed JSON of the right types that the app
        cannot store: 422 (a request the rules refuse), with every field's messages as a
        400 would have them. Other schema errors go on to webargs (400)."""
        if NUL_MESSAGE in _all_messages(error.messages):
            raise ApiError(422, "validation_error", "The request is not valid: see details.",
                           {"json": error.messages})


def _all_messages(messages):
    """Every message of marshmallow's nested {field: [message] or {...}} errors."""
    if isinstance(messages, dict):
        return [message for value in messages.values() for message in _all_messages(value)]
    if isinstance(messages, list):
        return [message for value in messages for message in _all_messages(value)]
    return [messages]


# --- common -----------------------------------------------------------------------------------

class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE),
                          metadata={"description": "1-based page number; a page past the end is empty."})


class SearchArgs(PageArgs):
    q = fields.String(load_default="", validate=validate.Length(max=200),
                      metadata={"description": "Case-insensitive search in the title."})


class Links(Schema):
    self = fields.String(required=True)
    first = fields.String(required=True)
    last = fields.String(required=True)
    prev = fields.String(allow_none=True, required=True)
    next = fields.String(allow_none=True, required=True)


class Page(Schema):
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    total = fields.Integer(required=True)
    links = fields.Nested(Links, required=True)


class Person(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)


class Me(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    email = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    organization = fields.String(required=True)


class Editor(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    organization = fields.String(required=True)


class EditorList(Schema):
    items = fields.List(fields.Nested(Editor), required=True)


# --- documents --------------------------------------------------------------------------------

class DocumentRow(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    version = fields.Integer(required=True)
    updated_at = fields.DateTime(required=True)
    sponsor_name = fields.String(required=True)
    editor_name = fields.String(required=True)
    autodoc_id = fields.Integer(allow_none=True, required=True,
                                metadata={"description": "The current version's newest autodoc."})
    autodoc_status = fields.String(allow_none=True, required=True)
    verdict = fields.String(allow_none=True, required=True)
    verdict_comment = fields.String(allow_none=True, required=True)


class DocumentPage(Page):
    items = fields.List(fields.Nested(DocumentRow), required=True)


class Document(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    body = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "Send it back with an update (optimistic locking)."})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    sponsor = fields.Nested(Person, attribute="retention.sponsor", required=True)
    editor = fields.Nested(Person, attribute="retention.editor", required=True)


_TITLE = {"required": True, "validate": _rule(title_error, clean_title),
          "metadata": {"description": "Required; surrounding spaces are dropped."}}
_BODY = {"load_default": "", "validate": _rule(body_error, clean_body)}


class DocumentCreate(Schema):
    title = Text(**_TITLE)
    body = Text(**_BODY)
    editor_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID),
                               metadata={"description": "An approved editor (GET /api/v1/editors)."})


class DocumentUpdate(Schema):
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID),
                             metadata={"description": "The version the change is based on; 409 if it is no longer current."})
    title = Text(**_TITLE)
    body = Text(**_BODY)


# --- revisions and autodocs -------------------------------------------------------------------

class VerdictOut(Schema):
    id = fields.Integer(required=True)
    autodoc_id = fields.Integer(required=True)
    editor = fields.Nested(Person, required=True)
    decision = fields.String(required=True, validate=validate.OneOf(DECISIONS))
    comment = fields.String(required=True)
    correction = fields.String(allow_none=True, required=True,
                               metadata={"description": "The continuation as the editor says it should have read."})
    created_at = fields.DateTime(required=True)


class AutodocSummary(Schema):
    id = fields.Integer(required=True)
    generation = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(AUTODOC_STATUSES))
    verdict = fields.String(attribute="current_verdict.decision", allow_none=True, dump_default=None)


class RevisionOut(Schema):
    version = fields.Integer(required=True)
    title = fields.String(required=True)
    body = fields.String(required=True)
    saved_by = fields.Nested(Person, required=True)
    saved_at = fields.DateTime(required=True)
    autodocs = fields.List(fields.Nested(AutodocSummary), required=True,
                           metadata={"description": "Newest attempt first."})


class RevisionPage(Page):
    items = fields.List(fields.Nested(RevisionOut), required=True)


class ModelRef(Schema):
    """A model of the registry, as an autodoc names the one that wrote it."""

    id = fields.Integer(required=True)
    label = fields.String(required=True, metadata={"description": "Name and version, e.g. gpt2 v2."})


class AutodocState(Schema):
    """services.documents.autodoc_state: what the pages' status polling reads too."""

    id = fields.Integer(required=True)
    document_id = fields.Integer(required=True)
    revision_version = fields.Integer(required=True)
    generation = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(AUTODOC_STATUSES))
    stale = fields.Boolean(required=True, metadata={"description": "The document was saved again since."})
    position = fields.Integer(allow_none=True, required=True, metadata={"description": "Place in the queue, while queued."})
    eta_seconds = fields.Float(allow_none=True, required=True)
    prompt = fields.String(allow_none=True, required=True)
    continuation = fields.String(allow_none=True, required=True, metadata={
        "description": "What the writer wrote; null until written, and while `withheld`."})
    withheld = fields.Boolean(required=True, metadata={
        "description": "True while the text is one of the two drafts of a blind comparison waiting for this "
                       "editor's choice on the review page: until then, its continuation is null here."})
    error = fields.String(allow_none=True, required=True)
    stamp = fields.Dict(allow_none=True, required=True, metadata={"description": "How the text was generated."})
    model = fields.Nested(ModelRef, allow_none=True, required=True,
                          metadata={"description": "The model that wrote it; null until written."})
    queued_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True, required=True)
    finished_at = fields.DateTime(allow_none=True, required=True)


# --- reviews ----------------------------------------------------------------------------------

class ReviewItem(Schema):
    autodoc_id = fields.Integer(required=True)
    generation = fields.Integer(required=True)
    finished_at = fields.DateTime(allow_none=True, required=True)
    document_id = fields.Integer(required=True)
    title = fields.String(required=True)
    version = fields.Integer(required=True)
    sponsor_name = fields.String(required=True)
    stale = fields.Boolean(required=True)


class ReviewPage(Page):
    items = fields.List(fields.Nested(ReviewItem), required=True)


class VerdictIn(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(DECISIONS))
    comment = Text(load_default="")
    correction = Text(load_default=None, allow_none=True, metadata={
        "description": "With request_changes or reject: the autodoc's continuation as it should have read. 422 when "
                       "empty, unchanged from the writer's text, too long, or sent with approve."})

    @ma.post_load
    def clean_correction(self, data, **kwargs):
        """Line breaks kept as a body's are (the review page's form cleans it the same way)."""
        if data["correction"] is not None:
            data["correction"] = clean_body(data["correction"])
        return data

    @ma.validates_schema
    def comment_fits_decision(self, data, **kwargs):
        problem = reviews.comment_error(data.get("decision"), data.get("comment"))
        if problem and data.get("decision") in DECISIONS:
            raise ma.ValidationError(problem, "comment")


# --- accounts ---------------------------------------------------------------------------------

class UserArgs(PageArgs):
    q = fields.String(load_default="", validate=validate.Length(max=200),
                      metadata={"description": "Search in name, email and organization."})
    role = fields.String(load_default="", validate=validate.OneOf(("", *ROLES)))
    status = fields.String(load_default="", validate=validate.OneOf(("", *STATUSES)))


class UserOut(Me):
    created_at = fields.DateTime(required=True)
    last_login_at = fields.DateTime(allow_none=True, required=True)
    decided_at = fields.DateTime(allow_none=True, required=True)
    decided_by = fields.Nested(Person, allow_none=True, required=True)
    decision_reason = fields.String(allow_none=True, required=True)


class UserPage(Page):
    items = fields.List(fields.Nested(UserOut), required=True)


class DecisionIn(Schema):
    reason = Text(load_default="", validate=validate.Length(max=users.REASON_MAX_LENGTH),
                           metadata={"description": "Shown to the user (reject and suspend)."})

