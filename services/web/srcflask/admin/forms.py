"""Admin forms: the filters of the user list and of the audit log (GET forms) and the
decisions' inputs."""
from wtforms import BooleanField, DateField, SearchField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from ..models import ROLES, STATUSES
from ..services import audit, users
from ..forms import SiteForm


def _choices(anything, values):
    return [SelectChoice("", anything), *(SelectChoice(value, value.title()) for value in values)]


class _FilterForm(SiteForm):
    """Search and filters of a list. A GET form: it changes nothing, so no CSRF."""

    class Meta:
        csrf = False

    def value(self, name):
        """The field's value when it is valid, else "" (an unusable filter is ignored)."""
        field = self[name]
        if field.errors or field.data is None:
            return ""
        return field.data.strip() if isinstance(field.data, str) else field.data


class UserFilterForm(_FilterForm):
    q = SearchField("Search", validators=[Optional(), Length(max=200)],
                    render_kw={"placeholder": "Name, email or organization"})
    role = SelectField("Role", choices=_choices("Any role", ROLES), validators=[Optional()])
    status = SelectField("Status", choices=_choices("Any status", STATUSES), validators=[Optional()])


class AuditFilterForm(_FilterForm):
    actor = SearchField("Actor", validators=[Optional(), Length(max=200)],
                        render_kw={"placeholder": "Name or email, or “system”"})
    action = SelectField("Action", choices=[SelectChoice("", "Any action"),
                                            *(SelectChoice(key, label) for key, label in audit.ACTIONS.items())],
                         validators=[Optional()])
    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])

    def validate_until(self, field):
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("The end date is before the start date.")


class DecisionForm(SiteForm):
    """Reject and suspend: an optional reason, shown to the user on their standing page."""

    reason = TextAreaField("Reason (optional, shown to the user)",
                           validators=[Optional(), Length(max=users.REASON_MAX_LENGTH)])


class RoleForm(SiteForm):
    # services.users.change_role refuses a role that does not exist, in its own words.
    role = SelectField("Role", choices=[SelectChoice(r, r.title()) for r in ROLES], validate_choice=False)


class EraseForm(SiteForm):
    """Erasing an account cannot be undone: the admin says why (kept in the audit log) and
    confirms, on a page of its own that says what goes and what stays."""

    reason = TextAreaField("Reason (kept in the audit log; the user's own request, for instance)",
                           validators=[InputRequired(), Length(max=users.REASON_MAX_LENGTH)])
    confirm = BooleanField("I understand that the name, email, organisation, password and API tokens "
                           "are erased for good.",
                           validators=[DataRequired("Tick the box to confirm the erase.")])
