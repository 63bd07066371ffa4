"""The admin's Models pages, end to end through the real registry, training sets and
training runs: the list with its figures, promotion through the gate (refused, overridden
with a reason, two admins at once), rollback, building a training set, starting,
following and cancelling a run."""
import re
import threading

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import AuditEvent, TrainingRun, TrainingSet, WriterModel
from srcflask.services import registry, training

from .factories import approve_documents, make_registry, make_user
from .helpers import html
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)


@pytest.fixture
def data_dir(app, tmp_path, monkeypatch):
    """Training sets are written to a temporary folder, not the installation's."""
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))
    return tmp_path / "trainingsets"


@pytest.fixture
def world(app, data_dir, tiny_model_dir):  # noqa: F811
    """make_registry's rows, by id. Tests read the database in app contexts of their own,
    never around a request: a request would share it (and its `g`, where the CSRF token is)."""
    with app.app_context():
        rows = make_registry(tiny_model_dir, make_user("admin"))
        return {name: row.id for name, row in rows.items()}


@pytest.fixture
def admin(login_as):
    client, _ = login_as("admin")
    return client


def evaluate(app, world, **perplexities):
    """Record validation perplexities on the candidate's training set, e.g. candidate=9.5."""
    with app.app_context():
        training_set = db.session.get(TrainingSet, world["training_set"])
        for name, perplexity in perplexities.items():
            registry.record_evaluation(db.session.get(WriterModel, world[name]), training_set, 2.0, perplexity, 120)
        db.session.commit()


def read(app, query):
    """query() in an app context of its own."""
    with app.app_context():
        return query()


def states(app, *model_ids):
    return read(app, lambda: tuple(db.session.get(WriterModel, model_id).state for model_id in model_ids))


def audit_actions(app):
    return read(app, lambda: [(event.action, event.target_id, event.details.get("reason")) for event in
                              db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("model.%"))
                                                 .order_by(AuditEvent.id))])


def textarea(page, name):
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>\s*(.*?)</textarea>', page, re.S)
    return match.group(1) if match else None


# --- the registry ------------------------------------------------------------------------------

def test_the_models_page_lists_every_model_with_its_figures(app, world, admin):
    files = read(app, lambda: db.session.get(WriterModel, world["active"]).files)

    page = html(admin.get("/admin/models"))

    for label in ("tiny v1", "tiny v2", "tiny v3"):
        assert label in page
    active_row = re.search(rf'<tr id="model-{world["active"]}"[^>]*>(.*?)</tr>', page, re.S)
    assert 'class="table-success"' in active_row.group(0)
    assert f">{files['tf_model.h5'][:12]}</code>" in active_row.group(1)  # short; the detail page has them all
    # The four approved autodocs were written by v2: 100% of 4 reviewed.
    assert re.search(r">4</td>\s*<td[^>]*>100% <span[^>]*>\(4/4\)", active_row.group(1))
    assert f'href="/admin/models/{world["candidate"]}/promote"' in page
    assert f'href="/admin/models/{world["retired"]}/rollback"' in page
    assert 'href="/admin/models"' in page  # the navigation's link

    detail = html(admin.get(f"/admin/models/{world['active']}"))
    for name, digest in files.items():
        assert name in detail and digest in detail


def test_the_detail_page_shows_evaluations_and_an_integrity_error(app, world, admin):
    evaluate(app, world, candidate=7.25)
    with app.app_context():
        registry.record_integrity(world["candidate"], "The files of tiny v3 no longer match.")
        db.session.commit()

    page = html(admin.get(f"/admin/models/{world['candidate']}"))

    assert "7.25" in page and f"#{world['training_set']}" in page
    assert "The files of tiny v3 no longer match." in page
    assert "The files of tiny v3 no longer match." in html(admin.get("/admin/models"))


def test_a_worse_candidate_is_refused_then_promoted_with_an_override_and_its_reason(app, world, admin):
    evaluate(app, world, candidate=30.0, active=20.0)
    path = f"/admin/models/{world['candidate']}/promote"

    comparison = html(admin.get(path))
    assert "30.00" in comparison and "20.00" in comparison and "The gate refuses it." in comparison

    refused = admin.post(path, {"reason": "It reads better to me."})
    assert refused.status_code == 409
    assert "does not beat" in html(refused)
    assert textarea(html(refused), "reason") == "It reads better to me."  # what was typed is kept

    no_reason = admin.post(path, {"reason": "  ", "override": "y"})
    assert no_reason.status_code == 400
    assert "Write why you override the promotion gate." in html(no_reason)
    assert re.search(r'<input checked[^>]*name="override"', html(no_reason))
    assert states(app, world["candidate"], world["active"]) == ("candidate", "active")

    promoted = admin.post(path, {"reason": "The editors asked for it.", "override": "y"})
    assert promoted.status_code == 302 and promoted.headers["Location"] == "/admin/models"
    assert "tiny v3 is now the active model" in html(admin.follow(promoted))
    assert states(app, world["candidate"], world["active"]) == ("active", "retired")
    assert audit_actions(app)[-1] == ("model.override", world["candidate"], "The editors asked for it.")


def test_a_better_candidate_is_promoted_and_an_earlier_model_rolled_back_to(app, world, admin):
    evaluate(app, world, candidate=9.5, active=20.0)
    assert "The gate lets it through." in html(admin.get(f"/admin/models/{world['candidate']}/promote"))

    promoted = admin.post(f"/admin/models/{world['candidate']}/promote", {"reason": ""})
    assert promoted.status_code == 302
    assert audit_actions(app)[-1] == ("model.promote", world["candidate"], "")

    rollback = f"/admin/models/{world['retired']}/rollback"
    no_reason = admin.post(rollback, {"reason": ""})
    assert no_reason.status_code == 400 and "Write why you roll back." in html(no_reason)
    rolled = admin.post(rollback, {"reason": "v3 writes too short."})
    assert rolled.status_code == 302
    assert "Rolled back: tiny v1 is the active model again." in html(admin.follow(rolled))
    assert states(app, world["retired"], world["candidate"]) == ("active", "retired")
    assert audit_actions(app)[-1] == ("model.rollback", world["retired"], "v3 writes too short.")

    again = admin.post(rollback, {"reason": "Once more."})
    assert again.status_code == 409 and "tiny v1 is already the active model." in html(again)
    # v3 was active: it comes back by a rollback, not a promotion.
    assert admin.post(f"/admin/models/{world['candidate']}/promote", {"reason": "x"}).status_code == 409


def test_two_admins_promoting_at_the_same_moment_get_one_clear_outcome_each(app, world, login_as):
    evaluate(app, world, candidate=9.5, active=20.0)
    browsers = [login_as("admin")[0] for _ in range(2)]
    for browser in browsers:
        browser.csrf_token()
    start = threading.Barrier(2)
    answers = []

    def promote(browser):
        start.wait()
        answers.append(browser.post(f"/admin/models/{world['candidate']}/promote", {"reason": "Better."}))

    threads = [threading.Thread(target=promote, args=(browser,)) for browser in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers) == [302, 409]
    refused = next(answer for answer in answers if answer.status_code == 409)
    assert "already the active model" in html(refused)
    assert read(app, lambda: db.session.scalars(select(WriterModel.id).where(WriterModel.state == "active")).all()) \
        == [world["candidate"]]
    assert [action for action, *_ in audit_actions(app)].count("model.promote") == 1


# --- training sets -----------------------------------------------------------------------------

def test_building_a_training_set_is_refused_until_enough_documents_are_approved(app, data_dir, admin,
                                                                                 tiny_model_dir):  # noqa: F811
    with app.app_context():
        registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
        db.session.commit()
        approve_documents(1)

    refused = admin.post("/admin/models/training-sets")
    assert refused.status_code == 302 and refused.headers["Location"] == "/admin/models/training"
    page = html(admin.follow(refused))
    assert "Approve autodocs of 3 more documents first." in page
    assert "1 review since the start" in page
    assert read(app, lambda: db.session.scalar(select(TrainingSet.id))) is None

    with app.app_context():
        approve_documents(3)
    built = admin.post("/admin/models/training-sets")
    page = html(admin.follow(built))
    set_id, sha256 = read(app, lambda: db.session.execute(select(TrainingSet.id, TrainingSet.sha256)).one())
    assert f"Training set #{set_id} is built" in page
    assert sha256[:12] in page and "0 reviews since the newest training set" in page
    assert (data_dir / f"{sha256}.jsonl").is_file()


# --- training runs -----------------------------------------------------------------------------

def run_row(page, run_id):
    return re.search(rf'<tr id="run-{run_id}">(.*?)</tr>', page, re.S).group(1)


def newest_run(app):
    return read(app, lambda: db.session.execute(
        select(TrainingRun.id, TrainingRun.status, TrainingRun.parent_id, TrainingRun.settings)
        .order_by(TrainingRun.id.desc()).limit(1)).one())


def test_an_admin_starts_a_run_follows_its_progress_and_cancels_it(app, world, admin):
    started = admin.post("/admin/models/runs",
                         {"parent": world["candidate"], "training_set": world["training_set"], "epochs": "2"})
    assert started.status_code == 302 and started.headers["Location"] == "/admin/models/training"
    run_id, status, parent_id, settings = newest_run(app)
    assert (status, parent_id, settings["epochs"]) == ("queued", world["candidate"], 2)
    page = html(admin.follow(started))
    assert f"Training run #{run_id} is queued" in page
    row = run_row(page, run_id)
    assert f'data-run-poll="/admin/models/runs/{run_id}/progress"' in row and "Waiting for the trainer." in row
    assert f'action="/admin/models/runs/{run_id}/cancel"' in row
    assert '<script src="/static/js/models.js" defer></script>' in page and "<script>" not in page

    progress = admin.get(f"/admin/models/runs/{run_id}/progress").get_json()
    assert (progress["status"], progress["live"], progress["progress"]) == ("queued", True, None)

    cancelled = admin.post(f"/admin/models/runs/{run_id}/cancel")
    assert cancelled.status_code == 302
    assert f"Training run #{run_id} is cancelled." in html(admin.follow(cancelled))
    assert newest_run(app).status == "cancelled"
    finished = admin.get(f"/admin/models/runs/{run_id}/progress").get_json()
    assert (finished["status"], finished["live"]) == ("cancelled", False)

    again = admin.post(f"/admin/models/runs/{run_id}/cancel")
    assert again.status_code == 302
    assert f"Training run #{run_id} has already been cancelled: there is nothing to cancel." in \
        html(admin.follow(again))


def test_a_running_runs_progress_is_served_as_json_with_its_html(app, world, admin):
    with app.app_context():
        claim = training.claim_run("trainer-test", 60)
        assert claim.run_id == world["run"]
        assert training.report_progress(claim, {"epoch": 1, "epochs": 2, "step": 3, "steps": 10, "loss": 1.23456,
                                                "seconds_left": 42.0})

    answer = admin.get(f"/admin/models/runs/{claim.run_id}/progress")

    assert answer.status_code == 200 and answer.mimetype == "application/json"
    run = answer.get_json()
    assert (run["status"], run["live"], run["progress"]["step"]) == ("running", True, 3)
    assert "Epoch 1/2 · step 3/10 · loss 1.2346 · about 42 s left" in run["html"]
    assert 'value="15"' in run["html"]  # (0 × 10 + 3) of 20 steps
    assert "Epoch 1/2" in run_row(html(admin.get("/admin/models/training")), claim.run_id)

    cancelled = admin.post(f"/admin/models/runs/{claim.run_id}/cancel")
    assert f"Training run #{claim.run_id} stops when its trainer reaches the next step" in html(admin.follow(cancelled))
    assert "Cancelling at the next step." in admin.get(f"/admin/models/runs/{claim.run_id}/progress").get_json()["html"]
    with app.app_context():
        assert training.report_progress(claim, {"epoch": 1, "epochs": 2, "step": 4, "steps": 10}) is False


def test_runs_the_trainer_would_refuse_keep_the_form(app, world, admin):
    bad_epochs = admin.post("/admin/models/runs",
                            {"parent": world["active"], "training_set": world["training_set"], "epochs": "0"})
    assert bad_epochs.status_code == 409
    assert "The training settings are not valid: epochs" in html(bad_epochs)
    assert re.search(r'name="epochs"[^>]*value="0"', html(bad_epochs))

    retired = admin.post("/admin/models/runs",
                         {"parent": world["retired"], "training_set": world["training_set"], "epochs": "1"})
    assert retired.status_code == 409 and "tiny v1 is retired" in html(retired)

    not_a_number = admin.post("/admin/models/runs",
                              {"parent": world["active"], "training_set": "99999", "epochs": "many"})
    assert not_a_number.status_code == 400
    assert newest_run(app).id == world["run"]


def test_the_models_script_is_served(client):
    response = client.get("/static/js/models.js")
    assert response.status_code == 200 and b"data-run-poll" in response.data


def test_the_pages_say_what_to_do_first_while_the_registry_is_empty(admin):
    models = html(admin.get("/admin/models"))
    assert "No model is active: register one" in models

    training_page = html(admin.get("/admin/models/training"))
    assert "A run needs a registered model and a training set: build one first." in training_page
    assert "0 reviews since the start: no training set yet." in training_page
    assert "No training run yet." in training_page


@pytest.mark.parametrize("reason, message", [
    ("Why\x00not", "Remove the NUL character"),
    ("x" * 501, "Field cannot be longer than 500 characters."),
])
def test_reasons_the_audit_log_cannot_keep_are_refused_and_nothing_changes(app, world, admin, reason, message):
    audited = audit_actions(app)
    for path, data in ((f"/admin/models/{world['candidate']}/promote", {"reason": reason, "override": "y"}),
                       (f"/admin/models/{world['retired']}/rollback", {"reason": reason})):
        refused = admin.post(path, data)
        assert refused.status_code == 400 and message in html(refused), path
    assert states(app, world["retired"], world["active"], world["candidate"]) == ("retired", "active", "candidate")
    assert audit_actions(app) == audited
