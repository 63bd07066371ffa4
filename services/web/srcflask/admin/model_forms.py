"""The Models pages' forms: promote, roll back, start a training run. (Building a training
set and cancelling a run are buttons that carry only their CSRF token.) They check the
input's shape only; the rules (the promotion gate, which parent may be trained, which
settings are sane) are the services', and come back as their own refusals."""
from wtforms import BooleanField, IntegerField, SelectField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from ..forms import SiteForm
from ..services import users

# Written into the audit log, like an admin's reasons for decisions on accounts.
REASON_MAX_LENGTH = users.REASON_MAX_LENGTH


class PromoteForm(SiteForm):
    """Make a candidate the active model. The gate (its validation perplexity must beat the
    active model's) may be overridden only with a written reason: an override without one is
    refused here, before the service is asked, with what was typed kept in the form."""

    reason = TextAreaField("Reason (kept in the audit log)",
                           validators=[Optional(), Length(max=REASON_MAX_LENGTH)])
    override = BooleanField("Promote even though the gate refuses it (needs a reason)")

    def validate(self, extra_validators=None):
        # Here rather than in validate_reason: Optional() stops a blank reason's checks.
        valid = super().validate(extra_validators)
        if self.override.data and not (self.reason.data or "").strip():
            self.reason.errors = [*self.reason.errors, "Write why you override the promotion gate."]
            return False
        return valid


class RollbackForm(SiteForm):
    """Make an earlier model active again: always with a reason, since it undoes a decision."""

    reason = TextAreaField("Reason (kept in the audit log)",
                           validators=[InputRequired("Write why you roll back."), Length(max=REASON_MAX_LENGTH)])

    def validate_reason(self, field):
        if not field.data.strip():
            raise ValidationError("Write why you roll back.")


class StartRunForm(SiteForm):
    """A training run: which model to fine-tune, on which training set, for how many
    epochs. The choices are the registered models and the training sets (set by the view);
    the trainer process picks the queued run up."""

    parent = SelectField("Parent model", coerce=int, validators=[InputRequired()])
    training_set = SelectField("Training set", coerce=int, validators=[InputRequired()])
    # Its bounds are training.check_settings' (the TRAINING_EPOCHS setting's), refused in its words.
    epochs = IntegerField("Epochs", validators=[InputRequired("Give the number of epochs.")])

    def __init__(self, models, training_sets, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.parent.choices = [(model.id, f"{model.label} ({model.state})") for model in models]
        self.training_set.choices = [(ts.id, f"#{ts.id} · {ts.train_pairs} training pairs · {ts.sha256[:12]}")
                                     for ts in training_sets]
