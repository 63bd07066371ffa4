"""The account page's forms. Name and organization are sign-up's own fields, the new
password the reset page's; the rules behind them and behind emails are services.users'
(applied by services.accounts), so a field shows the same message here as at sign-up."""
from wtforms import EmailField, HiddenField, IntegerField, PasswordField, RadioField, SelectChoice, StringField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, NumberRange, ValidationError
from wtforms.widgets import HiddenInput

from ..auth.forms import AccountForm, ResetPasswordForm, SignupForm
from ..forms import SiteForm
from ..routing import MAX_ROW_ID
from ..services import notifications, tokens


def _current_password(field_id):
    """The current password, which the password and the email forms both ask for; each
    under an id of its own, since both are on one page (labels find their field by id)."""
    return PasswordField("Current password", id=field_id, validators=[DataRequired("Enter your current password.")],
                         render_kw={"autocomplete": "current-password"})


class NewTokenForm(SiteForm):
    name = StringField("Token name", validators=[Length(max=tokens.NAME_MAX_LENGTH)],
                       render_kw={"placeholder": "e.g. nightly export script"})

    def validate_name(self, field):
        problem = tokens.name_error(field.data)
        if problem:
            raise ValidationError(problem)


class RevokeTokenForm(SiteForm):
    token_id = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(min=1, max=MAX_ROW_ID)])


class ProfileForm(AccountForm):
    name = SignupForm.name
    organization = SignupForm.organization


class PasswordForm(AccountForm):
    current_password = _current_password("current_password")
    password = ResetPasswordForm.password
    confirm = ResetPasswordForm.confirm


class EmailForm(AccountForm):
    email = EmailField("New email", validators=[DataRequired("Enter the new email address.")],
                       render_kw={"autocomplete": "email"})
    current_password = _current_password("email_current_password")


class ConfirmEmailForm(SiteForm):
    token = HiddenField(validators=[DataRequired()])


class NotificationSettingsForm(SiteForm):
    """One choice per kind of notification a role receives (Off, At once, Daily digest):
    the fields differ by role, so `for_kinds` makes the form of a list of kinds."""

    CHOOSE = f"Choose {', '.join(notifications.DELIVERY_LABELS.values())}."

    @classmethod
    def for_kinds(cls, kinds, **kwargs):
        fields = {
            kind: RadioField(
                notifications.EMAIL_KINDS[kind],
                choices=[SelectChoice(value, label) for value, label in notifications.DELIVERY_LABELS.items()],
                validators=[InputRequired(cls.CHOOSE), AnyOf(notifications.DELIVERY_LABELS, cls.CHOOSE)],
                validate_choice=False,  # AnyOf says it in the product's words
            )
            for kind in kinds
        }
        form = type(cls.__name__, (cls,), fields)(**kwargs)
        form.kinds = kinds
        return form

    def choices(self):
        """{kind: delivery} as chosen."""
        return {kind: self[kind].data for kind in self.kinds}
