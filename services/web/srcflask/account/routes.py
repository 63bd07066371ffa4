"""Personal API tokens: create (the secret is shown once), list, revoke. Every change is
a POST with CSRF; revoking redirects back to the list.

Creating a token is the one POST answered with a page instead of a redirect: the secret
is shown in that response (201, never cached) and nowhere else. Carrying it across a
redirect would need the session, and Flask's session cookie is signed, not encrypted:
anyone who sees the Set-Cookie header could read the secret."""
from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from ..extensions import db
from ..services import tokens
from . import bp
from .forms import NewTokenForm, RevokeTokenForm


@bp.route("/tokens", methods=["GET", "POST"])
def api_tokens():
    """The list, and the form that creates a token (its secret shown once, in the answer)."""
    form = NewTokenForm()
    if form.validate_on_submit():
        try:
            new = tokens.create_token(current_user, form.name.data)
        except tokens.TokenError as refused:  # at the cap of live tokens
            form.name.errors.append(str(refused))
            return _tokens_page(form)
        db.session.commit()
        page = _tokens_page(NewTokenForm(formdata=None), new_token=new)
        return page, 201, {"Cache-Control": "no-store"}
    return _tokens_page(form)


def _tokens_page(form, new_token=None):
    return render_template("account/tokens.html", form=form, tokens=tokens.user_tokens(current_user),
                           new_token=new_token, revoke_form=RevokeTokenForm())


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
