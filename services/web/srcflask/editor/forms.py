"""Editor forms. The comment rule comes from services.reviews, so the form and the service
can never disagree about when a comment is required."""
from wtforms import RadioField, SelectChoice, TextAreaField
from wtforms.validators import InputRequired, ValidationError

from ..services.reviews import COMMENT_MAX_CHARS, comment_error
from ..forms import SiteForm

CHOOSE = "Choose approve, request changes or reject."


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class VerdictForm(SiteForm):
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

    def validate_comment(self, field):
        # The decision is validated first (declared first): judge the comment only against a valid one.
        if not self.decision.errors:
            problem = comment_error(self.decision.data, field.data)
            if problem:
                raise ValidationError(problem)
