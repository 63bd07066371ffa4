"""A real SMTP server on loopback for the suite (aiosmtpd), and what it received.

`SmtpServer(port)` listens on 127.0.0.1:port in a thread of its own. Every message whose
DATA it answered with 250 is in `accepted` (parsed, with the envelope's recipients); a
message whose client went away before the answer could reach it is in `unanswered`: a mail
server has not taken a message on until it said so. `hold()` makes the next DATA wait
before answering, until `release()` (to kill a sender mid-send); recipients in `refused`
get a permanent 550.
"""
import asyncio
import email
import threading
from dataclasses import dataclass
from email import policy

from aiosmtpd.controller import Controller

from .prodstack import free_port

HOLD_TIMEOUT = 60



@dataclass
class Received:
    recipients: list
    message: email.message.EmailMessage

    @property
    def subject(self):
        return self.message["Subject"]

    @property
    def message_id(self):
        return self.message["Message-ID"]

    @property
    def text(self):
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self):
        part = self.message.get_body(("html",))
        return part.get_content() if part else None


class _Handler:
    def __init__(self, server):
        self.server = server

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        if address in self.server.refused:
            return "550 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        received = Received(list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=policy.default))
        if self.server.holding:
            self.server.holding = False
            self.server.arrived.set()
            try:
                await asyncio.to_thread(self.server.released.wait, HOLD_TIMEOUT)
            except asyncio.CancelledError:  # aiosmtpd cancels the handler when the client goes
                self.server.unanswered.append(received)
                raise
            if smtp.transport is None or smtp.transport.is_closing():
                self.server.unanswered.append(received)
                return "451 Connection lost before the message was accepted"
        self.server.accepted.append(received)
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.accepted = []
        self.unanswered = []
        self.refused = set()
        self.holding = False
        self.arrived = threading.Event()
        self.released = threading.Event()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self):
        self._controller.start()
        return self

    def stop(self):
        self.released.set()
        self._controller.stop()

    def hold(self):
        """Make the next DATA wait, before answering, until release()."""
        self.arrived.clear()
        self.released.clear()
        self.holding = True

    def release(self):
        self.released.set()

    def to(self, recipient):
        """The accepted messages for `recipient`, in the order they arrived."""
        return [received for received in self.accepted if recipient in received.recipients]
