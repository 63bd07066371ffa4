"""Sign-up, log-in, log-out, a forgotten password's reset and the standing page (where
accounts that cannot use the site yet, or any more, are told why)."""
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from .. import throttle
from ..extensions import db, limiter
from ..security import ENDED_STANDINGS, is_safe_next, standing_of, start_session
from ..services import notifications, passwords, users
from ..services.signed_links import LinkRefused
from . import bp
from .forms import ForgotPasswordForm, LoginForm, ResetPasswordForm, SignupForm

LOGIN_FAILED = "Email or password is incorrect."


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"], methods=["POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = users.register_user(
                name=form.name.data, email=form.email.data, password=form.password.data,
                role=form.role.data, organization=form.organization.data or "",
            )
        except users.InvalidAccount as invalid:
            form.add_errors(invalid.errors)
        else:
            db.session.commit()
            start_session(user)
            flash("Your account was created.", "success")
            return redirect(url_for("auth.standing"))
    return render_template("auth/signup.html", form=form)


@bp.route("/login", methods=["GET", "POST"])
@throttle.login_attempts
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    next_url = request.args.get("next", "")
    next_url = next_url if is_safe_next(next_url) else None
    failed = False
    if form.validate_on_submit():
        user = users.authenticate(form.email.data, form.password.data)
        if user is None:
            failed = True
        elif user.status in ENDED_STANDINGS:
            # Not logged in: the standing page explains why, as it does when a session ends,
            # and shows the account notifications they cannot read in the app any more.
            notices = notifications.deliver_account_notices(user)
            db.session.commit()
            session["standing"] = {**standing_of(user), "notices": notices}
            return redirect(url_for("auth.standing"))
        else:
            start_session(user)
            users.record_login(user)
            db.session.commit()
            if not user.is_approved:
                return redirect(url_for("auth.standing"))
            return redirect(next_url or url_for("main.index"))
    return render_template("auth/login.html", form=form, next_url=next_url,
                           error=LOGIN_FAILED if failed else None)


@bp.route("/forgot", methods=["GET", "POST"])
@throttle.reset_requests
def forgot_password():
    """Ask for a reset link. The answer is the same whether or not an account uses the
    email (services.passwords says how the work done is kept alike too)."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        passwords.request_reset(form.email.data)
        db.session.commit()
        minutes = current_app.config["PASSWORD_RESET_MAX_AGE_SECONDS"] // 60
        flash(f"If an account uses {form.email.data}, a link to choose a new password is on its way there. "
              f"It works once, for {minutes} minutes.", "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot.html", form=form)


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset_password(token):
    """Choose a new password through an emailed link, then log in with it."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = ResetPasswordForm()
    try:
        if form.validate_on_submit():
            passwords.reset_password(token, form.password.data)
            db.session.commit()
            flash("Your password was changed, and every session of your account has ended. "
                  "Log in with the new password.", "success")
            return redirect(url_for("auth.login"))
        passwords.check_link(token)
    except LinkRefused as refused:
        db.session.rollback()
        return render_template("auth/reset_refused.html", message=str(refused)), refused.status
    except users.InvalidAccount as invalid:
        db.session.rollback()
        form.add_errors(invalid.errors)
    return render_template("auth/reset.html", form=form)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        users.record_logout(current_user)
        db.session.commit()
    logout_user()
    session.pop("standing", None)
    flash("You have logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.get("/standing")
def standing():
    """Pending users wait for approval; rejected and suspended users (whose session has
    ended, see security.end_session_of_blocked_user) learn why."""
    if current_user.is_authenticated:
        if current_user.is_approved:
            return redirect(url_for("main.index"))
        return render_template("auth/standing.html", status=current_user.status, reason="")
    ended = session.get("standing")
    if not ended:
        return redirect(url_for("auth.login"))
    return render_template("auth/standing.html", status=ended["status"], reason=ended["reason"],
                           notices=notifications.account_notices(ended.get("notices", [])))
