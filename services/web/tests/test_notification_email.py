"""Notification emails: opt-in per person and per kind, at once (in the notification's own
transaction) or in one daily digest (queued by the mail sender's round, never twice), and
the settings page where a person chooses them."""
import datetime as dt
import re
import threading

import pytest
from sqlalchemy import func, select, update

from srcflask.extensions import db
from srcflask.models import EMAILED_NOTIFICATION_KINDS, Notification, NotificationPreference, OutboxMessage, User
from srcflask.services import documents, leases, notifications, outbox, reviews, users
from srcflask.static.data.processeddata.models import Autodoc

from .auth_admin_helpers import counted_queries
from .factories import make_document, make_user, write_autodocs
from .helpers import html
from .test_mail import SITE_URL, mail_app, send_all, smtp, smtp_port  # noqa: F401  (fixtures)

SETTINGS = "/account/notifications"
DIGEST = "Your srcflask digest"


def choose(user, **choices):
    """`user` chooses these deliveries, as the settings page saves them."""
    notifications.set_preferences(user, choices)
    db.session.commit()


def chose_daily_days_ago(user, days=2):
    """Move `user`'s choices back in time, as if made `days` ago (before the last digest hour)."""
    db.session.execute(update(NotificationPreference).where(NotificationPreference.user_id == user.id)
                       .values(chosen_at=func.now() - dt.timedelta(days=days)))
    db.session.commit()


def current_hour():
    """The hour (UTC) on the database's clock, which the digest goes by."""
    return leases.database_now().astimezone(dt.timezone.utc).hour


def emails_to(user):
    return [(message.subject, message.text_body) for message in outbox.queued_messages(user.email)]


def digests_to(user):
    return [message for message in outbox.queued_messages(user.email) if message.subject.startswith(DIGEST)]


def not_emailed(user):
    db.session.expire_all()
    return db.session.scalars(select(Notification.kind).where(Notification.user_id == user.id,
                                                              Notification.emailed_at.is_(None))).all()


# --- at once ------------------------------------------------------------------------------------


def test_no_notification_is_emailed_unless_its_kind_was_chosen(app_context):
    sponsor, editor = make_user("sponsor"), make_user("editor")
    make_document(sponsor, editor)
    write_autodocs()

    assert sorted(not_emailed(editor)) == ["autodoc_ready", "document_assigned"]
    assert emails_to(editor) == []
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_a_kind_chosen_at_once_is_emailed_once_per_notification(app_context):
    sponsor, editor = make_user("sponsor", name="Sam Sponsor"), make_user("editor", name="Eddie Editor")
    choose(editor, document_assigned="immediate", autodoc_ready="daily")

    first = make_document(sponsor, editor, title="First <doc>")
    second = make_document(sponsor, editor, title="Second")
    write_autodocs()  # autodoc_ready: daily, so not now

    sent = emails_to(editor)
    assert [subject for subject, _ in sent] == [notifications.EMAIL_KINDS["document_assigned"]] * 2
    (first_text, second_text) = [body for _, body in sent]
    assert "Hello Eddie Editor," in first_text
    assert "Sam Sponsor assigned “First <doc>” to you." in first_text
    assert f"http://localhost:5000/editor/documents/{first.id}" in first_text
    assert f"http://localhost:5000/editor/documents/{second.id}" in second_text
    assert f"http://localhost:5000{SETTINGS}" in first_text  # the way to stop them
    assert not_emailed(editor) == ["autodoc_ready", "autodoc_ready"]
    assert "First &lt;doc&gt;" in outbox.queued_messages(editor.email)[0].html_body  # escaped in HTML


def test_the_email_is_written_in_the_notifications_transaction(app_context):
    """A rolled-back change leaves neither the notification nor its email."""
    sponsor, editor = make_user("sponsor"), make_user("editor")
    choose(editor, document_assigned="immediate")

    documents.create_document(sponsor, editor.id, "Never saved", "Body")
    db.session.flush()
    assert len(outbox.queued_messages(editor.email)) == 1  # in the transaction ...
    db.session.rollback()

    assert outbox.queued_messages(editor.email) == []  # ... and gone with it
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_verdict_is_emailed_to_the_sponsor_at_once(app_context):
    sponsor, editor = make_user("sponsor"), make_user("editor", name="Eve")
    choose(sponsor, autodoc_reviewed="immediate")
    make_document(sponsor, editor, title="Reviewed one")
    (autodoc_id,) = write_autodocs()
    autodoc = db.session.get(Autodoc, autodoc_id)

    reviews.give_verdict(autodoc, editor, "approve", "")
    db.session.commit()

    ((subject, body),) = emails_to(sponsor)
    assert subject == notifications.EMAIL_KINDS["autodoc_reviewed"]
    assert "Eve approved the autodoc of “Reviewed one” (version 1)." in body
    assert f"http://localhost:5000/sponsor/autodocs/{autodoc_id}" in body


def test_the_writer_finishing_many_autodocs_asks_for_the_choices_once(app, app_context):
    """autodocs_finished for any number of autodocs and editors: one query reads who wants
    them at once; each of those gets one email per autodoc, the others none."""
    sponsor = make_user("sponsor")
    at_once, daily, off = make_user("editor"), make_user("editor"), make_user("editor")
    choose(at_once, autodoc_ready="immediate")
    choose(daily, autodoc_ready="daily")
    for editor in (at_once, at_once, daily, off, at_once):
        make_document(sponsor, editor)
    autodoc_ids = db.session.scalars(select(Autodoc.id)).all()

    with counted_queries(app) as statements:
        notifications.autodocs_finished(autodoc_ids, notifications.AUTODOC_READY)
        db.session.commit()

    assert sum("notification_preferences" in statement for statement in statements) == 1
    assert [subject for subject, _ in emails_to(at_once)] == [notifications.EMAIL_KINDS["autodoc_ready"]] * 3
    assert emails_to(daily) == emails_to(off) == []
    assert not_emailed(at_once) == ["document_assigned"] * 3  # not chosen: not emailed


@pytest.mark.parametrize("status", ["suspended", "rejected", "erased"])
def test_accounts_that_are_not_approved_get_no_notification_email(app_context, status):
    sponsor, editor = make_user("sponsor"), make_user("editor")
    choose(editor, document_assigned="immediate")
    make_document(sponsor, editor)  # while approved: emailed
    assert len(outbox.queued_messages(editor.email)) == 1
    if status == "erased":  # (its waiting emails and inbox go with its data)
        users.erase(editor, by=make_user("admin"), reason="Asked to be forgotten.")
    else:
        editor.status = status
    db.session.commit()
    emails = db.session.scalar(select(func.count()).select_from(OutboxMessage))

    notifications.document_assigned(make_document(sponsor, make_user("editor")), editor, sponsor)
    db.session.commit()

    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == emails
    assert not_emailed(editor) == ["document_assigned"]


def test_every_kind_that_can_be_emailed_has_a_name_a_link_and_a_role():
    assert set(notifications.EMAIL_KINDS) == set(EMAILED_NOTIFICATION_KINDS) == set(notifications.LINKS)
    by_role = [kind for kinds in notifications.ROLE_EMAIL_KINDS.values() for kind in kinds]
    assert sorted(by_role) == sorted(EMAILED_NOTIFICATION_KINDS)


# --- the daily digest -----------------------------------------------------------------------


def editor_with_daily_news(count=3, **choices):
    """An editor who chose daily for both kinds two days ago, with `count` new documents."""
    sponsor, editor = make_user("sponsor"), make_user("editor", name="Dee Daily")
    choose(editor, **(choices or {"document_assigned": "daily", "autodoc_ready": "daily"}))
    chose_daily_days_ago(editor)
    made = [make_document(sponsor, editor, title=f"Doc {number}") for number in range(count)]
    return editor, made


def test_the_digest_lists_every_new_notification_in_one_email(app_context):
    editor, made = editor_with_daily_news(3)
    write_autodocs()
    assert emails_to(editor) == []  # daily: nothing at once

    assert notifications.send_due_digests(current_hour()) == 1

    (digest,) = digests_to(editor)
    assert digest.subject == f"{DIGEST}: 6 new notifications"
    for document in made:
        assert f"assigned “{document.title}” to you." in digest.text_body
        assert f"The autodoc of “{document.title}” (version 1) is ready for your review." in digest.text_body
        assert f"http://localhost:5000/editor/documents/{document.id}" in digest.text_body
    assert f"http://localhost:5000{SETTINGS}" in digest.text_body
    assert "Doc 0" in digest.html_body
    assert not_emailed(editor) == []


def test_the_digest_is_not_sent_twice(app_context):
    editor, _ = editor_with_daily_news(2)
    hour = current_hour()
    notifications.send_due_digests(hour)
    notifications.send_due_digests(hour)

    assert len(digests_to(editor)) == 1
    # Something new the same day waits for tomorrow's digest.
    make_document(make_user("sponsor"), editor, title="Later that day")
    notifications.send_due_digests(hour)
    assert len(digests_to(editor)) == 1
    assert not_emailed(editor) == ["document_assigned"]


def test_the_next_days_digest_carries_only_what_is_new_and_unread(app_context):
    editor, _ = editor_with_daily_news(2)
    hour = current_hour()
    notifications.send_due_digests(hour)
    sponsor = make_user("sponsor")
    make_document(sponsor, editor, title="Next day news")
    read = make_document(sponsor, editor, title="Already read")
    db.session.execute(update(Notification).where(Notification.document_id == read.id).values(read_at=func.now()))
    db.session.execute(update(User).where(User.id == editor.id).values(digest_sent_at=func.now() - dt.timedelta(days=1)))
    db.session.commit()

    notifications.send_due_digests(hour)

    first, second = digests_to(editor)
    assert second.subject == f"{DIGEST}: 1 new notification"
    assert "Next day news" in second.text_body
    assert "Already read" not in second.text_body and "Doc 0" not in second.text_body


def test_no_digest_when_nothing_is_new(app_context):
    editor, _ = editor_with_daily_news(0)
    assert notifications.send_due_digests(current_hour()) == 1  # due, looked at ...
    assert outbox.queued_messages(editor.email) == []  # ... and nothing to tell
    db.session.refresh(editor)
    assert editor.digest_sent_at is not None


def test_no_digest_before_the_hour(app_context):
    """Yesterday's digest went out after yesterday's hour: today's waits for today's hour,
    though more than twenty hours have passed."""
    editor, _ = editor_with_daily_news(2)
    db.session.execute(update(User).where(User.id == editor.id)
                       .values(digest_sent_at=func.now() - dt.timedelta(hours=20)))
    db.session.commit()

    assert notifications.send_due_digests((current_hour() + 1) % 24) == 0
    assert digests_to(editor) == []
    assert notifications.send_due_digests(current_hour()) == 1
    assert len(digests_to(editor)) == 1


def test_the_first_digest_waits_for_the_first_hour_after_daily_was_chosen(app_context):
    """Just chosen: not due until the digest hour comes round (nor does the digest carry what
    came before the choice)."""
    sponsor, editor = make_user("sponsor"), make_user("editor")
    make_document(sponsor, editor, title="Before the choice")
    choose(editor, document_assigned="daily")
    make_document(sponsor, editor, title="After the choice")

    assert notifications.send_due_digests(current_hour()) == 0
    # A day on: the choice was made a day ago, the first notification before it.
    chose_daily_days_ago(editor, days=1)
    db.session.execute(update(Notification).where(Notification.message.contains("Before the choice"))
                       .values(created_at=func.now() - dt.timedelta(days=2)))
    db.session.commit()
    notifications.send_due_digests(current_hour())

    (digest,) = digests_to(editor)
    assert "After the choice" in digest.text_body and "Before the choice" not in digest.text_body


def test_suspended_accounts_get_no_digest(app_context):
    editor, _ = editor_with_daily_news(2)
    editor.status = "suspended"
    db.session.commit()

    assert notifications.send_due_digests(current_hour()) == 0
    assert digests_to(editor) == []


def test_a_sender_holding_a_digest_makes_the_other_skip_it(app, app_context, monkeypatch):
    """Two digest passes at once on PostgreSQL: while one holds a person's digest (between
    locking the row and committing), the other skips that person; once the first commits,
    a pass that still had them on its list finds the digest done."""
    editor, _ = editor_with_daily_news(2)
    hour = current_hour()
    holding, release = threading.Event(), threading.Event()
    queue_email = outbox.queue_email

    def slow_queue_email(*args, **kwargs):
        if threading.current_thread().name == "first-sender":
            holding.set()
            release.wait(30)
        return queue_email(*args, **kwargs)

    monkeypatch.setattr(outbox, "queue_email", slow_queue_email)
    results = {}

    def first_sender():
        with app.app_context():
            results["first"] = notifications.send_due_digests(hour)

    first = threading.Thread(target=first_sender, name="first-sender")
    first.start()
    try:
        assert holding.wait(30)
        due_at = notifications.digest_due_at(leases.database_now(), hour)
        db.session.commit()
        assert notifications._send_digest(editor.id, due_at) is False  # locked: skipped
        db.session.commit()
    finally:
        release.set()
        first.join(30)
    make_document(make_user("sponsor"), editor, title="Just after")  # news for tomorrow's digest
    assert notifications._send_digest(editor.id, due_at) is False  # done: not due any more
    db.session.commit()

    assert results["first"] == 1
    assert len(digests_to(editor)) == 1
    assert not_emailed(editor) == ["document_assigned"]


def test_many_senders_at_once_send_each_digest_once(app, app_context):
    """Eight passes started together over twenty people: one digest each, every
    notification in exactly one of them."""
    people = [editor_with_daily_news(1)[0] for _ in range(20)]
    hour = current_hour()
    start = threading.Barrier(8)
    errors = []

    def sender():
        try:
            with app.app_context():
                start.wait(30)
                notifications.send_due_digests(hour)
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    for person in people:
        (digest,) = digests_to(person)
        assert digest.subject == f"{DIGEST}: 1 new notification"
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 20
    assert db.session.scalar(select(func.count()).select_from(Notification)
                             .where(Notification.emailed_at.is_(None))) == 0


# --- through the real sender ----------------------------------------------------------------


@pytest.fixture
def digest_app(mail_app):
    """The mail app, with today's digest hour just past."""
    with mail_app.app_context():
        mail_app.config["DIGEST_HOUR_UTC"] = current_hour()
        db.session.commit()
    return mail_app


def test_the_sender_delivers_the_emails_and_queues_the_digest_in_its_round(digest_app, smtp):
    with digest_app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor", name="Both Ways")
        choose(editor, document_assigned="immediate", autodoc_ready="daily")
        chose_daily_days_ago(editor)
        document = make_document(sponsor, editor, title="Delivered")
        write_autodocs()

        send_all(digest_app)
        send_all(digest_app)  # a second round: nothing more

        at_once, digest = smtp.to(editor.email)
    assert at_once.subject == notifications.EMAIL_KINDS["document_assigned"]
    assert f"{SITE_URL}/editor/documents/{document.id}" in at_once.text
    assert f'href="{SITE_URL}/editor/documents/{document.id}"' in at_once.html
    assert f'href="{SITE_URL}{SETTINGS}"' in at_once.html
    assert digest.subject == f"{DIGEST}: 1 new notification"
    assert "The autodoc of “Delivered” (version 1) is ready for your review." in digest.text
    assert f"{SITE_URL}/editor/autodocs/" in digest.text
    assert f"{SITE_URL}{SETTINGS}" in digest.text


def test_one_round_queues_and_delivers_every_due_digest_a_batch_at_a_time(digest_app, smtp, monkeypatch):
    monkeypatch.setattr(notifications, "DIGEST_BATCH", 2)
    with digest_app.app_context():
        people = [editor_with_daily_news(1)[0] for _ in range(5)]
        send_all(digest_app)

        for person in people:
            (digest,) = smtp.to(person.email)
            assert digest.subject == f"{DIGEST}: 1 new notification"
        assert outbox.outbox_depth() == {}  # all sent


def test_flask_mail_send_until_idle_sends_the_digest(digest_app, smtp):
    with digest_app.app_context():
        editor, _ = editor_with_daily_news(1)
    result = digest_app.test_cli_runner().invoke(args=["mail", "send", "--until-idle"])

    assert result.exit_code == 0, result.output
    (digest,) = smtp.to(editor.email)
    assert digest.subject == f"{DIGEST}: 1 new notification"


# --- the settings page ------------------------------------------------------------------------


def radios(page):
    """{kind: checked value} on the settings page."""
    checked = {}
    for tag in re.findall(r"<input [^>]*>", page):
        if 'type="radio"' in tag and re.search(r"\bchecked\b", tag):
            checked[re.search(r'name="(\w+)"', tag).group(1)] = re.search(r'value="(\w+)"', tag).group(1)
    return checked


@pytest.mark.parametrize("role, kinds, others", [
    ("editor", ["autodoc_ready", "document_assigned"], ["autodoc_failed", "autodoc_reviewed"]),
    ("sponsor", ["autodoc_failed", "autodoc_reviewed"], ["autodoc_ready", "document_assigned"]),
])
def test_the_page_offers_the_kinds_of_ones_role_all_off_at_first(login_as, role, kinds, others):
    browser, _ = login_as(role)
    page = html(browser.get(SETTINGS))

    for kind in kinds:
        assert f'name="{kind}"' in page and notifications.EMAIL_KINDS[kind] in page
    for kind in others:
        assert f'name="{kind}"' not in page
    assert radios(page) == dict.fromkeys(kinds, "off")
    assert "from 07:00 UTC" in page  # the digest hour


def test_an_admin_is_told_there_is_nothing_to_choose(login_as):
    browser, _ = login_as("admin")
    page = html(browser.get(SETTINGS))
    assert "Your role receives no notifications that can be emailed" in page
    assert 'type="radio"' not in page


def test_choices_are_saved_and_shown(app, login_as):
    browser, editor = login_as("editor")
    response = browser.post(SETTINGS, {"autodoc_ready": "daily", "document_assigned": "immediate",
                                       "autodoc_failed": "immediate"})  # not an editor's: ignored

    assert (response.status_code, response.headers["Location"]) == (302, SETTINGS)
    page = html(browser.follow(response))
    assert "Your notification emails were saved." in page
    assert radios(page) == {"autodoc_ready": "daily", "document_assigned": "immediate"}
    with app.app_context():
        saved = dict(db.session.execute(select(NotificationPreference.kind, NotificationPreference.delivery)
                                        .where(NotificationPreference.user_id == editor.id)).all())
    assert saved == {"autodoc_ready": "daily", "document_assigned": "immediate"}

    response = browser.post(SETTINGS, {"autodoc_ready": "off", "document_assigned": "immediate"})
    assert "Your notification emails were saved." in html(browser.follow(response))
    response = browser.post(SETTINGS, {"autodoc_ready": "off", "document_assigned": "immediate"})
    assert "Nothing changed." in html(browser.follow(response))
    with app.app_context():
        assert db.session.execute(select(NotificationPreference.kind, NotificationPreference.delivery)).all() == [
            ("document_assigned", "immediate")]  # off: no row


def test_a_changed_delivery_starts_from_now_an_unchanged_one_keeps_its_time(app_context):
    editor = make_user("editor")
    choose(editor, autodoc_ready="daily", document_assigned="daily")
    chose_daily_days_ago(editor)
    before = dict(db.session.execute(select(NotificationPreference.kind, NotificationPreference.chosen_at)).all())

    choose(editor, autodoc_ready="daily", document_assigned="immediate")

    db.session.expire_all()
    after = dict(db.session.execute(select(NotificationPreference.kind, NotificationPreference.chosen_at)).all())
    assert after["autodoc_ready"] == before["autodoc_ready"]
    assert after["document_assigned"] > before["document_assigned"]


@pytest.mark.parametrize("form, message", [
    ({"autodoc_ready": "hourly", "document_assigned": "daily"}, "Choose Off, At once, Daily digest."),
    ({"autodoc_ready": "daily"}, "Choose Off, At once, Daily digest."),  # one missing
    ({"autodoc_ready": "", "document_assigned": "daily"}, "Choose Off, At once, Daily digest."),
])
def test_a_choice_the_page_does_not_offer_is_refused_and_nothing_is_saved(app, login_as, form, message):
    browser, _ = login_as("editor")
    response = browser.post(SETTINGS, form)

    assert response.status_code == 400
    assert message in html(response)
    assert "invalid-feedback" in html(response)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(NotificationPreference)) == 0


def test_the_service_refuses_kinds_of_another_role_and_unknown_deliveries(app_context):
    editor = make_user("editor")
    with pytest.raises(notifications.InvalidPreferences, match="does not receive"):
        notifications.set_preferences(editor, {"autodoc_reviewed": "daily"})
    with pytest.raises(notifications.InvalidPreferences, match="Choose one of"):
        notifications.set_preferences(editor, {"autodoc_ready": "weekly"})
    assert db.session.scalar(select(func.count()).select_from(NotificationPreference)) == 0


def test_saving_needs_the_sessions_csrf_token(app, login_as):
    browser, _ = login_as("sponsor")
    response = browser.post(SETTINGS, {"autodoc_failed": "daily", "autodoc_reviewed": "daily"}, csrf=False)
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(NotificationPreference)) == 0


@pytest.mark.parametrize("page", ["/account/", "/notifications/"])
def test_the_account_page_and_the_notifications_lead_to_the_settings(login_as, page):
    browser, _ = login_as("sponsor")
    assert f'href="{SETTINGS}"' in html(browser.get(page))

