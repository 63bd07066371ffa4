"""The writer's cold start: XLA's persistent compilation cache across processes, batch size 1
compiled first and writing while the larger sizes compile, on the real tiny GPT-2.

TensorFlow reads its XLA flags once per process, and this test process started TensorFlow long
before, so whatever the cache changes is watched in fresh processes (`_child`): their cache
files, TensorFlow's own log of loading or saving a program, and the writer's log lines.
"""
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from srcflask.extensions import db
from srcflask.static.data.processeddata.models import Autodoc
from srcflask.static.mlmodels.seedmlmodels import headmodel
from srcflask.static.src.evaluation.autodocwriter import AutodocWriter
from srcflask.static.src.features.doctokenization import build_prompt

from .factories import make_document, make_user
from .prodstack import Process, free_port
from .test_writer_model import BEAMS, CONTEXT, NEW_TOKENS, NGRAM, TEXTS, eager_generate
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

WEB_ROOT = Path(__file__).resolve().parent.parent
CHILD_BATCH_SIZES = (1, 2)
# TensorFlow's own words (device_executable_persistor, at VLOG level 2) for a program it
# compiled and saved to the cache, and for one it loaded from there instead of compiling.
TF_SAVED = "XlaSerializedCacheEntry saved for signature"
TF_LOADED = "Loading cached entry for"


def _child(model_dir, cache_setting):
    """In a fresh process: build the writer as the runtime does (WriterRuntime._build: batch size 1
    now, 2 in the background), wait for the background compile, write one prompt; print the
    writer's log events and the tokens as JSON."""
    import logging

    from srcflask.writer import WriterRuntime

    events = []

    class Keep(logging.Handler):
        def emit(self, record):
            events.append({"event": getattr(record, "event", None), "message": record.getMessage(),
                           "xla_cache": getattr(record, "xla_cache", None),
                           "compiled": getattr(record, "compiled", None)})

    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.INFO)
    config = {"WRITER_TF_INTRA_THREADS": 0, "WRITER_TF_INTER_THREADS": 0, "WRITER_MAX_NEW_TOKENS": 12,
              "WRITER_CONTEXT_TOKENS": 24, "WRITER_MODEL_DIR": model_dir, "WRITER_XLA_CACHE_DIR": cache_setting}
    writer = WriterRuntime._build(config, model_dir, batch_sizes=CHILD_BATCH_SIZES)
    compiled_on_return = writer.compiled_sizes
    prompt = build_prompt(writer.tokenizer, "", TEXTS[0], 24)
    writer.write([prompt])  # while batch size 2 compiles, as a writer with a queue would
    for thread in threading.enumerate():
        if thread.name == "writer-compile":
            thread.join()
    print(json.dumps({"events": events, "compiled_on_return": compiled_on_return,
                      "compiled": writer.compiled_sizes, "tokens": writer.write([prompt])[0].token_ids}))


def run_child(model_dir, cache_setting):
    """(the child's JSON, its stderr) with TensorFlow's persistent-cache log switched on."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_executable_persistor=2")
    env.pop("TF_XLA_FLAGS", None)
    code = f"from tests.test_writer_coldstart import _child; _child({str(model_dir)!r}, {str(cache_setting)!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=WEB_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def events(result, name):
    return [event for event in result["events"] if event["event"] == name]


def cache_files(folder):
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*.pb")}


@pytest.mark.slow
def test_the_first_process_fills_the_cache_and_a_second_one_compiles_nothing(tmp_path, tiny_model_dir):  # noqa: F811
    cache = tmp_path / "models-volume" / "xla-cache"
    first, first_log = run_child(tiny_model_dir, cache)
    files = cache_files(cache)
    # One program per batch size, in this machine's own subfolder of the cache.
    assert len(files) == len(CHILD_BATCH_SIZES)
    assert {path.parent.parent for path in files} == {cache}
    assert first_log.count(TF_SAVED) == len(CHILD_BATCH_SIZES) and TF_LOADED not in first_log
    (ready,) = events(first, "writer_ready")
    assert ready["compiled"] == {"1": {"seconds": ready["compiled"]["1"]["seconds"], "xla_cache": "miss"}}
    assert first["compiled_on_return"] == [1] and first["compiled"] == list(CHILD_BATCH_SIZES)
    assert [event["xla_cache"] for event in events(first, "writer_compiled")] == ["miss"]

    second, second_log = run_child(tiny_model_dir, cache)
    assert cache_files(cache) == files  # nothing written, nothing rewritten
    assert second_log.count(TF_LOADED) == len(CHILD_BATCH_SIZES) and TF_SAVED not in second_log
    (ready,) = events(second, "writer_ready")
    assert ready["compiled"]["1"]["xla_cache"] == "hit" and "XLA cache hit" in ready["message"]
    assert [event["xla_cache"] for event in events(second, "writer_compiled")] == ["hit"]
    # The programs from the cache write what the freshly compiled ones wrote.
    assert second["tokens"] == first["tokens"]


@pytest.mark.slow
def test_a_cache_folder_that_cannot_be_written_means_no_cache_and_one_warning(tmp_path, tiny_model_dir):  # noqa: F811
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder's parent should be")
    result, _ = run_child(tiny_model_dir, blocker / "xla-cache")
    (off,) = events(result, "xla_cache_off")
    assert f"cannot write to {blocker / 'xla-cache'}" in off["message"]
    assert "compiles its programs on every start" in off["message"]
    (ready,) = events(result, "writer_ready")
    assert ready["compiled"]["1"]["xla_cache"] == "off"
    assert result["compiled"] == list(CHILD_BATCH_SIZES) and result["tokens"]


def test_the_cache_keeps_the_operators_own_xla_flags(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(headmodel, "_xla_cache_ready", False)
    monkeypatch.setattr(headmodel, "_xla_cache", headmodel._xla_cache)
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    caplog.set_level(logging.INFO, logger=headmodel.log.name)
    cache = headmodel.use_xla_cache(tmp_path / "xla-cache")
    assert cache.folder.parent == tmp_path / "xla-cache" and cache.folder.name.startswith("tf")
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 --tf_xla_persistent_cache_directory={cache.folder}"
    assert headmodel.use_xla_cache(tmp_path / "elsewhere") is cache  # once per process
    assert [record.event for record in caplog.records if hasattr(record, "event")] == ["xla_cache"]


def test_an_operators_own_cache_folder_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(headmodel, "_xla_cache_ready", False)
    monkeypatch.setattr(headmodel, "_xla_cache", headmodel._xla_cache)
    flags = f"--tf_xla_persistent_cache_directory={tmp_path / 'theirs'} --tf_xla_persistent_cache_read_only=true"
    monkeypatch.setenv("TF_XLA_FLAGS", flags)
    cache = headmodel.use_xla_cache(tmp_path / "ours")
    assert cache.folder == tmp_path / "theirs" and os.environ["TF_XLA_FLAGS"] == flags
    assert not (tmp_path / "ours").exists()


def test_the_default_cache_folder_is_beside_the_models(tmp_path):
    assert headmodel.xla_cache_folder("", tmp_path / "gpt2") == tmp_path.resolve() / "xla-cache"
    assert headmodel.xla_cache_folder("/srv/cache", tmp_path / "gpt2") == Path("/srv/cache")
    assert headmodel.xla_cache_folder("off", tmp_path / "gpt2") is None


@pytest.mark.slow
def test_with_only_batch_size_1_compiled_a_batch_goes_one_by_one_with_the_same_tokens(tiny_model_dir):  # noqa: F811
    loaded = headmodel.load_model(tiny_model_dir)
    writer = AutodocWriter(loaded, max_new_tokens=NEW_TOKENS, context_tokens=CONTEXT, num_beams=BEAMS,
                           no_repeat_ngram_size=NGRAM, batch_sizes=(1, 4))
    writer.warm_up([1])
    assert writer.compiled_sizes == (1,)
    # While 4 is not compiled the runtime claims one job at a time.
    assert writer.batch_limit(8) == 1
    prompts = [build_prompt(loaded.tokenizer, "", text, CONTEXT) for text in TEXTS[:3]]
    reference = [eager_generate(loaded, prompt.token_ids) for prompt in prompts]
    assert [continuation.token_ids for continuation in writer.write(prompts)] == reference
    assert writer.compiled_sizes == (1,)  # written as 1 + 1 + 1: nothing compiled on the way

    writer.warm_up()
    assert writer.compiled_sizes == (1, 4) and writer.batch_limit(8) == 8
    assert [continuation.token_ids for continuation in writer.write(prompts)] == reference


@pytest.mark.slow
def test_a_size_compiles_in_another_thread_while_write_writes(tiny_model_dir):  # noqa: F811
    """The runtime's arrangement: the writer thread writes with batch size 1 while a thread of
    its own compiles 4; both finish, and the tokens are eager generate's."""
    loaded = headmodel.load_model(tiny_model_dir)
    writer = AutodocWriter(loaded, max_new_tokens=NEW_TOKENS, context_tokens=CONTEXT, num_beams=BEAMS,
                           no_repeat_ngram_size=NGRAM, batch_sizes=(1, 4))
    writer.warm_up([1])
    prompts = [build_prompt(loaded.tokenizer, "", text, CONTEXT) for text in TEXTS[:4]]
    reference = [eager_generate(loaded, prompt.token_ids) for prompt in prompts]
    compiling = threading.Thread(target=writer.warm_up, args=([4],))
    compiling.start()
    written = [writer.write([prompt])[0].token_ids for prompt in prompts]
    compiling.join()
    assert written == reference and writer.compiled_sizes == (1, 4)
    assert [continuation.token_ids for continuation in writer.write(prompts)] == reference


def test_only_the_writers_batch_sizes_can_be_warmed_up(tiny_model_dir):  # noqa: F811
    writer = AutodocWriter(headmodel.load_model(tiny_model_dir), max_new_tokens=4, context_tokens=8,
                           batch_sizes=(1, 4))
    with pytest.raises(ValueError, match=r"batch sizes \[3\] are not among this writer's \(1, 4\)"):
        writer.warm_up([1, 3])
    assert writer.compiled_sizes == ()


def flask_env(database_url, model_dir):
    return {**os.environ, "SRCFLASK_ENV": "development", "SECRET_KEY": "test", "DATABASE_URL": database_url,
            "FLASK_APP": "wsgi", "WRITER_IN_PROCESS": "1", "WRITER_MODEL_DIR": str(model_dir),
            "WRITER_MAX_NEW_TOKENS": "12", "WRITER_CONTEXT_TOKENS": "24", "WRITER_POLL_SECONDS": "0.2",
            "MAIL_IN_PROCESS": "0", "LOG_FORMAT": "text"}


@pytest.mark.slow
def test_flask_run_starts_the_writer_with_the_server_in_the_serving_process_only(app_context, database_url,
                                                                               tiny_model_dir, tmp_path):  # noqa: F811
    """docker-compose.yml's development server (`flask run --debug`: a reloader process watching
    the files and the serving process it starts): an autodoc queued before the start is
    written without any request, by one writer."""
    make_document(make_user("sponsor"), make_user("editor"), title="T", body="The table shows the mean")
    port = free_port()
    server = Process("flask run", [sys.executable, "-m", "flask", "run", "--debug", "--port", str(port)],
                     tmp_path / "flask-run.log", cwd=WEB_ROOT, env=flask_env(database_url, tiny_model_dir))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.popen.poll() is None:
            db.session.expire_all()
            if db.session.scalars(select(Autodoc.status)).all() == ["done"]:
                break
            time.sleep(0.5)
    finally:
        server.stop()
    db.session.expire_all()
    assert db.session.scalars(select(Autodoc.status)).all() == ["done"], server.output()[-3000:]
    assert server.output().count("srcflask.writer: writer ready") == 1


def test_other_flask_commands_start_no_writer(database_url, tiny_model_dir):  # noqa: F811
    """`flask shell` stands for every command but `run`: its app runs no writer thread."""
    done = subprocess.run([sys.executable, "-m", "flask", "shell"], cwd=WEB_ROOT, capture_output=True, text=True,
                          input="import threading\nprint('threads:', sorted(t.name for t in threading.enumerate()))\n",
                          env=flask_env(database_url, tiny_model_dir), timeout=120)
    assert done.returncode == 0, done.stderr
    threads = next(line for line in done.stdout.splitlines() if "threads:" in line)
    assert "MainThread" in threads and "writer-0" not in threads
