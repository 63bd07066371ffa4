"""A test client that behaves like a browser with CSRF protection on."""
import re

from sqlalchemy import text

from srcflask.extensions import db

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
# What a Python or database failure would leak into a page.
LEAKS = ("Traceback (most recent call last)", 'File "/', "psycopg2", "sqlalchemy", "werkzeug.exceptions",
         "UnicodeDecodeError", "ValueError", "Werkzeug Debugger")
# How a form page shows what is wrong: next to a field, or above the form.
ERROR_SHOWN = ("invalid-feedback", "alert-danger")


class FormClient:
    """Wraps Flask's test client: `post()` sends the session's CSRF token, read from a
    page the way a browser would have it, unless `csrf=False` is asked for."""

    def __init__(self, client):
        self.raw = client
        self._token = None

    def get(self, path, **kwargs):
        return self.raw.get(path, **kwargs)

    def csrf_token(self):
        if self._token is None:
            page = self.raw.get("/auth/login").get_data(as_text=True)
            match = CSRF_META.search(page)
            assert match, "no CSRF token on the log-in page"
            self._token = match.group(1)
        return self._token

    def post(self, path, data=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token())
        return self.raw.post(path, data=data, **kwargs)

    def follow(self, response):
        """GET the page a redirect points to."""
        assert response.status_code in (301, 302, 303), response.status_code
        return self.raw.get(response.headers["Location"])


def html(response):
    """The page a response carries, as text."""
    return response.get_data(as_text=True)


def database_fingerprint():
    """{table: (rows, md5 of every row as text)} for every table of the app, in one query
    (needs an app context): two equal fingerprints mean no row was added, removed or changed."""
    query = " UNION ALL ".join(
        f"SELECT '{table.name}', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
        f'FROM "{table.name}" t'
        for table in db.metadata.sorted_tables
    )
    fingerprint = {name: (rows, digest) for name, rows, digest in db.session.execute(text(query))}
    db.session.rollback()
    return fingerprint
