"""Shadow drafts are invisible everywhere a real autodoc is shown or counted.

One world with shadow drafts queued, running, done and failed beside real autodocs in every
state, each draft with a distinctive text; every page, JSON answer, export and figure of real
autodocs is taken, then the shadow drafts are deleted — the twin world without them, same ids
and times — and everything is taken again: it must be the same, and the distinctive texts
must appear nowhere. (The editor's blind comparison on the review page is where a written
draft is meant to be shown, and until the editor chooses, the editor reads its autodoc's text
nowhere else: its own tests are tests/test_comparisons.py.)"""
import datetime as dt
import json
import re

from sqlalchemy import func, select, text, update

from srcflask.extensions import db
from srcflask.models import Notification, ShadowDraft
from srcflask.services import autodoc_queue, registry, reviews, shadow_drafts, tokens, trainingsets
from srcflask.services.documents import update_document
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, write_autodocs
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

SHADOW = "SHADOWTEXT"


def build_world(app, login_as, tiny_model_dir, shadows):  # noqa: F811
    """Real autodocs done (one approved), running and queued; with `shadows`, shadow drafts
    done, running, failed and queued beside them. Returns what the snapshot needs. The
    browsers' requests run outside any app context of the test's (each request then has
    its own, as in production)."""
    app.config["SHADOW_SHARE"] = 1.0 if shadows else 0.0
    admin_client, _ = login_as("admin", name="Ada Admin", email="ada@example.org")
    sponsor_client, sponsor = login_as("sponsor", name="Sam Sponsor", email="sam@example.org")
    editor_client, editor = login_as("editor", name="Eve Editor", email="eve@example.org")
    with app.app_context():
        return {"clients": {"admin": admin_client, "sponsor": sponsor_client, "editor": editor_client},
                **_build(sponsor, editor, tiny_model_dir, shadows)}


def _build(sponsor, editor, tiny_model_dir, shadows):  # noqa: F811
    sponsor, editor = db.session.merge(sponsor), db.session.merge(editor)
    active = registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
    registry.register_folder(tiny_model_dir, kind="retrained", name="tiny", parent=active)
    db.session.commit()

    first = make_document(sponsor, editor, title="Approved one", body="The committee reviewed the budget and")
    second = make_document(sponsor, editor, title="Written one", body="The project started in spring and")
    third = make_document(sponsor, editor, title="Failing one", body="The writer runs in one thread and")
    written = write_autodocs(lambda job: f" real text of autodoc {job.autodoc_id}", model_id=active.id)
    if shadows:  # no real autodoc waits: the drafts are claimed, one written, one being written, one failed
        done, running, failing = (shadow_drafts.claim_jobs("shadow-writer", 1, 600, 1)[0] for _ in range(3))
        assert done.autodoc_id == written[0]  # the pair of the snapshot's "paired"
        assert shadow_drafts.complete_job(done, "p", f" {SHADOW} done", {"model_id": done.model_id},
                                          done.model_id)
        assert shadow_drafts.fail_job(failing, f"RuntimeError: {SHADOW} failed", 1)
    reviews.give_verdict(db.session.get(Autodoc, written[0]), editor, "approve", "")
    # The writer's pace (ETAs, medians) from the same durations in both worlds, not the run's own.
    db.session.execute(update(Autodoc).where(Autodoc.status == "done")
                       .values(finished_at=Autodoc.started_at + dt.timedelta(seconds=2)))
    db.session.commit()

    # Then real work arrives: one being written, two waiting; their drafts wait.
    fourth = make_document(sponsor, editor, title="Running one", body="Data were collected in 2023 and")
    make_document(sponsor, editor, title="Waiting one", body="Please see section 3.2 for the")
    update_document(first, 1, "Approved one", "The committee reviewed the budget again and", sponsor)
    db.session.commit()
    (being_written,) = autodoc_queue.claim_jobs("real-writer", 1, 600, 3)
    assert shadow_drafts.claim_jobs("shadow-writer", 1, 600, 3) == []
    statuses = dict(db.session.execute(select(ShadowDraft.status, func.count()).group_by(ShadowDraft.status)).all())
    assert statuses == ({"done": 1, "running": 1, "failed": 1, "queued": 3} if shadows else {})

    api_token = tokens.create_token(sponsor, "script").secret
    editor_token = tokens.create_token(editor, "script").secret
    db.session.commit()
    autodoc_ids = db.session.scalars(select(Autodoc.id).order_by(Autodoc.id)).all()
    return {
        "tokens": {"sponsor": api_token, "editor": editor_token},
        "documents": [first.id, second.id, third.id, fourth.id, fourth.id + 1],
        "autodocs": autodoc_ids,
        "reviewable": written[1],  # written, not reviewed, its draft running: no comparison to show
        # The autodoc whose draft is written (a blind pair for the editor), and its document.
        "paired": {"autodoc": written[0], "document": first.id},
        "approved": written[0],
    }


def snapshot(app, world):
    """Everything a person or a script sees of the real autodocs, by where they see it."""
    clients, seen = world["clients"], {}
    pages = {
        "sponsor": ["/sponsor/", "/sponsor/documents", "/sponsor/documents/archived", "/sponsor/export",
                    *[f"/sponsor/documents/{d}" for d in world["documents"]],
                    *[f"/sponsor/autodocs/{a}" for a in world["autodocs"]], "/notifications/"],
        "editor": ["/editor/", "/editor/documents", "/editor/reviews", "/notifications/",
                   *[f"/editor/documents/{d}" for d in world["documents"]],
                   f"/editor/autodocs/{world['reviewable']}/review"],
        "admin": ["/admin/", "/admin/documents", "/admin/reviews.jsonl", "/admin/models",
                  "/admin/models/exports/supervised.jsonl", "/admin/models/exports/labels.jsonl",
                  *[f"/admin/documents/{d}" for d in world["documents"]],
                  *[f"/admin/autodocs/{a}" for a in world["autodocs"]]],
    }
    for role, urls in pages.items():
        for url in urls:
            response = clients[role].get(url)
            assert response.status_code in (200, 302), (role, url, response.status_code)
            seen[f"{role} {url}"] = (response.status_code, response.location,
                                     _stable(response.get_data(as_text=True)))
    for autodoc_id in world["autodocs"]:
        for role in ("sponsor", "editor"):
            seen[f"{role} status {autodoc_id}"] = _stable(clients[role].get(f"/autodocs/{autodoc_id}/status")
                                                          .get_data(as_text=True))
    api = app.test_client()
    for role, urls in {"sponsor": ["/api/v1/documents", *[f"/api/v1/documents/{d}" for d in world["documents"]],
                                   *[f"/api/v1/documents/{d}/revisions" for d in world["documents"]],
                                   *[f"/api/v1/autodocs/{a}" for a in world["autodocs"]], "/api/v1/me/export"],
                       "editor": ["/api/v1/reviews"]}.items():
        for url in urls:
            response = api.get(url, headers={"Authorization": f"Bearer {world['tokens'][role]}"})
            assert response.status_code == 200, (role, url, response.status_code)
            seen[f"api {role} {url}"] = _stable(response.get_data(as_text=True))
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    # The queue's figures; request counters move with every request and are left out.
    seen["metrics"] = [line for line in metrics.splitlines() if "autodoc" in line and "http" not in line]
    with app.app_context():
        seen.update(_figures(world))
    return seen


def _figures(world):
    """What the services count and export, straight from them."""
    seen = {}
    seen["notifications"] = db.session.scalar(select(func.count()).select_from(Notification))
    seen["review export"] = list(reviews.export_lines())
    seen["training pairs"] = [tuple(row) for row in db.session.execute(trainingsets.pairs_select()).all()]
    seen["queue"] = (autodoc_queue.queue_depth(), autodoc_queue.queue_positions(world["autodocs"]),
                     [tuple(row) for row in autodoc_queue.queue_by_sponsor()])
    return seen


def _stable(text):
    """`text` without what differs from one answer to the next whatever the data: CSRF
    tokens (pages, and pages inside JSON) and the moment of an export."""
    text = re.sub(r'(name=\\?"csrf_token\\?"[^>]*?value=|name=\\?"csrf-token\\?" content=)\\?"[^"\\]*', r"\1", text)
    return re.sub(r'"exported_at": ?"[^"]*"', "", text)


def test_shadow_drafts_are_invisible_everywhere_real_autodocs_are_shown_or_counted(app, login_as, monkeypatch,
                                                                                   tiny_model_dir):  # noqa: F811
    monkeypatch.setitem(app.config, "SHADOW_SHARE", 0.0)  # put back after the test
    world = build_world(app, login_as, tiny_model_dir, shadows=True)
    with_shadows = snapshot(app, world)
    leaks = [where for where, what in with_shadows.items() if SHADOW in json.dumps(what, default=str)]
    assert leaks == []
    # The snapshot does show the real autodocs and their figures.
    assert "real text of autodoc 2" in with_shadows[f"editor /editor/autodocs/{world['reviewable']}/review"][2]
    assert with_shadows["metrics"] and with_shadows["review export"] and with_shadows["training pairs"]
    assert with_shadows["queue"][1] == {world["autodocs"][-2]: 1, world["autodocs"][-1]: 2}

    # The twin: the same steps from an empty database (ids start again at 1), without shadow drafts.
    with app.app_context():
        db.session.remove()
        tables = ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables)
        with db.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    without = snapshot(app, build_world(app, login_as, tiny_model_dir, shadows=False))
    # The written draft and its autodoc make a blind pair waiting for the editor: the editor's
    # views of that autodoc withhold its text (and differ by that alone); nothing else differs.
    paired = world["paired"]
    withheld = [f"editor /editor/documents/{paired['document']}", f"editor status {paired['autodoc']}"]
    assert [where for where in with_shadows if _timeless(without[where]) != _timeless(with_shadows[where])] == withheld
    for where in withheld:
        assert "real text of autodoc 1" in json.dumps(without[where]) and "autodoc-withheld" not in json.dumps(without[where])
        assert "real text of autodoc 1" not in json.dumps(with_shadows[where]) and \
            "autodoc-withheld" in json.dumps(with_shadows[where])


def _timeless(seen):
    """What was seen without its moments and durations (the twin runs later and at its own pace)."""
    return re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:?\d\d|Z)?", "<moment>",
                  json.dumps(seen, default=str))
