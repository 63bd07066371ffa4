"""Sign-up, log-in and password reset forms. The account rules themselves (email syntax and
uniqueness, password strength) live in services.users, shared with `flask create-admin`."""
from wtforms import EmailField, PasswordField, RadioField, SelectChoice, StringField
from wtforms.validators import AnyOf, DataRequired, EqualTo, InputRequired, Length, Optional

from ..models import SELF_SERVICE_ROLES, User
from ..services import users
from ..forms import SiteForm


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _new_password(label):
    """A password being chosen (sign-up, reset): the browser may offer to generate one."""
    return PasswordField(
        label,
        validators=[DataRequired("Choose a password.")],
        render_kw={"autocomplete": "new-password", "minlength": users.PASSWORD_MIN_LENGTH,
                   "maxlength": users.PASSWORD_MAX_LENGTH},
    )


def _confirmation(label):
    """The chosen password typed again, which must match the form's `password`."""
    return PasswordField(
        label,
        validators=[DataRequired("Type the password again."), EqualTo("password", "The passwords do not match.")],
        render_kw={"autocomplete": "new-password"},
    )


class AccountForm(SiteForm):
    """A form whose fields the account rules (services.users) also check."""

    def add_errors(self, errors):
        """Show the service's messages ({field name: message}) next to their fields."""
        for name, message in errors.items():
            if message not in self[name].errors:
                self[name].errors = [*self[name].errors, message]


class SignupForm(AccountForm):
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
    password = _new_password("Password")
    confirm = _confirmation("Confirm password")
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


class ForgotPasswordForm(SiteForm):
    # Only required: whatever else is typed gets the same answer as an email with no account.
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[DataRequired("Enter your email address."), Length(max=User.email.type.length)],
        render_kw={"autocomplete": "email", "autofocus": True},
    )


class ResetPasswordForm(AccountForm):
    """A new password, typed twice (the account page's change of password takes these
    fields too). Its strength is checked against the account's own name and email by the
    service that sets it, as sign-up checks it."""

    password = _new_password("New password")
    confirm = _confirmation("Confirm new password")
