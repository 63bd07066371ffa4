"""`flask mail send`: the app's mail sender as a process of its own."""
import signal
import time

import click
from flask import current_app
from flask.cli import AppGroup

from ..mailer import mail_sender

mail = AppGroup("mail", help="Send the emails waiting in the outbox, and the daily digests that are due.")


@mail.command("send")
@click.option("--until-idle", is_flag=True,
              help="One round: exit once no message (and no digest) is due; exit 1 if any due message did not go out.")
def send(until_idle):
    """Send the outbox's messages and the due digests of notifications from this process,
    beside or instead of the app's own sender (MAIL_IN_PROCESS). Any number of these may
    run against one database: each message is claimed by one of them at a time, and each
    person's digest is sent by one of them once a day."""
    app = current_app._get_current_object()
    if until_idle:
        report = mail_sender.run(app, until_idle=True)
        click.echo(report.summary(app.config["MAIL_SENT_KEEP_DAYS"]), err=not report.complete)
        if not report.complete:
            raise SystemExit(1)
        return
    signal.signal(signal.SIGTERM, lambda *_: mail_sender.stop())
    mail_sender.start(app)
    click.echo("Mail sender running; Ctrl+C stops it.")
    try:
        while mail_sender.running:
            time.sleep(1)
    except KeyboardInterrupt:
        mail_sender.stop()
