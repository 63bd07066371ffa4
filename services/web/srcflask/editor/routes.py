"""Editor pages: the documents assigned to them (read-only, with every revision's autodoc),
the queue of autodocs waiting for their verdict, and the review page where they give it."""
import datetime as dt

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..services import reviews
from ..services.documents import (
    autodoc_counts,
    clean_query,
    document_history,
    editor_documents,
    get_autodoc_or_404,
    get_document_or_404,
)
from . import bp
from .forms import VerdictForm

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


@bp.get("/documents/<id:document_id>")
def document(document_id):
    document = get_document_or_404(document_id, current_user)
    history, progress = document_history(document, request.args.get("page", 1, type=int))
    return render_template("editor/document.html", document=document, history=history, progress=progress)


@bp.get("/reviews", endpoint="reviews")
def review_queue():
    page = reviews.review_queue(current_user, request.args.get("page", 1, type=int))
    return render_template("editor/reviews.html", page=page, now=dt.datetime.now(dt.timezone.utc))


def _review_page(autodoc, form, refusal=None):
    review = reviews.review_of(autodoc, autodoc.revision.document)
    return render_template("editor/review.html", review=review, form=form, refusal=refusal)


@bp.route("/autodocs/<id:autodoc_id>/review", methods=["GET", "POST"])
def review(autodoc_id):
    """The autodoc beside its revision, what changed since the previous version, and the
    verdict form. A refused verdict (a stale approval, nothing written yet) answers 409
    with the page and the reason; nothing was written."""
    autodoc = get_autodoc_or_404(autodoc_id, current_user)
    form = VerdictForm()
    if form.validate_on_submit():
        try:
            reviews.give_verdict(autodoc, current_user, form.decision.data, form.comment.data)
        except (reviews.StaleApproval, reviews.NotReviewable) as refusal:
            return _review_page(autodoc, form, refusal), 409
        else:
            db.session.commit()
            title = autodoc.revision.document.title
            flash(f"Verdict saved on “{title}” version {autodoc.revision.version}: "
                  f"{reviews.DECISION_LABELS[form.decision.data].lower()}.", "success")
            return redirect(url_for(".reviews"))
    return _review_page(autodoc, form)
