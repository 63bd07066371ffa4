"""`flask writer status | fetch` as an operator meets them (the hub is out of reach here)."""
from srcflask.services import autodoc_queue

from .factories import make_document, make_user


def test_fetch_without_the_hub_fails_with_a_clear_message(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "WRITER_MODEL_DIR", str(tmp_path / "gpt2"))
    result = app.test_cli_runner().invoke(args=["writer", "fetch", "--model", "gpt2"])
    assert result.exit_code == 1
    assert "Could not fetch gpt2" in result.output and "cannot be reached" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "gpt2").exists()


def test_fetch_if_missing_says_so_once_and_carries_on(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "WRITER_MODEL_DIR", str(tmp_path / "gpt2"))
    result = app.test_cli_runner().invoke(args=["writer", "fetch", "--if-missing"])
    assert result.exit_code == 0
    assert result.output.count("cannot be reached") == 1 and "autodocs stay queued" in result.output


def test_status_reports_queue_running_jobs_and_model(app, app_context, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "WRITER_MODEL_DIR", str(tmp_path / "gpt2"))
    sponsor, editor = make_user("sponsor"), make_user("editor")
    for number in range(3):
        make_document(sponsor, editor, title=f"Doc {number}")
    autodoc_queue.claim_jobs("host:123:writer-0", 1, 60, 3)
    result = app.test_cli_runner().invoke(args=["writer", "status"])
    assert result.exit_code == 0
    assert "Autodocs: queued 2, running 1, done 0, failed 0" in result.output
    assert "running #1 on host:123:writer-0 (attempt 1" in result.output
    assert "no autodoc written yet" in result.output and "Model: none in" in result.output
