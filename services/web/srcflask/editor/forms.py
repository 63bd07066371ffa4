"""Editor forms. The comment and correction rules come from services.reviews, so the form
and the service can never disagree about what a verdict may carry."""
from wtforms import BooleanField, RadioField, SelectChoice, StringField, TextAreaField
from wtforms.validators import InputRequired, ValidationError

from ..forms import SiteForm
from ..services.documents import clean_body
from ..services.reviews import COMMENT_MAX_CHARS, comment_error, correction_error

CHOOSE = "Choose approve, request changes or reject."


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class VerdictForm(SiteForm):
    """The verdict, with an optional correction: the textarea starts as `written`, the
    autodoc's continuation, and counts only while "Write how it should have read" is ticked."""

    decision = RadioField(
        "Verdict",
        choices=[SelectChoice("approve", "Approve"), SelectChoice("request_changes", "Request changes"),
                 SelectChoice("reject", "Reject")],
        validators=[InputRequired(CHOOSE)],
    )
    comment = TextAreaField(
        "Comment (required to request changes or reject; the sponsor sees it)",
        filters=[_strip],
        render_kw={"rows": 4, "maxlength": COMMENT_MAX_CHARS},
    )
    correct = BooleanField("Write how it should have read")
    correction = TextAreaField(
        "How it should have read (with a request for changes or a rejection; the sponsor sees what you changed)",
        filters=[clean_body],
        render_kw={"rows": 6},
    )

    def __init__(self, written, *args, **kwargs):
        super().__init__(*args, correction=written, **kwargs)
        self.written = written

    @property
    def correction_given(self):
        """The correction the verdict carries: None unless the box is ticked."""
        return self.correction.data if self.correct.data else None

    def validate_comment(self, field):
        # The decision is validated first (declared first): judge the comment only against a valid one.
        if not self.decision.errors:
            problem = comment_error(self.decision.data, field.data)
            if problem:
                raise ValidationError(problem)

    def validate_correction(self, field):
        if not self.decision.errors:
            problem = correction_error(self.decision.data, self.correction_given, self.written)
            if problem:
                raise ValidationError(problem)


class ComparisonForm(SiteForm):
    """A blind choice: the pair's token and the button pressed (services.comparisons checks
    both). The page renders them itself: the token comes with the pair, the choice is the
    name of the three buttons."""

    token = StringField()
    choice = StringField()
