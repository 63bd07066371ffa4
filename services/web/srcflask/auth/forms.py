"""Sign-up and log-in forms. The account rules themselves (email syntax and uniqueness,
password strength) live in services.users, shared with `flask create-admin`."""
from wtforms import EmailField, PasswordField, RadioField, SelectChoice, StringField
from wtforms.validators import AnyOf, DataRequired, EqualTo, InputRequired, Length, Optional

from ..models import SELF_SERVICE_ROLES, User
from ..services import users
from ..forms import SiteForm


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class SignupForm(SiteForm):
    name = StringField(
        "Full name",
        filters=[_strip],
        validators=[DataRequired(users.NAME_REQUIRED)],
        render_kw={"autocomplete": "name", "autofocus": True, "maxlength": users.NAME_MAX_LENGTH},
    )
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[DataRequired("Enter your email address.")],
        render_kw={"autocomplete": "email"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Choose a password.")],
        render_kw={"autocomplete": "new-password", "minlength": users.PASSWORD_MIN_LENGTH,
                   "maxlength": users.PASSWORD_MAX_LENGTH},
    )
    confirm = PasswordField(
        "Confirm password",
        validators=[DataRequired("Type the password again."), EqualTo("password", "The passwords do not match.")],
        render_kw={"autocomplete": "new-password"},
    )
    role = RadioField(
        "I want to",
        choices=[SelectChoice("sponsor", "Write documents (sponsor)"),
                 SelectChoice("editor", "Review documents (editor)")],
        validators=[InputRequired(users.SIGNUP_ROLE_MESSAGE), AnyOf(SELF_SERVICE_ROLES, users.SIGNUP_ROLE_MESSAGE)],
        validate_choice=False,  # AnyOf says it in the product's words
    )
    organization = StringField(
        "Organization (optional)",
        filters=[_strip],
        validators=[Optional(), Length(max=User.organization.type.length)],
        render_kw={"autocomplete": "organization"},
    )

    def validate(self, extra_validators=None):
        """The form's own checks, then the account rules, so that one submission shows
        every problem next to its field."""
        valid = super().validate(extra_validators)
        if self.email.errors or self.password.errors:
            return False
        try:
            self.email.data = users.check_new_account(
                name=self.name.data or "", email=self.email.data, password=self.password.data,
                organization=self.organization.data or "",
            )
        except users.InvalidAccount as invalid:
            self.add_errors(invalid.errors)
            return False
        return valid

    def add_errors(self, errors):
        """Show the service's messages ({field name: message}) next to their fields."""
        for name, message in errors.items():
            if message not in self[name].errors:
                self[name].errors = [*self[name].errors, message]


class LoginForm(SiteForm):
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[DataRequired("Enter your email address.")],
        render_kw={"autocomplete": "email", "autofocus": True},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter your password.")],
        render_kw={"autocomplete": "current-password"},
    )
