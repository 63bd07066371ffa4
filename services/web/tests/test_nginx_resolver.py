"""nginx follows the web container's address: a recreated or scaled `web` is reached without
reloading nginx.

Docker gives a recreated container a new address behind the same name. nginx resolves the
names of an `upstream` block once, at start; the site instead names `web` in a variable of
`proxy_pass`, which nginx resolves at request time through `resolver` (Docker's DNS in the
image) and caches for `valid=`. Here the real nginx (Debian's, as tests/test_production.py
runs it) serves services/nginx/nginx.conf rendered as the image renders it, its resolver a
small DNS server of the test (tests/dnsstub.py), and `web` moves between two backends on
different loopback addresses while nginx keeps running.
"""
import http.server
import socket
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest
import requests

from .dnsstub import StubDNS
from .prodstack import free_port, nginx, nginx_site, self_signed_certificate

pytestmark = pytest.mark.slow

RESOLVER_VALID_SECONDS = 1
# Far more than valid= (1 s) plus a request: a deadline for the change to show, not a measure.
FOLLOW_DEADLINE_SECONDS = 20


class _Named(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the address it listens on, so the test sees who answered."""

    def do_GET(self):
        body = f"backend {self.server.server_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def backend(address, port):
    server = http.server.ThreadingHTTPServer((address, port), _Named)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def port_free_on(*addresses):
    """A port free on every one of `addresses` (the backends share it, as containers do)."""
    for _ in range(20):
        port = free_port()
        try:
            for address in addresses:
                with socket.socket() as probe:
                    probe.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free on all of {addresses}")


@pytest.fixture
def site(tmp_path):
    """nginx proxying to `web:<port>`, resolved through the stub DNS; `web` first names
    127.0.0.2. Yields (get, dns, nginx process)."""
    port = port_free_on("127.0.0.2", "127.0.0.3")
    cert, key = self_signed_certificate(tmp_path)
    http_port, https_port = free_port(), free_port()
    with ExitStack() as down:
        down.enter_context(backend("127.0.0.2", port))
        down.enter_context(backend("127.0.0.3", port))
        dns = down.enter_context(StubDNS({"web": "127.0.0.2"}))
        proxy = down.enter_context(nginx(nginx_site(
            port, http_port, https_port, cert, key, upstream_host="web",
            resolver=dns.address, resolver_valid=f"{RESOLVER_VALID_SECONDS}s")))
        browser = requests.Session()
        browser.trust_env = False
        browser.verify = str(cert)

        def get(path="/sponsor/documents"):
            return browser.get(f"https://127.0.0.1:{https_port}{path}", timeout=10)

        yield get, dns, proxy


def answers_until(get, expected, deadline_seconds=FOLLOW_DEADLINE_SECONDS):
    """Ask until the answer matches `expected(response)`; the last response either way."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        response = get()
        if expected(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_requests_follow_web_to_its_new_address_without_a_reload(site):
    get, dns, proxy = site
    first = get()
    assert first.status_code == 200, proxy.output()
    assert first.text == "backend 127.0.0.2"
    assert dns.asked("web") >= 1, "nginx must resolve `web` through its resolver"

    dns.set("web", "127.0.0.3")  # the container was recreated: same name, new address
    moved = answers_until(get, lambda response: response.text == "backend 127.0.0.3")
    assert moved.status_code == 200 and moved.text == "backend 127.0.0.3", proxy.output()
    assert proxy.popen.poll() is None, "the nginx started above, never reloaded, still runs"


def test_web_gone_then_back_is_the_sites_unavailable_page_then_the_site(site):
    """While the name does not resolve (the container is being recreated), nginx answers its
    own 502 page, in the site's words; once the name is back, requests reach it again."""
    get, dns, proxy = site
    assert get().text == "backend 127.0.0.2"

    dns.set("web", None)
    gone = answers_until(get, lambda response: response.status_code == 502)
    assert gone.status_code == 502, proxy.output()
    assert "Service unavailable" in gone.text and "nginx" not in gone.text

    dns.set("web", "127.0.0.3")
    back = answers_until(get, lambda response: response.status_code == 200)
    assert back.status_code == 200 and back.text == "backend 127.0.0.3", proxy.output()
    assert proxy.popen.poll() is None
