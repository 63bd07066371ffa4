"""Shadow drafts: queued for a share of saves while a candidate exists, claimed only when no
real autodoc waits, written by the candidate held beside the active model, and failures kept
to themselves. Real PostgreSQL, the real tiny GPT-2 (tests/tinygpt2.py) and a second one with
other weights; two real `flask writer run` processes under a burst of saves."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from srcflask.extensions import db
from srcflask.models import AuditEvent, Notification, ShadowDraft, User, WriterModel
from srcflask.services import archive, autodoc_queue, registry, shadow_drafts
from srcflask.services.documents import update_document
from srcflask.static.data.processeddata.models import Autodoc, Revision
from srcflask.writer import WriterRuntime

from .factories import make_document, make_user, write_autodocs
from .faultkit import wait_until
from .test_writer_runtime import WRITER_SETTINGS
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

WEB_ROOT = Path(__file__).resolve().parent.parent
LEASE, MAX_ATTEMPTS = 60, 3
BURST_TIMEOUT = 300  # two processes importing TensorFlow and compiling two models each, on a shared machine


def other_weights(source, target, seed=7):
    """The GPT-2 in `source` with every weight moved by noise of its own size, saved to
    `target`: another model, which writes other texts."""
    import numpy as np
    from transformers import TFGPT2LMHeadModel

    model = TFGPT2LMHeadModel.from_pretrained(source)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = weight.numpy()
        weight.assign(value + rng.normal(0.0, 0.05, value.shape).astype(value.dtype))
    model.save_pretrained(target)
    for path in Path(source).iterdir():
        if not (target / path.name).exists():
            shutil.copy(path, target)
    return target


@pytest.fixture
def share(app, monkeypatch):
    """SHADOW_SHARE for the test: 1 (every save) until set again with the function returned."""
    def set_share(value):
        monkeypatch.setitem(app.config, "SHADOW_SHARE", value)
    set_share(1.0)
    return set_share


@pytest.fixture
def models(app_context, tiny_model_dir, tmp_path):  # noqa: F811
    """The tiny GPT-2 active and a candidate with other weights."""
    active = registry.register_folder(tiny_model_dir, kind="seed", name="tiny")
    candidate = registry.register_folder(other_weights(tiny_model_dir, tmp_path / "other"), kind="retrained",
                                         name="tiny", parent=active)
    db.session.commit()
    assert (active.state, candidate.state) == ("active", "candidate")
    return active, candidate


@pytest.fixture
def people(app_context):
    return make_user("sponsor"), make_user("editor")


def drafts():
    db.session.expire_all()
    return db.session.scalars(select(ShadowDraft).order_by(ShadowDraft.id)).all()


def claim():
    return shadow_drafts.claim_jobs("tests", 5, LEASE, MAX_ATTEMPTS)


# --- Queueing ----------------------------------------------------------------------------

def test_every_create_and_edit_gets_a_draft_by_the_newest_clean_candidate_at_share_one(
        share, models, people, tiny_model_dir):  # noqa: F811
    active, candidate = models
    sponsor, editor = people
    document = make_document(sponsor, editor, title="Plan", body="The committee reviewed")
    update_document(document, 1, "Plan", "The committee approved", sponsor)
    db.session.commit()
    assert [(d.model_id, d.status, d.autodoc.revision.version) for d in drafts()] == \
        [(candidate.id, "queued", 1), (candidate.id, "queued", 2)]

    # A newer candidate whose files were refused is passed over; regenerations are not shadowed.
    refused = registry.register_folder(tiny_model_dir, kind="retrained", name="tiny", parent=active)
    registry.record_integrity(refused.id, "changed: tf_model.h5")
    write_autodocs()
    autodoc_queue.queue_regeneration(db.session.get(Autodoc, drafts()[1].autodoc_id).revision)
    db.session.commit()
    assert len(drafts()) == 2
    update_document(document, 2, "Plan", "The committee approved it", sponsor)
    db.session.commit()
    assert drafts()[-1].model_id == candidate.id


def test_no_draft_without_a_candidate_and_no_query_at_share_zero(app, share, models, people):
    active, candidate = models
    sponsor, editor = people
    share(0.0)
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        make_document(sponsor, editor)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert statements and not [s for s in statements if "models" in s or "shadow_drafts" in s]
    assert drafts() == []

    share(1.0)
    registry.promote(candidate.id, make_user("admin"), reason="No candidate left.", override=True)
    db.session.commit()
    make_document(sponsor, editor)
    assert drafts() == []


def test_a_share_between_draws_at_random(share, models, people):
    sponsor, editor = people
    share(0.5)
    for number in range(60):
        make_document(sponsor, editor, title=f"Doc {number}")
    assert 10 < len(drafts()) < 50  # 60 draws at 1/2: outside this with probability < 1e-5


# --- Claiming ------------------------------------------------------------------------------

def test_a_draft_is_claimed_only_when_no_real_autodoc_waits(share, models, people):
    sponsor, editor = people
    make_document(sponsor, editor, title="First")
    assert claim() == []  # its own real autodoc waits
    (real,) = autodoc_queue.claim_jobs("w", 1, 3, MAX_ATTEMPTS)  # a real autodoc being written ...
    (draft_job,) = claim()
    assert draft_job.title == "First" and draft_job.kind == "shadow_draft"
    assert shadow_drafts.complete_job(draft_job, "p", "SHADOWTEXT", {}, draft_job.model_id) is True
    make_document(sponsor, editor, title="Second")
    write_autodocs()
    time.sleep(3.1)  # ... whose writer died: its lease ran out, a writer would take it again
    assert claim() == []
    (again,) = autodoc_queue.claim_jobs("w", 1, LEASE, MAX_ATTEMPTS)
    assert again.autodoc_id == real.autodoc_id
    (second,) = claim()
    assert second.title == "Second"


def test_drafts_of_archived_documents_wait_and_go_after_a_restore(share, models, people):
    sponsor, editor = people
    document = make_document(sponsor, editor, title="Archived")
    write_autodocs()
    archive.archive_document(document, sponsor)
    other = make_document(sponsor, editor, title="Archived too")
    archive.archive_document(other, sponsor)  # its real autodoc waits, unwritten, and holds up nothing
    db.session.commit()
    assert claim() == []
    assert {d.status for d in drafts()} == {"queued"}
    archive.restore_document(document, sponsor)
    db.session.commit()
    assert [job.title for job in claim()] == ["Archived"]


def test_drafts_of_a_promoted_or_retired_candidate_are_failed_not_written(share, models, people, tiny_model_dir):  # noqa: F811
    active, candidate = models
    sponsor, editor = people
    make_document(sponsor, editor, title="One")
    write_autodocs()
    admin = make_user("admin")
    registry.promote(candidate.id, admin, reason="Promoted before its drafts were written.", override=True)
    db.session.commit()
    assert claim() == []
    (draft,) = drafts()
    assert draft.status == "failed" and "stopped being a candidate (it is active)" in draft.error
    assert draft.continuation is None

    newer = registry.register_folder(tiny_model_dir, kind="retrained", name="tiny", parent=candidate)
    db.session.commit()
    make_document(sponsor, editor, title="Two")
    write_autodocs()
    registry.promote(newer.id, admin, reason="Promoted ...", override=True)
    registry.rollback(candidate.id, admin, reason="... and rolled back: it is retired.")
    db.session.commit()
    assert claim() == []
    draft = drafts()[-1]
    assert (draft.model_id, draft.status) == (newer.id, "failed") and "(it is retired)" in draft.error


def test_a_late_result_is_refused_and_failures_use_attempts_quietly(share, models, people):
    sponsor, editor = people
    make_document(sponsor, editor, title="Slow")
    write_autodocs()
    notifications_before = db.session.scalar(select(func.count()).select_from(Notification))
    audit_before = db.session.scalar(select(func.count()).select_from(AuditEvent))

    (stale,) = shadow_drafts.claim_jobs("slow", 1, 1, MAX_ATTEMPTS)
    time.sleep(1.1)
    (fresh,) = claim()
    assert fresh.id == stale.id and fresh.attempt_token != stale.attempt_token
    assert shadow_drafts.extend_leases([stale], LEASE) == 0
    assert shadow_drafts.complete_job(stale, "p", "late text", {}, stale.model_id) is False
    assert shadow_drafts.fail_job(stale, "late failure", MAX_ATTEMPTS) is False
    # Written only by the draft's own candidate.
    assert shadow_drafts.complete_job(fresh, "p", "other model's text", {}, fresh.model_id + 1000) is False
    assert shadow_drafts.fail_job(fresh, "RuntimeError: boom", MAX_ATTEMPTS) == "queued"
    (draft,) = drafts()
    assert (draft.status, draft.error, draft.attempts) == ("queued", "RuntimeError: boom", 2)
    (last,) = claim()
    assert shadow_drafts.fail_job(last, "RuntimeError: boom again", MAX_ATTEMPTS) == "failed"
    (draft,) = drafts()
    assert (draft.status, draft.attempts, draft.continuation) == ("failed", 3, None) and draft.finished_at
    assert claim() == []
    assert db.session.scalar(select(func.count()).select_from(Notification)) == notifications_before
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before


def test_a_draft_whose_writer_died_too_often_is_failed(share, models, people):
    sponsor, editor = people
    make_document(sponsor, editor)
    write_autodocs()
    for _ in range(MAX_ATTEMPTS):
        assert len(shadow_drafts.claim_jobs("dies", 1, 1, MAX_ATTEMPTS)) == 1
        time.sleep(1.1)
    assert claim() == []
    (draft,) = drafts()
    assert draft.status == "failed" and draft.error == shadow_drafts.DIED_MESSAGE.format(attempts=MAX_ATTEMPTS)


# --- The writer ----------------------------------------------------------------------------

@pytest.fixture
def writer_config(app, monkeypatch, share):
    for key, value in WRITER_SETTINGS.items():
        monkeypatch.setitem(app.config, key, value)
    return app.config


@pytest.mark.slow
def test_a_round_without_real_work_writes_the_draft_with_the_candidate(app, writer_config, models, people):
    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.evaluation.autodocwriter import AutodocWriter
    from srcflask.static.src.features.doctokenization import build_prompt

    active, candidate = models
    sponsor, editor = people
    body = "The committee reviewed the budget and"
    make_document(sponsor, editor, title="T", body=body)
    runtime = WriterRuntime()
    runtime.run(app, until_idle=True)

    (draft,) = drafts()
    autodoc = draft.autodoc
    assert (autodoc.status, autodoc.model_id, draft.status) == ("done", active.id, "done")
    assert (draft.stamp["model_id"], draft.stamp["model_label"]) == (candidate.id, candidate.label)
    assert draft.stamp["weights_sha256"] == candidate.files["tf_model.h5"] != active.files["tf_model.h5"]
    assert draft.stamp["batch_size"] == 1 and draft.attempts == 1 and draft.worker
    # The text is the candidate's own, and not the active model's.
    loaded = load_model(registry.model_folder(candidate))
    own = AutodocWriter(loaded, max_new_tokens=12, context_tokens=24, batch_sizes=(1,))
    prompt = build_prompt(loaded.tokenizer, "T", body, 24)
    assert draft.prompt == prompt.text == autodoc.prompt
    assert draft.continuation == own.write([prompt])[0].text != autodoc.continuation
    # The second model is held beside the active one, compiled for batch size 1 only.
    assert runtime._candidate.model_id == candidate.id and runtime._candidate.writer.batch_sizes == (1,)
    assert runtime._current.model_id == active.id

    # Once it is no longer a candidate, an idle round lets it go.
    registry.promote(candidate.id, make_user("admin"), reason="Testing the drop.", override=True)
    db.session.commit()
    runtime.run(app, until_idle=True)
    assert runtime._candidate is None

    # A candidate with the active model's very files is served by the active model's writer.
    twin = registry.register_folder(registry.model_folder(candidate), kind="retrained", name="tiny", parent=candidate)
    db.session.commit()
    make_document(sponsor, editor, title="T", body=body)
    runtime.run(app, until_idle=True)
    draft = drafts()[-1]
    assert (draft.model_id, draft.status, draft.stamp["model_id"]) == (twin.id, "done", twin.id)
    assert draft.continuation == own.write([prompt])[0].text == draft.autodoc.continuation
    assert runtime._candidate is None and runtime._current.model_id == candidate.id


@pytest.mark.slow
def test_a_corrupt_candidate_leaves_real_writing_and_the_writer_state_alone(app, writer_config, models, people,
                                                                           monkeypatch):
    monkeypatch.setitem(app.config, "WRITER_IN_PROCESS", True)  # for state(): /readyz's view of this writer
    active, candidate = models
    sponsor, editor = people
    with open(registry.model_folder(candidate) / "tf_model.h5", "ab") as weights:
        weights.write(b"corrupt")
    for number in range(3):
        make_document(sponsor, editor, title=f"Doc {number}", body=f"Document number {number} says that")
    runtime = WriterRuntime()
    runtime.run(app, until_idle=True)

    db.session.expire_all()
    assert {a.status for a in db.session.scalars(select(Autodoc))} == {"done"}
    assert [d.status for d in drafts()] == ["failed"] * 3
    assert all("no longer match" in d.error and "tf_model.h5" in d.error for d in drafts())
    assert "tf_model.h5" in db.session.get(WriterModel, candidate.id).integrity_error
    assert runtime.failure is None and runtime.problem() is None and runtime._candidate is None
    assert runtime.state()["state"] == "loaded" and runtime.state()["model_id"] == active.id
    make_document(sponsor, editor, title="After", body="A document saved after the refusal")
    assert len(drafts()) == 3  # a refused candidate gets no new drafts
    runtime.run(app, until_idle=True)
    assert db.session.scalar(select(Autodoc.status).order_by(Autodoc.id.desc()).limit(1)) == "done"


@pytest.mark.slow
def test_a_failure_in_generate_stays_with_the_draft(app, writer_config, models, people, monkeypatch):
    active, candidate = models
    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="The committee reviewed the budget and")
    runtime = WriterRuntime()
    runtime.run(app, until_idle=True)  # writes the real autodoc and the draft, loading the candidate
    make_document(sponsor, editor, title="U", body="The project started in spring and")
    writer = runtime._candidate.writer

    def chokes(prompts):
        raise RuntimeError("the candidate fell over")

    monkeypatch.setattr(writer, "write", chokes)  # the candidate's writer only
    runtime.run(app, until_idle=True)
    first, second = drafts()
    assert first.status == "done"
    # Tried again at once, then failed once its attempts (WRITER_MAX_ATTEMPTS = 2) were used up.
    assert (second.status, second.error, second.attempts) == ("failed", "RuntimeError: the candidate fell over", 2)
    assert db.session.scalar(select(Autodoc.status).order_by(Autodoc.id.desc()).limit(1)) == "done"
    assert runtime.failure is None and runtime.problem() is None


@pytest.mark.slow
def test_a_real_autodoc_saved_while_the_candidate_loads_does_not_wait_for_the_load(app, writer_config, models, people,
                                                                                  monkeypatch):
    """Loading a candidate (GPT-2-small: ~24 s) happens beside the writing: a document saved
    meanwhile gets its autodoc from the active model at once, and the draft that asked for the
    load waits for it without an attempt used."""
    active, candidate = models
    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="The committee reviewed the budget and")
    loading, let_go = threading.Event(), threading.Event()
    build = WriterRuntime._build

    def slow_candidate_build(config, folder, batch_sizes=None):
        if batch_sizes == (1,):  # the candidate's load, not the active model's
            loading.set()
            assert let_go.wait(120), "the test never let the candidate's load go on"
        return build(config, folder, batch_sizes)

    monkeypatch.setattr(WriterRuntime, "_build", staticmethod(slow_candidate_build))
    runtime = WriterRuntime()
    runtime.start(app, threads=1)
    try:
        wait_until(loading.is_set, 120, "the candidate's load to start")
        make_document(sponsor, editor, title="U", body="The project started in spring and")

        def newest_autodoc():
            db.session.expire_all()
            return db.session.scalar(select(Autodoc).order_by(Autodoc.id.desc()).limit(1))

        written = wait_until(lambda: newest_autodoc().status == "done" and newest_autodoc(), 30,
                             "the second autodoc, written while the candidate loads")
        assert written.model_id == active.id and not let_go.is_set()
        assert [(draft.status, draft.attempts) for draft in drafts()] == [("queued", 0), ("queued", 0)]

        let_go.set()
        wait_until(lambda: all(draft.status == "done" for draft in drafts()), 120, "both drafts written")
        assert [(draft.attempts, draft.stamp["model_id"]) for draft in drafts()] == [(1, candidate.id)] * 2
        assert runtime._candidate.model_id == candidate.id and runtime.failure is None
    finally:
        let_go.set()
        runtime.stop()


@pytest.mark.slow
def test_a_newer_candidates_load_lets_the_former_candidate_go(app, writer_config, models, people, tiny_model_dir,
                                                              tmp_path):  # noqa: F811
    """One candidate in memory at a time: a model is ~500 MB."""
    from srcflask.static.mlmodels.seedmlmodels import headmodel

    active, candidate = models
    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="The committee reviewed the budget and")
    runtime = WriterRuntime()
    runtime.run(app, until_idle=True)
    former = runtime._candidate
    assert former.model_id == candidate.id and former.folder in headmodel._cache

    newer = registry.register_folder(other_weights(tiny_model_dir, tmp_path / "newer", seed=8), kind="retrained",
                                     name="tiny", parent=candidate)
    db.session.commit()
    make_document(sponsor, editor, title="U", body="The project started in spring and")
    runtime.run(app, until_idle=True)

    assert [(draft.model_id, draft.status, draft.attempts) for draft in drafts()] == [
        (candidate.id, "done", 1), (newer.id, "done", 1)]
    assert runtime._candidate.model_id == newer.id and runtime._candidate_load is None
    assert former.folder not in headmodel._cache and str(registry.model_folder(active).resolve()) in headmodel._cache


# --- Two writer processes under a burst of saves ---------------------------------------------

@pytest.mark.slow
def test_a_shadow_draft_never_goes_ahead_of_a_real_autodoc(app, database_url, writer_config, models, people):
    """Two `flask writer run` processes and a third claimer that takes drafts as fast as it may
    (a process that writes only drafts: it checks no real queue of its own) run through a
    burst of saves from two browsers' worth of threads.

    A draft "went ahead" of a real autodoc when that autodoc was waiting at the moment the
    draft was claimed: committed before the claim, claimed itself only after it. Bounds that
    can only err towards "not ahead", so that a hit is a real violation: the save's commit is
    before the database clock the saving thread reads once COMMIT returned; the draft's claim
    (its locking statement) is after its transaction began (started_at: now()) and before the
    claim returned to the eager claimer (the clock it reads then) or, for a writer's draft,
    before the draft was finished (finished_at); the real autodoc's claim is after its own
    claim transaction began (its started_at, claimed once). Every time is the database's clock."""
    active, candidate = models
    sponsor, editor = people
    sponsor_id, editor_id = sponsor.id, editor.id
    env = {**os.environ, "SRCFLASK_ENV": "development", "SECRET_KEY": "test", "DATABASE_URL": database_url,
           "FLASK_APP": "wsgi", **{key: str(value) for key, value in WRITER_SETTINGS.items()},
           "WRITER_POLL_SECONDS": "0.1", "WRITER_MODEL_DIR": str(Path(registry.model_folder(active)).parent / "none")}
    writers = [subprocess.Popen([sys.executable, "-m", "flask", "writer", "run"], cwd=WEB_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    committed = {}  # autodoc id: the database's clock just after its save committed
    claimed = {}  # shadow draft id: the database's clock just after the eager claimer's claim returned
    stop = threading.Event()
    failures = []

    def burst(thread):
        with app.app_context():
            try:
                sponsor, editor = db.session.get(User, sponsor_id), db.session.get(User, editor_id)
                for number in range(12):
                    document = make_document(sponsor, editor, title=f"Burst {thread}.{number}",
                                             body=f"Burst document {thread}.{number} says that")
                    seen_at = db.session.scalar(select(func.clock_timestamp()))
                    autodoc_id = db.session.scalar(select(Autodoc.id).join(Autodoc.revision)
                                                   .where(Revision.document_id == document.id))
                    committed[autodoc_id] = seen_at
                    db.session.commit()
                    time.sleep(0.05 * (number % 4))  # bursts within the burst
            except Exception as error:  # noqa: BLE001  (reported by the test)
                failures.append(error)

    def eager_claimer():
        with app.app_context():
            while not stop.is_set():
                try:
                    for job in shadow_drafts.claim_jobs("eager-claimer", 1, LEASE, MAX_ATTEMPTS):
                        claimed[job.id] = db.session.scalar(select(func.clock_timestamp()))
                        db.session.commit()
                        time.sleep(0.05)  # "writing"
                        shadow_drafts.complete_job(job, "p", "the eager claimer's text", {"model_id": job.model_id},
                                                   job.model_id)
                except Exception as error:  # noqa: BLE001
                    failures.append(error)
                    return
                stop.wait(0.01)

    try:
        make_document(sponsor, editor, title="Warm-up", body="A first document to know the writers are up")
        wait_until(lambda: all(d.status == "done" for d in drafts()) and drafts(), BURST_TIMEOUT,
                   "the writers up and writing drafts")
        threads = [threading.Thread(target=burst, args=(n,)) for n in range(2)]
        threads.append(threading.Thread(target=eager_claimer))
        for thread in threads:
            thread.start()
        for thread in threads[:2]:
            thread.join()
        wait_until(lambda: all(r.status == "done" for r in db.session.scalars(select(Autodoc)))
                   and all(d.status == "done" for d in drafts()), BURST_TIMEOUT, "every autodoc and draft written")
    finally:
        stop.set()
        for writer in writers:
            writer.send_signal(signal.SIGTERM)
        outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    assert not failures, failures

    db.session.expire_all()
    reals = db.session.scalars(select(Autodoc)).all()
    shadows = drafts()
    assert len(reals) == len(shadows) == 25 and len(committed) == 24
    assert {(r.status, r.attempts) for r in reals} == {("done", 1)}  # claimed once: waiting ends at started_at
    assert {(d.status, d.attempts) for d in shadows} == {("done", 1)}
    ahead = [(d.id, d.worker, r.id) for d in shadows for r in reals
             if r.id in committed and committed[r.id] < d.started_at < claimed.get(d.id, d.finished_at) < r.started_at]
    assert ahead == []
    # Both kinds of claimer took drafts, and the writers wrote theirs with the candidate.
    by_writers = [d for d in shadows if d.worker != "eager-claimer"]
    assert by_writers and len(by_writers) < len(shadows)
    assert {d.stamp["weights_sha256"] for d in by_writers} == {candidate.files["tf_model.h5"]}

