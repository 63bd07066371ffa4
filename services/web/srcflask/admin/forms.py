"""Admin forms: the user list's filters (a GET form) and the decisions' inputs."""
from flask_wtf import FlaskForm
from wtforms import SearchField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import Length, Optional

from ..models import ROLES, STATUSES
from ..services import users


def _choices(anything, values):
    return [SelectChoice("", anything), *(SelectChoice(value, value.title()) for value in values)]


class UserFilterForm(FlaskForm):
    """Search and filters of the user list. A GET form: it changes nothing, so no CSRF."""

    class Meta:
        csrf = False

    q = SearchField("Search", validators=[Optional(), Length(max=200)],
                    render_kw={"placeholder": "Name, email or organization"})
    role = SelectField("Role", choices=_choices("Any role", ROLES), validators=[Optional()])
    status = SelectField("Status", choices=_choices("Any status", STATUSES), validators=[Optional()])

    def value(self, name):
        """The field's value when it is valid, else "" (an unusable filter is ignored)."""
        field = self[name]
        return (field.data or "").strip() if not field.errors else ""


class DecisionForm(FlaskForm):
    """Reject and suspend: an optional reason, shown to the user on their standing page."""

    reason = TextAreaField("Reason (optional, shown to the user)",
                           validators=[Optional(), Length(max=users.REASON_MAX_LENGTH)])


class RoleForm(FlaskForm):
    # services.users.change_role refuses a role that does not exist, in its own words.
    role = SelectField("Role", choices=[SelectChoice(r, r.title()) for r in ROLES], validate_choice=False)
