"""Editor pages: the documents assigned to them, read-only, with every revision's autodoc."""
from flask import render_template, request
from flask_login import current_user

from ..services.documents import (
    autodoc_counts,
    clean_query,
    document_history,
    editor_documents,
    get_document_or_404,
)
from . import bp

LATEST_ON_DASHBOARD = 5


@bp.get("/")
def dashboard():
    latest = editor_documents(current_user, per_page=LATEST_ON_DASHBOARD)
    return render_template("editor/dashboard.html", latest=latest, counts=autodoc_counts(current_user))


@bp.get("/documents", endpoint="documents")
def document_list():
    q = clean_query(request.args.get("q"))
    page = editor_documents(current_user, q, request.args.get("page", 1, type=int))
    return render_template("editor/documents.html", page=page, q=q)


@bp.get("/documents/<int:document_id>")
def document(document_id):
    document = get_document_or_404(document_id, current_user)
    revisions, progress = document_history(document)
    return render_template("editor/document.html", document=document, revisions=revisions, progress=progress)
