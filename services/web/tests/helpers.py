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
# Log-in and sign-up start a new session with a new CSRF token (security.start_session).
NEW_SESSION_PATHS = ("/auth/login", "/auth/signup")


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
            # The log-in page, or the home page a logged-in browser is sent to instead.
            page = self.raw.get("/auth/login", follow_redirects=True).get_data(as_text=True)
            match = CSRF_META.search(page)
            assert match, "no CSRF token on the log-in page"
            self._token = match.group(1)
        return self._token

    def post(self, path, data=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token())
        response = self.raw.post(path, data=data, **kwargs)
        if response.status_code == 302 and path.partition("?")[0] in NEW_SESSION_PATHS:
            self._token = None
        return response

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


# Documents whose retention's kept figures disagree with the rows they summarise: its copy of
# the document's last change, or its count of written autodocs without a current verdict.
# Written apart from the app's own recount on purpose: an oracle, not the same code again.
WRONG_KEPT_FIGURES = text("""
    SELECT t.document_id FROM retentions t JOIN documents d ON d.id = t.document_id
    WHERE t.document_updated_at <> d.updated_at OR t.awaiting_review <> (
        SELECT count(*) FROM autodocs a JOIN revisions r ON r.id = a.revision_id
        WHERE r.document_id = t.document_id AND a.status = 'done'
          AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.autodoc_id = a.id AND v.current))
    ORDER BY t.document_id
""")


def wrong_kept_figures(connection):
    """The ids of documents whose kept figures are wrong (WRONG_KEPT_FIGURES), on a session
    or a connection."""
    return list(connection.execute(WRONG_KEPT_FIGURES).scalars())


def with_signature_changed(token):
    """A signed token (itsdangerous) with its signature's first character changed. Not its
    last: that character carries base64 padding bits, so some changes there (B to A) decode
    to the same signature and the token still passes."""
    signed, signature = token.rsplit(".", 1)
    return f"{signed}.{'A' if signature[0] != 'A' else 'Q'}{signature[1:]}"
