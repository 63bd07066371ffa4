"""In-app notifications: who is told what, their inbox, and marking messages read.

A notification is written by the service that makes the event happen, in the same
transaction, so that one is never sent for a change that was rolled back. Notifications
about a document go only to the people on it (its sponsor and its assigned editor, as
the retention says at that moment): the recipient is always read from the document's
retention, never taken from a form.

Email is opt-in, per person and per kind (the account's notification settings): a kind of
EMAIL_KINDS without a NotificationPreference row is never emailed. A kind chosen "at once"
is emailed in the transaction that writes the notification (outbox.queue_email: a rolled
back change sends nothing), one email per notification. A kind chosen "daily" waits for
the digest pass (send_due_digests, run by the mail sender each round): from DIGEST_HOUR_UTC
on, each such person gets one email listing what is new and unread of their daily kinds
since their last digest (nothing new: no email). `emailed_at` marks a notification that
went out, so none is emailed twice, and `users.digest_sent_at` is claimed with a row lock
and a conditional update, so two senders never both send one day's digest. Only approved
accounts are emailed: a pending, rejected or suspended account (an erased one is suspended)
keeps its settings but gets no notification email until it is approved again; the emails
about the account's own standing are services.users' and go out regardless.
"""
import datetime as dt

from flask import url_for
from sqlalchemy import exists, func, or_, select, update

from ..extensions import db
from ..models import Document, Notification, NotificationPreference, Retention, User
from ..static.data.processeddata.models import Autodoc, Revision
from . import leases, outbox

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


# What each kind of notification that can be emailed is called on the settings page, and
# which roles receive it (the settings page shows a person only their role's kinds).
EMAIL_KINDS = {
    AUTODOC_READY: "An autodoc is ready for your review",
    DOCUMENT_ASSIGNED: "A document was assigned to you",
    AUTODOC_FAILED: "The writer could not write an autodoc",
    AUTODOC_REVIEWED: "Your editor reviewed an autodoc",
}
ROLE_EMAIL_KINDS = {
    "editor": (AUTODOC_READY, DOCUMENT_ASSIGNED),
    "sponsor": (AUTODOC_FAILED, AUTODOC_REVIEWED),
    "admin": (),
}
OFF = "off"
DELIVERY_LABELS = {OFF: "Off", "immediate": "At once", "daily": "Daily digest"}
# Where each kind of notification leads: the endpoint, and which of the notification's ids
# its URL takes. The inbox (url_for) and the emails (outbox.site_link) both build from it.
LINKS = {
    AUTODOC_READY: ("editor.review", "autodoc_id"),
    DOCUMENT_ASSIGNED: ("editor.document", "document_id"),
    AUTODOC_REVIEWED: ("sponsor.autodoc", "autodoc_id"),
    AUTODOC_FAILED: ("sponsor.autodoc", "autodoc_id"),
}
# How many people's digests one call of send_due_digests handles: the sender delivers the
# outbox between batches, so a morning of many digests does not hold up a reset link.
DIGEST_BATCH = 50


def _add(user_id, kind, message, *, document_id=None, autodoc_id=None):
    notification = Notification(user_id=user_id, kind=kind, message=message,
                                document_id=document_id, autodoc_id=autodoc_id)
    db.session.add(notification)
    return notification


# --- who is told what ---------------------------------------------------------------------

def document_assigned(document, editor, sponsor):
    """Tell `editor` that `sponsor` gave them `document` (new, or taken from another editor)."""
    _email_at_once([_add(editor.id, DOCUMENT_ASSIGNED, f"{sponsor.name} assigned “{document.title}” to you.",
                         document_id=document.id)])


def autodocs_finished(autodoc_ids, kind):
    """For autodocs the writer just finished: AUTODOC_READY tells each document's editor
    there is text to review, AUTODOC_FAILED tells its sponsor the writer gave up. One
    query for any number of autodocs, and one for who wants them emailed at once."""
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
    added = []
    for row in rows:
        if kind == AUTODOC_READY:
            recipient, message = row.editor_id, f"The autodoc of “{row.title}” (version {row.version}) is ready for your review."
        elif kind == AUTODOC_FAILED:
            recipient, message = row.sponsor_id, f"The writer could not write the autodoc of “{row.title}” (version {row.version})."
        else:
            raise ValueError(f"Not a writer notification: {kind!r}.")
        added.append(_add(recipient, kind, message, document_id=row.document_id, autodoc_id=row.id))
    _email_at_once(added)


def autodoc_reviewed(editor, verdict, autodoc, document):
    """Tell the document's sponsor what its editor decided about one of its autodocs."""
    message = (f"{editor.name} {VERDICT_PHRASES[verdict.decision]} the autodoc of "
               f"“{document.title}” (version {autodoc.revision.version}).")
    _email_at_once([_add(document.retention.sponsor_id, AUTODOC_REVIEWED, message, document_id=document.id,
                         autodoc_id=autodoc.id)])


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


def link(notification, build=url_for):
    """Where the notification (or a row with its kind and ids) leads, or None. Built when
    shown, so notifications keep working when URLs change: by url_for for a page, by
    outbox.site_link (absolute, on SITE_URL) for an email."""
    if notification.kind not in LINKS:
        return None
    endpoint, key = LINKS[notification.kind]
    return build(endpoint, **{key: getattr(notification, key)})


# --- email: the settings ----------------------------------------------------------------------


class InvalidPreferences(ValueError):
    """A choice the settings page does not offer (a kind not of the person's role, or no
    such delivery): nothing is saved."""


def email_kinds(user):
    """The kinds `user`'s role receives (and so may have emailed), in the page's order."""
    return ROLE_EMAIL_KINDS.get(user.role, ())


def preferences(user):
    """{kind: "off" | "immediate" | "daily"} for each kind of `user`'s role."""
    chosen = dict(db.session.execute(
        select(NotificationPreference.kind, NotificationPreference.delivery)
        .where(NotificationPreference.user_id == user.id)
    ).all())
    return {kind: chosen.get(kind, OFF) for kind in email_kinds(user)}


def set_preferences(user, choices):
    """Save `choices` ({kind: delivery}, for kinds of `user`'s role; kinds left out keep
    theirs). A changed delivery starts from now: a digest carries only what arrives after
    daily was chosen. Raises InvalidPreferences before changing anything; the caller commits.
    Returns the kinds whose delivery changed."""
    wrong = sorted(set(choices) - set(email_kinds(user)))
    if wrong:
        raise InvalidPreferences(f"Your account does not receive these notifications: {', '.join(wrong)}.")
    for kind, delivery in choices.items():
        if delivery not in DELIVERY_LABELS:
            raise InvalidPreferences(f"Choose one of {', '.join(DELIVERY_LABELS.values())} for "
                                     f"“{EMAIL_KINDS[kind]}”.")
    # Two saves at once (two tabs, a double submit) take turns on the person's row, so the
    # second reads the first's rows instead of inserting one beside it (a primary-key
    # violation). NO KEY UPDATE: what only refers to the user is not held up.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
    current = preferences(user)
    changed = [kind for kind, delivery in choices.items() if current[kind] != delivery]
    for kind in changed:
        row = db.session.get(NotificationPreference, (user.id, kind))
        if choices[kind] == OFF:
            db.session.delete(row)
        elif row is None:
            db.session.add(NotificationPreference(user_id=user.id, kind=kind, delivery=choices[kind]))
        else:
            row.delivery, row.chosen_at = choices[kind], func.now()
    db.session.flush()
    return changed


# --- email: at once -------------------------------------------------------------------------------


def _emailable():
    """The accounts notification emails may go to (see the module's docstring)."""
    return User.status == "approved", User.erased_at.is_(None)


def _email_at_once(added):
    """Queue one email for each notification in `added` whose recipient wants its kind at
    once, in the transaction that adds them, and mark it emailed. One query for all."""
    if not added:
        return
    wanted = {
        (row.user_id, row.kind): row for row in db.session.execute(
            select(NotificationPreference.user_id, NotificationPreference.kind, User.email, User.name)
            .join(User, User.id == NotificationPreference.user_id)
            .where(NotificationPreference.user_id.in_({n.user_id for n in added}),
                   NotificationPreference.kind.in_({n.kind for n in added}),
                   NotificationPreference.delivery == "immediate", *_emailable())
        )
    }
    for notification in added:
        recipient = wanted.get((notification.user_id, notification.kind))
        if recipient is None:
            continue
        notification.emailed_at = func.now()
        outbox.queue_email(recipient.email, "notification", name=recipient.name, subject=EMAIL_KINDS[notification.kind],
                           message=notification.message, link=link(notification, outbox.site_link),
                           settings_link=outbox.site_link("account.notification_settings"))


# --- email: the daily digest ----------------------------------------------------------------


def digest_due_at(now, hour):
    """The latest `hour`:00 UTC at or before `now`: a person whose last digest (or, before
    their first, whose choice of daily) came before it is due a digest."""
    due = now.astimezone(dt.timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0)
    return due if due <= now else due - dt.timedelta(days=1)


def _due(due_at):
    """The conditions of a user due a digest at `due_at`."""
    chose_daily_before = exists().where(
        NotificationPreference.user_id == User.id, NotificationPreference.delivery == "daily",
        NotificationPreference.chosen_at < due_at)
    return (or_(User.digest_sent_at.is_(None), User.digest_sent_at < due_at), chose_daily_before, *_emailable())


def send_due_digests(hour):
    """Send the digest of up to DIGEST_BATCH people whose digest is due (`hour` is
    DIGEST_HOUR_UTC), each in a transaction of its own (commits); returns how many were due,
    so the caller knows to call again when it is a full batch."""
    due_at = digest_due_at(leases.database_now(), hour)
    user_ids = db.session.scalars(select(User.id).where(*_due(due_at)).order_by(User.id).limit(DIGEST_BATCH)).all()
    db.session.commit()
    for user_id in user_ids:
        _send_digest(user_id, due_at)
        db.session.commit()
    return len(user_ids)


def _send_digest(user_id, due_at):
    """One person's digest, if it is still due: their row is locked (a sender holding it is
    skipped) and its due-ness checked again under the lock, so of two senders one sends and
    the other finds it done. Marks the notifications emailed and the digest sent; queues the
    email only when something is new. The caller commits."""
    if not leases.lock(select(User.id).where(User.id == user_id, *_due(due_at)), of=User):
        return False
    daily = exists().where(
        NotificationPreference.user_id == Notification.user_id, NotificationPreference.kind == Notification.kind,
        NotificationPreference.delivery == "daily", NotificationPreference.chosen_at <= Notification.created_at)
    items = db.session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.emailed_at.is_(None), Notification.read_at.is_(None), daily)
        .values(emailed_at=func.now())
        .returning(Notification.id, Notification.kind, Notification.message, Notification.document_id,
                   Notification.autodoc_id, Notification.created_at)
    ).all()
    user = db.session.execute(
        update(User).where(User.id == user_id).values(digest_sent_at=func.now()).returning(User.email, User.name)
    ).one()
    if not items:
        return False
    items = sorted(items, key=lambda item: (item.created_at, item.id))
    outbox.queue_email(user.email, "digest", name=user.name,
                       items=[(item.message, link(item, outbox.site_link)) for item in items],
                       settings_link=outbox.site_link("account.notification_settings"))
    return True

