"""The admin's pages: an overview, the approval queue, the user list, and the decisions
(approve, reject, suspend, reinstate, change role, send a password reset link), each a POST
that redirects back; every document and review, read-only; the audit log; the export of
reviewed autodocs."""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import throttle
from ..extensions import db
from ..models import Autodoc, User
from ..security import is_safe_next
from ..services import archive, audit, autodoc_queue, passwords, reviews, users
from ..services.documents import (
    NoChanges,
    all_documents,
    clean_query,
    document_history,
    get_any_document_or_404,
    get_autodoc_or_404,
)
from ..services.export import streamed_download
from ..services.pages import paginate
from ..writer import server_writer
from . import bp
from .forms import AuditFilterForm, DecisionForm, EraseForm, RoleForm, UserFilterForm


@bp.get("/")
def dashboard():
    return render_template("admin/dashboard.html", counts=users.overview(), failures=autodoc_queue.recent_failures(),
                           seconds_per_autodoc=autodoc_queue.recent_seconds_per_autodoc(),
                           queue_by_sponsor=autodoc_queue.queue_by_sponsor(), writer_state=server_writer().state())


@bp.post("/autodocs/<id:autodoc_id>/regenerate")
@throttle.regenerations()
def regenerate_autodoc(autodoc_id):
    """Queue a new attempt at a failed (or any) autodoc's revision; older text is kept."""
    autodoc = db.session.get(Autodoc, autodoc_id) or abort(404)
    try:
        autodoc_queue.queue_regeneration(autodoc.revision, by=current_user)
    except autodoc_queue.AlreadyQueued as notice:
        flash(str(notice), "info")
    else:
        db.session.commit()
        flash(f"A new autodoc for autodoc #{autodoc.id}'s revision is queued.", "success")
    return redirect(url_for(".dashboard"))


@bp.get("/approvals")
def approvals():
    query = select(User).where(User.status == "pending").order_by(User.created_at, User.id)
    page = _paginate(query)
    if page.page > max(page.pages, 1):
        return _last_page(page)
    return render_template("admin/approvals.html", page=page, decision_form=DecisionForm())


@bp.get("/users", endpoint="users")
def user_list():
    form = UserFilterForm(request.args)
    form.validate()
    query = users.users_query(q=form.value("q"), role=form.value("role"), status=form.value("status"))
    page = _paginate(query)
    if page.page > max(page.pages, 1):
        return _last_page(page)
    return render_template("admin/users.html", page=page, form=form,
                           decision_form=DecisionForm(), role_form=RoleForm())


def _paginate(query):
    return paginate(query, request.args.get("page", 1, type=int))


def _last_page(page):
    """A page past the end (its last row was just decided, so it left the list): go to the
    last page that exists, with the same search and filters."""
    return redirect(url_for(request.endpoint, **{**request.args.to_dict(), "page": max(page.pages, 1)}))


def _back():
    """Where a decision returns: the page it was taken on (`next`, on-site only) or the list."""
    target = request.args.get("next", "")
    return redirect(target if is_safe_next(target) else url_for("admin.users"))


def _target(user_id):
    return users.get_user_for_update(user_id) or abort(404)


def _apply(success, change, *args, **kwargs):
    """Run one service change as the current admin; commit and say so, or roll back and
    say why not."""
    try:
        change(*args, by=current_user, **kwargs)
    except users.DecisionRefused as refusal:
        db.session.rollback()
        flash(str(refusal), "danger")
    else:
        db.session.commit()
        flash(success, "success")
    return _back()


def _decide(user_id, action, form=None):
    user = _target(user_id)
    if form is not None and not form.validate():
        db.session.rollback()
        for message in form.reason.errors:
            flash(f"Reason: {message}", "danger")
        return _back()
    reason = form.reason.data if form is not None else None
    return _apply(f"{user.name} was {users.PAST_TENSE[action]}.", users.decide, user, action, reason=reason)


@bp.post("/users/<id:user_id>/approve")
def approve_user(user_id):
    return _decide(user_id, "approve")


@bp.post("/users/<id:user_id>/reject")
def reject_user(user_id):
    return _decide(user_id, "reject", DecisionForm())


@bp.post("/users/<id:user_id>/suspend")
def suspend_user(user_id):
    return _decide(user_id, "suspend", DecisionForm())


@bp.post("/users/<id:user_id>/reinstate")
def reinstate_user(user_id):
    return _decide(user_id, "reinstate")


@bp.post("/users/<id:user_id>/role")
def change_role(user_id):
    user = _target(user_id)
    role = RoleForm().role.data
    return _apply(f"{user.name}'s role is now {role}.", users.change_role, user, role)


@bp.post("/users/<id:user_id>/send-reset")
def send_password_reset(user_id):
    """Email the user a password reset link, the one a forgotten password brings."""
    user = _target(user_id)
    return _apply(f"A link to choose a new password was emailed to {user.name}.", passwords.send_reset_link, user)


@bp.route("/users/<id:user_id>/erase", methods=["GET", "POST"])
def erase_user(user_id):
    """The confirmation page of an erase (what goes, what stays), and the erase itself."""
    form = EraseForm()
    if not form.validate_on_submit():
        return render_template("admin/erase.html", user=db.session.get(User, user_id) or abort(404), form=form)
    user = _target(user_id)
    return _apply(f"{user.name}'s personal data is erased.", users.erase, user, reason=form.reason.data)


# --- documents and reviews, read-only but for restoring an archived document ---------------

@bp.get("/documents", endpoint="documents")
def document_list():
    q = clean_query(request.args.get("q"))
    archived = request.args.get("archived") == "1"
    page = all_documents(q, request.args.get("page", 1, type=int), archived=archived)
    return render_template("admin/documents.html", page=page, q=q, archived=archived)


@bp.get("/documents/<id:document_id>")
def document(document_id):
    document = get_any_document_or_404(document_id)
    history, progress = document_history(document, request.args.get("page", 1, type=int))
    return render_template("admin/document.html", document=document, history=history, progress=progress)


@bp.post("/documents/<id:document_id>/restore")
def restore_document(document_id):
    """Bring back a document its sponsor archived (a sponsor may ask an admin to)."""
    document = get_any_document_or_404(document_id)
    try:
        archive.restore_document(document, current_user)
    except NoChanges as notice:
        flash(str(notice), "info")
    else:
        db.session.commit()
        flash(f"“{document.title}” is restored.", "success")
    return redirect(url_for(".document", document_id=document.id))


@bp.get("/autodocs/<id:autodoc_id>")
def review(autodoc_id):
    """An autodoc's review page as its editor sees it, without the verdict form."""
    autodoc = get_autodoc_or_404(autodoc_id, current_user)
    document = get_any_document_or_404(autodoc.revision.document_id)
    return render_template("admin/review.html", review=reviews.review_of(autodoc, document))


# --- the audit log and the evaluation data ---------------------------------------------------

@bp.get("/audit")
def audit_log():
    form = AuditFilterForm(request.args)
    form.validate()
    query = audit.events_query(actor=form.value("actor"), action=form.value("action"),
                               since=form.value("since"), until=form.value("until"))
    page = _paginate(query)
    return render_template("admin/audit.html", page=page, form=form, actions=audit.ACTIONS)


@bp.get("/reviews.jsonl")
def export_reviews():
    """Every reviewed autodoc as JSON Lines, streamed from a server-side cursor: the data a
    team needs to judge or fine-tune the writer, however large."""
    return streamed_download(reviews.export_lines(), "reviewed-autodocs", "jsonl", "application/x-ndjson")
