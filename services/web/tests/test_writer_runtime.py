"""The writer end to end: real saves, the real tiny GPT-2, the real queue on PostgreSQL."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.services.documents import update_document
from srcflask.static.data.processeddata.models import Autodoc, Revision
from srcflask.writer import WriterRuntime

from .factories import make_document, make_user
from .tinygpt2 import build_tiny_gpt2, tiny_model_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
WEB_ROOT = Path(__file__).resolve().parent.parent
WRITER_SETTINGS = {"WRITER_MAX_NEW_TOKENS": 12, "WRITER_CONTEXT_TOKENS": 24, "WRITER_BATCH_SIZE": 4,
                   "WRITER_LEASE_SECONDS": 30, "WRITER_MAX_ATTEMPTS": 2}


@pytest.fixture
def writer_config(app, monkeypatch, tiny_model_dir):  # noqa: F811
    for key, value in {**WRITER_SETTINGS, "WRITER_MODEL_DIR": str(tiny_model_dir)}.items():
        monkeypatch.setitem(app.config, key, value)
    return app.config


@pytest.fixture(scope="module")
def runtime():
    """One writer for the module: the model loads and compiles once, as in a real process."""
    return WriterRuntime()


@pytest.fixture
def people(app_context):
    return make_user("sponsor"), make_user("editor")


def all_autodocs():
    db.session.expire_all()
    return db.session.scalars(select(Autodoc).join(Revision).order_by(Autodoc.id)).all()


def test_an_autodoc_for_the_create_and_for_each_edit(app, writer_config, runtime, people):
    sponsor, editor = people
    document = make_document(sponsor, editor, title="Plan", body="The committee reviewed the budget and")
    runtime.run(app, until_idle=True)
    update_document(document, 1, "Plan", "The project started in spring and", sponsor)
    db.session.commit()
    runtime.run(app, until_idle=True)

    first, second = all_autodocs()
    assert [(a.revision.version, a.status) for a in (first, second)] == [(1, "done"), (2, "done")]
    assert first.prompt == "The committee reviewed the budget and"
    assert second.prompt == "The project started in spring and"
    assert first.continuation and second.continuation
    stamp = second.stamp
    assert stamp["settings"]["num_beams"] == 5 and stamp["settings"]["no_repeat_ngram_size"] == 4
    assert stamp["settings"]["max_new_tokens"] == 12 and len(stamp["weights_sha256"]) == 64
    assert stamp["prompt_sha256"] and stamp["worker"] and stamp["batch_size"] == 1
    assert second.finished_at >= second.started_at


def test_the_writer_gives_the_same_text_as_writing_the_revision_directly(app, writer_config, runtime, people):
    """What the queue stores is exactly the writer's output for that revision's prompt."""
    from srcflask.static.src.features.doctokenization import build_prompt

    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="Beam search keeps the five best partial")
    runtime.run(app, until_idle=True)
    (autodoc,) = all_autodocs()
    writer = runtime.load(app.config)
    prompt = build_prompt(writer.tokenizer, "T", "Beam search keeps the five best partial", 24)
    assert autodoc.continuation == writer.write([prompt])[0].text


def test_empty_and_very_long_documents(app, writer_config, runtime, people):
    sponsor, editor = people
    # The forms require a title, but a revision made by other tools may hold nothing at all.
    empty = make_document(sponsor, editor, title="placeholder", body="")
    db.session.execute(Revision.__table__.update().where(Revision.document_id == empty.id).values(title=" "))
    db.session.commit()
    make_document(sponsor, editor, title="Only a title here", body="  \n ")
    long_body = "Each experiment was repeated five times with a different random seed. " * 280
    make_document(sponsor, editor, title="Long", body=long_body)
    runtime.run(app, until_idle=True)

    empty, title_only, long = all_autodocs()
    assert (empty.status, empty.prompt, empty.continuation) == ("done", "", "")
    assert (title_only.status, title_only.prompt) == ("done", "Only a title here")
    assert long.status == "done" and long.revision.body.endswith(long.prompt) and len(long.prompt) < 200
    writer = runtime.load(app.config)
    assert len(writer.tokenizer(long.prompt)["input_ids"]) <= 24


def test_unicode_and_html_documents_are_written_and_shown_escaped(app, writer_config, runtime, login_as):
    browser, sponsor = login_as("sponsor")
    with app.app_context():
        editor = make_user("editor")
        document = make_document(sponsor, editor, title="Ünïcödé <b>", body="<script>alert(1)</script> Grüße 日本語 🚀")
        document_id = document.id
        runtime.run(app, until_idle=True)
        (autodoc,) = all_autodocs()
        assert autodoc.status == "done" and "🚀" in autodoc.prompt
    page = browser.get(f"/sponsor/documents/{document_id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_failures_are_retried_then_reported(app, writer_config, runtime, people, monkeypatch):
    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="The table shows the mean")
    writer = runtime.load(app.config)
    monkeypatch.setattr(writer, "write", lambda prompts: (_ for _ in ()).throw(RuntimeError("out of memory")))
    runtime.run(app, until_idle=True)
    (autodoc,) = all_autodocs()
    assert (autodoc.status, autodoc.attempts) == ("failed", 2)
    assert autodoc.error == "RuntimeError: out of memory"


def test_missing_model_jobs_wait_then_drain_once_it_appears(app, writer_config, people, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    monkeypatch.setitem(app.config, "WRITER_MODEL_DIR", str(model_dir))
    sponsor, editor = people
    make_document(sponsor, editor, title="T", body="Funding for the project comes from")
    runtime = WriterRuntime()
    runtime.run(app, until_idle=True)
    assert [a.status for a in all_autodocs()] == ["queued"]
    assert str(model_dir) in runtime.model_error
    assert "no model installed" in runtime.problem()

    build_tiny_gpt2(model_dir)
    runtime.run(app, until_idle=True)
    assert [a.status for a in all_autodocs()] == ["done"]
    assert runtime.model_error is None and runtime.problem() is None


def test_two_writer_processes_write_each_of_50_jobs_exactly_once(app, database_url, tiny_model_dir, people):  # noqa: F811
    sponsor, editor = people
    for number in range(50):
        make_document(sponsor, editor, title=f"Doc {number}", body=f"Document number {number} says that")
    env = {**os.environ, "SRCFLASK_ENV": "development", "SECRET_KEY": "test", "DATABASE_URL": database_url,
           "WRITER_MODEL_DIR": str(tiny_model_dir), "FLASK_APP": "wsgi",
           **{key: str(value) for key, value in WRITER_SETTINGS.items()}}
    command = [sys.executable, "-m", "flask", "writer", "run", "--until-idle"]
    writers = [subprocess.Popen(command, cwd=WEB_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    outputs = [writer.communicate(timeout=300)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs

    autodocs = all_autodocs()
    assert len(autodocs) == 50
    assert {a.status for a in autodocs} == {"done"}
    assert {a.attempts for a in autodocs} == {1}  # claimed once, written once
    assert all(a.continuation for a in autodocs)
