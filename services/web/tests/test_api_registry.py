"""The model registry's API, end to end through the real services: editors and admins read
the models, training sets and runs; admins promote (through the gate), roll back, start
and cancel runs, with the same refusals as the pages as JSON errors. (Who may call what,
for every kind of caller, is in test_api.py's matrix.)"""
import threading

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.models import AuditEvent, TrainingRun, TrainingSet, WriterModel
from srcflask.services import registry

from .factories import make_registry, make_user
from .test_api import api, assert_error, make_token  # noqa: F401  (api is a fixture)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)


@pytest.fixture
def world(app, app_context, tmp_path, monkeypatch, tiny_model_dir):  # noqa: F811
    """make_registry's rows by id, and the tokens of an admin and an editor."""
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))
    admin = make_user("admin")
    rows = make_registry(tiny_model_dir, admin)
    world = {name: row.id for name, row in rows.items()}
    world.update(admin=make_token(admin), editor=make_token(make_user("editor")),
                 sponsor=make_token(make_user("sponsor")))
    return world


def evaluate(world, **perplexities):
    training_set = db.session.get(TrainingSet, world["training_set"])
    for name, perplexity in perplexities.items():
        registry.record_evaluation(db.session.get(WriterModel, world[name]), training_set, 2.0, perplexity, 120)
    db.session.commit()


def active_ids():
    db.session.expire_all()
    return db.session.scalars(select(WriterModel.id).where(WriterModel.state == "active")).all()


def test_editors_and_admins_read_the_registry_sponsors_do_not(api, world):
    for reader in ("editor", "admin"):
        models = api("GET", "/api/v1/models", world[reader]).get_json()
        assert [(m["label"], m["state"]) for m in models["items"]] == [
            ("tiny v3", "candidate"), ("tiny v2", "active"), ("tiny v1", "retired")]
        assert models["links"]["self"] == "/api/v1/models?page=1"
    assert_error(api("GET", "/api/v1/models", world["sponsor"]), 403, "forbidden")

    evaluate(world, active=12.5)
    model = api("GET", f"/api/v1/models/{world['active']}", world["editor"]).get_json()
    assert model["parent"] == {"id": world["retired"], "label": "tiny v1"}
    assert model["figures"] == {"written": 4, "approved": 4, "reviewed": 4, "approval_rate": 1.0,
                                "median_write_seconds": model["figures"]["median_write_seconds"]}
    assert [(e["training_set_id"], e["perplexity"]) for e in model["evaluations"]] == [(world["training_set"], 12.5)]
    assert set(model["files"]) >= {"config.json", "tf_model.h5"} and len(model["files"]["tf_model.h5"]) == 64
    assert_error(api("GET", "/api/v1/models/99999", world["editor"]), 404, "not_found")

    sets = api("GET", "/api/v1/training-sets", world["editor"]).get_json()["items"]
    assert [(s["id"], s["train_documents"] + s["validation_documents"]) for s in sets] == [(world["training_set"], 4)]

    runs = api("GET", "/api/v1/training-runs?status=queued", world["editor"]).get_json()
    assert [(r["id"], r["parent"]["label"], r["settings"]["epochs"]) for r in runs["items"]] == [
        (world["run"], "tiny v2", 1)]
    assert runs["links"]["self"] == "/api/v1/training-runs?status=queued&page=1"
    assert api("GET", "/api/v1/training-runs?status=failed", world["editor"]).get_json()["total"] == 0
    run = api("GET", f"/api/v1/training-runs/{world['run']}", world["editor"]).get_json()
    assert (run["status"], run["progress"], run["result_model"]) == ("queued", None, None)


def test_promotion_through_the_gate_with_an_override_that_needs_a_reason(api, world):
    evaluate(world, candidate=30.0, active=20.0)
    path = f"/api/v1/models/{world['candidate']}/promote"

    refused = assert_error(api("POST", path, world["admin"], json={}), 409, "gate_refused")
    assert "does not beat" in refused["message"]
    no_reason = assert_error(api("POST", path, world["admin"], json={"override": True, "reason": " "}),
                             400, "validation_error")
    assert no_reason["details"] == {"json": {"reason": ["Write why you override the promotion gate."]}}
    assert_error(api("POST", path, world["editor"], json={"override": True, "reason": "x"}), 403, "forbidden")
    assert active_ids() == [world["active"]]

    promoted = api("POST", path, world["admin"], json={"override": True, "reason": "The editors prefer it."})
    assert promoted.status_code == 200 and promoted.get_json()["state"] == "active"
    assert active_ids() == [world["candidate"]]
    event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (event.action, event.target_id, event.details["reason"]) == (
        "model.override", world["candidate"], "The editors prefer it.")
    assert_error(api("POST", path, world["admin"], json={}), 409, "already_active")


def test_rollback_needs_a_reason_and_an_earlier_model(api, world):
    path = f"/api/v1/models/{world['retired']}/rollback"
    missing = assert_error(api("POST", path, world["admin"], json={"reason": ""}), 400, "validation_error")
    assert missing["details"] == {"json": {"reason": ["Write why you roll back."]}}
    never_active = f"/api/v1/models/{world['candidate']}/rollback"
    assert_error(api("POST", never_active, world["admin"], json={"reason": "Try it."}), 409, "not_a_candidate")

    rolled = api("POST", path, world["admin"], json={"reason": "v2 writes too short."})

    assert rolled.status_code == 200 and rolled.get_json()["state"] == "active"
    assert active_ids() == [world["retired"]]
    assert_error(api("POST", path, world["admin"], json={"reason": "Again."}), 409, "already_active")


def test_two_admins_promoting_at_the_same_moment_get_one_clear_outcome_each(app, api, world):
    evaluate(world, candidate=9.5, active=20.0)
    second = make_token(make_user("admin"))
    start = threading.Barrier(2)
    answers = []

    def promote(token):
        client = app.test_client()  # its own: a request in a thread has its own app context
        start.wait()
        answers.append(client.post(f"/api/v1/models/{world['candidate']}/promote", json={"reason": "Better."},
                                   headers={"Authorization": f"Bearer {token}"}))

    threads = [threading.Thread(target=promote, args=(token,)) for token in (world["admin"], second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers) == [200, 409]
    assert_error(next(a for a in answers if a.status_code == 409), 409, "already_active")
    assert active_ids() == [world["candidate"]]


def test_admins_start_and_cancel_runs(api, world):
    started = api("POST", "/api/v1/training-runs", world["admin"],
                  json={"parent_id": world["candidate"], "training_set_id": world["training_set"], "epochs": 2})
    assert started.status_code == 201
    run = started.get_json()
    assert started.headers["Location"] == f"/api/v1/training-runs/{run['id']}"
    assert (run["status"], run["parent"]["id"], run["settings"]["epochs"]) == ("queued", world["candidate"], 2)

    cancelled = api("POST", f"/api/v1/training-runs/{run['id']}/cancel", world["admin"])
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    finished = assert_error(api("POST", f"/api/v1/training-runs/{run['id']}/cancel", world["admin"]),
                            409, "run_finished")
    assert finished["message"] == f"Training run #{run['id']} has already been cancelled: there is nothing to cancel."
    assert_error(api("POST", "/api/v1/training-runs/99999/cancel", world["admin"]), 404, "not_found")


@pytest.mark.parametrize("body, status, code", [
    ({"parent_id": "retired", "training_set_id": "set"}, 409, "training_refused"),  # a retired parent
    ({"parent_id": 99999, "training_set_id": "set"}, 409, "training_refused"),  # no such model
    ({"parent_id": "active", "training_set_id": "set", "epochs": 0}, 409, "training_refused"),
    ({"parent_id": "active"}, 400, "validation_error"),
    ({"parent_id": "active", "training_set_id": "set", "epochs": "3"}, 400, "validation_error"),
])
def test_runs_the_trainer_would_refuse_are_refused_before_anything_is_queued(api, world, body, status, code):
    names = {"parent_id": ("retired", "active"), "training_set_id": ("set",)}
    body = {key: world["training_set" if value == "set" else value]
            if key in names and value in names[key] else value for key, value in body.items()}

    assert_error(api("POST", "/api/v1/training-runs", world["admin"], json=body), status, code)

    assert db.session.scalars(select(TrainingRun.id)).all() == [world["run"]]


def test_a_run_started_by_a_request_is_claimed_with_its_request_id(api, world):
    """The trainer's lines about a run name the request that queued it (logging_setup stamps
    the run's row; the claim carries it to srcflask/trainer.py)."""
    from srcflask.services import training

    started = api("POST", "/api/v1/training-runs", world["admin"], headers={"X-Request-ID": "start-run-01"},
                  json={"parent_id": world["candidate"], "training_set_id": world["training_set"], "epochs": 1})
    assert started.status_code == 201
    claims = {}
    while (claim := training.claim_run("tests", 60)) is not None:
        claims[claim.run_id] = claim.request_id
    assert claims[started.get_json()["id"]] == "start-run-01"
    assert set(claims.values()) == {None, "start-run-01"}  # the factory's run was queued outside a request
