"""Sponsor pages: their documents, writing and revising them, choosing their editor.

Views only validate, call one service function, commit once and redirect; the rules
(versions, revisions, autodocs, who may be an editor) live in services.documents.
"""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import throttle
from ..extensions import db
from ..services import archive, export
from ..services.autodoc_queue import AlreadyQueued, queue_regeneration
from ..services.documents import (
    EditConflict,
    NoChanges,
    NotAnApprovedEditor,
    approved_editors,
    autodoc_counts,
    get_autodoc_or_404,
    clean_query,
    create_document,
    document_history,
    history_page_of,
    get_document_or_404,
    reassign_editor,
    sponsor_documents,
    update_document,
)
from . import bp
from .forms import EditDocumentForm, NewDocumentForm, ReassignEditorForm

LATEST_ON_DASHBOARD = 5


@bp.get("/")
def dashboard():
    latest = sponsor_documents(current_user, per_page=LATEST_ON_DASHBOARD)
    return render_template("sponsor/dashboard.html", latest=latest, counts=autodoc_counts(current_user))


@bp.get("/documents", endpoint="documents")
def document_list():
    q = clean_query(request.args.get("q"))
    page = sponsor_documents(current_user, q, request.args.get("page", 1, type=int))
    return render_template("sponsor/documents.html", page=page, q=q)


@bp.get("/documents/archived")
def archived_documents():
    """The documents the sponsor archived: kept, out of every other list, restorable."""
    q = clean_query(request.args.get("q"))
    page = sponsor_documents(current_user, q, request.args.get("page", 1, type=int), archived=True)
    return render_template("sponsor/archived_documents.html", page=page, q=q)


@bp.get("/export")
@throttle.exports()
def export_data():
    """Everything of the sponsor's as one streamed JSON download (a GET: it changes nothing)."""
    return export.attachment(current_user._get_current_object())


@bp.route("/documents/new", methods=["GET", "POST"])
@throttle.saves()
def new_document():
    form = NewDocumentForm(approved_editors())
    if form.validate_on_submit():
        try:
            document = create_document(current_user, form.editor.data, form.title.data, form.body.data)
        except NotAnApprovedEditor as error:  # the editor lost their approval a moment ago
            form.editor.errors.append(str(error))
        else:
            db.session.commit()
            flash("Document saved. Its autodoc is queued.", "success")
            return redirect(url_for(".document", document_id=document.id))
    return render_template("sponsor/new_document.html", form=form)


def _document_page(document, reassign_form):
    history, progress = document_history(document, request.args.get("page", 1, type=int))
    return render_template(
        "sponsor/document.html", document=document, history=history, progress=progress, reassign_form=reassign_form
    )


@bp.get("/documents/<id:document_id>")
def document(document_id):
    document = get_document_or_404(document_id, current_user, archived=True)
    return _document_page(document, ReassignEditorForm(approved_editors(), editor=document.retention.editor_id))


@bp.route("/documents/<id:document_id>/edit", methods=["GET", "POST"])
@throttle.saves()
def edit_document(document_id):
    document = get_document_or_404(document_id, current_user)
    # Prefilled only on GET: a POST must carry its own version, never fall back to the current one.
    form = EditDocumentForm(obj=document if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            update_document(document, form.version.data, form.title.data, form.body.data, current_user)
        except EditConflict as conflict:
            return render_template("sponsor/edit_document.html", form=form, document=document, conflict=conflict), 409
        except NoChanges as notice:
            flash(str(notice), "info")
            return redirect(url_for(".document", document_id=document.id))
        db.session.commit()
        flash(f"Document saved as version {document.version}. Its autodoc is queued.", "success")
        return redirect(url_for(".document", document_id=document.id))
    return render_template("sponsor/edit_document.html", form=form, document=document, conflict=None)


@bp.post("/documents/<id:document_id>/editor", endpoint="reassign_editor")
def reassign_editor_view(document_id):
    document = get_document_or_404(document_id, current_user)
    form = ReassignEditorForm(approved_editors())
    if not form.validate_on_submit():
        return _document_page(document, form)
    try:
        editor = reassign_editor(document, form.editor.data, current_user)
    except NotAnApprovedEditor as error:
        form.editor.errors.append(str(error))
        return _document_page(document, form)
    except NoChanges as notice:
        flash(str(notice), "info")
    else:
        db.session.commit()
        flash(f"{editor.name} is now the editor of this document.", "success")
    return redirect(url_for(".document", document_id=document.id))


@bp.post("/documents/<id:document_id>/archive", endpoint="archive_document")
def archive_document_view(document_id):
    document = get_document_or_404(document_id, current_user, archived=True)
    try:
        archive.archive_document(document, current_user)
    except NoChanges as notice:
        flash(str(notice), "info")
        return redirect(url_for(".document", document_id=document.id))
    db.session.commit()
    flash(f"“{document.title}” is archived: it is kept, out of your lists and the writer's queue, "
          "until you restore it.", "success")
    return redirect(url_for(".documents"))


@bp.post("/documents/<id:document_id>/restore", endpoint="restore_document")
def restore_document_view(document_id):
    document = get_document_or_404(document_id, current_user, archived=True)
    try:
        archive.restore_document(document, current_user)
    except NoChanges as notice:
        flash(str(notice), "info")
    else:
        db.session.commit()
        flash(f"“{document.title}” is restored.", "success")
    return redirect(url_for(".document", document_id=document.id))


@bp.post("/autodocs/<id:autodoc_id>/regenerate")
@throttle.regenerations()
def regenerate_autodoc(autodoc_id):
    """Queue a new attempt at this autodoc's revision; the older text stays on the page."""
    autodoc = get_autodoc_or_404(autodoc_id, current_user)
    try:
        queue_regeneration(autodoc.revision, by=current_user)
    except AlreadyQueued as notice:
        flash(str(notice), "info")
    else:
        db.session.commit()
        flash(f"A new autodoc for version {autodoc.revision.version} is queued.", "success")
    return redirect(_on_its_page(autodoc, f"revision-{autodoc.revision.version}"))


@bp.get("/autodocs/<id:autodoc_id>")
def autodoc(autodoc_id):
    """An autodoc where it is shown: its document's page, at the page of the history that
    holds its revision (what a notification about an older version links to)."""
    return redirect(_on_its_page(get_autodoc_or_404(autodoc_id, current_user), f"autodoc-{autodoc_id}"))


def _on_its_page(autodoc, anchor):
    revision = autodoc.revision
    page = history_page_of(revision.document, revision.version)
    return url_for(".document", document_id=revision.document_id, page=page if page > 1 else None) + f"#{anchor}"
