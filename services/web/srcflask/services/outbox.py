"""The mail outbox: every email is a row, written with the change that causes it.

Nothing is ever sent from a request. A service that wants someone told calls
`queue_email(recipient, template, **context)`, which renders the email from its templates
and adds one `outbox_messages` row to the caller's transaction (flushed, never committed):
if the change is rolled back, so is the email, and a mail server that is down delays the
email instead of losing it or failing the change.

Templates live in templates/email/: `<template>.txt` (required) and `<template>.html`
(optional). Each extends `_base.txt` / `_base.html` and fills two blocks: `subject` (one
line) and `body` (the base wraps it in the site's greeting and sign-off). The context
always has `site_url` (the SITE_URL setting); links in it are built with `site_link`,
since a sender has no request to take the address from. An email carries the link it is
about and nothing else secret.

Delivery (the sender is srcflask/mailer.py) claims one message at a time the way the
writer claims autodocs (services/leases.py: SKIP LOCKED, a lease on the database clock, a
fresh attempt token, every write back conditional on it), so senders in any number of
processes never take the same message. A failed attempt puts the message back with a
wait that doubles from MAIL_RETRY_MIN_SECONDS to MAIL_RETRY_MAX_SECONDS; a refusal the
server says is permanent (5xx), or MAIL_MAX_ATTEMPTS attempts, mark it failed.

Sent once, not twice: the claim is committed before the SMTP conversation, the lease is
renewed just before the message is handed over, and the row is marked sent in its own
commit the moment the server accepts it. What remains is the moment between the server's
acceptance and that commit: a sender killed there (or a database lost there) sends the
message again once the lease runs out. Every attempt carries the same Message-ID, fixed
when the row is written, so the receiving side can tell a repeat.
"""
import datetime as dt
from dataclasses import dataclass
from email.utils import make_msgid
from urllib.parse import urlsplit

from flask import current_app
from jinja2 import TemplateNotFound
from sqlalchemy import delete, func, select, update

from ..extensions import db
from ..models import OutboxMessage
from . import leases

DIED_MESSAGE = "The mail sender stopped {attempts} times while sending this message."
UNSENT_STATUSES = ("queued", "running", "failed")


def queue_email(recipient, template, **context):
    """Render email `template` for `recipient` and add it to the outbox in the caller's
    transaction (flushed, not committed); returns the row."""
    context["site_url"] = current_app.config["SITE_URL"].rstrip("/")
    subject = _render_block(f"email/{template}.txt", "subject", context)
    message = OutboxMessage(
        recipient=recipient,
        subject=" ".join(subject.split()),  # one line whatever the template's layout
        text_body=_render(f"email/{template}.txt", context),
        html_body=_render(f"email/{template}.html", context, optional=True),
        message_id=make_msgid(domain=urlsplit(context["site_url"]).hostname),
    )
    db.session.add(message)
    db.session.flush()
    return message


def queued_messages(recipient):
    """Every email written for `recipient` (whatever its case), oldest first, whether sent
    yet or not: what the tests read."""
    return db.session.scalars(
        select(OutboxMessage).where(func.lower(OutboxMessage.recipient) == recipient.lower())
        .order_by(OutboxMessage.id)
    ).all()


def site_link(endpoint, **values):
    """The absolute URL of `endpoint` on the site as people reach it (SITE_URL), built
    without a request: from a command, the sender or a request behind a proxy alike."""
    site = urlsplit(current_app.config["SITE_URL"])
    adapter = current_app.url_map.bind(site.netloc, script_name=site.path.rstrip("/") or "/",
                                       url_scheme=site.scheme)
    return adapter.build(endpoint, values, force_external=True)


def _render(name, context, optional=False):
    try:
        template = current_app.jinja_env.get_template(name)
    except TemplateNotFound:
        if optional:
            return None
        raise
    return template.render(context).strip() + "\n"


def _render_block(name, block, context):
    template = current_app.jinja_env.get_template(name)
    return "".join(template.blocks[block](template.new_context(context)))


@dataclass(frozen=True)
class Delivery:
    """One claimed message: what to send, and the attempt that holds it."""

    id: int
    attempt_token: str
    attempts: int
    recipient: str
    subject: str
    text_body: str
    html_body: str | None
    message_id: str
    request_id: str | None = None  # of the request that queued it, for the sender's log lines


def claim_message(worker, lease_seconds, max_attempts):
    """Claim the next message due for `worker` (one whose sender died first, then the
    longest waiting); commits and returns a Delivery, or None when nothing is due. A message
    whose sender died with its attempts used up is marked failed instead."""
    now = leases.database_now()
    db.session.execute(
        update(OutboxMessage).where(*leases.expired(OutboxMessage, now), OutboxMessage.attempts >= max_attempts)
        .values(status="failed", lease_expires_at=None, attempt_token=None,
                last_error=DIED_MESSAGE.format(attempts=max_attempts))
    )
    ids = leases.lock(select(OutboxMessage.id).where(*leases.expired(OutboxMessage, now))
                      .order_by(OutboxMessage.id).limit(1))
    if not ids:
        ids = leases.lock(select(OutboxMessage.id)
                          .where(OutboxMessage.status == "queued", OutboxMessage.next_attempt_at <= now)
                          .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(1))
    if not ids:
        db.session.commit()
        return None
    token = leases.take(OutboxMessage, ids, worker, lease_seconds, now)
    row = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.attempts, OutboxMessage.recipient, OutboxMessage.subject,
               OutboxMessage.text_body, OutboxMessage.html_body, OutboxMessage.message_id,
               OutboxMessage.request_id)
        .where(OutboxMessage.id == ids[0])
    ).one()
    db.session.commit()
    return Delivery(row.id, token, row.attempts, row.recipient, row.subject, row.text_body, row.html_body,
                    row.message_id, row.request_id)


def renew(delivery, lease_seconds):
    """A fresh lease for the SMTP conversation about to start; False when this attempt lost
    the message (it must not be sent)."""
    return leases.extend(OutboxMessage, [delivery.id], delivery.attempt_token, lease_seconds) == 1


def mark_sent(delivery):
    """Record that the server accepted the message; commits. False when this attempt had
    lost its claim (another sender holds the message)."""
    result = db.session.execute(
        leases.own(OutboxMessage, [delivery.id], delivery.attempt_token)
        .values(status="sent", sent_at=func.now(), lease_expires_at=None, last_error=None)
    )
    db.session.commit()
    return result.rowcount == 1


def mark_failed_attempt(delivery, error, *, permanent, retry_min_seconds, retry_max_seconds, max_attempts):
    """Put the message back to wait min(max, min x 2^(attempts-1)) seconds, or mark it failed
    when the refusal is `permanent` or its attempts are used up; commits and returns the
    new status (None when this attempt had lost its claim)."""
    failed = permanent or delivery.attempts >= max_attempts
    wait = leases.retry_wait(delivery.attempts, retry_min_seconds, retry_max_seconds)
    status = db.session.scalar(
        leases.own(OutboxMessage, [delivery.id], delivery.attempt_token)
        .values(status="failed" if failed else "queued", attempt_token=None, lease_expires_at=None,
                next_attempt_at=leases.database_now() + dt.timedelta(seconds=wait), last_error=error[:2000])
        .returning(OutboxMessage.status)
    )
    db.session.commit()
    return status


# Sent messages deleted per statement: a round deletes batches until fewer are left.
DELETE_BATCH = 1000


def delete_sent_before(keep_days):
    """Delete up to DELETE_BATCH messages sent more than `keep_days` days ago (on the
    database's clock); commits and returns how many. Rows another sender is deleting are
    skipped, not waited for."""
    cutoff = leases.database_now() - dt.timedelta(days=keep_days)
    ids = leases.lock(select(OutboxMessage.id).where(OutboxMessage.status == "sent", OutboxMessage.sent_at < cutoff)
                      .order_by(OutboxMessage.id).limit(DELETE_BATCH))
    if ids:
        db.session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    db.session.commit()
    return len(ids)


def outbox_depth():
    """{status: count} of the messages not sent yet (queued, running, failed), one grouped
    query on the status index: sent mail, up to MAIL_SENT_KEEP_DAYS of it, is never read."""
    return dict(db.session.execute(
        select(OutboxMessage.status, func.count()).where(OutboxMessage.status.in_(UNSENT_STATUSES))
        .group_by(OutboxMessage.status)
    ).all())
