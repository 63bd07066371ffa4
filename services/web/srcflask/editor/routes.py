"""Editor pages: the documents assigned to them (read-only, with every revision's autodoc),
the queue of autodocs waiting for their verdict, and the review page where they give it
(with a correction, if they like) and compare the autodoc blind with a candidate's draft."""
import datetime as dt

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..services import comparisons, reviews
from ..services.documents import (
    autodoc_counts,
    clean_query,
    document_history,
    editor_documents,
    get_autodoc_or_404,
    get_document_or_404,
)
from ..services.worddiff import word_diff
from . import bp
from .forms import ComparisonForm, VerdictForm

LATEST_ON_DASHBOARD = 5

# Every role's pages show an editor's correction as a word diff against the writer's text
# (verdict_note in templates/_macros/documents.html), on document pages as on review pages.
bp.add_app_template_global(word_diff, "word_diff")


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
    withheld = comparisons.withheld_texts([autodoc for revision in history.items for autodoc in revision.autodocs],
                                          current_user)
    return render_template("editor/document.html", document=document, history=history, progress=progress,
                           withheld=withheld)


@bp.get("/reviews", endpoint="reviews")
def review_queue():
    page = reviews.review_queue(current_user, request.args.get("page", 1, type=int))
    return render_template("editor/reviews.html", page=page, now=dt.datetime.now(dt.timezone.utc))


def _review_page(autodoc, form, refusal=None, compare=True):
    """The review page; `compare`: with the editor's blind comparison (a verdict sent back
    with its errors is shown without it, so nothing typed is hidden behind a comparison
    whose draft was written meanwhile)."""
    review = reviews.review_of(autodoc, autodoc.revision.document, current_user if compare else None)
    return render_template("editor/review.html", review=review, form=form, refusal=refusal,
                           comparison_form=ComparisonForm(formdata=None))


@bp.route("/autodocs/<id:autodoc_id>/review", methods=["GET", "POST"])
def review(autodoc_id):
    """The autodoc beside its revision, what changed since the previous version, and the
    verdict form. A refused verdict (a stale approval, nothing written yet) answers 409
    with the page and the reason; nothing was written."""
    autodoc = get_autodoc_or_404(autodoc_id, current_user)
    form = VerdictForm(autodoc.continuation)
    if form.validate_on_submit():
        try:
            reviews.give_verdict(autodoc, current_user, form.decision.data, form.comment.data, form.correction_given)
        except (reviews.StaleApproval, reviews.NotReviewable) as refusal:
            return _review_page(autodoc, form, refusal, compare=False), 409
        else:
            db.session.commit()
            title = autodoc.revision.document.title
            flash(f"Verdict saved on “{title}” version {autodoc.revision.version}: "
                  f"{reviews.DECISION_LABELS[form.decision.data].lower()}.", "success")
            return redirect(url_for(".reviews"))
    return _review_page(autodoc, form, compare=not form.is_submitted())


@bp.post("/autodocs/<id:autodoc_id>/comparison")
def compare(autodoc_id):
    """The editor's blind choice on the review page's pair, then back to the page, which
    now says which draft was which. A changed or too old form (400) or a closed pair (409)
    answers with the review page and the reason; a pair not theirs, 404."""
    autodoc = get_autodoc_or_404(autodoc_id, current_user)
    form = ComparisonForm()
    try:
        _, recorded = comparisons.choose(current_user, autodoc, form.token.data, form.choice.data)
    except comparisons.NotYourPair:
        abort(404)
    except comparisons.ComparisonError as refusal:
        return _review_page(autodoc, VerdictForm(autodoc.continuation, formdata=None), refusal), refusal.status
    db.session.commit()
    if recorded:
        flash("Your choice is saved. Here is which draft was which.", "success")
    else:
        flash("You had already chosen on this pair: your first choice stands.", "info")
    return redirect(url_for(".review", autodoc_id=autodoc.id, _anchor="comparison"))
