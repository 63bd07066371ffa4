"""Regenerate the README's screenshots (docs/screenshots/*.png) from the real pages.

Run through scripts/screenshots. The app is started here on a free loopback port with a
throwaway SQLite database, filled by the same commands a person would use (db upgrade,
seed-demo, create-admin); every page is reached by logging in through the real forms, so
a screenshot can only show what a user would see. Any console error or uncaught script
error (a CSP violation is logged as a console error) fails the run: a picture of a page
that breaks in the browser must not end up in the README.

Debian's Chromium drives the pages, launched and watched by the same code as the browser
tests (tests/e2e/browser.py).
"""
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import sync_playwright

WEB_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(WEB_ROOT))
from tests.e2e.browser import DESKTOP, PHONE, ChromiumUnavailable, PageWatch, launch_chromium, open_page  # noqa: E402

OUT_DIR = WEB_ROOT.parent.parent / "docs" / "screenshots"
FLASK = WEB_ROOT / ".venv" / "bin" / "flask"
# The pages poll queued autodocs every 2 s (static/assets/js/autodocs.js): wait for one
# poll so that an error it causes is seen too.
POLL_SETTLE_MS = 2500
SIZE_BUDGET = 300 * 1024
ADMIN_EMAIL = "admin@example.org"
# Two sign-ups so the approval queue shows more than one row.
SIGNUPS = [
    ("Margaret Hamilton", "margaret@example.org", "sponsor", "Apollo Guidance Software"),
    ("Donald Knuth", "donald@example.org", "editor", ""),
]


class ScreenshotsFailed(Exception):
    """A step the screenshots depend on went wrong; the message says which."""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def flask(env, *args):
    """Run one `flask` command for the throwaway app; its output, or ScreenshotsFailed."""
    result = subprocess.run([str(FLASK), *args], env=env, cwd=WEB_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise ScreenshotsFailed(f"`flask {' '.join(args)}` failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def demo_password(seed_output):
    """The one password `flask seed-demo` prints for all demo accounts (see cli/demo.py)."""
    match = re.search(r"^Password for every demo account[^:]*: (\S+)$", seed_output, re.MULTILINE)
    if not match:
        raise ScreenshotsFailed(f"No password in the output of `flask seed-demo`:\n{seed_output}")
    return match.group(1)


def demo_email(seed_output, role):
    """The first demo account of this role listed by `flask seed-demo`."""
    match = re.search(rf"^\s+{role}\s+(\S+@\S+)", seed_output, re.MULTILINE)
    if not match:
        raise ScreenshotsFailed(f"No {role} in the output of `flask seed-demo`:\n{seed_output}")
    return match.group(1)


def stand_in_model_dir(workdir):
    model_dir = workdir / "gpt2"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    return model_dir


@contextmanager
def running_app(workdir):
    """Prepare a fresh database, serve the app on a free port and yield (base URL, demo
    sponsor email, demo password, admin password); the server is stopped on the way out,
    whatever happened."""
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "SRCFLASK_ENV": "development",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": f"sqlite:///{workdir / 'shots.sqlite3'}",
        "WRITER_IN_PROCESS": "0",  # autodocs stay queued; no model needed
        # A folder that passes the writer's "model installed" file check, so the pages look
        # as on an installation whose writer has its model, not with the no-model warning
        # (which would also show this machine's paths). Nothing ever loads it.
        "WRITER_MODEL_DIR": str(stand_in_model_dir(workdir)),
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_NAME": "Avery Admin",
        "ADMIN_PASSWORD": secrets.token_urlsafe(24),
    }
    flask(env, "db", "upgrade")
    seeded = flask(env, "seed-demo")
    flask(env, "create-admin")

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(FLASK), "run", "--no-reload", "--no-debugger", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=WEB_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(base_url, server, log_path)
        yield base_url, demo_email(seeded, "sponsor"), demo_password(seeded), env["ADMIN_PASSWORD"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_answering(base_url, server, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ScreenshotsFailed(f"The app exited with status {server.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(base_url + "/", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise ScreenshotsFailed(f"The app did not answer on {base_url} within {timeout} s:\n{log_path.read_text()}")


class Camera:
    """Opens browser contexts watched for console errors, script errors and CSP
    violations, and saves full-page captures into the output folder."""

    def __init__(self, browser, base_url, out_dir):
        self.browser = browser
        self.base_url = base_url
        self.out_dir = out_dir
        self.watch = PageWatch()
        self.saved = []

    def page(self, viewport=DESKTOP, mobile=False):
        return open_page(self.browser, self.watch, self.base_url, viewport, mobile)

    def goto(self, page, path):
        response = page.goto(path)
        if response is None or response.status != 200:
            raise ScreenshotsFailed(f"GET {path} answered {response.status if response else 'nothing'}, not 200.")

    def shoot(self, page, name, expect_heading):
        """Save the page as <name>.png once it has settled, after checking it is the page
        meant (an error page or a log-in form must never be captured by mistake)."""
        heading = page.locator("main h1").first.inner_text()
        if heading != expect_heading:
            raise ScreenshotsFailed(f"{name}: expected the page titled {expect_heading!r}, got {heading!r} at {page.url}.")
        page.wait_for_load_state("networkidle")
        if page.locator("[data-autodoc-poll]").count():
            page.wait_for_timeout(POLL_SETTLE_MS)
        path = self.out_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        self.saved.append(path)


def log_in(camera, email, password, viewport=DESKTOP, mobile=False):
    page = camera.page(viewport, mobile)
    camera.goto(page, "/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    if "/auth/login" in page.url:
        raise ScreenshotsFailed(f"Logging in as {email} failed; the log-in form came back.")
    return page


def sign_up(camera, name, email, role, organization):
    page = camera.page()
    camera.goto(page, "/auth/signup")
    password = secrets.token_urlsafe(18)
    page.get_by_label("Full name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Confirm password").fill(password)
    page.locator(f"input[name=role][value={role}]").check()
    page.get_by_label("Organization (optional)").fill(organization)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_load_state()
    if "/auth/standing" not in page.url:
        raise ScreenshotsFailed(f"Signing up {email} did not reach the standing page (at {page.url}).")
    page.context.close()


def capture(camera, sponsor_email, demo_password, admin_password):
    for signup in SIGNUPS:
        sign_up(camera, *signup)

    page = log_in(camera, sponsor_email, demo_password)
    camera.goto(page, "/sponsor/documents")
    camera.shoot(page, "sponsor-documents", "My documents")
    # The seeded report has been revised once, so its history shows two versions.
    page.get_by_role("link", name="Quarterly report: engine room").click()
    page.wait_for_load_state()
    camera.shoot(page, "sponsor-document-history", "Quarterly report: engine room")
    camera.goto(page, "/sponsor/documents/new")
    page.get_by_role("button", name="Save document").click()
    page.wait_for_load_state()
    if not page.locator(".invalid-feedback").count():
        raise ScreenshotsFailed("Saving an empty new document showed no validation error.")
    camera.shoot(page, "sponsor-new-document-errors", "New document")
    page.context.close()

    page = log_in(camera, ADMIN_EMAIL, admin_password)
    camera.goto(page, "/admin/approvals")
    camera.shoot(page, "admin-approvals", "Approvals")
    camera.goto(page, "/admin/users")
    camera.shoot(page, "admin-users", "Users")
    page.context.close()

    page = log_in(camera, sponsor_email, demo_password, PHONE, mobile=True)
    camera.goto(page, "/sponsor/documents")
    camera.shoot(page, "sponsor-documents-phone", "My documents")
    page.context.close()


def main():
    out_dir = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else OUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="srcflask-shots-") as workdir, \
                running_app(Path(workdir)) as (base_url, sponsor_email, password, admin_password), \
                sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                camera = Camera(browser, base_url, out_dir)
                capture(camera, sponsor_email, password, admin_password)
            finally:
                browser.close()
    except (ScreenshotsFailed, ChromiumUnavailable) as failure:
        sys.exit(f"Screenshots failed: {failure}")
    if camera.watch.problems:
        sys.exit("Screenshots failed: the pages logged errors:\n  " + "\n  ".join(camera.watch.problems))
    print(f"{len(camera.saved)} screenshots in {out_dir} ({time.monotonic() - started:.0f} s):")
    for path in camera.saved:
        size = path.stat().st_size
        note = "  (over the ~300 KB budget)" if size > SIZE_BUDGET else ""
        print(f"  {path.name}  {size // 1024} KB{note}")


if __name__ == "__main__":
    main()
