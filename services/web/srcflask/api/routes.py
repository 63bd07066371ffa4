"""The API's operations. Each one, like a page's view, loads what it acts on through the
services' access loaders (404 for what the caller may not see), calls one service
function, commits once, and answers JSON; a rule the service refuses becomes a JSON error.
"""
from flask import Blueprint as FlaskBlueprint
from flask import jsonify, render_template, url_for

from .. import throttle
from ..extensions import db
from ..services import autodoc_queue, documents, export, reviews, users
from ..services.pages import paginate
from .envelope import page_envelope
from . import api, bp, docs_bp, schemas
from .auth import current_api_user, roles
from .errors import ApiError

ALL_ROLES = ("sponsor", "editor", "admin")
DOCUMENT_LISTS = {"sponsor": documents.sponsor_documents, "editor": documents.editor_documents}


def _refused(status, code, error, **details):
    return ApiError(status, code, str(error), details or None)


def _document(document_id):
    """The document for its sponsor or editor; any document for an admin; 404 otherwise."""
    user = current_api_user()
    if user.role == "admin":
        return documents.get_any_document_or_404(document_id)
    return documents.get_document_or_404(document_id, user)


# --- the caller -------------------------------------------------------------------------------

@bp.get("/me")
@bp.response(200, schemas.Me)
@roles(*ALL_ROLES)
def me():
    """The account the token belongs to."""
    return current_api_user()


@bp.get("/me/export")
@throttle.exports(current_api_user)
@bp.response(200, content_type="application/json",
             description="One JSON document, streamed as an attachment: the README's “Download everything” "
                         "gives its schema.")
@roles("sponsor")
def export_me():
    """Everything of the sponsor's: every document (archived ones too) with all its revisions,
    each revision's autodocs and each autodoc's verdicts."""
    return export.attachment(current_api_user())


@bp.get("/editors")
@bp.response(200, schemas.EditorList)
@roles("sponsor")
def editors():
    """The approved editors a document can be given to (its `editor_id`)."""
    return {"items": documents.approved_editors()}


# --- documents --------------------------------------------------------------------------------

@bp.get("/documents")
@bp.arguments(schemas.SearchArgs, location="query")
@bp.response(200, schemas.DocumentPage)
@roles(*ALL_ROLES)
def list_documents(args):
    """A sponsor's own documents, an editor's assigned ones, every document for an admin;
    newest change first, with the current version's newest autodoc."""
    user = current_api_user()
    q = documents.clean_query(args["q"])
    if user.role == "admin":
        pagination = documents.all_documents(q, args["page"])
    else:
        pagination = DOCUMENT_LISTS[user.role](user, q, args["page"])
    return page_envelope(pagination, "api.list_documents", **({"q": q} if q else {}))


@bp.post("/documents")
@throttle.saves(current_api_user)
@bp.arguments(schemas.DocumentCreate)
@bp.response(201, schemas.Document)
@roles("sponsor")
def create_document(data):
    """Create a document for an approved editor: its first revision and a queued autodoc."""
    try:
        document = documents.create_document(current_api_user(), data["editor_id"], data["title"], data["body"])
    except documents.NotAnApprovedEditor as error:
        raise ApiError(400, "validation_error", "The request is not valid: see details.",
                       {"json": {"editor_id": [str(error)]}}) from None
    db.session.commit()
    return document, 201, {"Location": url_for("api.get_document", document_id=document.id)}


@bp.get("/documents/<id:document_id>")
@bp.response(200, schemas.Document)
@roles(*ALL_ROLES)
def get_document(document_id):
    """One document, with its current version."""
    return _document(document_id)


@bp.put("/documents/<id:document_id>")
@throttle.saves(current_api_user)
@bp.arguments(schemas.DocumentUpdate)
@bp.response(200, schemas.Document)
@roles("sponsor")
def update_document(data, document_id):
    """Save a new version based on `version`: 409 (with the current version) when someone
    saved since; 422 when nothing changed."""
    user = current_api_user()
    document = documents.get_document_or_404(document_id, user)
    try:
        documents.update_document(document, data["version"], data["title"], data["body"], user)
    except documents.EditConflict as conflict:
        raise _refused(409, "edit_conflict", conflict, current_version=conflict.document.version) from None
    except documents.NoChanges as notice:
        raise _refused(422, "no_changes", notice) from None
    db.session.commit()
    return document


@bp.get("/documents/<id:document_id>/revisions")
@bp.arguments(schemas.PageArgs, location="query")
@bp.response(200, schemas.RevisionPage)
@roles(*ALL_ROLES)
def list_revisions(args, document_id):
    """The revisions, newest first, a page at a time (each carries its full text), each
    with its autodocs (newest attempt first)."""
    pagination = documents.document_revisions(_document(document_id), args["page"])
    return page_envelope(pagination, "api.list_revisions", document_id=document_id)


# --- autodocs ---------------------------------------------------------------------------------

@bp.get("/autodocs/<id:autodoc_id>")
@bp.response(200, schemas.AutodocState)
@roles(*ALL_ROLES)
def get_autodoc(autodoc_id):
    """An autodoc's status, place in the queue, text and generation stamp: the same state
    (services.documents.autodoc_state) the pages' live status reads."""
    user = current_api_user()
    return documents.autodoc_state(documents.get_autodoc_or_404(autodoc_id, user), user)


@bp.post("/autodocs/<id:autodoc_id>/regenerate")
@throttle.regenerations(current_api_user)
@bp.response(202, schemas.AutodocState)
@roles("sponsor")
def regenerate_autodoc(autodoc_id):
    """Queue a new attempt at the autodoc's revision (older text is kept); 409 while one is
    already waiting. Answers the new autodoc."""
    user = current_api_user()
    autodoc = documents.get_autodoc_or_404(autodoc_id, user)
    try:
        new = autodoc_queue.queue_regeneration(autodoc.revision, by=user)
    except autodoc_queue.AlreadyQueued as notice:
        raise _refused(409, "already_queued", notice) from None
    db.session.commit()
    location = url_for("api.get_autodoc", autodoc_id=new.id)
    return documents.autodoc_state(new, current_api_user()), 202, {"Location": location}


# --- reviews ----------------------------------------------------------------------------------

@bp.get("/reviews")
@bp.arguments(schemas.PageArgs, location="query")
@bp.response(200, schemas.ReviewPage)
@roles("editor")
def review_queue(args):
    """The autodocs waiting for the editor's verdict, oldest first."""
    return page_envelope(reviews.review_queue(current_api_user(), args["page"]), "api.review_queue")


@bp.post("/autodocs/<id:autodoc_id>/verdicts")
@bp.arguments(schemas.VerdictIn)
@bp.response(201, schemas.VerdictOut)
@roles("editor")
def give_verdict(data, autodoc_id):
    """The editor's verdict, replacing the current one (kept as history), with an optional
    correction. 409 when the autodoc has no text yet, or for an approval of a stale
    autodoc (details name the newest one to review instead); 422 for a correction the
    rules refuse (the same as the review page's)."""
    user = current_api_user()
    autodoc = documents.get_autodoc_or_404(autodoc_id, user)
    try:
        verdict = reviews.give_verdict(autodoc, user, data["decision"], data["comment"], data["correction"])
    except reviews.InvalidCorrection as problem:
        raise _refused(422, "validation_error", "The request is not valid: see details.",
                       json={"correction": [str(problem)]}) from None
    except reviews.StaleApproval as refusal:
        raise _refused(409, "stale_approval", refusal, newest_autodoc_id=refusal.newest_autodoc_id) from None
    except reviews.NotReviewable as refusal:
        raise _refused(409, "not_reviewable", refusal) from None
    db.session.commit()
    return verdict


# --- accounts ---------------------------------------------------------------------------------

@bp.get("/users")
@bp.arguments(schemas.UserArgs, location="query")
@bp.response(200, schemas.UserPage)
@roles("admin")
def list_users(args):
    """Every account by name, filtered by search, role and status."""
    filters = {key: args[key].strip() for key in ("q", "role", "status") if args[key].strip()}
    pagination = paginate(users.users_query(**filters), args["page"])
    return page_envelope(pagination, "api.list_users", **filters)


def _decide(user_id, action, reason=None):
    user = users.get_user_for_update(user_id)
    if user is None:
        raise ApiError(404, "not_found", "There is no such account.")
    try:
        users.decide(user, action, by=current_api_user(), reason=reason)
    except users.DecisionRefused as refusal:
        db.session.rollback()
        raise _refused(409, "decision_refused", refusal) from None
    db.session.commit()
    return user


@bp.post("/users/<id:user_id>/approve")
@bp.response(200, schemas.UserOut)
@roles("admin")
def approve_user(user_id):
    """Approve a pending account. 409 when its status does not allow it."""
    return _decide(user_id, "approve")


@bp.post("/users/<id:user_id>/reject")
@bp.arguments(schemas.DecisionIn)
@bp.response(200, schemas.UserOut)
@roles("admin")
def reject_user(data, user_id):
    """Reject a pending account, with an optional reason shown to them. 409 when its status
    does not allow it, or for one's own account."""
    return _decide(user_id, "reject", data["reason"])


@bp.post("/users/<id:user_id>/suspend")
@bp.arguments(schemas.DecisionIn)
@bp.response(200, schemas.UserOut)
@roles("admin")
def suspend_user(data, user_id):
    """Suspend an approved account (its sessions and tokens stop working at once). 409 when
    its status does not allow it, for one's own account, or for the last approved admin."""
    return _decide(user_id, "suspend", data["reason"])


@bp.post("/users/<id:user_id>/reinstate")
@bp.response(200, schemas.UserOut)
@roles("admin")
def reinstate_user(user_id):
    """Reinstate a suspended or rejected account. 409 when its status does not allow it."""
    return _decide(user_id, "reinstate")


# --- the specification and its docs page ------------------------------------------------------

def openapi_json():
    """The OpenAPI document, generated from the code."""
    return jsonify(api.spec.to_dict())


# Added with Flask's own add_url_rule: the document is not an operation of itself.
FlaskBlueprint.add_url_rule(bp, "/openapi.json", "openapi_json", openapi_json, methods=["GET"])


@docs_bp.get("/docs")
def docs():
    """The API's operations, rendered from the OpenAPI document on the server: it works
    offline and under the site's CSP, which a CDN-hosted Swagger UI would not."""
    return render_template("api/docs.html", spec=api.spec.to_dict())
