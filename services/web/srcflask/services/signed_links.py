"""Emailed links that carry their own proof: timed tokens signed with SECRET_KEY.

A password reset link and an email confirmation link work the same way: the token names
what the link may do and a digest of the account as it was when the link was sent, signed
(itsdangerous) under a salt of each kind's own, so no other signed value of the site — a
session cookie, the other kind of link — can pass for one. Following a link checks
- the signature: made up, cut short or changed → not valid (400);
- its age against a setting → expired (410);
and the kind's own service then compares the digest with the account now (410 once the
account moved on). Nothing is stored: a link is single-use because using it changes what
its digest is bound to.
"""
import hashlib
import json

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer


class LinkRefused(Exception):
    """A link that cannot be used; its message is for the person who followed it and
    `status` is the page's (400 never valid, 410 no longer valid, or the kind's own)."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class SignedLinks:
    """One kind of link: its salt, the setting that bounds its age, and what a refused one says."""

    def __init__(self, salt, max_age_setting, *, invalid, expired):
        self.salt, self.max_age_setting = salt, max_age_setting
        self.invalid, self.expired = invalid, expired

    def _serializer(self):
        return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=self.salt)

    def token(self, payload):
        """The token of a link carrying `payload` (a JSON-able list)."""
        return self._serializer().dumps(payload)

    def payload(self, token):
        """What a valid, unexpired `token` carries; LinkRefused(invalid, 400) or
        LinkRefused(expired, 410) otherwise. Only this app signs with its key and this
        salt: a payload that passes is one of ours."""
        try:
            return self._serializer().loads(token, max_age=current_app.config[self.max_age_setting])
        except SignatureExpired:
            raise LinkRefused(self.expired, 410) from None
        except BadData:
            raise LinkRefused(self.invalid, 400) from None


def digest(*values):
    """A short digest of what a link is bound to, so that no hash or email of the account
    travels inside the link itself."""
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:32]
