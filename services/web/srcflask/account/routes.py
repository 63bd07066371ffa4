"""Personal API tokens: create (the secret is shown once), list, revoke. Every change is
a POST with CSRF that redirects back to the list."""
from flask import flash, redirect, render_template, session, url_for
from flask_login import current_user

from ..extensions import db
from ..services import tokens
from . import bp
from .forms import NewTokenForm, RevokeTokenForm

# The new secret crosses the redirect in the (signed) session and is removed by the page
# that shows it: it is never stored on the server, and a reload no longer shows it.
NEW_SECRET_KEY = "new_api_token"


@bp.route("/tokens", methods=["GET", "POST"])
def api_tokens():
    """The list, and the form that creates a token (shown once, after the redirect)."""
    form = NewTokenForm()
    if form.validate_on_submit():
        new = tokens.create_token(current_user, form.name.data)
        db.session.commit()
        session[NEW_SECRET_KEY] = {"name": new.token.name, "secret": new.secret}
        flash(f"Token “{new.token.name}” created. Copy it now: it will not be shown again.", "success")
        return redirect(url_for(".api_tokens"))
    return render_template("account/tokens.html", form=form, tokens=tokens.user_tokens(current_user),
                           new_token=session.pop(NEW_SECRET_KEY, None), revoke_form=RevokeTokenForm())


@bp.post("/tokens/revoke")
def revoke_token():
    form = RevokeTokenForm()
    revoked = tokens.revoke_token(current_user, form.token_id.data) if form.validate() else None
    if revoked is None:
        flash("There is no such active token.", "info")
    else:
        db.session.commit()
        flash(f"Token “{revoked.name}” revoked: it no longer works.", "success")
    return redirect(url_for(".api_tokens"))
