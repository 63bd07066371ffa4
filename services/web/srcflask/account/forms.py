from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import InputRequired, Length, ValidationError

from ..services import tokens


class NewTokenForm(FlaskForm):
    name = StringField("Token name", validators=[Length(max=tokens.NAME_MAX_LENGTH)],
                       render_kw={"placeholder": "e.g. nightly export script"})

    def validate_name(self, field):
        problem = tokens.name_error(field.data)
        if problem:
            raise ValidationError(problem)


class RevokeTokenForm(FlaskForm):
    token_id = HiddenField(validators=[InputRequired()])
