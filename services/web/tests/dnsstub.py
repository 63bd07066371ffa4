"""A tiny DNS server on loopback, for tests of programs that resolve names themselves (nginx).

It answers A queries for the names it was given, with the address the test set last, and a
long TTL like Docker's embedded DNS (600 s): a client that follows a change sooner does so
by its own setting (nginx's `resolver ... valid=`), not by the TTL. Unknown names get
NXDOMAIN, other record types of a known name an empty answer. Built on dnslib.
"""
import socket
import threading

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

DOCKER_TTL = 600


class StubDNS:
    """A UDP DNS server on 127.0.0.1 (a free port) in a thread; use it as a context manager."""

    def __init__(self, records=None, ttl=DOCKER_TTL):
        self.records = {}
        self.ttl = ttl
        self.queries = []  # (name, type) of every question, in order
        self._lock = threading.Lock()
        for name, address in (records or {}).items():
            self.set(name, address)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stub-dns", daemon=True)

    @property
    def address(self):
        """host:port, as nginx's `resolver` directive takes it."""
        host, port = self._socket.getsockname()
        return f"{host}:{port}"

    def set(self, name, address):
        """Answer `name` with `address` from now on; None: the name does not exist."""
        with self._lock:
            if address is None:
                self.records.pop(name.rstrip("."), None)
            else:
                self.records[name.rstrip(".")] = address

    def asked(self, name):
        """How many A questions for `name` arrived so far."""
        with self._lock:
            return sum(1 for asked, qtype in self.queries if asked == name and qtype == "A")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopping.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self):
        while not self._stopping.is_set():
            try:
                data, client = self._socket.recvfrom(4096)
            except socket.timeout:
                continue
            try:
                request = DNSRecord.parse(data)
            except Exception:  # not DNS: a real server ignores it too
                continue
            self._socket.sendto(self._answer(request).pack(), client)

    def _answer(self, request):
        reply = request.reply()
        question = request.q
        name, qtype = str(question.qname).rstrip("."), QTYPE[question.qtype]
        with self._lock:
            self.queries.append((name, qtype))
            address = self.records.get(name)
        if address is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif qtype == "A":
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=self.ttl))
        return reply
