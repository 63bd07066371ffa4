"""The notification settings page: which in-app notifications are also emailed, each kind
at once, in the daily digest or not at all (the default). Only the kinds the person's role
receives are offered; an admin's role receives none, and the page says so. The emails'
"change or stop" link leads here (services.notifications sends them)."""
from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from ..extensions import db
from ..services import notifications
from . import bp
from .forms import NotificationSettingsForm


@bp.route("/notifications", methods=["GET", "POST"])
def notification_settings():
    """The form (GET) and saving it (POST). A choice the page does not offer (a hand-made
    request) is refused with 400 and the page saying what is wrong; nothing is saved."""
    kinds = notifications.email_kinds(current_user)
    form = NotificationSettingsForm.for_kinds(kinds, data=notifications.preferences(current_user))
    if form.validate_on_submit():
        changed = notifications.set_preferences(current_user, form.choices())
        db.session.commit()
        flash("Your notification emails were saved." if changed else "Nothing changed.", "success" if changed else "info")
        return redirect(url_for(".notification_settings"))
    status = 400 if form.is_submitted() else 200
    return render_template("account/notifications.html", form=form, kinds=kinds,
                           digest_hour=current_app.config["DIGEST_HOUR_UTC"]), status
