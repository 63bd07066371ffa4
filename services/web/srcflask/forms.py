"""The base of every form of the site."""
from flask import request
from flask_wtf import FlaskForm
from werkzeug.datastructures import CombinedMultiDict

NUL_MESSAGE = "Remove the NUL character (an invisible control character) from this field: it cannot be stored."


class SiteForm(FlaskForm):
    """A FlaskForm that reads only the posted fields and refuses NUL characters.

    No form of the site takes a file, but Flask-WTF merges uploaded files into the form
    data: a hand-made request with a file where text is expected would reach the filters
    and validators as a FileStorage. Here the file is simply not there (the field is then
    missing, and says so).

    PostgreSQL cannot store NUL and no keyboard types it: a field that carries one gets an
    error next to it, with the submitted text kept in the form, rather than the text being
    changed behind the writer's back or the database refusing it later.
    """

    class Meta:
        def wrap_formdata(self, form, formdata):
            wrapped = super().wrap_formdata(form, formdata)
            return request.form if isinstance(wrapped, CombinedMultiDict) else wrapped

    def validate(self, extra_validators=None):
        valid = super().validate(extra_validators)
        for field in self:
            if any(isinstance(value, str) and "\x00" in value for value in field.raw_data or ()):
                field.errors = [*field.errors, NUL_MESSAGE]
                valid = False
        return valid
