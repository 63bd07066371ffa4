"""The Models pages in a real browser: a training run's progress updates while the admin
watches (models.js polling the run's JSON, under the CSP), the admin cancels it, then
compares the candidate with the active model and promotes it with an override."""
import re

import pytest
from playwright.sync_api import expect

from srcflask.services import autodoc_queue, training

from ..factories import make_registry, make_user
from ..tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)
from .test_journeys import log_in

pytestmark = pytest.mark.e2e


def test_an_admin_watches_a_training_run_progress_and_cancels_it(live, browser, monkeypatch, tmp_path,
                                                                  tiny_model_dir):  # noqa: F811
    # The registry's approved documents are written here, not by the app's writer: it is
    # parked before its next claim, and the real claim stands in for the hold meanwhile.
    live.writer.park()
    monkeypatch.setitem(live.app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))
    with live.app.app_context(), monkeypatch.context() as patch:
        patch.setattr(autodoc_queue, "claim_jobs", live.writer._claim_jobs)
        run_id = make_registry(tiny_model_dir, make_user("admin"))["run"].id
    admin = live.add_user("admin", name="Ada Admin")
    page = log_in(browser, admin)

    page.locator("#nav").get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    page.get_by_role("link", name="Training sets and runs").click()
    row = page.locator(f"#run-{run_id}")
    expect(row).to_contain_text("Waiting for the trainer.")

    with live.app.app_context():
        claim = training.claim_run("e2e-trainer", 60)
        assert claim.run_id == run_id
        training.report_progress(claim, {"epoch": 1, "epochs": 1, "step": 2, "steps": 4, "loss": 2.5,
                                         "seconds_left": 30.0})
    # No reload: the page's poll brings it.
    expect(row).to_contain_text("Epoch 1/1 · step 2/4 · loss 2.5000 · about 30 s left", timeout=15_000)
    expect(row.locator("progress")).to_have_attribute("value", "50")
    browser.shoot(page, "training-run-progress")

    row.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("alert")).to_contain_text(
        re.compile(rf"Training run #{run_id} stops when its trainer reaches the next step"))
    expect(page.locator(f"#run-{run_id}")).to_contain_text("Cancelling at the next step.")

    page.get_by_role("link", name="Registry").click()
    expect(page.locator("#active-model")).to_have_text("tiny v2")
    browser.shoot(page, "models")
    page.get_by_role("link", name=re.compile(r"Compare and promote\s*tiny v3")).click()
    expect(page.locator(".promotion-gate")).to_contain_text("The gate refuses it.")
    page.get_by_label("Promote even though the gate refuses it (needs a reason)").check()
    browser.watch.expect_failure(page.url, 400)  # the override without a reason
    page.get_by_role("button", name="Promote tiny v3").click()
    expect(page.get_by_label("Reason (kept in the audit log)")).to_have_attribute("aria-describedby", "reason-errors")
    browser.shoot(page, "promotion-needs-a-reason")
    page.get_by_label("Reason (kept in the audit log)").fill("The editors prefer its style.")
    page.get_by_role("button", name="Promote tiny v3").click()
    expect(page.get_by_role("alert")).to_contain_text("tiny v3 is now the active model")
    expect(page.locator("#active-model")).to_have_text("tiny v3")
