"""Fuzzing the forms that store text: sign-up, new document, edit document.

hypothesis fills one or two fields of an otherwise valid form with arbitrary text (any
code point but surrogates: control characters, NUL, bidi marks, huge strings), values of
the wrong type (numbers, several values for one field, a file instead of text), and adds
fields the form does not have. Whatever it sends, the answer is never a 500 and the
database keeps its rules: either the form was accepted and stored exactly the cleaned
input (services.documents.clean_title/clean_body for documents; trimmed text and the
normalized email for accounts), or the page says what is wrong (or a 4xx) and nothing at
all was stored. Examples are derandomized, so a failure replays the same on every run.
"""
import io
import itertools
import operator

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import select

from srcflask.extensions import db, limiter
from srcflask.models import Document, User
from srcflask.services.documents import clean_body, clean_title
from srcflask.services.users import normalize_email
from srcflask.static.data.processeddata.models import Autodoc, Revision

from .factories import DEFAULT_PASSWORD, make_document, make_user
from .helpers import ERROR_SHOWN, LEAKS, database_fingerprint, html
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
# Any code point but surrogates (which no UTF-8 text holds).
CHARACTERS = st.characters(exclude_categories=("Cs",))
TRICKY = st.sampled_from(["\x00", "\r\n", "\r", "\n", "\t", " ", "\u00a0", "\u200b", "\u202e", "\ufeff", "\x1f",
                          "\x7f", "\u2028", "<", ">", "&", '"', "'", "%", "\\", "é", "e\u0301", "🚀", "\U0010ffff"])
TEXT = st.one_of(
    st.text(CHARACTERS, max_size=80),
    st.lists(st.one_of(TRICKY, st.text(CHARACTERS, max_size=4)), max_size=20).map("".join),
    # Real text with a NUL inside, which PostgreSQL cannot store.
    st.builds("{}\x00{}".format, st.text(CHARACTERS, min_size=1, max_size=20), st.text(CHARACTERS, max_size=20)),
    # Long text around the limits, and far past them (over 1 MB: refused before parsing).
    st.builds(operator.mul, st.text(CHARACTERS, min_size=1, max_size=3),
              st.sampled_from([199, 200, 201, 20_000, 20_001, 400_000])),
)


class _FileUpload:
    """Stands for a file upload where the form expects text."""

    def __repr__(self):
        return "<a file upload>"


FILE = _FileUpload()
VALUE = st.one_of(
    TEXT, TEXT, TEXT,
    st.integers(), st.floats(), st.booleans(),
    st.lists(st.text(CHARACTERS, max_size=20), min_size=2, max_size=3),  # several values for one field
    st.just(FILE),
)


@st.composite
def fuzzed(draw, valid):
    """A form: `valid` with one or two of its fields replaced by fuzz, plus unknown fields."""
    fields = draw(st.dictionaries(st.sampled_from(sorted(valid)), VALUE, min_size=1, max_size=2))
    names = st.text(CHARACTERS, min_size=1, max_size=20).filter(lambda name: name not in valid and name != "csrf_token")
    extra = draw(st.dictionaries(names, TEXT, max_size=4))
    return {**valid, **fields, **extra}


def _as_posted(form):
    """The form as the test client sends it, and what the app reads for each field (the
    first value; None for a file or a missing field)."""
    data, read = {}, {}
    for name, value in form.items():
        if value is FILE:
            data[name], read[name] = (io.BytesIO(b"not text"), "upload.txt"), None
        elif isinstance(value, list):
            data[name], read[name] = value, value[0]
        else:
            data[name] = read[name] = value if isinstance(value, str) else str(value)
    return data, read


def _post(browser, path, form):
    note(f"form: {form!r}"[:2000])
    data, read = _as_posted(form)
    multipart = any(isinstance(value, tuple) for value in data.values())
    response = browser.post(path, data, content_type="multipart/form-data" if multipart else None)
    body = html(response)
    assert response.status_code != 500 and not any(leak in body for leak in LEAKS), (
        response.status_code, body[:300])
    return response, read


def _assert_refused(app, response, before):
    """Nothing stored, and the browser was told why (the form with its errors, or a 4xx)."""
    assert response.status_code in (200, 400, 409, 413), response.status_code
    if response.status_code == 200:
        assert any(marker in html(response) for marker in ERROR_SHOWN), "a 200 without an error shown"
    with app.app_context():
        assert database_fingerprint() == before


def _fingerprint(app):
    with app.app_context():
        return database_fingerprint()


# --- sign-up ----------------------------------------------------------------------------------------

SIGNUP = {"name": "Ada Lovelace", "email": "EMAIL", "password": DEFAULT_PASSWORD, "confirm": DEFAULT_PASSWORD,
          "role": "sponsor", "organization": "Analytical Engines"}


def _trimmed(value):
    """What a name or organization may be stored as: trimmed, NUL characters dropped or not."""
    value = value or ""
    return {value.strip(), value.replace("\x00", "").strip(), value.strip().replace("\x00", "")}


def test_signup_form_fuzz(app, make_client):
    emails = itertools.count(1)

    @FUZZ
    @given(form=fuzzed(SIGNUP))
    def check(form):
        if form["email"] == "EMAIL":  # a fresh valid address, so that the account can be made
            form = {**form, "email": f"fuzz{next(emails)}@example.org"}
        with app.app_context():
            limiter.reset()  # the sign-up rate limit is tested elsewhere
        before = _fingerprint(app)
        response, read = _post(make_client(), "/auth/signup", form)
        if response.status_code != 302:
            _assert_refused(app, response, before)
            return
        assert response.headers["Location"] == "/auth/standing"
        with app.app_context():
            email = normalize_email(read["email"])
            user = db.session.scalar(select(User).where(User.email == email))
            assert user is not None and (user.role, user.status) == (read["role"], "pending")
            assert user.name in _trimmed(read["name"]) and user.name.strip()
            assert user.organization in _trimmed(read["organization"])

    check()


# --- documents --------------------------------------------------------------------------------------


def test_new_document_form_fuzz(app, login_as):
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        editor_id = make_user("editor").id

    @FUZZ
    @given(form=fuzzed({"title": "A title", "body": "A body.", "editor": "EDITOR"}))
    def check(form):
        form = {**form, "editor": editor_id} if form["editor"] == "EDITOR" else form
        before = _fingerprint(app)
        response, read = _post(browser, "/sponsor/documents/new", form)
        if response.status_code != 302:
            _assert_refused(app, response, before)
            return
        with app.app_context():
            document = db.session.scalars(select(Document).order_by(Document.id.desc())).first()
            assert response.headers["Location"] == f"/sponsor/documents/{document.id}"
            expected = (clean_title(read["title"]), clean_body(read["body"]))
            assert (document.title, document.body, document.version) == (*expected, 1)
            assert (document.retention.sponsor_id, document.retention.editor_id) == (sponsor.id, editor_id)
            (revision,) = document.revisions
            assert (revision.title, revision.body) == expected
            assert [autodoc.status for autodoc in revision.autodocs] == ["queued"]

    check()


def test_edit_document_form_fuzz(app, login_as):
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        document_id = make_document(sponsor, make_user("editor"), title="Start", body="The first text.").id
    path = f"/sponsor/documents/{document_id}/edit"

    def saved():
        document = db.session.get(Document, document_id)
        db.session.refresh(document)
        return document.version, document.title, document.body

    @FUZZ
    @given(form=fuzzed({"title": "A title", "body": "A body.", "version": "CURRENT"}))
    def check(form):
        with app.app_context():
            version, title, body = saved()
        form = {**form, "version": version} if form["version"] == "CURRENT" else form
        before = _fingerprint(app)
        response, read = _post(browser, path, form)
        if response.status_code != 302:
            _assert_refused(app, response, before)
            return
        assert response.headers["Location"] == f"/sponsor/documents/{document_id}"
        expected = (clean_title(read["title"]), clean_body(read["body"]))
        with app.app_context():
            if expected == (title, body):  # "No changes to save": nothing is written
                assert database_fingerprint() == before
                return
            assert saved() == (version + 1, *expected)
            revision = db.session.scalar(select(Revision).where(Revision.document_id == document_id,
                                                                Revision.version == version + 1))
            assert (revision.title, revision.body, revision.saved_by_id) == (*expected, sponsor.id)
            assert db.session.scalars(select(Autodoc.status).where(Autodoc.revision_id == revision.id)).all() == [
                "queued"]

    check()


# --- notification emails ----------------------------------------------------------------------------


def test_notification_settings_form_fuzz(app, login_as):
    """Whatever is posted, the editor's choices are saved exactly as valid ones, or refused
    (400) with nothing saved."""
    from srcflask.models import NotificationPreference
    from srcflask.services.notifications import DELIVERY_LABELS, OFF

    browser, editor = login_as("editor")

    @FUZZ
    @given(form=fuzzed({"autodoc_ready": "daily", "document_assigned": "immediate"}))
    def check(form):
        before = _fingerprint(app)
        response, read = _post(browser, "/account/notifications", form)
        if response.status_code != 302:
            _assert_refused(app, response, before)
            return
        assert response.headers["Location"] == "/account/notifications"
        assert {read["autodoc_ready"], read["document_assigned"]} <= set(DELIVERY_LABELS)
        with app.app_context():
            saved = dict(db.session.execute(select(NotificationPreference.kind, NotificationPreference.delivery)
                                            .where(NotificationPreference.user_id == editor.id)).all())
        assert saved == {kind: read[kind] for kind in ("autodoc_ready", "document_assigned") if read[kind] != OFF}

    check()


# --- the review page: a verdict with a correction, a blind choice -----------------------------------


def test_verdict_form_with_a_correction_fuzz(app, login_as):
    """A correction counts only while its box is ticked, and is stored cleaned as a body is."""
    from srcflask.models import Verdict

    from .factories import write_autodocs

    browser, editor = login_as("editor")
    with app.app_context():
        make_document(make_user("sponsor"), editor, body="The plan is simple")
        (autodoc_id,) = write_autodocs(" and then it rained.")
    path = f"/editor/autodocs/{autodoc_id}/review"

    @FUZZ
    @given(form=fuzzed({"decision": "reject", "comment": "Why.", "correct": "y", "correction": " The sun came out."}))
    def check(form):
        before = _fingerprint(app)
        response, read = _post(browser, path, form)
        if response.status_code != 302:
            _assert_refused(app, response, before)
            return
        ticked = read.get("correct") not in (None, "", "false")
        with app.app_context():
            verdict = db.session.scalar(select(Verdict).where(Verdict.autodoc_id == autodoc_id, Verdict.current))
            assert (verdict.decision, verdict.comment) == (read["decision"], read["comment"].strip())
            assert verdict.correction == (clean_body(read["correction"]) if ticked else None)

    check()


def test_blind_choice_form_fuzz(app, login_as, tiny_model_dir):  # noqa: F811
    """Whatever is posted as the token and the choice: one comparison at most, or a refusal
    that stores nothing."""
    from srcflask.models import Comparison
    from srcflask.services import comparisons, registry

    from .factories import make_shadow_pair, write_autodocs

    browser, editor = login_as("editor")
    with app.app_context():
        active = registry.register_folder(tiny_model_dir, kind="seed", name="fuzz-active")
        candidate = registry.register_folder(tiny_model_dir, kind="seed", name="fuzz-candidate")
        db.session.commit()
        make_document(make_user("sponsor"), editor, body="The plan is simple")
        (autodoc_id,) = write_autodocs(" and then it rained.", model_id=active.id)
        make_shadow_pair(autodoc_id, active.id, candidate.id)
        token = comparisons.blind_pair(db.session.get(Autodoc, autodoc_id), db.session.get(User, editor.id)).token
    path = f"/editor/autodocs/{autodoc_id}/comparison"

    @FUZZ
    @given(form=fuzzed({"token": "TOKEN", "choice": "first"}))
    def check(form):
        form = {**form, "token": token} if form["token"] == "TOKEN" else form
        before = _fingerprint(app)
        response, read = _post(browser, path, form)
        if response.status_code != 302:
            _assert_refused(app, response, before)
            return
        assert response.headers["Location"] == f"/editor/autodocs/{autodoc_id}/review#comparison"
        assert read["token"] == token and read["choice"] in comparisons.CHOICES
        with app.app_context():
            assert len(db.session.scalars(select(Comparison)).all()) == 1

    check()
