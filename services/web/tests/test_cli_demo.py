"""`flask seed-demo`: demo accounts and documents, safe to run twice, no default password."""
import re

from sqlalchemy import delete, func, select

from srcflask.cli.demo import DEMO_DOMAIN, seed_demo
from srcflask.extensions import db
from srcflask.models import Autodoc, Document, Retention, Revision, User

PASSWORD_LINE = re.compile(r"Password for every demo account \(new on each run\): (\S+)")


def run(app, *args):
    return app.test_cli_runner().invoke(seed_demo, list(args))


def snapshot(app):
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (User, Document, Retention, Revision, Autodoc)
        }


def test_seed_demo_creates_accounts_and_documents_and_is_idempotent(app):
    first = run(app)
    assert first.exit_code == 0, first.output
    first_password = PASSWORD_LINE.search(first.output).group(1)
    after_first = snapshot(app)

    with app.app_context():
        demo_users = db.session.scalars(select(User).where(User.email.like(f"%@{DEMO_DOMAIN}"))).all()
        assert sorted((u.role, u.status) for u in demo_users) == [("editor", "approved")] * 3 + [("sponsor", "approved")] * 3
        assert all(user.email in first.output for user in demo_users)
        assert len({user.password_hash for user in demo_users}) == 1
        assert demo_users[0].check_password(first_password)
        # Documents went through the service: every revision has its queued autodoc, some have two versions.
        assert db.session.scalar(select(func.count()).select_from(Autodoc).where(Autodoc.status != "queued")) == 0
        assert db.session.scalar(select(func.max(Document.version))) == 2
        assert after_first["revisions"] == after_first["autodocs"] > after_first["documents"] >= 6

    second = run(app)
    assert second.exit_code == 0, second.output
    assert "0 new documents" in second.output
    assert snapshot(app) == after_first

    # One fresh random password per run, valid for every demo account; none is built in.
    second_password = PASSWORD_LINE.search(second.output).group(1)
    assert second_password != first_password and len(second_password) >= 20
    with app.app_context():
        demo_users = db.session.scalars(select(User).where(User.email.like(f"%@{DEMO_DOMAIN}"))).all()
        assert len({user.password_hash for user in demo_users}) == 1
        assert demo_users[0].check_password(second_password)
        assert not demo_users[0].check_password(first_password)


def test_seed_demo_restores_a_suspended_demo_account_and_completes_missing_documents(app):
    assert run(app).exit_code == 0
    complete = snapshot(app)
    with app.app_context():
        editor = db.session.scalar(select(User).where(User.email == f"editor1@{DEMO_DOMAIN}"))
        editor.status = "suspended"
        # The database cascades to the retention, revisions and autodocs.
        db.session.execute(delete(Document).where(Document.id == select(func.max(Document.id)).scalar_subquery()))
        db.session.commit()

    result = run(app)

    assert result.exit_code == 0, result.output
    assert "1 new document." in result.output
    assert snapshot(app)["documents"] == complete["documents"]
    with app.app_context():
        assert db.session.scalar(select(User.status).where(User.email == f"editor1@{DEMO_DOMAIN}")) == "approved"


def test_seed_demo_refuses_production_unless_asked(app, monkeypatch):
    monkeypatch.setitem(app.config, "SRCFLASK_ENV", "production")
    result = run(app)
    assert result.exit_code != 0
    assert "--in-production" in result.output
    assert snapshot(app)["users"] == 0

    assert run(app, "--in-production").exit_code == 0
    assert snapshot(app)["users"] == 6


def test_seed_demo_stops_on_an_account_with_another_role(app):
    with app.app_context():
        user = User(name="Squatter", email=f"editor1@{DEMO_DOMAIN}", role="sponsor", status="approved")
        user.set_password("a long enough password 1")
        db.session.add(user)
        db.session.commit()

    result = run(app)

    assert result.exit_code != 0
    assert "exists as sponsor, not editor" in result.output
    assert snapshot(app)["users"] == 1 and snapshot(app)["documents"] == 0


def test_a_demo_sponsor_logs_in_with_the_printed_password_and_sees_their_documents(app, client):
    password = PASSWORD_LINE.search(run(app).output).group(1)

    response = client.post("/auth/login", {"email": f"sponsor1@{DEMO_DOMAIN}", "password": password})

    assert response.status_code == 302
    page = client.get("/sponsor/documents").get_data(as_text=True)
    assert "Quarterly report: engine room" in page and "Meeting minutes, 3 March" in page
    assert "Proposal: a thinking machine" not in page  # another demo sponsor's
