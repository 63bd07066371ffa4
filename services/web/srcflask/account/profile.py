"""The account page: name and organization, a new password, a new email (confirmed from
the new mailbox: services.accounts says how), log-out everywhere and the way to the API
tokens.

Each form posts to a URL of its own and, once done, redirects back to the page. A refused
form shows the whole page again (200) with its errors next to its fields and what was typed
kept (passwords aside); the other forms start empty. The forms that ask for the current
password count wrong current passwords as log-in counts failures (throttle.current_password_checks). Log-out
everywhere is the site's log-out, which always ends every session of the account.
"""
from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user

from .. import throttle
from ..extensions import db
from ..services import accounts, users
from ..services.signed_links import LinkRefused
from . import bp
from .forms import ConfirmEmailForm, EmailForm, PasswordForm, ProfileForm


@bp.get("/")
def index():
    return _account_page()


def _account_page(**forms):
    """The page, with the refused form given by name and the others fresh."""
    forms = {"profile_form": ProfileForm(formdata=None, obj=current_user), "password_form": PasswordForm(formdata=None),
             "email_form": EmailForm(formdata=None), **forms}
    return render_template("account/index.html", **forms,
                           email_link_hours=current_app.config["EMAIL_CHANGE_MAX_AGE_SECONDS"] / 3600)


@bp.post("/profile")
def update_profile():
    form = ProfileForm()
    if form.validate():
        try:
            accounts.update_profile(current_user, name=form.name.data, organization=form.organization.data or "")
        except users.InvalidAccount as invalid:
            form.add_errors(invalid.errors)
        else:
            db.session.commit()
            flash("Your name and organization were saved.", "success")
            return redirect(url_for(".index"))
    return _account_page(profile_form=form)


@bp.post("/password")
@throttle.current_password_checks
def change_password():
    form = PasswordForm()
    if form.validate():
        try:
            accounts.change_password(current_user, current_password=form.current_password.data,
                                     new_password=form.password.data)
        except users.InvalidAccount as invalid:
            _count_wrong_current_password(invalid)
            form.add_errors(invalid.errors)
        else:
            db.session.commit()
            # The new password ended every session of the account, this one too: issue it
            # again under the new session generation, keeping the rest of it (its CSRF token,
            # so forms open in other tabs of this browser still send).
            login_user(current_user._get_current_object())
            flash("Your password was changed. Every other session of your account has ended.", "success")
            return redirect(url_for(".index"))
    return _account_page(password_form=form)


@bp.post("/email")
@throttle.current_password_checks
def request_email_change():
    form = EmailForm()
    if form.validate():
        try:
            new_email = accounts.request_email_change(current_user, new_email=form.email.data,
                                                      current_password=form.current_password.data)
        except users.InvalidAccount as invalid:
            _count_wrong_current_password(invalid)
            form.add_errors(invalid.errors)
        else:
            db.session.commit()
            flash(f"We sent a link to {new_email}: follow it to make it your email. Until then your email stays "
                  f"{current_user.email}.", "info")
            return redirect(url_for(".index"))
    return _account_page(email_form=form)


def _count_wrong_current_password(invalid):
    if "current_password" in invalid.errors:
        throttle.current_password_refused()


@bp.route("/email/confirm", methods=["GET", "POST"])
def confirm_email():
    """The emailed link (GET, ?token=) shows what would change and a button; the button
    (POST) changes it. A link that cannot be used gets a page saying why, with its status."""
    form = ConfirmEmailForm()
    if form.validate_on_submit():
        try:
            new_email = accounts.confirm_email_change(current_user, form.token.data)
        except LinkRefused as refused:
            return _link_refused(refused)
        db.session.commit()
        flash(f"Your email is now {new_email}.", "success")
        return redirect(url_for(".index"))
    token = form.token.data if request.method == "POST" else request.args.get("token", "")
    try:
        new_email = accounts.check_email_link(current_user, token or "")
    except LinkRefused as refused:
        return _link_refused(refused)
    return render_template("account/confirm_email.html", form=ConfirmEmailForm(token=token), new_email=new_email)


def _link_refused(refused):
    return render_template("account/confirm_email.html", problem=str(refused)), refused.status
