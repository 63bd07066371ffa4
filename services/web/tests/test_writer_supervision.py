"""The in-process writer under faults (issue 13, items 7 and 8): a corrupt model, an error
while building prompts, a generate that hangs, one poison input in a batch.

Faults are real where they can be: a truncated weights file in a real model folder; the
queue is the real one on PostgreSQL. Only the prompt builder and the model's generate are
replaced, by functions that raise or block, to stand for a bug and a hang.
"""
import shutil
import threading

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.services import autodoc_queue
from srcflask.static.data.processeddata.models import Autodoc
from srcflask.static.src.features import doctokenization
from srcflask.writer import writer_runtime

from .factories import make_document
from .faultkit import wait_until
from .test_ops import sample
from .test_writer_runtime import people, runtime, writer_config  # noqa: F401  (fixtures)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
# Beside test_writer_runtime's settings: quick polls and restarts, a deadline far away.
SUPERVISION_SETTINGS = {"WRITER_POLL_SECONDS": 0.1, "WRITER_RESTART_MIN_SECONDS": 0.2,
                        "WRITER_RESTART_MAX_SECONDS": 1.0, "WRITER_JOB_DEADLINE_SECONDS": 600, "WRITER_NICE": 0}
# Loading and compiling the tiny model takes seconds; on a machine shared by many test runs
# it can take far longer. These bound waits for a state, they do not time anything.
STATE_TIMEOUT = 180


@pytest.fixture(autouse=True)
def supervision_config(app, writer_config, monkeypatch):  # noqa: F811
    for key, value in SUPERVISION_SETTINGS.items():
        monkeypatch.setitem(app.config, key, value)
    return app.config


def jobs_counted(outcome):
    """srcflask_writer_jobs_total for autodocs with `outcome`, in this process."""
    from srcflask import metrics

    return metrics.registry.get_sample_value("srcflask_writer_jobs_total", {"kind": "autodoc", "outcome": outcome})


def rows():
    db.session.expire_all()
    return db.session.scalars(select(Autodoc).order_by(Autodoc.id)).all()


# --- item 7: supervision ---------------------------------------------------------------------

@pytest.fixture
def process_writer(app, writer_config, monkeypatch):
    """The process's own writer (the one /readyz, /metrics and the dashboard report), run in
    its thread as gunicorn's worker runs it; stopped and forgotten afterwards."""
    monkeypatch.setitem(app.config, "WRITER_IN_PROCESS", True)
    _park(writer_runtime)  # an earlier test may have left it running, or its model loaded
    yield writer_runtime
    _park(writer_runtime)


def _park(runtime):
    runtime.stop()
    runtime.forget_model()
    runtime.failures.clear()


def test_a_corrupt_model_is_reported_everywhere_and_the_writer_recovers_once_it_is_fixed(
        app, process_writer, tiny_model_dir, tmp_path, people, login_as):  # noqa: F811
    model_dir = tmp_path / "gpt2"
    shutil.copytree(tiny_model_dir, model_dir)
    weights = model_dir / "tf_model.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut short
    app.config["WRITER_MODEL_DIR"] = str(model_dir)
    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="The committee reviewed the budget and")
    admin, _ = login_as("admin")
    client = app.test_client()

    process_writer.start(app, threads=1)
    reason = wait_until(lambda: process_writer.failure, STATE_TIMEOUT, "the writer reporting its failure")

    ready = client.get("/readyz")
    assert ready.status_code == 200  # pages and saves still work: the writer does not decide readiness
    state = ready.get_json()["writer"]
    assert state["state"] == "failed" and state["reason"] == reason
    assert reason in state["detail"] and "retries" in state["detail"]
    dashboard = admin.get("/admin/").get_data(as_text=True)
    assert '<strong>failed</strong>' in dashboard and "The writer failed" in dashboard and reason in dashboard
    assert sample(client.get("/metrics").get_data(as_text=True), "srcflask_writer_alive") == 0
    assert [row.status for row in rows()] == ["queued"]  # nothing claimed, nothing stuck

    shutil.copy(tiny_model_dir / "tf_model.h5", weights)  # the operator puts a good file back
    wait_until(lambda: [row.status for row in rows()] == ["done"], STATE_TIMEOUT, "the writer recovering")

    assert process_writer.failure is None and process_writer.running
    assert client.get("/readyz").get_json()["writer"]["state"] == "loaded"
    dashboard = admin.get("/admin/").get_data(as_text=True)
    assert "<strong>loaded</strong>" in dashboard and "The writer failed" not in dashboard
    assert sample(client.get("/metrics").get_data(as_text=True), "srcflask_writer_alive") == 1


def test_an_error_while_building_prompts_releases_the_claimed_jobs_at_once(app, writer_config, runtime, people,
                                                                          monkeypatch):
    sponsor, editor = people
    for number in range(2):
        make_document(sponsor, editor, title=f"T{number}", body=f"The table shows the mean {number}")

    def broken(*args):
        raise RuntimeError("the tokenizer fell over")

    with monkeypatch.context() as patch:
        patch.setattr(doctokenization, "build_prompt", broken)
        runtime.run(app, until_idle=True)

    released = rows()
    assert [(row.status, row.attempts, row.attempt_token, row.lease_expires_at) for row in released] == [
        ("queued", 1, None, None)] * 2  # given back at once, with the attempt they used
    assert {row.error for row in released} == {"RuntimeError: the tokenizer fell over"}
    assert runtime.failure == "RuntimeError: the tokenizer fell over"
    assert "The writer failed: RuntimeError: the tokenizer fell over" in runtime.problem()

    runtime.run(app, until_idle=True)  # the bug is gone: the next round writes them
    assert [(row.status, row.attempts) for row in rows()] == [("done", 2)] * 2
    assert runtime.failure is None and runtime.problem() is None


def test_a_writer_hung_in_generate_loses_its_job_after_the_deadline_and_its_late_text_is_refused(
        app, writer_config, runtime, people, monkeypatch):
    monkeypatch.setitem(app.config, "WRITER_LEASE_SECONDS", 1)
    monkeypatch.setitem(app.config, "WRITER_JOB_DEADLINE_SECONDS", 1)
    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="Beam search keeps the five best partial")
    writer = runtime.load(app.config)
    write, unblock, entered = writer.write, threading.Event(), threading.Event()

    def hung(prompts):
        entered.set()
        unblock.wait(STATE_TIMEOUT)
        return write(prompts)

    monkeypatch.setattr(writer, "write", hung)
    hung_writer = threading.Thread(target=runtime.run, args=(app,), kwargs={"until_idle": True})
    hung_writer.start()
    try:
        assert entered.wait(STATE_TIMEOUT)
        # The heartbeat still beats, but no longer extends the lease past the deadline: the
        # job is claimed again, by another writer, within deadline + lease.
        (rescued,) = wait_until(lambda: autodoc_queue.claim_jobs("rescuer", 1, 60, 3), STATE_TIMEOUT,
                                "the hung job taken over")
        assert autodoc_queue.complete_job(rescued, "p", "the rescuer's text", {}) is True
    finally:
        unblock.set()
        hung_writer.join(STATE_TIMEOUT)

    (row,) = rows()
    assert (row.status, row.attempts, row.worker, row.continuation) == ("done", 2, "rescuer", "the rescuer's text")


# --- item 8: a poison input in a batch -------------------------------------------------------

def test_a_poison_input_uses_up_its_own_attempts_and_its_neighbours_are_written(app, writer_config, runtime,
                                                                              people, monkeypatch):
    sponsor, editor = people
    for body in ("The committee reviewed the budget and", "POISON that the model chokes on",
                 "Funding for the project comes from"):
        make_document(sponsor, editor, title="T", body=body)
    writer = runtime.load(app.config)
    write = writer.write

    def chokes(prompts):
        if any("POISON" in prompt.text for prompt in prompts):
            raise ValueError("the model choked")
        return write(prompts)

    monkeypatch.setattr(writer, "write", chokes)
    before = {outcome: jobs_counted(outcome) for outcome in ("written", "retried", "failed")}
    runtime.run(app, until_idle=True)

    good, poison, other = rows()
    # The poison went back to the queue once and then failed; /metrics counts both.
    assert {outcome: jobs_counted(outcome) - count for outcome, count in before.items()} == \
        {"written": 2, "retried": 1, "failed": 1}
    assert [(row.status, row.attempts) for row in (good, other)] == [("done", 1)] * 2
    assert good.continuation and other.continuation and good.stamp["batch_size"] == 1
    assert (poison.status, poison.attempts, poison.error) == ("failed", 2, "ValueError: the model choked")
