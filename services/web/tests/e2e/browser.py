"""Debian's Chromium under Playwright, and the watch every page it shows is kept under.

Shared by the browser tests (tests/e2e) and the README's screenshots
(scripts/take_screenshots.py): both must fail when a page logs a console error, throws an
uncaught script error or breaks the Content Security Policy. Playwright cannot download
its own browser here, so Debian's `chromium` package drives the pages.
"""
import os

from playwright.sync_api import Error as PlaywrightError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
INSTALL_HELP = ("Install Debian's chromium and chromium-driver "
                "(services/web/scripts/system-packages does it: sudo apt-get install chromium chromium-driver).")

# Chromium also logs a CSP violation to the console; the event says which directive
# blocked what, from where, which is what a person fixing it needs.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (event) {
  window.__reportCspViolation(event.violatedDirective + " blocked " + (event.blockedURI || "inline code")
    + " (" + (event.sourceFile || "the page") + ":" + event.lineNumber + ")");
});
"""
_FAILED_LOAD = "Failed to load resource: the server responded with a status of {status} "


class ChromiumUnavailable(RuntimeError):
    """Chromium is missing or would not start; the message says how to fix it."""


def launch_chromium(playwright):
    """A headless Debian Chromium, or ChromiumUnavailable saying why not."""
    if not os.access(CHROMIUM, os.X_OK):
        raise ChromiumUnavailable(f"{CHROMIUM} is missing. {INSTALL_HELP}")
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except PlaywrightError as error:
        raise ChromiumUnavailable(f"{CHROMIUM} would not start: {error}\n{INSTALL_HELP}") from error


def open_page(browser, watch, base_url, viewport=DESKTOP, mobile=False):
    """A page in a new browser context (its own cookies: one person), watched by `watch`."""
    context = browser.new_context(base_url=base_url, viewport=viewport, is_mobile=mobile, has_touch=mobile)
    watch.watch(context)
    return context.new_page()


class PageWatch:
    """Records what goes wrong in the pages of the browser contexts it watches: console
    errors (Chromium logs CSP violations and 4xx/5xx loads there too), uncaught script
    errors and CSP violations. `problems` lists them, one readable line each."""

    def __init__(self):
        self.problems = []
        self._expected_failures = set()

    def watch(self, context):
        context.expose_binding("__reportCspViolation", lambda source, text: self.problems.append(
            f"CSP violation on {source['page'].url}: {text}"))
        context.add_init_script(_REPORT_CSP_VIOLATIONS)
        context.on("console", self._console)
        context.on("weberror", lambda error: self.problems.append(
            f"script error on {error.page.url if error.page else 'a closed page'}: {error.error}"))

    def expect_failure(self, url, status):
        """A page the test expects to answer with an error status (the 409 of an edit
        conflict): Chromium logs it as a console error, which is no problem there."""
        self._expected_failures.add((url, status))

    def _console(self, message):
        if message.type != "error":
            return
        source = message.location.get("url") or ""
        if any(source == url and message.text.startswith(_FAILED_LOAD.format(status=status))
               for url, status in self._expected_failures):
            return
        page = message.page.url if message.page else source
        self.problems.append(f"console error on {page}: {message.text} ({source or 'no source'})")
