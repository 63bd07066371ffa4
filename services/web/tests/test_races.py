"""Check-then-insert code raced by two real transactions (issue 13, item 9).

Each test holds the first transaction open right after its write, starts the second in
another thread (its own app context, so its own session and connection), waits until
PostgreSQL shows that second one blocked on a lock, then commits the first. That is the
interleaving in which both checks ran before either insert was visible, made certain
instead of hoped for: whatever the second then does is what a user who clicked at the
same moment would get.
"""
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text

from srcflask.extensions import db
from srcflask.services import autodoc_queue
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, make_user, write_autodocs
from .faultkit import queue_engine, wait_until
from .tinygpt2 import tiny_model_dir  # noqa: F401  (the fixture)

LOCK_WAIT_TIMEOUT = 30


@pytest.fixture
def watcher(database_url):
    """A connection outside the app that sees which backends wait on a lock."""
    engine = queue_engine(database_url)
    yield engine
    engine.dispose()


def _blocked_backends(engine):
    with engine.connect() as conn:
        return conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"))


def race(app, watcher, first, second):
    """Run `first` in this thread's transaction (uncommitted), then `second` in another
    thread; once `second` waits on a lock, commit `first`. Returns what `second` returned,
    or the exception it raised (then its transaction is rolled back)."""
    with app.app_context():
        first()
        with ThreadPoolExecutor(1) as pool:
            def in_own_transaction():
                with app.app_context():
                    try:
                        result = second()
                        db.session.commit()
                        return result
                    except Exception as error:  # what the caller asserts on
                        db.session.rollback()
                        return error

            outcome = pool.submit(in_own_transaction)
            wait_until(lambda: outcome.done() or _blocked_backends(watcher), LOCK_WAIT_TIMEOUT,
                       "the second transaction reaching the lock")
            db.session.commit()
            return outcome.result(LOCK_WAIT_TIMEOUT)


@pytest.fixture
def written_autodoc(app):
    """(autodoc id, sponsor id, editor id) of a document whose autodoc is written."""
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        make_document(sponsor, editor, title="Plan", body="The budget and")
        (autodoc_id,) = write_autodocs()
        return autodoc_id, sponsor.id, editor.id


def _regenerate(autodoc_id):
    return autodoc_queue.queue_regeneration(db.session.get(Autodoc, autodoc_id).revision)


def test_two_regenerations_at_once_give_the_second_the_already_waiting_answer(app, watcher, written_autodoc):
    autodoc_id = written_autodoc[0]
    outcome = race(app, watcher, lambda: _regenerate(autodoc_id), lambda: _regenerate(autodoc_id))

    assert isinstance(outcome, autodoc_queue.AlreadyQueued), repr(outcome)
    with app.app_context():
        rows = db.session.execute(select(Autodoc.generation, Autodoc.status).order_by(Autodoc.id)).all()
    assert [tuple(row) for row in rows] == [(1, "done"), (2, "queued")]


def test_two_regenerate_clicks_at_once_on_the_page(app, watcher, login_as):
    """The page's second click flashes the same notice as a later click, not a 500."""
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        make_document(sponsor, make_user("editor"), title="Plan", body="The budget and")
        (autodoc_id,) = write_autodocs()
        document_page = browser.get("/sponsor/documents/1")
        assert document_page.status_code == 200

    response = race(app, watcher, lambda: _regenerate(autodoc_id),
                    lambda: browser.post(f"/sponsor/autodocs/{autodoc_id}/regenerate"))
    assert not isinstance(response, Exception), repr(response)
    assert response.status_code == 302
    assert "already waiting for the writer" in browser.follow(response).get_data(as_text=True)


def test_two_regenerate_calls_at_once_in_the_api(app, watcher, written_autodoc):
    """The API's second call answers 409 already_queued, as a later call does, not 500."""
    from srcflask.models import User
    from srcflask.services import tokens

    autodoc_id, sponsor_id, _ = written_autodoc
    with app.app_context():
        secret = tokens.create_token(db.session.get(User, sponsor_id), "race").secret
        db.session.commit()
    client = app.test_client()

    response = race(app, watcher, lambda: _regenerate(autodoc_id),
                    lambda: client.post(f"/api/v1/autodocs/{autodoc_id}/regenerate",
                                        headers={"Authorization": f"Bearer {secret}"}))
    assert not isinstance(response, Exception), repr(response)
    assert response.status_code == 409, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "already_queued"


# The other check-then-insert code of this shape was already settled by the database; these
# race it the same way so that it stays so.

def test_two_sign_ups_with_one_email_at_once_give_the_second_the_taken_message(app, watcher):
    """users.register_user: the unique index on lower(email), in a savepoint."""
    from srcflask.models import User
    from srcflask.services import users

    def sign_up(email):
        return lambda: users.register_user(name="Ada", email=email, password="a long pass phrase 42",
                                           role="sponsor")

    outcome = race(app, watcher, sign_up("ada@example.org"), sign_up("ADA@example.org"))

    assert isinstance(outcome, users.InvalidAccount), repr(outcome)
    assert outcome.errors == {"email": users.EMAIL_TAKEN}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_two_verdicts_at_once_leave_one_current_and_one_in_history(app, watcher, written_autodoc):
    """reviews.give_verdict: the autodoc's row lock orders the two; the partial unique
    index on the current verdict is never met."""
    from srcflask.models import User, Verdict
    from srcflask.services import reviews

    autodoc_id, _, editor_id = written_autodoc

    def verdict(decision, comment):
        return lambda: reviews.give_verdict(db.session.get(Autodoc, autodoc_id), db.session.get(User, editor_id),
                                            decision, comment)

    outcome = race(app, watcher, verdict("approve", ""), verdict("reject", "Not about the budget."))

    assert not isinstance(outcome, Exception), repr(outcome)
    with app.app_context():
        rows = db.session.execute(select(Verdict.decision, Verdict.current).order_by(Verdict.id)).all()
    assert [tuple(row) for row in rows] == [("approve", False), ("reject", True)]


@pytest.mark.parametrize("first_choice, second_choice", [
    ("immediate", "immediate"),  # two tabs saving the same choice: the second finds it made
    ("immediate", "daily"),      # two tabs saving different ones: the later one stands
])
def test_two_notification_settings_saves_at_once_leave_one_choice(app, watcher, first_choice, second_choice):
    """notifications.set_preferences reads the person's choices, then adds a row for a kind
    that had none: two saves at once both found none and the second one's insert met the
    primary key (a 500). The person's row lock now orders them."""
    from srcflask.models import NotificationPreference, User
    from srcflask.services import notifications

    with app.app_context():
        editor_id = make_user("editor").id
        db.session.commit()

    def save(delivery):
        return lambda: notifications.set_preferences(db.session.get(User, editor_id),
                                                     {notifications.AUTODOC_READY: delivery})

    outcome = race(app, watcher, save(first_choice), save(second_choice))

    assert not isinstance(outcome, Exception), repr(outcome)
    with app.app_context():
        rows = db.session.execute(select(NotificationPreference.kind, NotificationPreference.delivery)).all()
    assert [tuple(row) for row in rows] == [(notifications.AUTODOC_READY, second_choice)]


def test_two_training_set_builds_at_once_make_one_set(app, watcher, tiny_model_dir):  # noqa: F811
    """trainingsets.build checks that no set holds the same pairs, then adds one: two clicks
    at once both passed the check and made two identical sets. The registry's lock now orders
    them, and the second gets the answer a later click gets."""
    from srcflask.models import TrainingSet
    from srcflask.services import registry, trainingsets

    from .factories import approve_documents

    with app.app_context():
        registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
        db.session.commit()
        approve_documents(6)

    outcome = race(app, watcher, trainingsets.build, trainingsets.build)

    assert isinstance(outcome, trainingsets.NotEnoughReviews), repr(outcome)
    assert "already holds exactly these" in str(outcome)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TrainingSet)) == 1
