from wtforms import IntegerField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, ValidationError
from wtforms.widgets import HiddenInput

from ..forms import SiteForm
from ..routing import MAX_ROW_ID
from ..services import tokens


class NewTokenForm(SiteForm):
    name = StringField("Token name", validators=[Length(max=tokens.NAME_MAX_LENGTH)],
                       render_kw={"placeholder": "e.g. nightly export script"})

    def validate_name(self, field):
        problem = tokens.name_error(field.data)
        if problem:
            raise ValidationError(problem)


class RevokeTokenForm(SiteForm):
    token_id = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(min=1, max=MAX_ROW_ID)])
