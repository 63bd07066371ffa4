"""Self-service on one's own account: name and organization, a new password (from the
account page, or set by an operator at the console), and a new email that is never lost.

The rules are sign-up's (services.users: name, email syntax and uniqueness, password
strength), applied here to an account that exists. A new password ends every session the
old one opened (User.set_password moves the session generation); the account page then
re-issues the session it was set from.

**A new email is confirmed from the new mailbox** before it replaces the old one, so that a
typo never locks anyone out of their account: asking for it (with the current password)
emails a link to the new address and a notice to the old one ("if this wasn't you, reset
your password"); the email changes only when the link is followed. The link is a signed link
(services.signed_links: made up, cut short or changed → not valid, 400; older than
EMAIL_CHANGE_MAX_AGE_SECONDS → expired, 410) naming the account, the new email and a
fingerprint of the account as it was when the link was sent: its current email, its
password hash and its last email change on record. So a link
- works once: following it changes the email, which the fingerprint holds, and the audit
  row of the change (its id is in the fingerprint too) keeps it dead even if the account
  later returns to the old email (410);
- dies when the password changes (410): resetting the password is how the owner of the
  old address cancels a change someone else asked for.
Following a link needs the account's own session (another account's: 403): a link that
reached a stranger's mailbox (a mistyped address) must not attach that mailbox to the
account, since whoever holds an account's email can reset its password. The new email's
uniqueness is checked again when the link is followed, and the unique index settles a race
with a sign-up (409). The fingerprint is a digest: no hash or email of the account travels
in the link but the new email, which its reader already knows.

Functions here flush, never commit: the caller (a view or a command) commits once.
"""
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import AuditEvent
from . import audit, outbox, users
from .signed_links import LinkRefused, SignedLinks, digest

WRONG_PASSWORD = "This is not your current password."
SAME_EMAIL = "This is already your email."
LINK_INVALID = "This email confirmation link is not valid. Copy the whole link from the email, or ask for the change again."
LINK_EXPIRED = "This email confirmation link has expired. Ask for the change again on your account page."
LINK_USED = ("This email confirmation link was used already, or your email or password changed since it was sent. "
             "Ask for the change again if you still want it.")
LINK_OTHER_ACCOUNT = ("This email confirmation link belongs to another account. Log out, then log in as the account "
                      "that asked for the change and follow the link again.")
EMAIL_TAKEN_NOW = "Another account has started using this email since the link was sent: it cannot be yours."
# Refused beyond a signed link's own 400 and 410: 403 another account's, 409 the email is taken.
LINKS = SignedLinks("srcflask.email-change", "EMAIL_CHANGE_MAX_AGE_SECONDS", invalid=LINK_INVALID,
                    expired=LINK_EXPIRED)


def update_profile(user, *, name, organization):
    """Give `user` a new name and organization (sign-up's rule for the name;
    users.InvalidAccount({"name": ...}) otherwise)."""
    problem = users.name_problem(name)
    if problem:
        raise users.InvalidAccount({"name": problem})
    user.name = name
    user.organization = organization
    db.session.flush()


def change_password(user, *, current_password, new_password):
    """The account page's new password: the current one must be given. Every session of the
    account ends (the caller re-issues the one that asked); audited as the account's own act."""
    if not user.check_password(current_password):
        raise users.InvalidAccount({"current_password": WRONG_PASSWORD})
    users.set_new_password(user, new_password)
    audit.record(user, "user.change_password", "user", user.id, name=user.name, email=user.email)


def set_password(user, password):
    """An operator's new password for `user` (`flask users set-password`): every session of
    the account ends; audited as done by the console (no person is the actor)."""
    users.set_new_password(user, password)
    audit.record(None, "user.set_password", "user", user.id, name=user.name, email=user.email, by="console")


def request_email_change(user, *, new_email, current_password):
    """Email a confirmation link for `new_email` to that address, and a notice to the
    current one; nothing else changes until the link is followed. users.InvalidAccount
    names every problem ("email", "current_password") at once."""
    errors = {}
    if not user.check_password(current_password):
        errors["current_password"] = WRONG_PASSWORD
    try:
        new_email = users.normalize_email(new_email)
    except ValueError as error:
        errors["email"] = str(error)
    else:
        if new_email == user.email.lower():
            errors["email"] = SAME_EMAIL
        elif users.email_taken(new_email):
            errors["email"] = users.EMAIL_TAKEN
    if errors:
        raise users.InvalidAccount(errors)
    valid_hours = current_app.config["EMAIL_CHANGE_MAX_AGE_SECONDS"] / 3600
    outbox.queue_email(new_email, "email_change_confirm", name=user.name, new_email=new_email,
                       link=outbox.site_link("account.confirm_email", token=email_change_token(user, new_email)),
                       valid_for=f"{valid_hours:g} hour{'s' if valid_hours != 1 else ''}")
    outbox.queue_email(user.email, "email_change_notice", name=user.name, new_email=new_email,
                       reset_link=outbox.site_link("auth.forgot_password"))
    return new_email


def _fingerprint(user):
    """A digest of what a link is bound to: the account's email, password hash and last
    email change on record (the audit row's id: ids only grow, whatever the clocks say)."""
    last_change = db.session.scalar(select(func.max(AuditEvent.id)).where(
        AuditEvent.action == "user.change_email", AuditEvent.target_type == "user", AuditEvent.target_id == user.id))
    return digest(user.email.lower(), user.password_hash, last_change)


def email_change_token(user, new_email):
    """The token of the link that makes `new_email` (normalized) `user`'s email."""
    return LINKS.token([user.id, new_email, _fingerprint(user)])


def _checked(user, token, *, lock):
    """The new email a link `user` followed gives them, or LinkRefused saying why not
    (the account row locked until commit when `lock`: two uses of one link are taken one
    after the other, and the second finds the fingerprint changed)."""
    user_id, new_email, fingerprint = LINKS.payload(token)
    if user_id != user.id:
        raise LinkRefused(LINK_OTHER_ACCOUNT, 403)
    if lock:
        db.session.refresh(user, with_for_update=True)
    if fingerprint != _fingerprint(user):
        raise LinkRefused(LINK_USED, 410)
    if users.email_taken(new_email):
        raise LinkRefused(EMAIL_TAKEN_NOW, 409)
    return new_email


def check_email_link(user, token):
    """The new email the confirmation page offers `user`, or LinkRefused."""
    return _checked(user, token, lock=False)


def confirm_email_change(user, token):
    """Make the email a valid link names `user`'s email (LinkRefused otherwise);
    audited, with the old and new addresses. Returns the new email."""
    new_email = _checked(user, token, lock=True)
    old_email = user.email
    try:
        # A savepoint: the unique index on lower(email) settles a race with a sign-up or
        # another change, and the caller's transaction stays usable.
        with db.session.begin_nested():
            user.email = new_email
    except IntegrityError:
        raise LinkRefused(EMAIL_TAKEN_NOW, 409) from None
    audit.record(user, "user.change_email", "user", user.id, name=user.name, from_email=old_email, email=new_email)
    return new_email
