"""In-app notifications: who is told what, their inbox, and marking messages read.

A notification is written by the service that makes the event happen, in the same
transaction, so that one is never sent for a change that was rolled back. Notifications
about a document go only to the people on it (its sponsor and its assigned editor, as
the retention says at that moment): the recipient is always read from the document's
retention, never taken from a form.
"""
from flask import url_for
from sqlalchemy import func, select, update

from ..extensions import db
from ..models import Document, Notification, Retention
from ..static.data.processeddata.models import Autodoc, Revision

AUTODOC_READY = "autodoc_ready"
DOCUMENT_ASSIGNED = "document_assigned"
AUTODOC_REVIEWED = "autodoc_reviewed"
AUTODOC_FAILED = "autodoc_failed"
ACCOUNT_KINDS = {
    "approve": "account_approved",
    "reject": "account_rejected",
    "suspend": "account_suspended",
    "reinstate": "account_reinstated",
}
ACCOUNT_MESSAGES = {
    "approve": "Your account was approved. Welcome!",
    "reject": "Your account was rejected.",
    "suspend": "Your account was suspended.",
    "reinstate": "Your account was reinstated: you can use the site again.",
}
VERDICT_PHRASES = {
    "approve": "approved",
    "request_changes": "asked for changes to",
    "reject": "rejected",
}


def _add(user_id, kind, message, *, document_id=None, autodoc_id=None):
    db.session.add(Notification(user_id=user_id, kind=kind, message=message,
                                document_id=document_id, autodoc_id=autodoc_id))


# --- who is told what ---------------------------------------------------------------------

def document_assigned(document, editor, sponsor):
    """Tell `editor` that `sponsor` gave them `document` (new, or taken from another editor)."""
    _add(editor.id, DOCUMENT_ASSIGNED, f"{sponsor.name} assigned “{document.title}” to you.",
         document_id=document.id)


def autodocs_finished(autodoc_ids, kind):
    """For autodocs the writer just finished: AUTODOC_READY tells each document's editor
    there is text to review, AUTODOC_FAILED tells its sponsor the writer gave up. One
    query for any number of autodocs."""
    if not autodoc_ids:
        return
    rows = db.session.execute(
        select(Autodoc.id, Revision.version, Document.id.label("document_id"), Document.title,
               Retention.sponsor_id, Retention.editor_id)
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Document, Document.id == Revision.document_id)
        .join(Retention, Retention.document_id == Document.id)
        .where(Autodoc.id.in_(autodoc_ids))
    ).all()
    for row in rows:
        if kind == AUTODOC_READY:
            recipient, message = row.editor_id, f"The autodoc of “{row.title}” (version {row.version}) is ready for your review."
        elif kind == AUTODOC_FAILED:
            recipient, message = row.sponsor_id, f"The writer could not write the autodoc of “{row.title}” (version {row.version})."
        else:
            raise ValueError(f"Not a writer notification: {kind!r}.")
        _add(recipient, kind, message, document_id=row.document_id, autodoc_id=row.id)


def autodoc_reviewed(editor, verdict, autodoc, document):
    """Tell the document's sponsor what its editor decided about one of its autodocs."""
    message = (f"{editor.name} {VERDICT_PHRASES[verdict.decision]} the autodoc of "
               f"“{document.title}” (version {autodoc.revision.version}).")
    _add(document.retention.sponsor_id, AUTODOC_REVIEWED, message, document_id=document.id, autodoc_id=autodoc.id)


def account_decided(user, action, reason=None):
    """Tell `user` what an admin decided about their account (with the reason, if given)."""
    message = ACCOUNT_MESSAGES[action]
    if reason:
        message = f"{message[:-1]} for this reason: {reason}"
    _add(user.id, ACCOUNT_KINDS[action], message)


# --- the inbox --------------------------------------------------------------------------------

# The navigation's badges say "99+" past this: a badge is a glance, not a figure, and
# every page shows them, so the unread count stops reading here (an editor of a busy site
# can have ten thousand unread notifications: counting them all took ~30 ms a page).
BADGE_CAP = 100


def badge(count):
    """A navigation badge's text for `count` (the `badge` template filter)."""
    return f"{BADGE_CAP - 1}+" if count >= BADGE_CAP else str(count)


def unread_count(user):
    """How many of `user`'s notifications are unread, up to BADGE_CAP, as a scalar subquery
    (the navigation asks for it with its other counts, in one query per page)."""
    unread = (
        select(Notification.id).where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .limit(BADGE_CAP).subquery()
    )
    return select(func.count()).select_from(unread).scalar_subquery()


def inbox_query(user):
    """The user's notifications, unread first, then newest first."""
    return (
        select(Notification).where(Notification.user_id == user.id)
        .order_by(Notification.read_at.is_not(None), Notification.created_at.desc(), Notification.id.desc())
    )


def mark_read(user, notification_id):
    """Mark one of `user`'s notifications read; False when they have no such notification
    (someone else's is as unknown as a missing one)."""
    found = db.session.scalar(
        select(Notification.id).where(Notification.id == notification_id, Notification.user_id == user.id)
    )
    if found is None:
        return False
    db.session.execute(
        update(Notification).where(Notification.id == notification_id, Notification.read_at.is_(None))
        .values(read_at=func.now())
    )
    return True


def mark_all_read(user):
    """Mark every unread notification of `user` read; how many there were."""
    return db.session.execute(
        update(Notification).where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=func.now())
    ).rowcount


def deliver_account_notices(user):
    """The ids of `user`'s unread account notifications, now marked read: a rejected or
    suspended user cannot log in to read them, so the log-in shows them on the standing
    page instead (see account_notices)."""
    ids = db.session.scalars(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None),
               Notification.kind.in_(ACCOUNT_KINDS.values()))
        .values(read_at=func.now())
        .returning(Notification.id)
    ).all()
    return sorted(ids)


def account_notices(notification_ids):
    """(created_at, message) of the notifications deliver_account_notices gave, in order."""
    if not notification_ids:
        return []
    return db.session.execute(
        select(Notification.created_at, Notification.message)
        .where(Notification.id.in_(notification_ids)).order_by(Notification.id)
    ).all()


def link(notification):
    """Where the notification leads (a URL of this site), or None. Built when shown, so
    notifications keep working when URLs change."""
    if notification.kind == AUTODOC_READY:
        return url_for("editor.review", autodoc_id=notification.autodoc_id)
    if notification.kind == DOCUMENT_ASSIGNED:
        return url_for("editor.document", document_id=notification.document_id)
    if notification.kind in (AUTODOC_REVIEWED, AUTODOC_FAILED):
        return url_for("sponsor.autodoc", autodoc_id=notification.autodoc_id)
    return None

