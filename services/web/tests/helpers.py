"""A test client that behaves like a browser with CSRF protection on."""
import re

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


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
