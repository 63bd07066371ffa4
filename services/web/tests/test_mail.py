"""Email: the outbox written with the change that causes it, and the sender that delivers
it to a real SMTP server on loopback (aiosmtpd) — late when the server is down, never
lost, and not twice when two senders run or one is killed in the middle of a send."""
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select, text, update

from srcflask import create_app
from srcflask.config import ConfigurationError, load_settings
from srcflask.extensions import db
from srcflask.mailer import MailSender
from srcflask.models import OutboxMessage
from srcflask.services import leases, outbox, users

from .factories import make_user
from .faultkit import wait_until
from .smtpserver import SmtpServer, free_port
from .test_ops import sample

WEB_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE_URL = "https://docs.example.org"


@pytest.fixture
def smtp_port():
    return free_port()


@pytest.fixture
def smtp(smtp_port):
    server = SmtpServer(smtp_port).start()
    yield server
    server.stop()


@pytest.fixture
def mail_app(app, database_url, smtp_port):
    """The app sending through the loopback SMTP server (the session's app logs mail)."""
    mail_app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, MAIL_BACKEND="smtp",
                          MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_port, MAIL_TIMEOUT_SECONDS=10,
                          MAIL_RETRY_MIN_SECONDS=30, MAIL_RETRY_MAX_SECONDS=3600, MAIL_MAX_ATTEMPTS=5,
                          SITE_URL=SITE_URL, MAIL_DEFAULT_SENDER="srcflask <no-reply@docs.example.org>")
    yield mail_app
    with mail_app.app_context():
        db.session.remove()
        db.engine.dispose()


def send_all(app):
    """One sender round until nothing is due (or the server is unreachable)."""
    MailSender().run(app, until_idle=True)


def rows():
    db.session.expire_all()
    return db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def queue(recipient, number=0):
    outbox.queue_email(recipient, "account_approved", name=f"Person {number}", link=f"{SITE_URL}/auth/login")


# --- what is emailed ---------------------------------------------------------------------


def test_an_admin_rejecting_a_sign_up_emails_the_reason_with_the_decision(mail_app, smtp, login_as):
    with mail_app.app_context():
        pending = make_user("sponsor", status="pending", name="Pat Pending")
        pending_id, email = pending.id, pending.email
    admin_browser, _ = login_as("admin")

    response = admin_browser.post(f"/admin/users/{pending_id}/reject", {"reason": "No organisation <given>"})
    assert response.status_code == 302

    with mail_app.app_context():
        (queued,) = outbox.queued_messages(email)
        assert queued.status == "queued"  # written by the request, sent by nobody yet
        assert smtp.accepted == []
        send_all(mail_app)
        (received,) = smtp.to(email)
        (row,) = rows()
        assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert received.recipients == [email]
    assert received.subject == "Your srcflask account was not approved"
    assert received.message_id == row.message_id
    assert received.message["From"] == "srcflask <no-reply@docs.example.org>"
    assert "Hello Pat Pending," in received.text
    assert "No organisation <given>" in received.text
    assert "No organisation &lt;given&gt;" in received.html  # the reason is escaped in HTML
    # Rendered by the request's app, whose SITE_URL is the suite's default.
    assert "http://localhost:5000/" in received.text and 'href="http://localhost:5000/"' in received.html


@pytest.mark.parametrize("action, status, subject, link", [
    ("approve", "pending", "Your srcflask account is approved", f"{SITE_URL}/auth/login"),
    ("suspend", "approved", "Your srcflask account is suspended", None),
    ("reinstate", "suspended", "Your srcflask account is reinstated", f"{SITE_URL}/auth/login"),
])
def test_each_account_decision_is_emailed(mail_app, smtp, action, status, subject, link):
    with mail_app.app_context():
        admin = make_user("admin")
        person = make_user("editor", status=status)
        users.decide(person, action, by=admin, reason="Too many failed reviews" if action == "suspend" else None)
        db.session.commit()
        send_all(mail_app)
        (received,) = smtp.to(person.email)
    assert received.subject == subject
    if link:
        assert link in received.text and f'href="{link}"' in received.html
    else:
        assert "Too many failed reviews" in received.text and "Too many failed reviews" in received.html
    assert "password" not in received.text.lower()  # nothing secret but the link


def test_a_rolled_back_decision_sends_nothing(mail_app, smtp):
    with mail_app.app_context():
        admin, person = make_user("admin"), make_user("sponsor", status="pending")
        users.decide(person, "approve", by=admin)
        assert len(outbox.queued_messages(person.email)) == 1  # flushed in the transaction ...
        db.session.rollback()
        assert outbox.queued_messages(person.email) == []  # ... and gone with it
        send_all(mail_app)
    assert smtp.accepted == []


def test_development_writes_the_email_to_the_log(app, caplog):
    """MAIL_BACKEND=log, the default outside production: no mail server needed."""
    with app.app_context():
        queue("dev@example.org")
        db.session.commit()
        with caplog.at_level(logging.INFO, logger="srcflask.mail"):
            send_all(app)
        (row,) = rows()
    assert row.status == "sent"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "email to dev@example.org: Your srcflask account is approved" in logged
    assert f"{SITE_URL}/auth/login" in logged


# --- never lost, never twice -------------------------------------------------------------


def test_smtp_down_the_message_waits_with_backoff_and_is_delivered_once_when_it_is_back(mail_app, smtp_port):
    with mail_app.app_context():
        queue("waiting@example.org")
        db.session.commit()

        send_all(mail_app)  # nothing listens on the port
        (row,) = rows()
        assert (row.status, row.attempts, row.sent_at) == ("queued", 1, None)
        assert "ConnectionRefusedError" in row.last_error
        assert row.next_attempt_at > row.created_at
        assert outbox.claim_message("early", 60, 5) is None  # not due before its backoff

        # Its wait passes (MAIL_RETRY_MIN_SECONDS); the server is still down.
        db.session.execute(update(OutboxMessage).values(next_attempt_at=text("now()")))
        db.session.commit()
        send_all(mail_app)
        (row,) = rows()
        assert (row.status, row.attempts) == ("queued", 2)

        server = SmtpServer(smtp_port).start()
        try:
            db.session.execute(update(OutboxMessage).values(next_attempt_at=text("now()")))
            db.session.commit()
            send_all(mail_app)
            send_all(mail_app)
        finally:
            server.stop()
        (row,) = rows()
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert [received.message_id for received in server.to("waiting@example.org")] == [row.message_id]


def test_flask_mail_send_until_idle_exits_1_when_a_due_message_was_not_sent(mail_app, smtp_port):
    """A one-shot run (cron, a deploy script) must be able to tell that mail did not go out."""
    with mail_app.app_context():
        queue("waiting@example.org", 1)
        queue("gone@example.org", 2)
        db.session.commit()
    down = mail_app.test_cli_runner().invoke(args=["mail", "send", "--until-idle"])
    assert down.exit_code == 1, down.output
    assert "0 sent, 1 not sent (ConnectionRefusedError" in down.stderr and "will be tried again" in down.stderr

    server = SmtpServer(smtp_port).start()
    server.refused.add("gone@example.org")
    try:
        with mail_app.app_context():
            db.session.execute(update(OutboxMessage).values(next_attempt_at=text("now()")))
            db.session.commit()
        refused = mail_app.test_cli_runner().invoke(args=["mail", "send", "--until-idle"])
        assert refused.exit_code == 1, refused.output
        assert "1 sent, 1 not sent (SMTPRecipientsRefused" in refused.stderr
        assert "1 failed for good" in refused.stderr

        idle = mail_app.test_cli_runner().invoke(args=["mail", "send", "--until-idle"])
        assert (idle.exit_code, idle.output) == (0, "Nothing was due.\n")
    finally:
        server.stop()
    with mail_app.app_context():
        assert [(row.recipient, row.status) for row in rows()] == [("waiting@example.org", "sent"),
                                                                   ("gone@example.org", "failed")]


def test_sent_messages_are_deleted_after_mail_sent_keep_days_and_nothing_else_is(mail_app, smtp):
    """A sent email holds an address and a link: it is kept MAIL_SENT_KEEP_DAYS for
    questions about it, then deleted by a mail round; unsent ones are never deleted."""
    with mail_app.app_context():
        for number, recipient in enumerate(["old@example.org", "recent@example.org", "failed@example.org",
                                            "queued@example.org"]):
            queue(recipient, number)
        db.session.commit()
        send_all(mail_app)
        assert [row.status for row in rows()] == ["sent"] * 4
        keep = mail_app.config["MAIL_SENT_KEEP_DAYS"]
        db.session.execute(update(OutboxMessage).values(sent_at=text(f"now() - interval '{keep} days 1 hour'")))
        db.session.execute(update(OutboxMessage).where(OutboxMessage.recipient == "recent@example.org")
                           .values(sent_at=text(f"now() - interval '{keep} days' + interval '1 hour'")))
        db.session.execute(update(OutboxMessage).where(OutboxMessage.recipient == "failed@example.org")
                           .values(status="failed"))
        db.session.execute(update(OutboxMessage).where(OutboxMessage.recipient == "queued@example.org")
                           .values(status="queued", next_attempt_at=text("now() + interval '1 day'")))
        db.session.commit()

    result = mail_app.test_cli_runner().invoke(args=["mail", "send", "--until-idle"])
    assert (result.exit_code, result.output) == (0, f"Nothing was due. 1 sent message older than {keep} days deleted.\n")
    with mail_app.app_context():
        assert [(row.recipient, row.status) for row in rows()] == [
            ("recent@example.org", "sent"), ("failed@example.org", "failed"), ("queued@example.org", "queued")]
    again = mail_app.test_cli_runner().invoke(args=["mail", "send", "--until-idle"])
    assert again.output == "Nothing was due.\n"


def test_a_lease_shorter_than_a_slow_send_is_refused_at_start():
    with pytest.raises(ConfigurationError, match="MAIL_LEASE_SECONDS: got 60; must be at least 4 x MAIL_TIMEOUT_SECONDS"):
        load_settings("testing", MAIL_LEASE_SECONDS=60, MAIL_TIMEOUT_SECONDS=30)


def test_the_wait_between_attempts_doubles_up_to_the_maximum():
    assert [leases.retry_wait(attempts, 30, 3600) for attempts in (1, 2, 3, 4, 8, 9, 500)] == [
        30, 60, 120, 240, 3600, 3600, 3600]


def test_a_permanent_refusal_fails_the_message_at_once_and_others_still_go(mail_app, smtp):
    smtp.refused.add("gone@example.org")
    with mail_app.app_context():
        queue("gone@example.org", 1)
        queue("here@example.org", 2)
        db.session.commit()
        send_all(mail_app)
        gone, here = rows()
    assert (gone.status, gone.attempts) == ("failed", 1)
    assert "550" in gone.last_error
    assert here.status == "sent" and len(smtp.to("here@example.org")) == 1


def test_two_senders_at_once_send_each_message_exactly_once(mail_app, smtp):
    with mail_app.app_context():
        for number in range(40):
            queue(f"person{number}@example.org", number)
        db.session.commit()
    senders = [threading.Thread(target=send_all, args=(mail_app,)) for _ in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)

    with mail_app.app_context():
        sent = rows()
    assert {(row.status, row.attempts) for row in sent} == {("sent", 1)}
    received = sorted(message.message_id for message in smtp.accepted)
    assert received == sorted(row.message_id for row in sent)  # 40, none twice


def test_a_sender_killed_mid_send_is_replaced_and_the_message_is_delivered_once(mail_app, smtp, smtp_port,
                                                                              database_url):
    """The sender dies after handing the message over, while the server has not yet said it
    accepted it: the server drops it (it never answered), the lease runs out, the next
    sender delivers it. Both copies carry the one Message-ID, so had the server taken the
    first, the receiver could still tell the repeat (the README says what remains)."""
    with mail_app.app_context():
        queue("once@example.org")
        db.session.commit()
    smtp.hold()
    env = {**os.environ, "SRCFLASK_ENV": "testing", "TEST_DATABASE_URL": database_url, "FLASK_APP": "wsgi",
           "MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_port),
           "MAIL_LEASE_SECONDS": "2", "MAIL_TIMEOUT_SECONDS": "0.5", "SITE_URL": SITE_URL}
    sender = subprocess.Popen([sys.executable, "-m", "flask", "mail", "send"], cwd=WEB_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert smtp.arrived.wait(60), "the sender never reached DATA"
        with mail_app.app_context():
            (row,) = rows()
            assert row.status == "running"
    finally:
        sender.send_signal(signal.SIGKILL)
        sender.communicate(timeout=30)
    smtp.release()

    with mail_app.app_context():
        # The next sender can take it once the dead sender's lease has run out.
        wait_until(lambda: (send_all(mail_app), smtp.to("once@example.org"))[1], 60, "delivered by the next sender")
        (row,) = rows()
    assert (row.status, row.attempts) == ("sent", 2)
    assert [message.message_id for message in smtp.unanswered] == [row.message_id]
    assert [message.message_id for message in smtp.to("once@example.org")] == [row.message_id]


# --- watching it -------------------------------------------------------------------------


def test_metrics_count_the_unsent_emails_by_status(app, client):
    with app.app_context():
        for number in range(3):
            queue(f"metrics{number}@example.org", number)
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == 1).values(status="failed"))
        db.session.commit()

    metrics = client.get("/metrics").get_data(as_text=True)

    assert sample(metrics, 'srcflask_outbox_messages{status="queued"}') == 2
    assert sample(metrics, 'srcflask_outbox_messages{status="failed"}') == 1
    assert sample(metrics, 'srcflask_outbox_messages{status="running"}') == 0

