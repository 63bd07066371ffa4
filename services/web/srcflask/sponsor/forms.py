"""Sponsor forms. The text rules and the editor choices come from services.documents, so a
form and the service can never disagree about what a valid document or editor is."""
from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, NumberRange, ValidationError
from wtforms.widgets import HiddenInput

from ..services.documents import TITLE_MAX_CHARS, body_error, clean_body, clean_title, title_error
from ..forms import SiteForm

# Versions are PostgreSQL integers; anything outside can only be a tampered form.
MAX_VERSION = 2**31 - 1


def _rule(problem_of):
    """A WTForms validator from a service rule that returns a problem message or None."""

    def validate(form, field):
        problem = problem_of(field.data)
        if problem:
            raise ValidationError(problem)

    return validate


def _editor_label(editor):
    return f"{editor.name} ({editor.organization})" if editor.organization else editor.name


class _EditorChoice:
    """Forms with an `editor` select whose choices are the approved editors given: a posted
    id that is not one of them (a sponsor, a pending editor, an unknown id) is refused."""

    def __init__(self, editors, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.editor.choices = [(editor.id, _editor_label(editor)) for editor in editors]


class DocumentForm(SiteForm):
    title = StringField(
        "Title",
        filters=[clean_title],
        validators=[_rule(title_error)],
        render_kw={"maxlength": TITLE_MAX_CHARS, "required": True},
    )
    body = TextAreaField("Body", filters=[clean_body], validators=[_rule(body_error)], render_kw={"rows": 14})


class NewDocumentForm(_EditorChoice, DocumentForm):
    editor = SelectField("Editor", coerce=int)


class EditDocumentForm(DocumentForm):
    # The version the user started from: the save is refused if someone saved since.
    version = IntegerField(
        widget=HiddenInput(),
        validators=[
            InputRequired("The form was incomplete. Reload the page and try again."),
            NumberRange(min=1, max=MAX_VERSION, message="The form was altered. Reload the page and try again."),
        ],
    )


class ReassignEditorForm(_EditorChoice, SiteForm):
    editor = SelectField("Editor", coerce=int)
