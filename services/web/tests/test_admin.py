"""The admin's pages and decisions: who may see them, what each decision does, what the
rules refuse, and that a decision ends the session of the user it blocks."""
import re
from urllib.parse import quote

import pytest
from sqlalchemy import func, update

from srcflask.extensions import db
from srcflask.models import Autodoc, User
from srcflask.services import users

from .auth_admin_helpers import counted_queries, fresh, page_text
from .factories import make_document, make_user

ADMIN_PAGES = ["/admin/", "/admin/approvals", "/admin/users"]


# --- who may see the admin pages -----------------------------------------------------


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_anonymous_visitors_are_sent_to_log_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/auth/login?next={quote(path, safe='/')}"


@pytest.mark.parametrize("path", ADMIN_PAGES)
@pytest.mark.parametrize("role", ["sponsor", "editor"])
def test_other_roles_are_forbidden(login_as, path, role):
    browser, _ = login_as(role)
    response = browser.get(path)
    assert response.status_code == 403
    assert "You do not have access to this page." in page_text(response)


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_pending_admin_is_sent_to_the_standing_page(login_as, path):
    browser, _ = login_as("admin", status="pending")
    assert browser.get(path).headers["Location"] == "/auth/standing"


@pytest.mark.parametrize("role", ["sponsor", "editor"])
def test_other_roles_cannot_take_decisions(app, login_as, role):
    target = make(app, status="pending")
    browser, _ = login_as(role)
    assert browser.post(f"/admin/users/{target.id}/approve").status_code == 403
    assert fresh(app, target.id).status == "pending"


def test_anonymous_decision_is_sent_to_log_in(app, client):
    target = make(app, status="pending")
    response = client.post(f"/admin/users/{target.id}/approve")
    assert response.headers["Location"].startswith("/auth/login?next=")
    assert fresh(app, target.id).status == "pending"


# --- decisions -----------------------------------------------------------------------


@pytest.fixture
def admin(login_as):
    """(client, user) of an approved admin."""
    return login_as("admin", name="Grace Admin", organization="Head office")


def make(app, **fields):
    with app.app_context():
        user = make_user(**fields)
        db.session.refresh(user)
        db.session.expunge(user)
        return user


def decide(browser, user_id, action, next_url="/admin/approvals", **data):
    return browser.post(f"/admin/users/{user_id}/{action}?next={quote(next_url, safe='')}", data)


def test_approve_a_pending_user(app, admin):
    browser, me = admin
    target = make(app, name="Pat Pending", status="pending")
    response = decide(browser, target.id, "approve")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/approvals"
    assert "Pat Pending was approved." in page_text(browser.follow(response))

    row = fresh(app, target.id)
    assert row.status == "approved"
    assert row.decided_by_id == me.id
    assert row.decided_at is not None
    assert row.decision_reason is None


@pytest.mark.parametrize(
    "start, action, end, reason",
    [
        ("pending", "reject", "rejected", "We could not verify your organization."),
        ("pending", "reject", "rejected", ""),
        ("approved", "suspend", "suspended", "Spam."),
        ("suspended", "reinstate", "approved", ""),
        ("rejected", "reinstate", "approved", ""),
    ],
)
def test_allowed_transitions(app, admin, start, action, end, reason):
    browser, me = admin
    target = make(app, name="Terry Target", status=start)
    response = decide(browser, target.id, action, next_url="/admin/users?status=" + start, reason=reason)
    assert response.headers["Location"] == "/admin/users?status=" + start
    assert f"Terry Target was {users.PAST_TENSE[action]}." in page_text(browser.follow(response))
    row = fresh(app, target.id)
    assert (row.status, row.decided_by_id, row.decision_reason) == (end, me.id, reason or None)
    assert row.decided_at is not None


@pytest.mark.parametrize(
    "start, action",
    [
        ("approved", "approve"), ("rejected", "approve"), ("suspended", "approve"),
        ("approved", "reject"), ("suspended", "reject"), ("rejected", "reject"),
        ("pending", "suspend"), ("rejected", "suspend"), ("suspended", "suspend"),
        ("pending", "reinstate"), ("approved", "reinstate"),
    ],
)
def test_invalid_transitions_are_refused(app, admin, start, action):
    browser, _ = admin
    target = make(app, name="Terry Target", status=start)
    response = decide(browser, target.id, action)
    page = browser.follow(response).get_data(as_text=True)
    assert re.search(r'alert-danger" role="alert">Terry Target is ' + start + ": only", page)
    row = fresh(app, target.id)
    assert (row.status, row.decided_at) == (start, None)


@pytest.mark.parametrize("action", ["suspend", "reject"])
def test_an_admin_cannot_block_themself(app, admin, action):
    browser, me = admin
    response = decide(browser, me.id, action)
    assert f"You cannot {action} your own account." in page_text(browser.follow(response))
    assert fresh(app, me.id).status == "approved"
    assert browser.get("/admin/").status_code == 200  # still in


def test_an_admin_cannot_change_their_own_role(app, admin):
    browser, me = admin
    response = decide(browser, me.id, "role", role="sponsor")
    assert "You cannot change your own role." in page_text(browser.follow(response))
    assert fresh(app, me.id).role == "admin"


def test_change_role(app, admin):
    browser, _ = admin
    target = make(app, name="Sam Sponsor", role="sponsor")
    response = decide(browser, target.id, "role", next_url="/admin/users", role="editor")
    assert response.headers["Location"] == "/admin/users"
    assert "Sam Sponsor's role is now editor." in page_text(browser.follow(response))
    assert fresh(app, target.id).role == "editor"


def test_demoting_another_admin_is_allowed_while_one_remains(app, admin):
    browser, _ = admin
    other = make(app, name="Other Admin", role="admin")
    decide(browser, other.id, "role", role="editor")
    assert fresh(app, other.id).role == "editor"
    third = make(app, role="admin")
    decide(browser, third.id, "suspend")
    assert fresh(app, third.id).status == "suspended"


@pytest.mark.parametrize(
    "role, message",
    [("superuser", "Choose sponsor, editor or admin."), ("sponsor", "Sam Sponsor is already a sponsor."),
     ("", "Choose sponsor, editor or admin.")],
)
def test_change_role_refusals(app, admin, role, message):
    browser, _ = admin
    target = make(app, name="Sam Sponsor", role="sponsor")
    response = decide(browser, target.id, "role", role=role)
    assert message in page_text(browser.follow(response))
    assert fresh(app, target.id).role == "sponsor"


def test_change_role_refused_while_the_user_holds_documents(app, admin):
    browser, _ = admin
    with app.app_context():
        sponsor = make_user(role="sponsor", name="Sam Sponsor")
        editor = make_user(role="editor", name="Eve Editor")
        make_document(sponsor, editor)
        make_document(sponsor, editor)
        sponsor_id, editor_id = sponsor.id, editor.id
    response = decide(browser, editor_id, "role", role="sponsor")
    assert "Eve Editor is still the editor of 2 documents" in page_text(browser.follow(response))
    response = decide(browser, sponsor_id, "role", role="admin")
    assert "Sam Sponsor is still the sponsor of 2 documents" in page_text(browser.follow(response))
    assert (fresh(app, editor_id).role, fresh(app, sponsor_id).role) == ("editor", "sponsor")


def test_the_last_approved_admin_cannot_be_suspended_or_demoted(app, app_context):
    """Through the pages the acting admin is always another approved admin, so the rule is
    checked on the service, as a second admin acting at the same moment would meet it."""
    only = make_user(role="admin", name="Only Admin")
    actor = make_user(role="admin", status="pending", name="Pending Admin")
    with pytest.raises(users.DecisionRefused, match="Only Admin is the last approved admin"):
        users.decide(only, "suspend", by=actor)
    with pytest.raises(users.DecisionRefused, match="last approved admin and must stay an admin"):
        users.change_role(only, "editor", by=actor)
    db.session.rollback()
    db.session.expire_all()
    assert (only.status, only.role) == ("approved", "admin")

    make_user(role="admin", name="Second Admin")
    users.decide(only, "suspend", by=actor)
    db.session.commit()
    assert only.status == "suspended"


def test_reason_longer_than_500_characters_is_refused(app, admin):
    browser, _ = admin
    target = make(app, status="pending")
    response = decide(browser, target.id, "reject", reason="x" * 501)
    assert "Reason: Field cannot be longer than 500 characters." in page_text(browser.follow(response))
    assert fresh(app, target.id).status == "pending"


@pytest.mark.parametrize("action", ["approve", "reject", "suspend", "reinstate", "role"])
def test_unknown_user_is_404(admin, action):
    browser, _ = admin
    assert decide(browser, 999_999, action, role="editor").status_code == 404


def test_decision_without_csrf_token_is_refused(app, admin):
    browser, _ = admin
    target = make(app, status="pending")
    response = browser.post(f"/admin/users/{target.id}/approve", csrf=False)
    assert response.status_code == 400
    assert fresh(app, target.id).status == "pending"


def test_decisions_are_post_only(app, admin):
    browser, _ = admin
    target = make(app, status="pending")
    assert browser.get(f"/admin/users/{target.id}/approve").status_code == 405
    assert fresh(app, target.id).status == "pending"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil.example"])
def test_decision_never_redirects_off_site(app, admin, target):
    browser, _ = admin
    user = make(app, status="pending")
    response = decide(browser, user.id, "approve", next_url=target)
    assert response.headers["Location"] == "/admin/users"


# --- a decision ends the blocked user's session --------------------------------------


@pytest.mark.parametrize(
    "start, action, status",
    [("approved", "suspend", "suspended"), ("pending", "reject", "rejected")],
)
def test_blocking_a_logged_in_user_ends_their_session(app, admin, login_as, start, action, status):
    browser, _ = admin
    user_browser, user = login_as("sponsor", status=start)
    assert user_browser.get("/").status_code == 302  # logged in: sent to their area or standing

    decide(browser, user.id, action, reason="Broke the rules.")
    assert fresh(app, user.id).status == status

    response = user_browser.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/standing"
    page = page_text(user_browser.get("/auth/standing"))
    assert f"Your account was {status} for this reason:" in page
    assert "Broke the rules." in page
    assert "Your session has ended." in page
    # The following request is anonymous.
    assert user_browser.get("/auth/login").status_code == 200
    assert user_browser.get("/admin/").headers["Location"].startswith("/auth/login")


# --- pages ---------------------------------------------------------------------------


def names_in(response):
    """The names in the first column of the page's table, in order."""
    return re.findall(r'<tr>\s*<td class="text-break-all">([^<]*)</td>', response.get_data(as_text=True))


def test_approvals_lists_pending_users_oldest_first_with_pages(app, admin, monkeypatch):
    browser, _ = admin
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    for name in ("First", "Second", "Third"):
        make(app, name=name, status="pending")
    make(app, name="Already Approved")
    make(app, name="Was Rejected", status="rejected")

    first = browser.get("/admin/approvals")
    assert names_in(first) == ["First", "Second"]
    page = first.get_data(as_text=True)
    assert page.count('name="reason"') == 2 and page.count(">Approve<") == 2
    assert 'href="/admin/approvals?page=2"' in page
    assert names_in(browser.get("/admin/approvals?page=2")) == ["Third"]


def test_deciding_the_last_row_of_the_last_page_returns_to_the_page_before(app, admin, monkeypatch):
    browser, _ = admin
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    for name in ("First", "Second"):
        make(app, name=name, status="pending")
    third = make(app, name="Third", status="pending")
    response = decide(browser, third.id, "approve", next_url="/admin/approvals?page=2")
    assert response.headers["Location"] == "/admin/approvals?page=2"
    back = browser.follow(response)
    assert back.headers["Location"] == "/admin/approvals?page=1"
    assert names_in(browser.follow(back)) == ["First", "Second"]


def test_approvals_when_nobody_waits(admin):
    browser, _ = admin
    assert "No account is waiting for approval." in page_text(browser.get("/admin/approvals"))


@pytest.fixture
def people(app, admin):
    """A small population for the user list (plus the logged-in admin, Grace Admin)."""
    with app.app_context():
        grace = db.session.get(User, admin[1].id)
        for name, role, status, org, email in [
            ("Alice Archer", "sponsor", "approved", "Acme", "alice@example.org"),
            ("Bob Baker", "editor", "pending", "Bakery Ltd", "bob@example.org"),
            ("Carol Cook", "sponsor", "suspended", "ACME Labs", "carol@cooks.example"),
            ("Dan Dyer", "editor", "approved", "Dyeworks", "dan@acme.example"),
            ("Erin Eve", "sponsor", "rejected", "", "erin@example.org"),
        ]:
            user = make_user(name=name, role=role, status=status, organization=org, email=email)
            if status != "pending":
                user.decided_by_id, user.decided_at = grace.id, func.now()
        db.session.commit()
    return admin


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", ["Alice Archer", "Bob Baker", "Carol Cook", "Dan Dyer", "Erin Eve", "Grace Admin"]),
        ("?q=acme", ["Alice Archer", "Carol Cook", "Dan Dyer"]),  # organization and email, any case
        ("?q=BAKER", ["Bob Baker"]),
        ("?q=cooks.example", ["Carol Cook"]),
        ("?q=%25", []),  # a literal %, not a wildcard
        ("?role=editor", ["Bob Baker", "Dan Dyer"]),
        ("?status=approved", ["Alice Archer", "Dan Dyer", "Grace Admin"]),
        ("?role=sponsor&status=approved", ["Alice Archer"]),
        ("?q=acme&role=sponsor", ["Alice Archer", "Carol Cook"]),
        ("?role=wizard", ["Alice Archer", "Bob Baker", "Carol Cook", "Dan Dyer", "Erin Eve", "Grace Admin"]),
    ],
)
def test_user_list_search_and_filters(people, query, expected):
    browser, _ = people
    response = browser.get("/admin/users" + query)
    assert response.status_code == 200
    assert names_in(response) == expected


def test_user_list_pages_keep_the_filters(app, people, monkeypatch):
    browser, _ = people
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    first = browser.get("/admin/users?q=e&role=sponsor")
    assert names_in(first) == ["Alice Archer", "Carol Cook"]
    assert 'href="/admin/users?q=e&amp;role=sponsor&amp;page=2"' in first.get_data(as_text=True)
    assert names_in(browser.get("/admin/users?q=e&role=sponsor&page=2")) == ["Erin Eve"]
    past_the_end = browser.get("/admin/users?q=e&role=sponsor&page=3")
    assert past_the_end.headers["Location"] == "/admin/users?q=e&role=sponsor&page=2"


def test_user_list_offers_the_actions_valid_for_each_state(people):
    browser, me = people
    page = browser.get("/admin/users").get_data(as_text=True)
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr>\s*<td class="text-break-all">([^<]*)</td>.*?</tr>',
                                                        page, re.S)}
    assert ">Approve<" in rows["Bob Baker"] and "Reject…" in rows["Bob Baker"]
    assert "Suspend…" in rows["Alice Archer"] and "Reinstate" not in rows["Alice Archer"]
    assert "Reinstate" in rows["Carol Cook"] and "Reinstate" in rows["Erin Eve"]
    assert "Change role" in rows["Dan Dyer"]
    assert "Suspend" not in rows["Grace Admin"] and "Change role" not in rows["Grace Admin"]
    assert "by Grace Admin" in rows["Alice Archer"]


def test_user_list_runs_a_constant_number_of_queries(app, admin):
    browser, me = admin

    def add(count):
        with app.app_context():
            for _ in range(count):
                decider = make_user(role="admin")
                blocked = make_user(status="suspended")
                blocked.decided_by_id, blocked.decided_at = decider.id, func.now()
            db.session.commit()

    # Filtered on the decided users only, so that their deciders are not rows of the page
    # (rows already loaded would hide a query per row behind the identity map).
    add(2)
    with counted_queries(app) as few:
        assert names_in(browser.get("/admin/users?status=suspended")) != []
    add(6)
    with counted_queries(app) as many:
        assert len(names_in(browser.get("/admin/users?status=suspended"))) == 8
    assert len(many) == len(few)
    with counted_queries(app) as approvals:
        browser.get("/admin/approvals")
    with counted_queries(app) as dashboard:
        browser.get("/admin/")
    # The dashboard adds the writer's watch: recent failures, recent timings, the queue by sponsor.
    assert len(approvals) <= len(few) and len(dashboard) <= len(few) + 4


def test_names_are_escaped_in_the_admin_list(app, admin):
    browser, _ = admin
    make(app, name="<script>alert(1)</script>", status="pending")
    for path in ("/admin/users", "/admin/approvals"):
        page = browser.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_dashboard_counts(app, admin):
    browser, _ = admin
    with app.app_context():
        sponsor = make_user(role="sponsor")
        editor = make_user(role="editor")
        make_user(role="sponsor", status="pending")
        make_user(role="editor", status="pending")
        make_user(role="editor", status="suspended")
        for title in ("One", "Two", "Three"):
            make_document(sponsor, editor, title=title)
        db.session.execute(update(Autodoc).where(Autodoc.id == 1).values(status="done"))
        db.session.commit()

    page = browser.get("/admin/").get_data(as_text=True)

    def count(element_id):
        match = re.search(rf'id="{element_id}"[^>]*>\s*(\d+)<', page)
        assert match, element_id
        return int(match.group(1))

    assert count("summary-pending") == 2
    assert count("summary-users") == 6
    assert count("summary-documents") == 3
    assert count("count-autodocs-queued") == 2
    assert count("count-autodocs-done") == 1
    assert count("count-autodocs-failed") == 0
    assert count("count-sponsor-approved") == 1
    assert count("count-editor-pending") == 1
    assert count("count-editor-suspended") == 1
    assert count("count-admin-approved") == 1
    assert count("count-role-editor") == 3
    assert count("count-status-pending") == 2
    assert 'href="/admin/approvals"' in page
    assert 'href="/admin/users?role=editor&amp;status=pending"' in page
