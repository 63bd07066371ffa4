"""Who may do what, on every route the app has: the access matrix.

ROUTES holds one entry per endpoint of `app.url_map` (a test fails when a route is added
without one): which area it belongs to, whether its URL names a document (or a user),
and, for POST, a valid form, where success redirects and what it changes. `expected()`
states the app's rules once and derives every visitor's answer from the entry:

- anonymous visitors of a role area are sent to log in, with a `next` back;
- pending users are sent to their standing page; so are users rejected or suspended
  while logged in, whose session ends on that request;
- approved users of another role get 403; a document that is not theirs answers 404;
- the notification pages are open to every approved role, and one's own notification
  only to its recipient (404 for everyone else);
- everyone else gets the page (200) or, for a valid POST, its redirect (302).

Each request is also checked against the database (a refused request changes nothing, an
allowed POST makes exactly its change) and against who the browser is logged in as
afterwards. The per-area test files check the pages themselves in detail; this file
checks the whole matrix, the POST-only routes, CSRF and tampered ids.
"""
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, update

from srcflask.extensions import db
from srcflask.models import (AuditEvent, Comparison, Document, Notification, NotificationPreference, TrainingRun, User,
                             ShadowDraft, Verdict)
from srcflask.services import accounts, autodoc_queue, comparisons, notifications, passwords
from srcflask.static.data.processeddata.models import AUTODOC_STATUSES, Autodoc, Revision

from .factories import DEFAULT_PASSWORD, make_document, make_registry, make_shadow_pair, make_user
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

HOME = {"sponsor": "/sponsor/", "editor": "/editor/", "admin": "/admin/"}
NEW_EMAIL = "new.person@example.org"
CONFIRMED_EMAIL = "confirmed.address@example.org"  # the email an account page's link confirms
NEW_PASSWORD = "a fresh passphrase for the matrix 31"
REASON = "Decided by the access matrix."
CSRF_REFUSED = "This form has expired or was not sent from this site."


# --- the visitors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Visitor:
    role: str | None = None  # None: not logged in
    status: str = "approved"  # the status they log in with
    relation: str | None = None  # to the world's document: "owner", "assigned", or the "spare" editor
    ends_as: str | None = None  # set once they are logged in: their session must end

    @property
    def standing(self):
        if self.role is None:
            return "anonymous"
        return "ended" if self.ends_as else self.status

    @property
    def related(self):
        """True for the document's own sponsor or assigned editor."""
        return {"sponsor": "owner", "editor": "assigned"}.get(self.role) == self.relation


VISITORS = {
    "anonymous": Visitor(),
    "owner": Visitor("sponsor", relation="owner"),
    "other_sponsor": Visitor("sponsor"),
    "assigned_editor": Visitor("editor", relation="assigned"),
    "other_editor": Visitor("editor", relation="spare"),
    "admin": Visitor("admin"),
    "pending_sponsor": Visitor("sponsor", "pending"),
    "pending_editor": Visitor("editor", "pending"),
    "pending_admin": Visitor("admin", "pending"),
    "suspended_owner": Visitor("sponsor", relation="owner", ends_as="suspended"),
    "suspended_admin": Visitor("admin", ends_as="suspended"),
    "rejected_sponsor": Visitor("sponsor", "pending", ends_as="rejected"),
}


# --- the world each test runs in ------------------------------------------------------------


@dataclass
class World:
    """One visitor and the rows around them: a document (its sponsor, its editor) whose
    first autodoc the writer has written (so it can be reviewed and regenerated), a
    notification of its editor, a spare approved editor, and one target account per
    admin decision."""

    app: object
    make_client: object
    client: object  # the browser the visitor logged in with; only ever cloned
    visitor: Visitor
    visitor_id: int | None
    owner_email: str
    owner_id: int
    editor_id: int
    spare_id: int
    document_id: int
    autodoc_id: int
    notification_id: int  # the editor's "a document was assigned to you"
    targets: dict = field(default_factory=dict)
    reset_token: str = ""  # the owner's password reset link's
    registry: dict = field(default_factory=dict)  # factories.make_registry's rows, by id

    def path(self, route, **ids):
        values = {"document": self.document_id, "autodoc": self.autodoc_id, "target": self.targets.get(route.endpoint),
                  "notification": self.notification_id, "token": self.reset_token,
                  "model": self.registry.get("candidate"), "earlier": self.registry.get("retired"),
                  "run": self.registry.get("run"), "kind": "supervised"}
        return route.path.format(**{**values, **ids})

    def browser(self):
        """A new browser holding the visitor's session as it was right after log-in. Flask
        keeps the whole session in its cookie, so every request of a test starts from the
        same session without paying for another log-in (scrypt); a session that a request
        ends is gone only from that request's browser (log-out ends them all: MATRIX_ORDER)."""
        clone = self.make_client()
        name = self.app.config["SESSION_COOKIE_NAME"]
        cookie = self.client.raw.get_cookie(name)
        if cookie is not None:
            clone.raw.set_cookie(name, cookie.value)
        return clone

    def send(self, browser, route, method, path=None, csrf_token="session"):
        """The route's request: a GET, or a POST of its valid form with the session's CSRF
        token ("session"), another token, or none (None)."""
        path = path or self.path(route)
        if method == "GET":
            return browser.get(path)
        data = route.form(self)
        if csrf_token is not None:
            data["csrf_token"] = self.client.csrf_token() if csrf_token == "session" else csrf_token
        return browser.post(path, data, csrf=False)


@pytest.fixture
def world(app, login_as, make_client, tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    """Build the world around a visitor (a key of VISITORS): they log in through the real
    form, and are rejected or suspended afterwards when their session is meant to end.
    The world has a model registry too (a candidate, an earlier model, a training set and a
    queued run), whose training set file goes to a temporary folder."""
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))

    def build(key):
        visitor = VISITORS[key]
        user = None
        if visitor.role is None:
            client = make_client()
            client.csrf_token()  # an anonymous session, with its token, to clone
        else:
            client, user = login_as(visitor.role, status=visitor.status)
            client.csrf_token()  # its new session's token, read before that session may end
        with app.app_context():
            def person(relation, role):
                return user if visitor.relation == relation else make_user(role)

            owner, editor, spare = person("owner", "sponsor"), person("assigned", "editor"), person("spare", "editor")
            document = make_document(owner, editor, title="Original title", body="Original body")
            # Written through the real queue (which also tells the editor it is ready).
            (job,) = autodoc_queue.claim_jobs("matrix", 1, 60, 3)
            autodoc_queue.complete_job(job, "Original body", " and more.", {"model": "tiny"})
            autodoc_id = job.autodoc_id
            notification_id = db.session.scalar(
                select(Notification.id).where(Notification.user_id == editor.id, Notification.kind == "document_assigned")
            )
            if visitor.ends_as:
                db.session.execute(update(User).where(User.id == user.id).values(status=visitor.ends_as))
            reset_token = passwords.reset_token(owner)
            db.session.commit()
            targets = {endpoint: make_user(*route.target).id for endpoint, route in ROUTES.items() if route.target}
            registry = {name: row.id for name, row in make_registry(tiny_model_dir, make_user("admin")).items()}
            # The autodoc's blind comparison: written by the active model, shadowed by the candidate.
            make_shadow_pair(autodoc_id, registry["active"], registry["candidate"])
            return World(
                app=app, make_client=make_client, client=client, visitor=visitor,
                visitor_id=user.id if user else None, owner_email=owner.email, owner_id=owner.id, editor_id=editor.id,
                spare_id=spare.id, document_id=document.id, autodoc_id=autodoc_id, notification_id=notification_id,
                targets=targets, reset_token=reset_token, registry=registry,
            )

    return build


# --- the state a request may change ---------------------------------------------------------


def snapshot(app):
    """Everything a request could change, as plain values (log-in times aside: logging in
    is what every visitor does first)."""
    with app.app_context():
        return {
            "users": {
                user.id: (user.email, user.role, user.status, user.decided_by_id, user.decision_reason)
                for user in db.session.scalars(select(User))
            },
            "documents": {
                document.id: (document.title, document.body, document.version,
                              document.retention.sponsor_id, document.retention.editor_id)
                for document in db.session.scalars(select(Document))
            },
            "revisions": db.session.scalar(select(func.count()).select_from(Revision)),
            "autodocs": {
                **dict.fromkeys(AUTODOC_STATUSES, 0),
                **dict(db.session.execute(select(Autodoc.status, func.count()).group_by(Autodoc.status)).all()),
            },
            "verdicts": {
                verdict.id: (verdict.autodoc_id, verdict.editor_id, verdict.decision, verdict.current)
                for verdict in db.session.scalars(select(Verdict))
            },
            "notifications": {
                notification.id: (notification.user_id, notification.kind, notification.read_at is not None)
                for notification in db.session.scalars(select(Notification))
            },
            "audit": {
                event.id: (event.actor_id, event.action, event.target_type, event.target_id)
                for event in db.session.scalars(select(AuditEvent))
            },
            "notification_preferences": {
                (preference.user_id, preference.kind): preference.delivery
                for preference in db.session.scalars(select(NotificationPreference))
            },
            "comparisons": {
                comparison.id: (comparison.shadow_draft_id, comparison.editor_id, comparison.winner)
                for comparison in db.session.scalars(select(Comparison))
            },
        }


def _new_row(before, after, table):
    new = set(after[table]) - set(before[table])
    return new.pop() if len(new) == 1 else None


def _one_more_queued(state):
    return {**state["autodocs"], "queued": state["autodocs"]["queued"] + 1}


def _audited(state, before, after, actor_id, action, target_type, target_id):
    """`state` with the one audit row the change must add."""
    return {**state, "audit": {**before["audit"], _new_row(before, after, "audit"): (actor_id, action, target_type, target_id)}}


def _notified(state, before, after, user_id, kind):
    """`state` with the one (unread) notification the change must add."""
    return {**state, "notifications": {**before["notifications"], _new_row(before, after, "notifications"): (user_id, kind, False)}}


def _unchanged(world, before, after):
    return before


def _document_created(world, before, after):
    document_id = _new_row(before, after, "documents")
    documents = {**before["documents"], document_id: ("Brand new", "New body", 1, world.visitor_id, world.editor_id)}
    state = {**before, "documents": documents, "revisions": before["revisions"] + 1,
             "autodocs": _one_more_queued(before)}
    state = _audited(state, before, after, world.visitor_id, "document.create", "document", document_id)
    return _notified(state, before, after, world.editor_id, "document_assigned")


def _document_saved(world, before, after):
    title, body, version, sponsor_id, editor_id = before["documents"][world.document_id]
    documents = {**before["documents"],
                 world.document_id: ("Changed title", "Changed body", version + 1, sponsor_id, editor_id)}
    state = {**before, "documents": documents, "revisions": before["revisions"] + 1,
             "autodocs": _one_more_queued(before)}
    return _audited(state, before, after, world.visitor_id, "document.edit", "document", world.document_id)


def _editor_reassigned(world, before, after):
    *kept, _ = before["documents"][world.document_id]
    state = {**before, "documents": {**before["documents"], world.document_id: (*kept, world.spare_id)}}
    state = _audited(state, before, after, world.visitor_id, "document.reassign_editor", "document", world.document_id)
    return _notified(state, before, after, world.spare_id, "document_assigned")


def _autodoc_requeued(world, before, after):
    with world.app.app_context():
        newest = db.session.scalar(select(func.max(Autodoc.id)))  # the one more queued (checked by the counts)
    state = {**before, "autodocs": _one_more_queued(before)}
    return _audited(state, before, after, world.visitor_id, "autodoc.regenerate", "autodoc", newest)


def _verdict_given(world, before, after):
    verdicts = {**before["verdicts"], _new_row(before, after, "verdicts"): (world.autodoc_id, world.visitor_id, "approve", True)}
    state = _audited({**before, "verdicts": verdicts}, before, after, world.visitor_id, "verdict.approve", "autodoc",
                     world.autodoc_id)
    return _notified(state, before, after, world.owner_id, "autodoc_reviewed")


def _blind_choice(w):
    """The review page's comparison form as the document's editor has it ("about the same");
    a token of no pair once the document is no longer theirs (a refused request anyway)."""
    with w.app.app_context():
        pair = comparisons.blind_pair(db.session.get(Autodoc, w.autodoc_id), db.session.get(User, w.editor_id))
        return {"token": pair.token if pair else "", "choice": "same"}


def _compared(world, before, after):
    with world.app.app_context():
        draft_id = db.session.scalar(select(ShadowDraft.id))  # the world's one
    comparison = {_new_row(before, after, "comparisons"): (draft_id, world.visitor_id, "tie")}
    state = {**before, "comparisons": {**before["comparisons"], **comparison}}
    return _audited(state, before, after, world.visitor_id, "comparison.choose", "autodoc", world.autodoc_id)


def _read(before, which):
    """`before` with the notifications `which(id, row)` picks marked read."""
    return {**before, "notifications": {
        key: (user_id, kind, read or which(key, (user_id, kind))) for key, (user_id, kind, read) in before["notifications"].items()
    }}


def _notification_read(world, before, after):
    return _read(before, lambda key, row: key == world.notification_id)


def _all_read(world, before, after):
    return _read(before, lambda key, row: row[0] == world.visitor_id)


# The settings form as every role posts it: each role's form reads only its own kinds.
NOTIFICATION_EMAILS = {"autodoc_ready": "immediate", "document_assigned": "daily",
                       "autodoc_failed": "daily", "autodoc_reviewed": "immediate"}


def _notification_emails_chosen(world, before, after):
    """The visitor's role's kinds are emailed as the form chose (an admin's role has none)."""
    chosen = {(world.visitor_id, kind): NOTIFICATION_EMAILS[kind]
              for kind in notifications.ROLE_EMAIL_KINDS[world.visitor.role]}
    return {**before, "notification_preferences": {**before["notification_preferences"], **chosen}}


def _signed_up(world, before, after):
    users = {**before["users"], _new_row(before, after, "users"): (NEW_EMAIL, "sponsor", "pending", None, None)}
    return {**before, "users": users}


def _password_reset(world, before, after):
    """The owner's password changed (the snapshot does not show hashes: test_password_reset
    checks them), audited as their own act."""
    return _audited(before, before, after, world.owner_id, "user.reset_password", "user", world.owner_id)


def _archived(world, before, after):
    """The snapshot does not show archived_at (test_account_data checks it): the audit row."""
    return _audited(before, before, after, world.visitor_id, "document.archive", "document", world.document_id)


def _restored(world, before, after):
    return _audited(before, before, after, world.visitor_id, "document.restore", "document", world.document_id)


def _model_audited(action, row):
    """A registry change: the snapshot does not show the registry's tables (test_model_pages
    checks them), so the audit row of `action` on the world's `row` (a make_registry name)."""

    def effect(world, before, after):
        target_type = "training_run" if row == "run" else "model"
        return _audited(before, before, after, world.visitor_id, action, target_type, world.registry[row])

    return effect


def _run_started(world, before, after):
    with world.app.app_context():
        newest = db.session.scalar(select(func.max(TrainingRun.id)))
    return _audited(before, before, after, world.visitor_id, "trainingrun.start", "training_run", newest)


def _erased(world, before, after):
    """The target's email becomes a placeholder, the account suspended by the admin; audited."""
    target = world.targets["admin.erase_user"]
    _, role, *_ = before["users"][target]
    users = {**before["users"], target: (f"erased-{target}@invalid", role, "suspended", world.visitor_id, None)}
    return _audited({**before, "users": users}, before, after, world.visitor_id, "user.erase", "user", target)


def _email_change_token(w):
    """The token of the link confirming CONFIRMED_EMAIL as the visitor's email (the owner's,
    for a visitor without an account)."""
    with w.app.app_context():
        return accounts.email_change_token(db.session.get(User, w.visitor_id or w.owner_id), CONFIRMED_EMAIL)


def _email_confirmed(world, before, after):
    email, *rest = before["users"][world.visitor_id]
    state = {**before, "users": {**before["users"], world.visitor_id: (CONFIRMED_EMAIL, *rest)}}
    return _audited(state, before, after, world.visitor_id, "user.change_email", "user", world.visitor_id)


def _password_changed(world, before, after):
    """The snapshot does not show hashes (test_account checks them): the audit row."""
    return _audited(before, before, after, world.visitor_id, "user.change_password", "user", world.visitor_id)


def _target_becomes(endpoint, action, **values):
    """An admin decision's effect: these columns of its target's row change, the decision
    is audited, and a decision on the account's status is told to its holder."""
    columns = ("email", "role", "status", "decided_by_id", "decision_reason")

    def effect(world, before, after):
        target = world.targets[endpoint]
        row = {**dict(zip(columns, before["users"][target])), **values}
        if "status" in values:
            row["decided_by_id"] = world.visitor_id
        state = {**before, "users": {**before["users"], target: tuple(row[c] for c in columns)}}
        state = _audited(state, before, after, world.visitor_id, f"user.{action}", "user", target)
        if "status" in values:
            past = {"approve": "approved", "reject": "rejected", "suspend": "suspended", "reinstate": "reinstated"}
            state = _notified(state, before, after, target, f"account_{past[action]}")
        return state

    return effect


# --- the routes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One endpoint: its URL ({document}, {autodoc}, {target}, and the registry's {model},
    {earlier}, {run} stand for ids), its methods, who it is for ("public", "login_form",
    "standing", "logout", "polling", "ops" or a role's area), whether its URL names a
    document (or one of its autodocs), and for POST the valid form, where success redirects
    and what it changes."""

    endpoint: str
    path: str
    methods: frozenset
    access: str
    document: bool = False
    notification: bool = False  # the URL names the assigned editor's notification
    target: tuple | None = None  # (role, status) of the account an admin decision is taken on
    form: object = None  # world -> valid form data
    success: object = None  # (world, state after) -> Location of a successful POST, or of a GET that redirects
    # What a successful POST answers: its redirect, or 201 with the page (no Location) for the
    # one that shows a secret, which must not cross a redirect in the session cookie.
    success_status: int = 302
    effect: object = _unchanged  # (world, state before, state after) -> expected state after
    page_status: int = 200  # what an allowed GET answers (400: a link's page opened without its token)
    # A POST that ends the visitor's other sessions (a new password): sent after every other
    # route but log-out (MATRIX_ORDER), since the visitor's copied sessions end with it.
    ends_other_sessions: bool = False

    def allowed_visitor(self):
        """The visitor the route is for (the CSRF, 405 and tampered-id tests use them)."""
        return {"sponsor": "owner", "editor": "assigned_editor", "admin": "admin",
                "logout": "owner", "polling": "owner", "notifications": "assigned_editor"}.get(self.access, "anonymous")


def _admin_decision(action, target, status, reason=None):
    endpoint = f"admin.{action}_user"
    return Route(
        endpoint, f"/admin/users/{{target}}/{action}", POST, "admin", target=target,
        form=lambda w: {"reason": reason} if reason else {}, success=lambda w, after: "/admin/users",
        effect=_target_becomes(endpoint, action, status=status, decision_reason=reason),
    )


GET, POST, BOTH = frozenset({"GET"}), frozenset({"POST"}), frozenset({"GET", "POST"})
_ROUTES = [
    Route("main.index", "/", GET, "public"),
    Route("main.autodoc_status", "/autodocs/{autodoc}/status", GET, "polling", document=True),
    # The pages' event stream: the same rules as the status it announces (tests/test_live_status.py
    # reads its events).
    Route("main.autodoc_events", "/autodocs/events?id={autodoc}", GET, "polling", document=True),
    Route("ops.healthz", "/healthz", GET, "ops"),
    Route("ops.readyz", "/readyz", GET, "ops"),
    Route("ops.metrics", "/metrics", GET, "ops"),  # open in testing; test_ops checks the production rules
    Route("auth.login", "/auth/login", BOTH, "login_form",
          form=lambda w: {"email": w.owner_email, "password": DEFAULT_PASSWORD},
          success=lambda w, after: "/"),
    Route("auth.signup", "/auth/signup", BOTH, "login_form",
          form=lambda w: {"name": "New Person", "email": NEW_EMAIL, "password": DEFAULT_PASSWORD,
                          "confirm": DEFAULT_PASSWORD, "role": "sponsor", "organization": ""},
          success=lambda w, after: "/auth/standing", effect=_signed_up),
    Route("auth.standing", "/auth/standing", GET, "standing"),
    # Outbox rows are not in the snapshot: test_password_reset checks what each one queues.
    Route("auth.forgot_password", "/auth/forgot", BOTH, "login_form",
          form=lambda w: {"email": w.owner_email}, success=lambda w, after: "/auth/login"),
    # The owner's new password is the one they had: the matrix logs them in afterwards.
    Route("auth.reset_password", "/auth/reset/{token}", BOTH, "login_form",
          form=lambda w: {"password": DEFAULT_PASSWORD, "confirm": DEFAULT_PASSWORD},
          success=lambda w, after: "/auth/login", effect=_password_reset),
    Route("auth.logout", "/auth/logout", POST, "logout", form=lambda w: {}, success=lambda w, after: "/auth/login"),
    Route("sponsor.dashboard", "/sponsor/", GET, "sponsor"),
    Route("sponsor.documents", "/sponsor/documents", GET, "sponsor"),
    Route("sponsor.new_document", "/sponsor/documents/new", BOTH, "sponsor",
          form=lambda w: {"title": "Brand new", "body": "New body", "editor": w.editor_id},
          success=lambda w, after: f"/sponsor/documents/{max(after['documents'])}", effect=_document_created),
    Route("sponsor.document", "/sponsor/documents/{document}", GET, "sponsor", document=True),
    Route("sponsor.edit_document", "/sponsor/documents/{document}/edit", BOTH, "sponsor", document=True,
          form=lambda w: {"title": "Changed title", "body": "Changed body", "version": 1},
          success=lambda w, after: f"/sponsor/documents/{w.document_id}", effect=_document_saved),
    Route("sponsor.reassign_editor", "/sponsor/documents/{document}/editor", POST, "sponsor", document=True,
          form=lambda w: {"editor": w.spare_id},
          success=lambda w, after: f"/sponsor/documents/{w.document_id}", effect=_editor_reassigned),
    Route("sponsor.regenerate_autodoc", "/sponsor/autodocs/{autodoc}/regenerate", POST, "sponsor", document=True,
          form=lambda w: {}, success=lambda w, after: f"/sponsor/documents/{w.document_id}#revision-1",
          effect=_autodoc_requeued),
    Route("sponsor.archived_documents", "/sponsor/documents/archived", GET, "sponsor"),
    Route("sponsor.export_data", "/sponsor/export", GET, "sponsor"),
    Route("sponsor.archive_document", "/sponsor/documents/{document}/archive", POST, "sponsor", document=True,
          form=lambda w: {}, success=lambda w, after: "/sponsor/documents", effect=_archived),
    # Right after the archive: the owner restores what they archived (the routes after it find
    # the document as it was); for anyone else it was never archived, and nothing changes.
    Route("sponsor.restore_document", "/sponsor/documents/{document}/restore", POST, "sponsor", document=True,
          form=lambda w: {}, success=lambda w, after: f"/sponsor/documents/{w.document_id}", effect=_restored),
    Route("sponsor.autodoc", "/sponsor/autodocs/{autodoc}", GET, "sponsor", document=True,
          success=lambda w, after: f"/sponsor/documents/{w.document_id}#autodoc-{w.autodoc_id}"),
    Route("editor.dashboard", "/editor/", GET, "editor"),
    Route("editor.documents", "/editor/documents", GET, "editor"),
    Route("editor.document", "/editor/documents/{document}", GET, "editor", document=True),
    Route("editor.reviews", "/editor/reviews", GET, "editor"),
    Route("editor.review", "/editor/autodocs/{autodoc}/review", BOTH, "editor", document=True,
          form=lambda w: {"decision": "approve", "comment": ""}, success=lambda w, after: "/editor/reviews",
          effect=_verdict_given),
    Route("editor.compare", "/editor/autodocs/{autodoc}/comparison", POST, "editor", document=True, form=_blind_choice,
          success=lambda w, after: f"/editor/autodocs/{w.autodoc_id}/review#comparison", effect=_compared),
    Route("admin.dashboard", "/admin/", GET, "admin"),
    Route("admin.approvals", "/admin/approvals", GET, "admin"),
    Route("admin.users", "/admin/users", GET, "admin"),
    Route("admin.documents", "/admin/documents", GET, "admin"),
    Route("admin.document", "/admin/documents/{document}", GET, "admin"),
    Route("admin.review", "/admin/autodocs/{autodoc}", GET, "admin"),
    Route("admin.restore_document", "/admin/documents/{document}/restore", POST, "admin",
          form=lambda w: {}, success=lambda w, after: f"/admin/documents/{w.document_id}"),
    Route("admin.erase_user", "/admin/users/{target}/erase", BOTH, "admin", target=("sponsor", "approved"),
          form=lambda w: {"reason": REASON, "confirm": "y"}, success=lambda w, after: "/admin/users",
          effect=_erased),
    Route("admin.audit_log", "/admin/audit", GET, "admin"),
    Route("admin.export_reviews", "/admin/reviews.jsonl", GET, "admin"),
    Route("admin.regenerate_autodoc", "/admin/autodocs/{autodoc}/regenerate", POST, "admin",
          form=lambda w: {}, success=lambda w, after: "/admin/", effect=_autodoc_requeued),
    _admin_decision("approve", ("editor", "pending"), "approved"),
    _admin_decision("reject", ("sponsor", "pending"), "rejected", reason=REASON),
    _admin_decision("suspend", ("sponsor", "approved"), "suspended", reason=REASON),
    _admin_decision("reinstate", ("editor", "suspended"), "approved"),
    Route("admin.change_role", "/admin/users/{target}/role", POST, "admin", target=("editor", "approved"),
          form=lambda w: {"role": "sponsor"}, success=lambda w, after: "/admin/users",
          effect=_target_becomes("admin.change_role", "change_role", role="sponsor")),
    Route("admin.send_password_reset", "/admin/users/{target}/send-reset", POST, "admin", target=("sponsor", "pending"),
          form=lambda w: {}, success=lambda w, after: "/admin/users",
          effect=_target_becomes("admin.send_password_reset", "send_password_reset")),
    # The Models pages. The run starts before the promotion and the rollback, which retire
    # its parent; building a training set is refused here (the world's set already holds
    # every approval: a message, nothing changes) and tested for real in test_model_pages.
    Route("admin.models", "/admin/models", GET, "admin"),
    Route("admin.model", "/admin/models/{model}", GET, "admin"),
    Route("admin.training_runs", "/admin/models/training", GET, "admin"),
    Route("admin.build_training_set", "/admin/models/training-sets", POST, "admin",
          form=lambda w: {}, success=lambda w, after: "/admin/models/training"),
    Route("admin.start_run", "/admin/models/runs", POST, "admin",
          form=lambda w: {"parent": w.registry["active"], "training_set": w.registry["training_set"], "epochs": "1"},
          success=lambda w, after: "/admin/models/training", effect=_run_started),
    Route("admin.run_progress", "/admin/models/runs/{run}/progress", GET, "admin"),
    # The training data exports ({kind}: one of supervised, preferences, labels).
    Route("admin.exports", "/admin/models/exports", GET, "admin"),
    Route("admin.download_export", "/admin/models/exports/{kind}.jsonl", GET, "admin"),
    Route("admin.cancel_run", "/admin/models/runs/{run}/cancel", POST, "admin",
          form=lambda w: {}, success=lambda w, after: "/admin/models/training",
          effect=_model_audited("trainingrun.cancel", "run")),
    # The candidate has no evaluation: the gate refuses it, the override with a reason passes.
    Route("admin.promote_model", "/admin/models/{model}/promote", BOTH, "admin",
          form=lambda w: {"reason": REASON, "override": "y"}, success=lambda w, after: "/admin/models",
          effect=_model_audited("model.override", "candidate")),
    Route("admin.rollback_model", "/admin/models/{earlier}/rollback", BOTH, "admin",
          form=lambda w: {"reason": REASON}, success=lambda w, after: "/admin/models",
          effect=_model_audited("model.rollback", "retired")),
    Route("api_docs.docs", "/api/docs", GET, "ops"),  # the API's docs: open to everyone, like the probes
    Route("account.api_tokens", "/account/tokens", BOTH, "notifications",  # any approved role, like notifications
          form=lambda w: {"name": "matrix script"}, success=lambda w, after: None, success_status=201),
    Route("account.revoke_token", "/account/tokens/revoke", POST, "notifications",
          form=lambda w: {"token_id": "1"}, success=lambda w, after: "/account/tokens"),
    # The account page (any approved role). Names and outbox rows are not in the snapshot:
    # test_account checks them.
    Route("account.index", "/account/", GET, "notifications"),
    Route("account.update_profile", "/account/profile", POST, "notifications",
          form=lambda w: {"name": "Renamed Person", "organization": "Elsewhere"}, success=lambda w, after: "/account/"),
    Route("account.request_email_change", "/account/email", POST, "notifications",
          form=lambda w: {"email": "asked.for@example.org", "current_password": DEFAULT_PASSWORD},
          success=lambda w, after: "/account/"),
    # The emailed link's page, opened here without its token: 400 (test_account opens real links).
    Route("account.confirm_email", "/account/email/confirm", BOTH, "notifications", page_status=400,
          form=lambda w: {"token": _email_change_token(w)}, success=lambda w, after: "/account/",
          effect=_email_confirmed),
    Route("account.notification_settings", "/account/notifications", BOTH, "notifications",
          form=lambda w: dict(NOTIFICATION_EMAILS), success=lambda w, after: "/account/notifications",
          effect=_notification_emails_chosen),
    Route("account.change_password", "/account/password", POST, "notifications", ends_other_sessions=True,
          form=lambda w: {"current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
          success=lambda w, after: "/account/", effect=_password_changed),
    Route("notifications.index", "/notifications/", GET, "notifications"),
    Route("notifications.mark_read", "/notifications/{notification}/read", POST, "notifications", notification=True,
          form=lambda w: {}, success=lambda w, after: "/notifications/", effect=_notification_read),
    Route("notifications.mark_all_read", "/notifications/read-all", POST, "notifications",
          form=lambda w: {}, success=lambda w, after: "/notifications/", effect=_all_read),
]
ROUTES = {route.endpoint: route for route in _ROUTES}
# Files, not pages: test_platform checks what is served there.
NOT_PAGES = {"static", "bootstrap.static"}
POST_ONLY = [route.endpoint for route in _ROUTES if route.methods == POST]
POSTS = [route.endpoint for route in _ROUTES if "POST" in route.methods]
# A reset link's token is no id: test_password_reset checks tampered ones (400, not 404).
WITH_IDS = [route.endpoint for route in _ROUTES if "{" in route.path and "{token}" not in route.path]
# Log-out ends every session of the account, the other copies of the visitor's too
# (test_sessions.py): it is sent last, after a new password (which ends all but its own).
MATRIX_ORDER = sorted(_ROUTES, key=lambda route: (route.access == "logout", route.ends_other_sessions))


def test_every_route_has_an_entry_in_the_matrix(app):
    """A new route, or a new method on one, must be given its expected answers here."""
    served = {
        rule.endpoint: frozenset(rule.methods - {"HEAD", "OPTIONS"})
        for rule in app.url_map.iter_rules() if rule.endpoint not in NOT_PAGES
        and not rule.endpoint.startswith("api.")  # the JSON API has its own matrix, in test_api.py
    }
    assert served == {endpoint: route.methods for endpoint, route in ROUTES.items()}
    rules = {rule.endpoint: re.sub(r"<[^>]+>", "{}", rule.rule) for rule in app.url_map.iter_rules()}
    for route in _ROUTES:
        # A query string names ids too (main.autodoc_events' ?id=): only the path is the rule's.
        assert re.sub(r"\{\w+\}", "{}", route.path.partition("?")[0]) == rules[route.endpoint], route.endpoint
        assert (route.form is not None) == ("POST" in route.methods), route.endpoint


# --- the rules ------------------------------------------------------------------------------


def expected(route, method, world):
    """(status, Location) the app's rules give this visitor; Location is None for a page
    and "success" for the redirect of a POST that did its work."""
    visitor, standing = world.visitor, world.visitor.standing
    # A page answers 200; a POST that did its work, or a GET that only points elsewhere
    # (a success but no form), redirects to its success Location.
    redirects = method != "GET" or (route.success is not None and route.form is None)
    allowed = (route.success_status, "success") if redirects else (route.page_status, None)
    log_in = (302, f"/auth/login?next={world.path(route)}")
    if route.access == "public":
        if standing == "anonymous":
            return 200, None
        return (302, HOME[visitor.role]) if standing == "approved" else (302, "/auth/standing")
    if route.access == "ops":
        # Probes send no session; a browser that does is treated as anywhere else.
        return (302, "/auth/standing") if standing == "ended" else (200, None)
    if standing == "ended":  # security.end_session_of_blocked_user, before any view
        return (200, None) if route.access == "standing" else (302, "/auth/standing")
    if route.access == "login_form":
        return allowed if standing == "anonymous" else (302, "/")
    if route.access == "standing":
        return {"anonymous": (302, "/auth/login"), "pending": (200, None), "approved": (302, "/")}[standing]
    if route.access == "logout":
        return allowed
    if route.access == "polling":
        # JSON for the pages' polling script, open to every approved role: refusals are
        # JSON (401 anonymous, 403 pending), and an admin may see any autodoc.
        if standing == "anonymous":
            return 401, None
        if standing == "pending":
            return 403, None
        return allowed if visitor.related or visitor.role == "admin" else (404, None)
    # A role's area: roles.require_role, then services.documents.get_document_or_404.
    if standing == "anonymous":
        return log_in
    if standing == "pending":
        return 302, "/auth/standing"
    if route.access != "notifications" and visitor.role != route.access:
        return 403, None
    if route.document and not visitor.related:
        return 404, None
    if route.notification and visitor.relation != "assigned":
        return 404, None
    return allowed


def own_session(visitor):
    """Who the visitor's browser holds when nothing logs it in or out: "anonymous",
    "pending" or the role. A session that was meant to end has ended."""
    if visitor.standing in ("anonymous", "ended"):
        return "anonymous"
    return "pending" if visitor.standing == "pending" else visitor.role


def session_after(route, method, world):
    """Who the browser holds after a matrix request: only a log-in, sign-up or log-out
    that did its work changes it."""
    if expected(route, method, world) == (302, "success"):
        changed = {"auth.login": "sponsor",  # the owner, whose credentials were sent
                   "auth.signup": "pending", "auth.logout": "anonymous"}
        if route.endpoint in changed:
            return changed[route.endpoint]
    return own_session(world.visitor)


def logged_in_as(browser):
    """Who the browser holds, as the front door (/) tells them apart."""
    response = browser.get("/")
    if response.status_code == 200:
        return "anonymous"
    location = response.headers["Location"]
    return "pending" if location == "/auth/standing" else {home: role for role, home in HOME.items()}[location]


def same_location(actual, wanted):
    """Locations compared as path, decoded query and fragment, so that quoting does not matter."""
    actual, wanted = urlsplit(actual), urlsplit(wanted)
    return (actual.path, parse_qs(actual.query), actual.fragment) == (
        wanted.path, parse_qs(wanted.query), wanted.fragment)


# --- 1. every route x every visitor ---------------------------------------------------------


def check(world, route, method):
    """Send one matrix request from a fresh copy of the visitor's session; the ways its
    answer, the database or the session differ from the rules."""
    app = world.app
    status, location = expected(route, method, world)
    browser = world.browser()
    before = snapshot(app)
    response = world.send(browser, route, method)
    after = snapshot(app)

    wrong = []
    if response.status_code != status:
        wrong.append(f"status {response.status_code}, expected {status}")
    if location == "success":
        location = route.success(world, after)
        if after != route.effect(world, before, after):
            wrong.append("the database did not change as this request should change it")
    elif after != before:
        wrong.append("the database changed, though this request is refused or a GET")
    actual = response.headers.get("Location")
    if (location is None) != (actual is None) or (location and not same_location(actual, location)):
        wrong.append(f"Location {actual!r}, expected {location!r}")
    holder, wanted = logged_in_as(browser), session_after(route, method, world)
    if holder != wanted:
        wrong.append(f"afterwards the browser is {holder}, expected {wanted}")
    return [f"{method} {world.path(route)} ({route.endpoint}): {problem}" for problem in wrong]


@pytest.mark.parametrize("key", VISITORS)
def test_access_matrix(world, key):
    """Every route and method, as this visitor; all the differences are reported at once."""
    w = world(key)
    wrong = [problem for route in MATRIX_ORDER for method in sorted(route.methods) for problem in check(w, route, method)]
    assert not wrong, f"as {key}:\n" + "\n".join(wrong)


# --- 2. POST-only routes and CSRF -----------------------------------------------------------


@pytest.mark.parametrize("endpoint", POST_ONLY)
def test_post_only_routes_answer_get_with_405(app, world, endpoint):
    route = ROUTES[endpoint]
    w = world(route.allowed_visitor())
    browser = w.browser()
    before = snapshot(app)

    response = browser.get(w.path(route))

    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert snapshot(app) == before
    assert logged_in_as(browser) == own_session(w.visitor)


@pytest.mark.parametrize("endpoint", POSTS)
def test_state_changes_without_a_valid_csrf_token_are_refused(app, world, endpoint):
    """No token, another session's token and a made-up one: 400, and nothing changes,
    not even who is logged in."""
    route = ROUTES[endpoint]
    w = world(route.allowed_visitor())
    tokens = {"missing": None, "another session's": w.make_client().csrf_token(),
              "forged": "ImZvcmdlZCI.forged.signature"}
    before = snapshot(app)
    for name, token in tokens.items():
        browser = w.browser()
        response = w.send(browser, route, "POST", csrf_token=token)
        assert response.status_code == 400, name
        assert CSRF_REFUSED in response.get_data(as_text=True), name
        assert snapshot(app) == before, name
        assert logged_in_as(browser) == own_session(w.visitor), name
    # The same request with the session's token works: the refusals were the token's.
    assert w.send(w.browser(), route, "POST").status_code == route.success_status


# --- 3. tampered ids ------------------------------------------------------------------------


BAD_IDS = ["abc", "1abc", "-1", "0", "1.5", "%20", "0x1", "99999999999999999999", str(2**31), str(2**63)]


@pytest.mark.parametrize("endpoint", WITH_IDS)
def test_tampered_ids_are_404_never_500(app, world, endpoint):
    """Ids that are not numbers, negative, zero or beyond PostgreSQL's integers: 404 for the
    very visitor the route is for, with every method, and nothing changes."""
    route = ROUTES[endpoint]
    w = world(route.allowed_visitor())
    before = snapshot(app)
    for bad_id in BAD_IDS:
        path = w.path(route, document=bad_id, autodoc=bad_id, target=bad_id, notification=bad_id, model=bad_id,
                      earlier=bad_id, run=bad_id, kind=bad_id)
        for method in sorted(route.methods):
            assert w.send(w.browser(), route, method, path).status_code == 404, (method, path)
    assert snapshot(app) == before
    assert w.send(w.browser(), route, sorted(route.methods)[0]).status_code in (200, 302)
