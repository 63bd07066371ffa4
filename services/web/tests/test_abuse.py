"""Hostile requests: oversized bodies, floods of fields, bytes that are not UTF-8, NUL
characters, very long lines, open-redirect tricks in `next`, ids that are not ids, and a
thousand wrong passwords.

Every case gets a clean answer, through the real app with CSRF on: the status the case
calls for (a 4xx, the form showing its error, a redirect to a page of this site), a page
or JSON error of the app rather than a 500 or a traceback, and a database exactly as it
was (the row count and a checksum of every table, see database_fingerprint). Cases of one
kind run as subtests of one test, so that a log-in is paid once per kind and the file
stays quick while each failing case is still reported on its own.
"""
import io
import re
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import limits
import pytest
from sqlalchemy import text

from srcflask import create_app
from srcflask.extensions import db
from srcflask.forms import NUL_MESSAGE
from srcflask.services import tokens

from .factories import DEFAULT_PASSWORD, make_document, make_user, write_autodocs
from .helpers import ERROR_SHOWN, LEAKS, database_fingerprint, html

MEGABYTE = 1024 * 1024
TOO_LARGE = "That request is too large."
BAD_REQUEST = "The request could not be understood."
NOT_FOUND = "There is nothing here, or it is not yours to see."
LOGIN_FAILED = "Email or password is incorrect."
# Not numbers (the URL matches no route), and numbers no row id (a PostgreSQL integer) can be.
NOT_IDS = ["abc", "-1", "1.0", "0x10", "1e3", " 1", "1%00", "%FF", "%C3%28", "²"]
OVERFLOWING_IDS = ["0", str(2**31), str(2**63), "9" * 30, "9" * 5000]
INVALID_UTF8 = [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"caf\xe9", b"\xf8\x88\x80\x80\x80"]


# --- helpers ------------------------------------------------------------------------------------


@contextmanager
def database_unchanged(app):
    """Fails when the block changes any row of any table."""
    with app.app_context():
        before = database_fingerprint()
    yield
    with app.app_context():
        after = database_fingerprint()
    changed = sorted(name for name in before if before[name] != after[name])
    assert not changed, f"the request changed the tables {changed}"


def assert_clean(response, status, says=None):
    """The answer is `status`, a page or JSON of the app that leaks no internals, saying `says`."""
    body = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, body[:300])
    leaks = [leak for leak in LEAKS if leak in body]
    assert not leaks, f"the response shows {leaks}"
    if says is not None:
        assert says in body, f"{says!r} is not on the page"


def on_site(location):
    """True for a redirect to a path of this site (nothing a browser would leave it for)."""
    parts = urlsplit(location)
    return (not parts.scheme and not parts.netloc and location.startswith("/") and not location.startswith("//")
            and "\\" not in location and not any(ord(char) < 32 for char in location))


def _urlencoded(fields):
    """A form body as bytes, so that values can hold bytes no browser would send."""
    return b"&".join(quote(name).encode() + b"=" + quote(value if isinstance(value, bytes) else str(value)).encode()
                     for name, value in fields.items())


def _api_token(app, user):
    """A token of `user` whose last use is already recorded, so that using it again within
    the minute writes nothing (tokens.LAST_USED_RESOLUTION)."""
    with app.app_context():
        secret = tokens.create_token(user, "script").secret
        db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 200
    return headers


@pytest.fixture
def world(app, login_as):
    """A sponsor (logged in) with one written document and its editor."""
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        editor = make_user("editor")
        document = make_document(sponsor, editor, title="Kept", body="Untouched.")
        write_autodocs()
        return {"browser": browser, "sponsor": sponsor, "editor_id": editor.id, "document_id": document.id}


SIGNUP = {"name": "Ada Lovelace", "email": "ada@example.org", "password": DEFAULT_PASSWORD,
          "confirm": DEFAULT_PASSWORD, "role": "sponsor", "organization": "Engines"}
FORM_PATHS = {"signup": "/auth/signup", "login": "/auth/login", "new document": "/sponsor/documents/new",
              "edit document": "/sponsor/documents/{document_id}/edit", "api token": "/account/tokens"}
ANONYMOUS_FORMS = ("signup", "login")


def _form(world, name):
    """The valid form `name`, filled in for `world`'s sponsor where it needs one."""
    return {"signup": SIGNUP, "login": {"email": world["sponsor"].email, "password": DEFAULT_PASSWORD},
            "new document": {"title": "A title", "body": "A body.", "editor": world["editor_id"]},
            "edit document": {"title": "A title", "body": "A body.", "version": "1"}, "api token": {}}[name]


def _post_form(make_client, world, form, fields, **kwargs):
    """POST `form` with `fields` changed, from a new anonymous browser or as `world`'s sponsor."""
    browser = make_client() if form in ANONYMOUS_FORMS else world["browser"]
    return browser.post(FORM_PATHS[form].format(**world), {**_form(world, form), **fields}, **kwargs)


# --- oversized bodies and floods of fields ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_10_mb_body_is_refused_with_413(app, make_client, world, subtests, encoding):
    for form in ("login", "signup", "new document", "edit document"):
        with subtests.test(form), database_unchanged(app):
            response = _post_form(make_client, world, form, {"body": "x" * (10 * MEGABYTE)}, content_type=encoding)
            assert_clean(response, 413, TOO_LARGE)


def test_a_10_mb_json_body_is_refused_by_the_api(app, world):
    headers = _api_token(app, world["sponsor"])
    body = {"title": "T", "editor_id": world["editor_id"], "body": "x" * (10 * MEGABYTE)}
    with database_unchanged(app):
        response = app.test_client().post("/api/v1/documents", json=body, headers=headers)
    assert_clean(response, 413)
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


@pytest.mark.parametrize("encoding", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_5000_form_fields_are_refused_with_413(app, make_client, world, subtests, encoding):
    """No form of the app has more than a handful of fields; thousands are a flood, refused
    before any of them is read (Flask's MAX_FORM_PARTS does this for multipart bodies)."""
    flood = {f"field{number}": "x" for number in range(5000)}
    for form in ("login", "signup", "new document", "edit document"):
        with subtests.test(form), database_unchanged(app):
            response = _post_form(make_client, world, form, flood, content_type=encoding)
            assert_clean(response, 413, TOO_LARGE)


# --- bytes that are not UTF-8 -------------------------------------------------------------------

SAVING_FIELDS = [("signup", "name"), ("signup", "organization"), ("new document", "title"),
                 ("new document", "body"), ("edit document", "body")]


@pytest.mark.parametrize("form, field", SAVING_FIELDS)
def test_invalid_utf8_in_a_saving_form_is_400_and_stores_nothing(app, make_client, world, subtests, form, field):
    """Browsers send forms as UTF-8: other bytes come from a broken or hostile client, and
    storing them as replacement characters (U+FFFD) would silently corrupt the text."""
    for bad in INVALID_UTF8:
        browser = make_client() if form in ANONYMOUS_FORMS else world["browser"]
        fields = {"csrf_token": browser.csrf_token(), **_form(world, form), field: b"Bad " + bad + b" text"}
        with subtests.test(bad=bad), database_unchanged(app):
            response = browser.raw.post(FORM_PATHS[form].format(**world), data=_urlencoded(fields),
                                        content_type="application/x-www-form-urlencoded")
            assert_clean(response, 400, BAD_REQUEST)


def test_invalid_utf8_in_reading_requests_gets_a_clean_answer(app, make_client, world, subtests):
    """Requests that store nothing: the page (the bytes read as U+FFFD match nothing) or a
    400, and 404 for a path that no route has."""
    anonymous = make_client()
    headers = _api_token(app, world["sponsor"])
    cases = {
        "login form": lambda bad: anonymous.raw.post(
            "/auth/login", content_type="application/x-www-form-urlencoded",
            data=_urlencoded({"csrf_token": anonymous.csrf_token(), "email": bad, "password": bad})),
        "login next": lambda bad: anonymous.get(f"/auth/login?next=/sponsor/{quote(bad)}"),
        "search": lambda bad: world["browser"].get(f"/sponsor/documents?q={quote(bad)}"),
        "page number": lambda bad: world["browser"].get(f"/sponsor/documents?page={quote(bad)}"),
        "api search": lambda bad: app.test_client().get(f"/api/v1/documents?q={quote(bad)}", headers=headers),
    }
    paths = ["/sponsor/documents/%s", "/auth/%s", "/api/v1/documents/%s", "/static/%s", "/%s"]
    for bad in INVALID_UTF8:
        for name, request in cases.items():
            with subtests.test(name, bad=bad), database_unchanged(app):
                response = request(bad)
                assert response.status_code in (200, 400), response.status_code
                assert_clean(response, response.status_code)
        for path in paths:
            with subtests.test(path, bad=bad), database_unchanged(app):
                assert_clean(world["browser"].get(path % quote(bad)), 404)
            # Raw bytes in the path, as a client that does not percent-encode sends them.
            with subtests.test(path, raw=bad), database_unchanged(app):
                response = world["browser"].get("/", environ_overrides={"PATH_INFO": path % bad.decode("latin-1")})
                assert_clean(response, 404)


def test_invalid_utf8_and_huge_headers_are_ignored(app, subtests):
    """WSGI hands headers over as latin-1, so any byte arrives; none may break a page or the
    API. A broken Cookie is a visitor without a session."""
    for header in ("Cookie", "User-Agent", "Referer", "Accept-Language", "X-Forwarded-For", "X-Forwarded-Host",
                   "Authorization", "If-None-Match", "Content-Type", "Host"):
        for value in ("\xff\xfe\x00", "caf\xe9", "x" * (100 * 1024)):
            with subtests.test(header, value=value[:8]), database_unchanged(app):
                page = app.test_client().get("/auth/login", headers={header: value})
                api = app.test_client().get("/api/v1/me", headers={header: value})
                if header == "Host":  # werkzeug refuses a malformed Host before the app
                    assert page.status_code in (200, 400) and api.status_code in (401, 400)
                    assert_clean(page, page.status_code)
                    assert_clean(api, api.status_code)
                else:
                    assert_clean(page, 200, "Log in")
                    assert_clean(api, 401)


# --- NUL characters -------------------------------------------------------------------------------

# form -> [(field, value, what the page says, or None: some error)]: each refused, nothing stored.
NUL_REFUSED = {
    "signup": [("email", "ada\x00@example.org", NUL_MESSAGE),
               ("confirm", DEFAULT_PASSWORD + "\x00", "The passwords do not match."),
               ("role", "sponsor\x00", "Choose sponsor or editor.")],
    "login": [("email", "\x00", NUL_MESSAGE), ("email", "sponsor\x00@example.org", NUL_MESSAGE),
              ("password", "\x00", NUL_MESSAGE), ("password", "\x00" + DEFAULT_PASSWORD, NUL_MESSAGE)],
    "new document": [("title", "\x00\x00", "Title is required."), ("editor", "1\x00", None)],
    "edit document": [("title", "\x00", "Title is required."), ("version", "1\x00", None)],
    "api token": [("name", "\x00", None), ("name", " \x00 ", None)],
}


@pytest.mark.parametrize("form", NUL_REFUSED)
def test_nul_characters_in_form_fields_are_refused_cleanly(app, make_client, world, subtests, form):
    for field, value, says in NUL_REFUSED[form]:
        with subtests.test(field, value=value), database_unchanged(app):
            response = _post_form(make_client, world, form, {field: value})
            assert_clean(response, 200, says)
            assert any(marker in html(response) for marker in ERROR_SHOWN), "no error shown"


# (form, field, value): text a person typed, with NUL characters in it.
NUL_INSIDE = [
    ("signup", "name", "Ada\x00 Lovelace"), ("signup", "name", "\x00"),
    ("signup", "organization", "Engi\x00nes"), ("signup", "organization", "\x00"),
    ("new document", "title", "Nu\x00ll"), ("new document", "body", "A\x00B\x00"),
    ("edit document", "body", "\x00Edited\x00"),
]
STORED_TEXT = {"signup": "SELECT name || ' ' || organization FROM users",
               "new document": "SELECT title || ' ' || body FROM documents",
               "edit document": "SELECT title || ' ' || body FROM revisions"}


@pytest.mark.parametrize("form, field, value", NUL_INSIDE, ids=[f"{c[0]}-{c[1]}-{len(c[2])}" for c in NUL_INSIDE])
def test_a_nul_inside_text_is_dropped_or_refused_never_stored(app, make_client, world, form, field, value):
    """PostgreSQL cannot store NUL. The text is kept without it (services.documents.clean_*
    does this for documents), or the form says what is wrong: never a 500."""
    with app.app_context():
        before = database_fingerprint()
    response = _post_form(make_client, world, form, {field: value})
    if response.status_code == 302:
        assert on_site(response.headers["Location"])
        with app.app_context():
            stored = db.session.scalars(text(STORED_TEXT[form])).all()
        assert any(value.replace("\x00", "") in row for row in stored), stored
    else:
        assert_clean(response, 200)
        with app.app_context():
            assert database_fingerprint() == before


FILE_FIELDS = {"signup": ["name", "email", "password", "role"], "login": ["email", "password"],
               "new document": ["title", "editor"], "edit document": ["title", "version"], "api token": ["name"]}


@pytest.mark.parametrize("form", FILE_FIELDS)
def test_a_file_where_text_is_expected_is_refused_cleanly(app, make_client, world, subtests, form):
    """No form of the app takes a file: a multipart body that puts one in a text field is a
    hand-made request, refused like a missing field (or as a bad request), never a 500."""
    for field in FILE_FIELDS[form]:
        with subtests.test(field), database_unchanged(app):
            response = _post_form(make_client, world, form, {field: (io.BytesIO(b"not text"), "upload.txt")},
                                  content_type="multipart/form-data")
            assert response.status_code in (200, 400), response.status_code
            assert_clean(response, response.status_code)
            if response.status_code == 200:
                assert any(marker in html(response) for marker in ERROR_SHOWN), "no error shown"


SEARCHES = {
    "sponsor": ["/sponsor/documents?q=%s"],
    "editor": ["/editor/documents?q=%s"],
    "admin": ["/admin/documents?q=%s", "/admin/users?q=%s", "/admin/audit?actor=%s", "/admin/users?role=%s",
              "/admin/users?status=%s", "/admin/audit?action=%s", "/admin/audit?since=%s"],
}


@pytest.mark.parametrize("role", SEARCHES)
def test_nul_and_huge_search_boxes_answer_the_list(app, login_as, subtests, role):
    browser, _ = login_as(role)
    for path in SEARCHES[role]:
        for value in ("%00", "a%00b", "%00" * 100, "%25%00_", "x" * MEGABYTE):
            with subtests.test(path, value=value[:12]), database_unchanged(app):
                assert_clean(browser.get(path % value), 200)


# --- very long lines ------------------------------------------------------------------------------

LONG_LINES = {
    # form -> [(field, value, status, what the answer says)]
    "new document": [("body", "x" * MEGABYTE, 413, TOO_LARGE), ("body", "x" * 20_001, 200, "Body is too long"),
                     ("title", "x" * 10_000, 200, "Title is too long")],
    "edit document": [("body", "y" * 20_001, 200, "Body is too long")],
    "signup": [("email", "a" * 9_988 + "@example.org", 200, "Enter a valid email address."),
               ("name", "n" * 10_000, 200, "Use at most 120 characters."),
               ("password", "p" * 10_000, 200, "Use at most 128 characters.")],
    "login": [("email", "a" * 9_988 + "@example.org", 200, LOGIN_FAILED),
              ("password", "p" * 400_000, 200, LOGIN_FAILED)],
}


@pytest.mark.parametrize("form", LONG_LINES)
def test_very_long_lines_are_refused_cleanly(app, make_client, world, subtests, form):
    for field, value, status, says in LONG_LINES[form]:
        with subtests.test(field, length=len(value)), database_unchanged(app):
            assert_clean(_post_form(make_client, world, form, {field: value}), status, says)


# --- `next` on log-in and on the admin's decisions --------------------------------------------------

HOSTILE_NEXT = [
    "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example", "/\\/evil.example",
    "https://evil.example/", "http:evil.example", "https:/evil.example", "//evil.example@localhost",
    "http://localhost@evil.example/", " //evil.example", "/\t/evil.example", "/\r\nLocation: //evil.example",
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example", "%252F%252Fevil.example", "//%65vil.example", "\u3002evil.example",
    "//evil.example/" + "a" * 10_000, "//" + "evil." * 2_000 + "example",
]
# On-site targets, however odd, are followed; a log-in page's own `next` is judged again there.
NESTED_NEXT = [
    "/auth/login?next=//evil.example",
    "/auth/login?next=" + quote("/auth/login?next=" + quote("//evil.example", safe=""), safe=""),
    "/auth/login?next=" + quote("/auth/login?next=" + quote("/auth/login?next=javascript:alert(1)", safe=""),
                                safe=""),
    "/%2F%2Fevil.example", "/%09/evil.example", "/" + "a" * 10_000,
]


def _follow_on_site(browser, response, hops=6):
    """Follow redirects, each of which must stay on this site; the final response."""
    for _ in range(hops):
        if response.status_code not in (301, 302, 303):
            return response
        location = response.headers["Location"]
        assert on_site(location), location
        response = browser.get(location)
    raise AssertionError("too many redirects")


def test_login_never_redirects_off_site(app, make_client, world, subtests):
    """The log-in form leaves a hostile `next` out of its action, and a log-in goes to the
    start page instead; on-site targets are followed, and every hop stays on the site."""
    for number, target in enumerate(HOSTILE_NEXT + NESTED_NEXT):
        with subtests.test(target=target[:60]):
            browser = make_client()
            # Each case from its own address: the log-in rate limit is not what is tested here.
            browser.raw.environ_base["REMOTE_ADDR"] = f"198.51.100.{number + 1}"
            login = "/auth/login?next=" + quote(target, safe="")
            with database_unchanged(app):
                page = browser.get(login)
            assert_clean(page, 200, "Log in")
            if target in HOSTILE_NEXT:
                assert "evil.example" not in html(page) and "javascript:" not in html(page).lower()
            response = browser.post(login, {"email": world["sponsor"].email, "password": DEFAULT_PASSWORD})
            assert response.status_code == 302
            assert response.headers["Location"] == (target if target in NESTED_NEXT else "/")
            final = _follow_on_site(browser, response)
            assert_clean(final, final.status_code)
            assert final.status_code in (200, 404)


def test_an_admin_decision_never_redirects_off_site(app, login_as, subtests):
    """The admin's decisions return to `next` too. Approving an approved account is refused
    (nothing changes) and must still go back to a page of this site."""
    browser, _ = login_as("admin")
    with app.app_context():
        approved_id = make_user("sponsor").id
    for target in HOSTILE_NEXT:
        with subtests.test(target=target[:60]), database_unchanged(app):
            response = browser.post(f"/admin/users/{approved_id}/approve?next=" + quote(target, safe=""))
            assert response.status_code == 302
            assert response.headers["Location"] == "/admin/users"


# --- ids that are not ids ---------------------------------------------------------------------------

ID_IN_URL = re.compile(r"<(?:int|id):\w+>")
# Who may use each area (or endpoint), so that a refusal can only be about the id.
ROLE_OF = {"sponsor": "sponsor", "editor": "editor", "admin": "admin", "notifications": "sponsor",
           "main": "sponsor", "api.give_verdict": "editor", "api.approve_user": "admin", "api.reject_user": "admin",
           "api.suspend_user": "admin", "api.reinstate_user": "admin", "api": "sponsor"}
API_BODIES = {"api.give_verdict": {"decision": "approve"},
              "api.update_document": {"title": "T", "body": "B", "version": 1}}


def _role_of(endpoint):
    return ROLE_OF.get(endpoint) or ROLE_OF[endpoint.split(".")[0]]


def _id_routes():
    """{role: [(endpoint, method, rule)]} for every route whose URL holds an id, read from
    the app's url_map (a new route is covered without editing this file)."""
    routes = {}
    for rule in create_app("testing").url_map.iter_rules():
        if ID_IN_URL.search(rule.rule):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                routes.setdefault(_role_of(rule.endpoint), []).append((rule.endpoint, method, rule.rule))
    return routes


ID_ROUTES = _id_routes()


@pytest.mark.parametrize("role", sorted(ID_ROUTES))
def test_ids_that_are_not_numbers_or_overflow_answer_404(app, login_as, subtests, role):
    browser, user = login_as(role)
    headers = _api_token(app, user)
    for endpoint, method, rule in ID_ROUTES[role]:
        api = endpoint.startswith("api.")
        if api:
            call, kwargs = app.test_client().open, {"headers": headers, "json": API_BODIES.get(endpoint)}
        else:
            call, kwargs = browser.raw.open, {"data": {"csrf_token": browser.csrf_token()}} if method == "POST" else {}
        with subtests.test(f"{method} {rule}"), database_unchanged(app):
            for bad in NOT_IDS + OVERFLOWING_IDS:
                path = ID_IN_URL.sub(bad, rule)
                response = call(path, method=method, **kwargs)
                assert response.status_code == 404, (path[:60], response.status_code)
                assert_clean(response, 404)
                if api:
                    assert response.get_json()["error"]["code"] == "not_found"
                else:
                    assert NOT_FOUND in html(response)


PAGED_LISTS = {"sponsor": ["/sponsor/documents", "/notifications/"],
               "editor": ["/editor/documents", "/editor/reviews"],
               "admin": ["/admin/users", "/admin/approvals", "/admin/documents", "/admin/audit"]}


@pytest.mark.parametrize("role", PAGED_LISTS)
def test_page_numbers_that_overflow_answer_a_list(app, login_as, subtests, role):
    browser, _ = login_as(role)
    for path in PAGED_LISTS[role]:
        for page in OVERFLOWING_IDS + ["-1", "abc", "1e9", "²"]:
            with subtests.test(path, page=page[:12]), database_unchanged(app):
                response = browser.get(f"{path}?page={page}")
                if response.status_code == 302:  # a page past the end: the last one
                    assert on_site(response.headers["Location"])
                    response = browser.get(response.headers["Location"])
                assert_clean(response, 200)


def test_api_numbers_that_overflow_in_bodies_and_queries_are_400(app, world, subtests):
    headers = _api_token(app, world["sponsor"])
    client = app.test_client()
    for number in OVERFLOWING_IDS[1:]:
        # JSON holds any integer; Python reads at most 4,300 digits of one.
        value = int(number[:4000])
        with subtests.test(number=number[:12]), database_unchanged(app):
            assert_clean(client.get(f"/api/v1/documents?page={number}", headers=headers), 400)
            assert_clean(client.post("/api/v1/documents", headers=headers,
                                     json={"title": "T", "body": "B", "editor_id": value}), 400)
            assert_clean(client.put(f"/api/v1/documents/{world['document_id']}", headers=headers,
                                    json={"title": "T", "body": "B", "version": value}), 400)


def test_a_token_id_that_is_not_an_id_revokes_nothing(app, world, subtests):
    browser = world["browser"]
    with app.app_context():
        tokens.create_token(world["sponsor"], "kept")
        db.session.commit()
    for value in ["²", "٣", "9" * 30, "9" * 5000, "-1", "1\x00", "", "1" * 5000]:
        with subtests.test(value=value[:12]), database_unchanged(app):
            response = browser.post("/account/tokens/revoke", {"token_id": value})
            assert response.status_code == 302 and response.headers["Location"] == "/account/tokens"
            assert_clean(browser.follow(response), 200, "There is no such active token.")


# --- a thousand wrong passwords -------------------------------------------------------------------


def test_1000_failed_logins_are_limited_per_address_not_per_account(app, make_client, world):
    """The log-in limit (LOGIN_RATE_LIMIT, per client address) answers 429 with a
    Retry-After once spent. It locks no account (nothing is written): the real user logs in
    from their own address meanwhile, and a forged X-Forwarded-For buys the attacker no new
    allowance."""
    email = world["sponsor"].email
    allowed = limits.parse(app.config["LOGIN_RATE_LIMIT"]).amount
    attacker = make_client()
    attacker.raw.environ_base["REMOTE_ADDR"] = "203.0.113.66"
    statuses = {}
    with database_unchanged(app):
        for attempt in range(1000):
            response = attacker.post("/auth/login", {"email": email, "password": f"guess {attempt}"},
                                     headers={"X-Forwarded-For": f"10.0.{attempt // 250}.{attempt % 250}"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 429:
                assert_clean(response, 429, "Too many attempts.")
                assert 0 < int(response.headers["Retry-After"]) <= 60
            else:
                assert_clean(response, 200, LOGIN_FAILED)
        # The right password from that address waits for the window too.
        assert attacker.post("/auth/login", {"email": email, "password": DEFAULT_PASSWORD}).status_code == 429
    assert statuses == {200: allowed, 429: 1000 - allowed}

    user = make_client()
    user.raw.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    response = user.post("/auth/login", {"email": email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/"
