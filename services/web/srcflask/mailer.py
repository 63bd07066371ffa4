"""The mail sender's runtime: a thread in the app process, or `flask mail send`.

It drains the outbox (services/outbox.py, which has the claiming, retry and sent-once
rules): claim one due message, send it over one SMTP connection kept open for the round
(Flask-Mailman, configured by the MAIL_* settings), record the outcome, and go on until
nothing is due. When the server cannot be reached the round ends at the first message,
so a mail server that is down costs one connection attempt per MAIL_POLL_SECONDS, and
each message waits its own backoff. Like the writer, the thread outlives any error of a
round (a database outage, a bug): it is logged and the next round starts after the poll.

Each round first queues the daily digests of notifications that are due
(services/notifications.send_due_digests), a batch at a time with the outbox drained
between batches, so the digests go out in the same round and a morning of many digests
does not hold up a password reset. A digest pass that fails is logged and the outbox is
drained all the same: a bug in the digests must not stop every other email.
"""
import logging
import os
import smtplib
import socket
import threading
import time
from dataclasses import dataclass

from flask_mailman import EmailMultiAlternatives
from flask_mailman.backends.base import BaseEmailBackend

from .extensions import db, mail
from .services import notifications, outbox
from .services.leases import describe

log = logging.getLogger("srcflask.mail")


@dataclass
class RoundReport:
    """What one round did, for `flask mail send --until-idle` to say and to exit by: a
    one-shot run (cron, a deploy script) must be able to tell that mail did not go out."""

    sent: int = 0
    retrying: int = 0  # not sent, queued again after their backoff
    given_up: int = 0  # not sent, failed for good (refused for good, or attempts used up)
    last_error: str | None = None  # why the last message not sent was not
    crashed: str | None = None  # the round itself failed (the database, a bug)
    deleted: int = 0  # sent messages older than MAIL_SENT_KEEP_DAYS

    @property
    def complete(self):
        """Everything due went out."""
        return not (self.retrying or self.given_up or self.crashed)

    def summary(self, keep_days):
        """One line for the command's output; `keep_days` is MAIL_SENT_KEEP_DAYS."""
        if self.crashed:
            words = f"The mail round failed ({self.crashed}); {self.sent} sent before it."
        elif self.complete:
            words = f"{self.sent} sent." if self.sent else "Nothing was due."
        else:
            words = f"{self.sent} sent, {self.retrying + self.given_up} not sent ({self.last_error})"
            if self.given_up:
                words += f"; {self.given_up} failed for good"
            if self.retrying:
                words += "; what is queued will be tried again after its wait"
            words += "."
        if self.deleted:
            words += (f" {self.deleted} sent message{'s' if self.deleted != 1 else ''} older than "
                      f"{keep_days} days deleted.")
        return words


class MailSender:
    """init_app-style holder of this process's mail sender thread."""

    # Old sent messages are looked for at most this often by a running sender (and by
    # every one-shot round): they age by days, not by rounds.
    DELETE_EVERY_SECONDS = 3600

    def __init__(self):
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._next_delete = 0.0

    def init_app(self, app):
        app.extensions["mail_sender"] = self
        if app.config["MAIL_IN_PROCESS"]:
            # As the writer: started by gunicorn's post_worker_init, or under `flask run` by
            # the first request; never by create_app itself, so commands stay light.
            app.before_request(lambda: self.start(app))

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def start(self, app):
        """Start the sender thread once per process (idempotent, cheap when running)."""
        if self._thread:
            return
        with self._lock:
            if self._thread:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, args=(app,), name="mail-sender", daemon=True)
            self._thread.start()

    def stop(self, timeout=30):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        self._thread = None

    def run(self, app, until_idle=False):
        """Send due messages until stopped, a round per MAIL_POLL_SECONDS; with `until_idle`,
        return the RoundReport of one round: once nothing is due, or the server could not
        be reached (for tests and one-shot commands)."""
        worker = f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"
        while not self._stop.is_set():
            report = RoundReport()
            try:
                with app.app_context():
                    self._round(app.config, worker, report)
                    if until_idle or time.monotonic() >= self._next_delete:
                        self._next_delete = time.monotonic() + self.DELETE_EVERY_SECONDS
                        self._delete_old_sent(app.config, worker, report)
            except Exception as error:  # anything at all: the thread must outlive it
                report.crashed = describe(error)
                log.exception("mail sender failed (%s)", describe(error),
                              extra={"event": "mail_sender_failed", "worker": worker, "error": describe(error)})
            if until_idle:
                return report
            self._stop.wait(app.config["MAIL_POLL_SECONDS"])
        return None

    def _round(self, config, worker, report):
        """Queue the due digests and send due messages over one connection, until none is
        left or the server cannot be reached (a server that is down gets one connection
        attempt per round); `report` counts what happened."""
        connection = mail.get_connection()
        try:
            while not self._stop.is_set():
                more_digests = self._queue_digests(config, worker)
                if not self._drain(connection, config, worker, report) or not more_digests:
                    return
        finally:
            _close(connection)

    @staticmethod
    def _queue_digests(config, worker):
        """One batch of due digests into the outbox; True when there may be more."""
        try:
            return notifications.send_due_digests(config["DIGEST_HOUR_UTC"]) == notifications.DIGEST_BATCH
        except Exception as error:  # logged; the outbox is still drained (see the module's docstring)
            db.session.rollback()
            log.exception("digests not queued (%s)", describe(error),
                          extra={"event": "mail_digests_failed", "worker": worker, "error": describe(error)})
            return False

    @staticmethod
    def _delete_old_sent(config, worker, report):
        """Delete the messages sent more than MAIL_SENT_KEEP_DAYS ago, a batch at a time."""
        keep_days = config["MAIL_SENT_KEEP_DAYS"]
        while (deleted := outbox.delete_sent_before(keep_days)) > 0:
            report.deleted += deleted
            if deleted < outbox.DELETE_BATCH:
                break
        if report.deleted:
            log.info("%d sent messages older than %d days deleted", report.deleted, keep_days,
                     extra={"event": "mail_sent_deleted", "deleted": report.deleted, "worker": worker})

    def _drain(self, connection, config, worker, report):
        """Send due messages until none is left (True) or the server cannot be reached (False)."""
        while not self._stop.is_set():
            delivery = outbox.claim_message(worker, config["MAIL_LEASE_SECONDS"], config["MAIL_MAX_ATTEMPTS"])
            if delivery is None:
                return True
            if not self._deliver(connection, delivery, config, worker, report):
                return False
        return False

    def _deliver(self, connection, delivery, config, worker, report):
        """Send one message and record the outcome; False when the server could not be
        reached (the round should end)."""
        try:
            connection.open()
        except Exception as error:  # refused, timed out, TLS or log-in failed: the message waits
            return self._not_sent(connection, delivery, error, config, worker, report)
        # The lease starts again now: the connection may have taken its time to open.
        if not outbox.renew(delivery, config["MAIL_LEASE_SECONDS"]):
            log.warning("message %s was taken over before sending", delivery.id,
                        extra={"event": "mail_taken_over", "outbox_id": delivery.id, "worker": worker})
            return True
        email = EmailMultiAlternatives(delivery.subject, delivery.text_body, config["MAIL_DEFAULT_SENDER"],
                                       [delivery.recipient], connection=connection,
                                       headers={"Message-ID": delivery.message_id})
        if delivery.html_body:
            email.attach_alternative(delivery.html_body, "text/html")
        try:
            email.send()
        except Exception as error:  # whatever the server or the network did: retried, or given up
            return self._not_sent(connection, delivery, error, config, worker, report)
        sent = outbox.mark_sent(delivery)
        report.sent += 1
        log.info("message %s %s", delivery.id, "sent" if sent else "sent, but its claim had been taken over",
                 extra={"event": "mail_sent" if sent else "mail_sent_late", "outbox_id": delivery.id,
                        "attempts": delivery.attempts, "worker": worker, "request_id": delivery.request_id})
        return True

    @staticmethod
    def _not_sent(connection, delivery, error, config, worker, report):
        """Record a failed attempt (retried later, or failed for good); True when the server
        answered about this message, so the next one may still go through."""
        _close(connection)
        status = outbox.mark_failed_attempt(
            delivery, describe(error), permanent=is_permanent(error),
            retry_min_seconds=config["MAIL_RETRY_MIN_SECONDS"], retry_max_seconds=config["MAIL_RETRY_MAX_SECONDS"],
            max_attempts=config["MAIL_MAX_ATTEMPTS"])
        report.last_error = describe(error)
        if status == "failed":
            report.given_up += 1
        else:
            report.retrying += 1
        log.warning("message %s not sent (attempt %d, now %s): %s", delivery.id, delivery.attempts, status,
                    describe(error), extra={"event": "mail_failed", "outbox_id": delivery.id, "status": status,
                                            "attempts": delivery.attempts, "error": describe(error), "worker": worker,
                                            "request_id": delivery.request_id})
        return isinstance(error, MESSAGE_REFUSALS)


# The server answered, about this message alone: the connection is good for the next one.
MESSAGE_REFUSALS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


def is_permanent(error):
    """True when the server refused this message for good (a 5xx reply to its recipient or
    its content): trying again would be refused again. A refused log-in or sender address
    is the site's configuration, not the message's: those messages wait for it to be fixed."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPDataError) and 500 <= error.smtp_code < 600


def _close(connection):
    """Close the SMTP connection whatever state it is in. Flask-Mailman forgets it even when
    the server does not say goodbye (a dropped connection): nothing to act on then."""
    try:
        connection.close()
    except OSError:
        pass


class LogEmailBackend(BaseEmailBackend):
    """MAIL_BACKEND=log: each message is written to the log instead of being sent, so the
    quick start needs no mail server and its links can be followed from the terminal."""

    def send_messages(self, email_messages):
        for message in email_messages:
            log.info("email to %s: %s\n%s", ", ".join(message.to), message.subject, message.body,
                     extra={"event": "mail_logged", "recipient": ", ".join(message.to), "subject": message.subject})
        return len(email_messages)


mail_sender = MailSender()
