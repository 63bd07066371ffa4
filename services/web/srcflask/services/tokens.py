"""Personal API tokens: making one (the secret is shown once), listing, revoking, and
finding who a presented secret belongs to.

An account holds at most API_TOKENS_PER_USER live tokens: the API's rate limit is per user
anyway (throttle.py), and a cap keeps forgotten secrets from piling up. Only the SHA-256
of a secret is stored. A secret is 256 random bits, so a fast hash is
enough (there is nothing to brute-force, unlike a password). Whether a token works is
decided on every request from the token *and* its owner's current standing, so a user
who is suspended, rejected or sent back to pending loses API access at once.
Functions here flush, never commit: the caller commits once.
"""
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import contains_eager

from ..extensions import db
from ..models import ApiToken, User

SECRET_PREFIX = "srcf_"
SHOWN_PREFIX_CHARS = 12  # "srcf_" and 7 random characters: enough to tell tokens apart
NAME_MAX_LENGTH = ApiToken.name.type.length
NAME_REQUIRED = "Give the token a name, such as the script that will use it."
# last_used_at is bookkeeping, not an audit: writing it at most this often keeps a busy
# script from turning every read into a write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenError(Exception):
    """A token change the rules refuse; its message is written for the person who asked."""


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


def _hash(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def name_error(name):
    """The problem with a token name, or None (the form and the service share it)."""
    name = (name or "").strip()
    if not name:
        return NAME_REQUIRED
    if len(name) > NAME_MAX_LENGTH:
        return f"Use at most {NAME_MAX_LENGTH} characters."
    return None


def create_token(user, name):
    """A new token for an approved `user` with fewer than API_TOKENS_PER_USER live ones;
    the returned secret is the only copy."""
    if not user.is_approved:
        raise TokenError("Only approved accounts can have API tokens.")
    problem = name_error(name)
    if problem:
        raise TokenError(problem)
    # Two creations at once would each count the other's token as not there yet: the user's
    # row is locked until commit, so they count one after the other. (NO KEY UPDATE: the
    # tokens' foreign key checks, which take KEY SHARE, do not wait for it.)
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
    cap = current_app.config["API_TOKENS_PER_USER"]
    live = db.session.scalar(select(func.count()).select_from(ApiToken)
                             .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)))
    if live >= cap:
        raise TokenError(f"An account may have at most {cap} active token{'s' if cap != 1 else ''}: "
                         "revoke one you no longer use, then create the new one.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name.strip(), prefix=secret[:SHOWN_PREFIX_CHARS], token_hash=_hash(secret))
    db.session.add(token)
    db.session.flush()
    return NewToken(token, secret)


def user_tokens(user):
    """The user's tokens, newest first, revoked ones included (one query)."""
    return db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()


def revoke_token(user, token_id):
    """Revoke one of `user`'s own tokens; the revoked ApiToken, or None when `user` has no
    such live token (someone else's id answers the same as an unknown one)."""
    return db.session.scalar(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiToken)
        .execution_options(synchronize_session=False)
    )


def authenticate(secret):
    """The live token whose secret this is, with its user loaded, when the token is not
    revoked and its user is approved; else None. Marks the token used (at most once per
    LAST_USED_RESOLUTION)."""
    if not secret or not secret.startswith(SECRET_PREFIX):
        return None
    token = db.session.scalar(
        select(ApiToken).join(ApiToken.user).options(contains_eager(ApiToken.user))
        .where(ApiToken.token_hash == _hash(secret), ApiToken.revoked_at.is_(None), User.status == "approved")
    )
    if token is not None:
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token.id, or_(ApiToken.last_used_at.is_(None),
                                                ApiToken.last_used_at < func.now() - LAST_USED_RESOLUTION))
            .values(last_used_at=func.now())
            .execution_options(synchronize_session=False)
        )
    return token
