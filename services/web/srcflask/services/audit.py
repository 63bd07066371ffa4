"""The audit log: who did what to which row, and when.

Each service that changes something people must be able to account for (an admin's
decision on an account, a verdict, a document saved or given to another editor, a
regenerate) records it here in the same transaction as the change itself, so the log
and the data can never disagree. Rows are only ever added: the app has no function that
changes or removes one, and on PostgreSQL a trigger (migration 0002) refuses it.
"""
import datetime as dt

from sqlalchemy import or_, select
from sqlalchemy.orm import contains_eager

from ..extensions import db
from ..models import AuditEvent, User

# action -> what the admin's filter calls it
ACTIONS = {
    "user.approve": "Account approved",
    "user.reject": "Account rejected",
    "user.suspend": "Account suspended",
    "user.reinstate": "Account reinstated",
    "user.change_role": "Role changed",
    "user.send_password_reset": "Password reset link sent",
    "user.reset_password": "Password reset by link",
    "user.change_password": "Password changed",
    "user.set_password": "Password set at the console",
    "user.change_email": "Email changed",
    "document.create": "Document created",
    "document.edit": "Document edited",
    "document.reassign_editor": "Editor changed",
    "document.archive": "Document archived",
    "document.restore": "Document restored",
    "user.erase": "Account erased",
    "autodoc.regenerate": "Autodoc regenerated",
    "verdict.approve": "Autodoc approved",
    "verdict.request_changes": "Changes requested",
    "verdict.reject": "Autodoc rejected",
    "comparison.choose": "Blind comparison made",
    "model.register": "Model registered",
    "model.promote": "Model promoted",
    "model.override": "Model promoted over the gate",
    "model.rollback": "Model rolled back to",
    "trainingset.build": "Training set built",
    "trainingrun.start": "Training run started",
    "trainingrun.cancel": "Training run cancelled",
}


def record(actor, action, target_type, target_id, **details):
    """Add one audit row for `action` by `actor` (a User, or None for the system) on the
    target row; `details` (JSON-able) say what changed, in values that outlive the rows."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown audit action {action!r}.")
    event = AuditEvent(actor_id=actor.id if actor is not None else None, action=action,
                       target_type=target_type, target_id=target_id, details=details)
    db.session.add(event)
    return event


def events_query(*, actor="", action="", since=None, until=None):
    """The log, newest first, filtered by actor (part of a name or email; "system" for the
    rows no person made), action and a range of days (`since` and `until` are dates, both
    included, in UTC). Each row comes with its actor in the same query, so a page of it
    costs the same whatever its size."""
    query = (
        select(AuditEvent).outerjoin(AuditEvent.actor).options(contains_eager(AuditEvent.actor))
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    )
    if actor.strip().lower() == "system":
        query = query.where(AuditEvent.actor_id.is_(None))
    elif actor.strip():
        text = actor.strip()
        query = query.where(or_(User.name.icontains(text, autoescape=True), User.email.icontains(text, autoescape=True)))
    if action:
        query = query.where(AuditEvent.action == action)
    if since:
        query = query.where(AuditEvent.created_at >= _start_of(since))
    if until:
        query = query.where(AuditEvent.created_at < _start_of(until + dt.timedelta(days=1)))
    return query


def _start_of(day):
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)
