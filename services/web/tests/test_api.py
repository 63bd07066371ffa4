"""The JSON API: every endpoint as every kind of caller (its own exhaustive matrix, as
test_access_matrix has for the pages), then the rules behind the answers: validation,
optimistic locking, stale approvals, errors' shape, pagination, rate limits, tokens."""
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, update

from srcflask.extensions import db
from srcflask.models import ApiToken, AuditEvent, Document, User, Verdict
from srcflask.services import tokens
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, make_registry, make_user, write_autodocs
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)


def make_token(user, name="script"):
    """A committed token of `user` and its secret."""
    new = tokens.create_token(user, name)
    db.session.commit()
    return new.secret


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"} if secret else {}


@pytest.fixture
def api(app):
    """call(method, path, token, json=None, **kwargs) -> response, from a cookie-less client."""
    client = app.test_client()

    def call(method, path, token=None, json=None, **kwargs):
        headers = {**bearer(token), **kwargs.pop("headers", {})}
        return client.open(path, method=method, json=json, headers=headers, **kwargs)

    return call


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code, error
    return error


# --- the matrix -------------------------------------------------------------------------------

CALLERS = {
    # name: (role, status at the time of the request, relation to the world's document)
    "no_token": (None, None, None),
    "owner": ("sponsor", "approved", "owner"),
    "other_sponsor": ("sponsor", "approved", None),
    "assigned_editor": ("editor", "approved", "assigned"),
    "other_editor": ("editor", "approved", None),
    "admin": ("admin", "approved", None),
    "pending_sponsor": ("sponsor", "pending", None),
    "suspended_owner": ("sponsor", "suspended", "owner"),  # suspended after the token was made
    "rejected_editor": ("editor", "rejected", "assigned"),
    "revoked_owner": ("sponsor", "approved", "owner"),  # the owner, with a revoked token
}


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str  # {document}, {autodoc}, {target}, and the registry's {model}, {earlier}, {run} stand for the world's ids
    roles: tuple
    status: int  # the answer to a caller who may
    document: bool = False  # the URL names the world's document (or its autodoc)
    admin_reads_any: bool = False  # admins may read documents that are not theirs
    body: object = None  # world -> JSON body
    target: tuple | None = None  # (role, status) of the account an admin decision is on
    mimetype: str = "application/json"  # of the answer to a caller who may (errors are always JSON)


ALL = ("sponsor", "editor", "admin")
MODEL_READERS = ("editor", "admin")
API_ROUTES = {
    "api.me": ApiRoute("GET", "/api/v1/me", ALL, 200),
    "api.export_me": ApiRoute("GET", "/api/v1/me/export", ("sponsor",), 200),
    "api.editors": ApiRoute("GET", "/api/v1/editors", ("sponsor",), 200),
    "api.list_documents": ApiRoute("GET", "/api/v1/documents", ALL, 200),
    "api.create_document": ApiRoute("POST", "/api/v1/documents", ("sponsor",), 201,
                                    body=lambda w: {"title": "From a script", "body": "Text", "editor_id": w.editor_id}),
    "api.get_document": ApiRoute("GET", "/api/v1/documents/{document}", ALL, 200, document=True, admin_reads_any=True),
    "api.update_document": ApiRoute("PUT", "/api/v1/documents/{document}", ("sponsor",), 200, document=True,
                                    body=lambda w: {"version": 1, "title": "Changed", "body": "Changed body"}),
    "api.list_revisions": ApiRoute("GET", "/api/v1/documents/{document}/revisions", ALL, 200, document=True,
                                   admin_reads_any=True),
    "api.get_autodoc": ApiRoute("GET", "/api/v1/autodocs/{autodoc}", ALL, 200, document=True, admin_reads_any=True),
    "api.regenerate_autodoc": ApiRoute("POST", "/api/v1/autodocs/{autodoc}/regenerate", ("sponsor",), 202,
                                       document=True),
    "api.review_queue": ApiRoute("GET", "/api/v1/reviews", ("editor",), 200),
    "api.give_verdict": ApiRoute("POST", "/api/v1/autodocs/{autodoc}/verdicts", ("editor",), 201, document=True,
                                 body=lambda w: {"decision": "approve"}),
    "api.list_users": ApiRoute("GET", "/api/v1/users", ("admin",), 200),
    "api.approve_user": ApiRoute("POST", "/api/v1/users/{target}/approve", ("admin",), 200, target=("editor", "pending")),
    "api.reject_user": ApiRoute("POST", "/api/v1/users/{target}/reject", ("admin",), 200, target=("sponsor", "pending"),
                                body=lambda w: {"reason": "Not for us."}),
    "api.suspend_user": ApiRoute("POST", "/api/v1/users/{target}/suspend", ("admin",), 200,
                                 target=("sponsor", "approved"), body=lambda w: {}),
    "api.reinstate_user": ApiRoute("POST", "/api/v1/users/{target}/reinstate", ("admin",), 200,
                                   target=("editor", "suspended")),
    "api.openapi_json": ApiRoute("GET", "/api/v1/openapi.json", (), 200),  # public
    # The model registry (api/registry.py): editors and admins read it. The run is started
    # before the promotion and the rollback, which retire its parent.
    "api.list_models": ApiRoute("GET", "/api/v1/models", MODEL_READERS, 200),
    "api.get_model": ApiRoute("GET", "/api/v1/models/{model}", MODEL_READERS, 200),
    "api.list_training_sets": ApiRoute("GET", "/api/v1/training-sets", MODEL_READERS, 200),
    "api.list_training_runs": ApiRoute("GET", "/api/v1/training-runs", MODEL_READERS, 200),
    "api.get_training_run": ApiRoute("GET", "/api/v1/training-runs/{run}", MODEL_READERS, 200),
    "api.start_training_run": ApiRoute("POST", "/api/v1/training-runs", ("admin",), 201,
                                       body=lambda w: {"parent_id": w.registry["active"],
                                                       "training_set_id": w.registry["training_set"]}),
    "api.cancel_training_run": ApiRoute("POST", "/api/v1/training-runs/{run}/cancel", ("admin",), 200),
    "api.promote_model": ApiRoute("POST", "/api/v1/models/{model}/promote", ("admin",), 200,
                                  body=lambda w: {"reason": "Chosen by the matrix.", "override": True}),
    "api.rollback_model": ApiRoute("POST", "/api/v1/models/{earlier}/rollback", ("admin",), 200,
                                   body=lambda w: {"reason": "Chosen by the matrix."}),
    # The training data exports (api/exports.py): streamed JSON Lines, for admins.
    "api.export_training_data": ApiRoute("GET", "/api/v1/exports/preferences", ("admin",), 200,
                                         mimetype="application/jsonl"),
}


@dataclass
class World:
    caller: str
    token: str | None
    editor_id: int
    document_id: int
    autodoc_id: int
    targets: dict
    registry: dict  # factories.make_registry's rows, by id

    def path(self, route, **ids):
        values = {"document": self.document_id, "autodoc": self.autodoc_id,
                  "target": self.targets.get(route.path), "model": self.registry["candidate"],
                  "earlier": self.registry["retired"], "run": self.registry["run"]}
        return route.path.format(**{**values, **ids})


@pytest.fixture
def world(app, app_context, tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    """The caller's token and the rows around it: a document (its sponsor, its editor)
    whose first autodoc is written, one target account per admin decision, and a model
    registry (a candidate, an earlier model, a training set and a queued run)."""
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))

    def build(caller):
        role, status, relation = CALLERS[caller]
        user = make_user(role, "approved") if role else None

        def person(wanted, role):
            return user if relation == wanted else make_user(role)

        owner, editor = person("owner", "sponsor"), person("assigned", "editor")
        document = make_document(owner, editor)
        (autodoc_id,) = write_autodocs()
        token = make_token(user) if user else None
        if caller == "revoked_owner":
            tokens.revoke_token(user, db.session.scalar(select(ApiToken.id)))
        if user is not None and status != "approved":
            # The token was made while approved: a change of standing must stop it at once.
            db.session.execute(update(User).where(User.id == user.id).values(status=status))
        db.session.commit()
        targets = {r.path: make_user(*r.target).id for r in API_ROUTES.values() if r.target}
        rows = make_registry(tiny_model_dir, make_user("admin"))
        return World(caller, token, editor.id, document.id, autodoc_id, targets,
                     {name: row.id for name, row in rows.items()})

    return build


def expected(route, caller):
    role, status, relation = CALLERS[caller]
    if not route.roles:
        return route.status
    if role is None or status != "approved" or caller == "revoked_owner":
        return 401
    if role not in route.roles:
        return 403
    related = {"sponsor": "owner", "editor": "assigned"}.get(role) == relation
    if route.document and not related and not (role == "admin" and route.admin_reads_any):
        return 404
    return route.status


def test_every_api_route_has_an_entry_in_the_matrix(app):
    served = {(rule.endpoint, method) for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == {(endpoint, route.method) for endpoint, route in API_ROUTES.items()}


def check(api, w, endpoint):
    """One matrix request; the ways its answer differs from the rules."""
    route = API_ROUTES[endpoint]
    audited = db.session.scalar(select(func.count(AuditEvent.id)))
    response = api(route.method, w.path(route), w.token, json=route.body(w) if route.body else None)
    status = expected(route, w.caller)
    wrong = []
    if response.status_code != status:
        wrong.append(f"status {response.status_code}, expected {status}")
    if response.mimetype != (route.mimetype if status < 400 else "application/json"):
        wrong.append(f"type {response.mimetype}")
    if status >= 400:
        error = (response.get_json(silent=True) or {}).get("error", {})
        if error.get("code") != {401: "unauthorized", 403: "forbidden", 404: "not_found"}[status]:
            wrong.append(f"error {error}")
        if db.session.scalar(select(func.count(AuditEvent.id))) != audited:
            wrong.append("a refused request changed something")
    if status == 401 and not response.headers.get("WWW-Authenticate", "").startswith("Bearer"):
        wrong.append("no WWW-Authenticate: Bearer")
    return [f"{route.method} {w.path(route)} ({endpoint}): {problem}" for problem in wrong]


@pytest.mark.parametrize("caller", CALLERS)
def test_api_matrix(world, api, caller):
    """Every endpoint as this caller (one world: the allowed changes do not interfere), all
    the differences reported at once."""
    w = world(caller)
    wrong = [problem for endpoint in API_ROUTES for problem in check(api, w, endpoint)]
    assert not wrong, f"as {caller}:\n" + "\n".join(wrong)


# --- what the endpoints answer ----------------------------------------------------------------

@pytest.fixture
def people(app_context):
    owner, editor, admin = make_user("sponsor"), make_user("editor"), make_user("admin")
    return {"owner": owner, "editor": editor, "admin": admin,
            "owner_token": make_token(owner), "editor_token": make_token(editor), "admin_token": make_token(admin)}


def test_sponsor_creates_reads_and_updates_a_document_with_optimistic_locking(api, people):
    created = api("POST", "/api/v1/documents", people["owner_token"],
                  json={"title": "  Script title ", "body": "Line\r\nnext", "editor_id": people["editor"].id})
    assert created.status_code == 201
    document = created.get_json()
    assert created.headers["Location"] == f"/api/v1/documents/{document['id']}"
    assert (document["title"], document["body"], document["version"]) == ("Script title", "Line\nnext", 1)
    assert document["editor"] == {"id": people["editor"].id, "name": people["editor"].name}

    path = f"/api/v1/documents/{document['id']}"
    saved = api("PUT", path, people["owner_token"], json={"version": 1, "title": "Second", "body": "Two"})
    assert saved.status_code == 200 and saved.get_json()["version"] == 2
    stale = api("PUT", path, people["owner_token"], json={"version": 1, "title": "Lost", "body": "Update"})
    error = assert_error(stale, 409, "edit_conflict")
    assert error["details"] == {"current_version": 2}
    same = api("PUT", path, people["owner_token"], json={"version": 2, "title": "Second", "body": "Two"})
    assert_error(same, 422, "no_changes")
    assert db.session.get(Document, document["id"]).title == "Second"

    revisions = api("GET", path + "/revisions", people["owner_token"]).get_json()["items"]
    assert [r["version"] for r in revisions] == [2, 1]
    assert revisions[0]["autodocs"][0]["status"] == "queued"

    listed = api("GET", "/api/v1/documents?q=seco", people["owner_token"]).get_json()
    assert [row["id"] for row in listed["items"]] == [document["id"]]
    assert listed["items"][0]["autodoc_status"] == "queued"
    assert listed["links"]["self"] == "/api/v1/documents?q=seco&page=1"


@pytest.mark.parametrize("body, field", [
    ({"body": "x", "editor_id": 1}, "title"),
    ({"title": "   ", "body": "x", "editor_id": 1}, "title"),
    ({"title": "t" * 201, "editor_id": 1}, "title"),
    ({"title": "t", "body": "b" * 20_001, "editor_id": 1}, "body"),
    ({"title": "t"}, "editor_id"),
    ({"title": "t", "editor_id": "7"}, "editor_id"),
    ({"title": "t", "editor_id": 1, "extra": True}, "extra"),
])
def test_invalid_documents_are_400_with_field_details(api, people, body, field):
    error = assert_error(api("POST", "/api/v1/documents", people["owner_token"], json=body), 400, "validation_error")
    assert field in error["details"]["json"]
    assert db.session.scalar(select(func.count(Document.id))) == 0


def test_a_document_for_an_editor_who_is_not_approved_is_refused(api, people):
    pending = make_user("editor", "pending")
    error = assert_error(api("POST", "/api/v1/documents", people["owner_token"],
                             json={"title": "t", "editor_id": pending.id}), 400, "validation_error")
    assert "approved editors" in error["details"]["json"]["editor_id"][0]


def test_autodoc_state_is_the_one_the_pages_poll(api, people, login_as, app):
    make_document(people["owner"], people["editor"])
    autodoc_id = db.session.scalar(select(Autodoc.id))
    queued = api("GET", f"/api/v1/autodocs/{autodoc_id}", people["owner_token"]).get_json()
    assert (queued["status"], queued["position"], queued["stamp"]) == ("queued", 1, None)
    write_autodocs("the writer's words")
    # The test's app context is the requests' too: forget the autodoc the first GET loaded,
    # as a new request's session would.
    db.session.expire_all()
    state = api("GET", f"/api/v1/autodocs/{autodoc_id}", people["owner_token"]).get_json()
    assert state["status"] == "done" and state["continuation"] == "the writer's words"
    assert state["stamp"] == {"model": "tiny-gpt2", "settings": {"num_beams": 1}}
    browser, _ = login_as("admin")
    polled = browser.get(f"/autodocs/{autodoc_id}/status").get_json()
    assert {key: polled[key] for key in ("id", "status", "position", "eta_seconds")} == \
        {key: state[key] for key in ("id", "status", "position", "eta_seconds")}


def test_regenerate_queues_a_new_attempt_once(api, people):
    make_document(people["owner"], people["editor"])
    (autodoc_id,) = write_autodocs()
    path = f"/api/v1/autodocs/{autodoc_id}/regenerate"
    response = api("POST", path, people["owner_token"])
    assert response.status_code == 202
    new = response.get_json()
    assert (new["status"], new["generation"]) == ("queued", 2)
    assert response.headers["Location"] == f"/api/v1/autodocs/{new['id']}"
    assert_error(api("POST", path, people["owner_token"]), 409, "already_queued")


def test_editor_reviews_with_the_pages_rules(api, people):
    document = make_document(people["owner"], people["editor"])
    (first,) = write_autodocs()
    queue = api("GET", "/api/v1/reviews", people["editor_token"]).get_json()
    assert [item["autodoc_id"] for item in queue["items"]] == [first]

    error = assert_error(api("POST", f"/api/v1/autodocs/{first}/verdicts", people["editor_token"],
                             json={"decision": "reject"}), 400, "validation_error")
    assert "comment" in error["details"]["json"]
    assert_error(api("POST", f"/api/v1/autodocs/{first}/verdicts", people["editor_token"],
                     json={"decision": "maybe"}), 400, "validation_error")

    # The sponsor saves again: the first autodoc is stale and cannot be approved.
    api("PUT", f"/api/v1/documents/{document.id}", people["owner_token"], json={"version": 1, "title": "B", "body": "B"})
    second = db.session.scalar(select(func.max(Autodoc.id)))
    error = assert_error(api("POST", f"/api/v1/autodocs/{first}/verdicts", people["editor_token"],
                             json={"decision": "approve"}), 409, "stale_approval")
    assert error["details"] == {"newest_autodoc_id": second}
    assert_error(api("POST", f"/api/v1/autodocs/{second}/verdicts", people["editor_token"],
                     json={"decision": "approve"}), 409, "not_reviewable")
    sent_back = api("POST", f"/api/v1/autodocs/{first}/verdicts", people["editor_token"],
                    json={"decision": "request_changes", "comment": "Outdated."})
    assert sent_back.status_code == 201
    assert sent_back.get_json()["decision"] == "request_changes"
    assert db.session.scalar(select(Verdict.decision).where(Verdict.current)) == "request_changes"


def test_admin_lists_users_with_filters_and_decides(api, people):
    pending = make_user("editor", "pending", name="Pending Pat")
    listed = api("GET", "/api/v1/users?status=pending&role=editor", people["admin_token"]).get_json()
    assert [user["id"] for user in listed["items"]] == [pending.id]
    assert api("GET", "/api/v1/users?q=pat", people["admin_token"]).get_json()["total"] == 1
    assert_error(api("GET", "/api/v1/users?status=sleeping", people["admin_token"]), 400, "validation_error")

    approved = api("POST", f"/api/v1/users/{pending.id}/approve", people["admin_token"])
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    assert_error(api("POST", f"/api/v1/users/{pending.id}/approve", people["admin_token"]), 409, "decision_refused")
    suspended = api("POST", f"/api/v1/users/{pending.id}/suspend", people["admin_token"], json={"reason": "Spam."})
    assert suspended.get_json()["decision_reason"] == "Spam."
    assert_error(api("POST", f"/api/v1/users/{people['admin'].id}/suspend", people["admin_token"]),
                 409, "decision_refused")
    assert_error(api("POST", "/api/v1/users/999999/approve", people["admin_token"]), 404, "not_found")


def test_lists_are_paginated_with_links(api, people, app, monkeypatch):
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    for number in range(5):
        make_user("editor", "pending", name=f"Editor {number}")
    first = api("GET", "/api/v1/users?role=editor", people["admin_token"]).get_json()
    assert (first["page"], first["pages"], first["total"], len(first["items"])) == (1, 3, 6, 2)
    assert first["links"]["prev"] is None
    second = api("GET", first["links"]["next"], people["admin_token"]).get_json()
    assert second["page"] == 2 and second["links"]["prev"] == "/api/v1/users?role=editor&page=1"
    assert second["links"]["last"] == "/api/v1/users?role=editor&page=3"


# --- tokens -----------------------------------------------------------------------------------

def test_a_suspended_users_token_stops_working_at_once(api, people):
    assert api("GET", "/api/v1/me", people["owner_token"]).status_code == 200
    api("POST", f"/api/v1/users/{people['owner'].id}/suspend", people["admin_token"])
    assert_error(api("GET", "/api/v1/me", people["owner_token"]), 401, "unauthorized")
    api("POST", f"/api/v1/users/{people['owner'].id}/reinstate", people["admin_token"])
    assert api("GET", "/api/v1/me", people["owner_token"]).status_code == 200


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer srcf_not-a-token", "Basic dXNlcjpwYXNz", "Token x"])
def test_missing_or_unknown_tokens_are_401(api, people, header):
    assert_error(api("GET", "/api/v1/me", headers={"Authorization": header}), 401, "unauthorized")


def test_cookies_do_not_authenticate_the_api(login_as):
    browser, _ = login_as("sponsor")
    assert_error(browser.get("/api/v1/me"), 401, "unauthorized")
    assert_error(browser.raw.post("/api/v1/documents", json={"title": "t", "editor_id": 1}), 401, "unauthorized")


def test_only_the_hash_is_stored_and_the_token_page_shows_the_secret_once(login_as, app):
    browser, user = login_as("editor")
    assert browser.get("/account/tokens").status_code == 200
    response = browser.post("/account/tokens", {"name": "nightly export"})
    assert response.status_code == 201  # shown in the answer itself (test_sessions: never in a cookie)
    page = response.get_data(as_text=True)
    assert "nightly export" in page and "Copy it now" in page
    secret = page.split('new-token-secret">')[1].split("<")[0]
    with app.app_context():
        token = db.session.scalar(select(ApiToken))
        assert token.user_id == user.id and secret not in (token.token_hash, token.prefix) and secret.startswith(token.prefix)
    assert secret not in browser.get("/account/tokens").get_data(as_text=True)  # shown once

    client = app.test_client()
    assert client.get("/api/v1/me", headers=bearer(secret)).get_json()["id"] == user.id
    revoked = browser.post("/account/tokens/revoke", {"token_id": str(token.id)})
    assert revoked.status_code == 302
    assert "revoked: it no longer works" in browser.follow(revoked).get_data(as_text=True)
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401


def test_tokens_cannot_be_revoked_by_someone_else(login_as, app):
    with app.app_context():
        other = make_user("sponsor")
        make_token(other)
        token_id = db.session.scalar(select(ApiToken.id))
    browser, _ = login_as("sponsor")
    response = browser.post("/account/tokens/revoke", {"token_id": str(token_id)})
    assert "There is no such active token." in browser.follow(response).get_data(as_text=True)
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is None


def test_a_token_needs_a_name(login_as, app):
    browser, _ = login_as("sponsor")
    response = browser.post("/account/tokens", {"name": "  "})
    assert response.status_code == 200 and "Give the token a name" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(ApiToken.id))) == 0


# --- errors -----------------------------------------------------------------------------------

def test_errors_are_json_with_one_shape(api, people, app, monkeypatch):
    token = people["owner_token"]
    assert_error(api("GET", "/api/v1/nothing-here", token), 404, "not_found")
    assert_error(api("GET", "/api/v1/documents/99999", token), 404, "not_found")
    not_allowed = api("DELETE", "/api/v1/documents", token)
    assert_error(not_allowed, 405, "method_not_allowed")
    assert set(not_allowed.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert_error(api("POST", "/api/v1/documents", token, data="title=x", content_type="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")
    assert_error(api("POST", "/api/v1/documents", token, data="{not json", content_type="application/json"),
                 400, "validation_error")
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 100)
    assert_error(api("POST", "/api/v1/documents", token, json={"title": "t" * 200, "editor_id": 1}),
                 413, "request_entity_too_large")


def test_an_unexpected_error_is_a_json_500(api, people, monkeypatch):
    from srcflask.api import routes

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(routes.DOCUMENT_LISTS, "sponsor", broken)
    error = assert_error(api("GET", "/api/v1/documents", people["owner_token"]), 500, "internal_server_error")
    assert "boom" not in error["message"]


def test_rate_limits_are_per_user_with_retry_after(api, people, app, monkeypatch):
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "3 per minute")
    for _ in range(3):
        assert api("GET", "/api/v1/me", people["owner_token"]).status_code == 200
    limited = api("GET", "/api/v1/me", people["owner_token"])
    assert_error(limited, 429, "too_many_requests")
    assert int(limited.headers["Retry-After"]) > 0
    # Another user's token (the same client address) has its own allowance (test_throttle:
    # a user's tokens share one).
    assert api("GET", "/api/v1/me", people["editor_token"]).status_code == 200


def test_the_site_keeps_its_html_error_pages(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404 and response.mimetype == "text/html"
