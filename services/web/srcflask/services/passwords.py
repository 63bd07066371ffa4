"""Password resets: the link a person who forgot their password is emailed, and what
following it may change.

A reset link is a signed link (services.signed_links: a token made up, cut short or
changed is not valid, 400; one older than PASSWORD_RESET_MAX_AGE_SECONDS has expired, 410)
naming the account and a digest of its password hash at the time of sending. Once the
password changes, by this link or any other way, every link sent before stops working
(410): using a link changes the hash it is bound to, so it is single-use without storing
anything.

Nothing is written when a link is sent from the forgot-password page but the email itself
(the outbox row, services.outbox), and an email with no account costs the same work
(request_reset), so that neither the page's answer nor its time tells them apart. An admin's
"send a reset link" is audited; a reset by link is audited as the account's own act. A
reset changes the password and nothing else: the account's standing (pending, rejected,
suspended) stays, and since a new password hash ends every session (User.end_sessions),
the person logs in afresh, where their standing is applied as always.

Functions here flush, never commit: the caller commits once.
"""
from flask import current_app

from ..extensions import db
from ..models import User
from . import audit, outbox, users
from .signed_links import LinkRefused, SignedLinks, digest

TEMPLATE = "password_reset"
# The recipient of the link that request_reset writes, and never commits, for an email with
# no account (.invalid: a domain that can never receive mail).
STAND_IN_EMAIL = "no-account@stand-in.invalid"
INVALID = "This password reset link is not valid. Copy the whole link from the email, or ask for a new one."
EXPIRED = "This password reset link has expired. Ask for a new one."
USED = ("This password reset link was used already, or the password was changed since it was sent. "
        "Ask for a new one if you still need it.")
LINKS = SignedLinks("srcflask.password-reset", "PASSWORD_RESET_MAX_AGE_SECONDS", invalid=INVALID, expired=EXPIRED)


def reset_token(user):
    """A token for `user`'s reset link, valid until the password changes or it expires."""
    return LINKS.token([user.id, digest(user.password_hash)])


def _user_for_token(token, *, lock):
    """The account a valid, unexpired link names while its password is unchanged (locked
    until commit when `lock`, so that two uses of one link are taken one after the other and
    the second finds the hash changed); LinkRefused otherwise."""
    user_id, bound = LINKS.payload(token)
    user = users.get_user_for_update(user_id) if lock else db.session.get(User, user_id)
    if user is None:
        raise LinkRefused(INVALID, 400)
    if bound != digest(user.password_hash):
        raise LinkRefused(USED, 410)
    return user


def check_link(token):
    """The account whose reset page `token` opens, or LinkRefused saying why not."""
    return _user_for_token(token, lock=False)


def _queue_link(user):
    outbox.queue_email(
        user.email, TEMPLATE, name=user.name,
        link=outbox.site_link("auth.reset_password", token=reset_token(user)),
        valid_minutes=current_app.config["PASSWORD_RESET_MAX_AGE_SECONDS"] // 60,
    )


def request_reset(email):
    """Queue a reset link to the account `email` names, if any; nothing is sent otherwise,
    and the caller answers the same either way.

    Both ways do the same work, so that the time taken does not tell them apart either: an
    email with no account gets a link for a stand-in account, rendered and written to the
    outbox like any other, inside a savepoint that is then rolled back (the row is never
    committed, so never sent). Only the savepoint's end differs. bench/forgot_timing.py
    measures both ways (bench/RESULTS.md)."""
    user = users.user_with_email(email)
    if user is not None and user.erased_at is not None:
        user = None  # an erased account's placeholder address is nobody's
    savepoint = db.session.begin_nested()
    _queue_link(user or User(id=0, name="", email=STAND_IN_EMAIL, password_hash=""))
    if user is None:
        savepoint.rollback()
    else:
        savepoint.commit()


def send_reset_link(user, *, by):
    """An admin sends `user` the same email a forgotten password brings (the admin never
    sees the link), audited."""
    _queue_link(user)
    audit.record(by, "user.send_password_reset", "user", user.id, name=user.name, email=user.email)


def reset_password(token, password):
    """Set the password of the account `token` names to `password`, which must pass the
    sign-up rules (users.InvalidAccount({"password": ...}) otherwise). Its sessions end with
    the old hash; its standing does not change. Returns the user."""
    user = _user_for_token(token, lock=True)
    users.set_new_password(user, password)
    audit.record(user, "user.reset_password", "user", user.id, name=user.name, email=user.email)
    return user
