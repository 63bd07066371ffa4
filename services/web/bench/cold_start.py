"""Cold start: from a fresh writer process to its first autodoc, with an empty and a warm XLA cache.

    cd services/web && .venv/bin/python -m bench.cold_start --model-dir /tmp/gpt2-small   # about 8 minutes
    cd services/web && .venv/bin/python -m bench.cold_start --quick                       # tiny GPT-2, development only

Target (issue 17): the first autodoc within 25 s of a restart on a warm cache.

Each start is a fresh `flask writer run` process with production's settings (tests/prodstack.py's
production_env: .env.prod, production's WRITER_NICE, JSON log), the random GPT-2-small of
bench/writer_bench.py (--model-dir keeps it between runs), a throwaway PostgreSQL database, and
XLA's persistent compilation cache in a folder of its own (WRITER_XLA_CACHE_DIR): emptied before
the "empty" starts, left as the previous start filled it for the "warm" ones. Before each start
the queue holds `--queued` autodocs (documents saved through the app's own service, 40-token
prompts of English text), nothing else runs, and the clock starts just before the process
does. The writer's own log lines (model_loaded, writer_ready, writer_compiled, autodoc_written)
give the split:

  startup   process start to the model's load (Python, the app, the first queries)
  import    importing TensorFlow and transformers
  load      the tokenizer and the weights (from_pretrained, tf_model.h5)
  trace     tracing the beam search for every batch size (before any writing: see
            AutodocWriter.trace)
  batch 1   XLA's compilation of the batch-1 program (or its load from the cache) and one
            warm-up run of it
  write     the first autodoc (claimed once batch 1 is ready; batch 1)

With 8 queued: when batch sizes 4 and 8 become available (compiled in the background while
batch 1 writes) and when the 8th autodoc is written.

`--profile` adds, in one process per cache state, the pieces of a batch size's compile measured
apart (trace: get_concrete_function; first call: XLA compile or cache load + one run; second call:
one run) for batch sizes 1, 4 and 8.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from .load import migrate, model_folder, wait_for
from .writer_bench import RESULTS

WEB_ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 25
SCENARIOS = [("empty", 1), ("warm", 1), ("warm", 1), ("empty", 8), ("warm", 8)]
LARGER_SIZES = (4, 8)  # AutodocWriter's batch sizes after 1, compiled in the background


def queue_autodocs(database_url, count, prompt_texts):
    """`count` new documents saved the way the app saves them: each queues one autodoc."""
    from srcflask import create_app
    from srcflask.extensions import db
    from tests.factories import make_document, make_user

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, LOG_LEVEL="WARNING")
    with app.app_context():
        sponsor, editor = make_user("sponsor"), make_user("editor")
        for number in range(count):
            make_document(sponsor, editor, title=f"Cold start {number}", body=prompt_texts[number % len(prompt_texts)])
        db.engine.dispose()


def english_texts():
    """Document bodies of about 40 GPT-2 tokens: windows of the Python licence (stable English)."""
    text = (Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
            / "LICENSE.txt").read_text()
    words = text.split()
    return [" ".join(words[start:start + 30]) for start in range(300, 300 + 16 * 61, 61)]


def log_events(log_path):
    """The writer's JSON log lines with an `event`, each with its time as a UNIX timestamp."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "event" in record:
            record["at"] = datetime.fromisoformat(record["time"]).timestamp()
            found.append(record)
    return found


def one_start(env, queued, log_path):
    """Start `flask writer run`, wait for its `queued` autodocs and its larger batch sizes, stop
    it; the split in seconds."""
    from tests.prodstack import Process

    started = time.time()
    writer = Process("writer", [str(WEB_ROOT / ".venv" / "bin" / "flask"), "writer", "run"], log_path,
                     cwd=WEB_ROOT, env=env)
    def done():
        events = [event["event"] for event in log_events(log_path)]
        return (events.count("autodoc_written") >= queued and events.count("writer_compiled") >= len(LARGER_SIZES)
                or writer.popen.poll() is not None)

    try:
        wait_for(f"{queued} autodocs written and batch sizes {LARGER_SIZES} compiled", done, timeout=900)
    finally:
        writer.stop()
    events = log_events(log_path)
    by_event = {}
    for event in events:
        by_event.setdefault(event["event"], []).append(event)
    if "autodoc_written" not in by_event:
        raise RuntimeError(f"the writer wrote nothing:\n{log_path.read_text()[-3000:]}")
    loaded, = by_event["model_loaded"]
    ready, = by_event["writer_ready"]
    written = by_event["autodoc_written"]
    load_began = loaded["at"] - loaded["load_seconds"]
    result = {
        "queued": queued,
        "xla_cache": ready["compiled"]["1"]["xla_cache"],
        "startup": load_began - started,
        "import": loaded["import_seconds"],
        "load": loaded["load_seconds"] - loaded["import_seconds"],
        "trace": ready["trace_seconds"],
        "batch_1": ready["compile_seconds"],
        "ready_at": ready["at"] - started,
        "write": written[0]["at"] - ready["at"],
        "first_autodoc": written[0]["at"] - started,
        "last_autodoc": written[-1]["at"] - started,
        "batches": [event["batch_size"] for event in written],
        "compiled": {str(e["batch_size"]): {"at": e["at"] - started, "seconds": e["seconds"],
                                            "xla_cache": e["xla_cache"]} for e in by_event.get("writer_compiled", [])},
    }
    return result


def profile(model_dir, cache_dir, sizes):
    """In this (fresh) process: import, load and each size's trace / first call / second call."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    started = time.perf_counter()
    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.evaluation.autodocwriter import AutodocWriter

    loaded = load_model(model_dir, xla_cache_dir=cache_dir)
    imported = loaded.info["import_seconds"]
    result = {"import": imported, "load": loaded.info["load_seconds"] - imported, "sizes": {}}
    writer = AutodocWriter(loaded, max_new_tokens=60, context_tokens=64, batch_sizes=sizes)
    for size in sizes:
        ids, mask = writer._pad([(writer._pad_id,)] * size, size)
        program = writer._programs[size]
        timings = {}
        clock = time.perf_counter()
        program.get_concrete_function(ids, mask, writer._all_steps)
        timings["trace"] = time.perf_counter() - clock
        for call in ("first_call", "second_call"):
            clock = time.perf_counter()
            program(ids, mask, writer._all_steps).numpy()
            timings[call] = time.perf_counter() - clock
        result["sizes"][str(size)] = timings
    result["total"] = time.perf_counter() - started
    print(json.dumps(result))


def run_profile(model_dir, cache_dir, sizes):
    done = subprocess.run([sys.executable, "-m", "bench.cold_start", "--child-profile", str(model_dir), str(cache_dir),
                           ",".join(map(str, sizes))], cwd=WEB_ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="keep the random GPT-2-small here between runs (built on first use)")
    parser.add_argument("--quick", action="store_true", help="the tiny GPT-2 of the tests: development only")
    parser.add_argument("--profile", action="store_true", help="also profile each batch size's compile (~3 min)")
    parser.add_argument("--no-results", action="store_true", help="print the section, do not append it to RESULTS.md")
    parser.add_argument("--child-profile", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_profile:
        model_dir, cache_dir, sizes = args.child_profile
        profile(model_dir, cache_dir, tuple(int(size) for size in sizes.split(",")))
        return

    from tests.prodstack import production_env, throwaway_database

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cold-start-")))
        model_dir, model_label = model_folder(args, workdir)
        database_url = stack.enter_context(throwaway_database("srcflask_coldstart"))
        migrate(database_url)
        cache = workdir / "xla-cache"
        env = production_env(database_url, model_dir, WRITER_XLA_CACHE_DIR=cache, WRITER_MAX_NEW_TOKENS=60,
                             WRITER_CONTEXT_TOKENS=64, LOG_LEVEL="INFO")
        env.pop("TF_XLA_FLAGS", None)
        texts = english_texts()
        runs = []
        for number, (state, queued) in enumerate(SCENARIOS):
            if state == "empty":
                shutil.rmtree(cache, ignore_errors=True)
            queue_autodocs(database_url, queued, texts)
            print(f"[{time.strftime('%H:%M:%S')}] start {number + 1}/{len(SCENARIOS)}: {state} cache, "
                  f"{queued} queued ...", flush=True)
            result = one_start(env, queued, workdir / f"writer-{number}.log")
            result["state"] = state
            print(json.dumps(result), flush=True)
            runs.append(result)
        profiles = {}
        if args.profile:
            profile_cache = workdir / "profile-cache"
            for state in ("empty", "warm"):
                print(f"[{time.strftime('%H:%M:%S')}] profile, {state} cache ...", flush=True)
                profiles[state] = run_profile(model_dir, profile_cache, (1, 4, 8))
                print(json.dumps(profiles[state]), flush=True)
    section = render(runs, profiles, model_label)
    print(section)
    if not args.no_results:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + section)


def render(runs, profiles, model_label):
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    singles = [run for run in runs if run["queued"] == 1]
    warm_best = min(run["first_autodoc"] for run in singles if run["state"] == "warm")
    lines = [
        "## Cold start",
        "",
        f"Written by `bench/cold_start.py` on {when}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {model_label}; 40-token prompts, 60 new tokens, 5 beams. Each row is a fresh "
        "`flask writer run` with production's settings (WRITER_NICE 7), the autodocs queued before it started; "
        "seconds from the process's start.",
        "",
        "| XLA cache | queued | startup | import TF | load | trace 1/4/8 | batch 1 (compile+run) | first write "
        "| **first autodoc** | batch 4 ready | batch 8 ready | last autodoc | batch sizes used |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        ready = {size: (f"{run['compiled'][size]['at']:.1f} ({run['compiled'][size]['xla_cache']})"
                        if size in run["compiled"] else "-") for size in ("4", "8")}
        lines.append(
            f"| {run['state']} ({run['xla_cache']}) | {run['queued']} | {run['startup']:.1f} | {run['import']:.1f} "
            f"| {run['load']:.1f} | {run['trace']:.1f} | {run['batch_1']:.1f} | {run['write']:.1f} | **{run['first_autodoc']:.1f}** "
            f"| {ready['4']} | {ready['8']} | {run['last_autodoc']:.1f} | {'+'.join(map(str, run['batches']))} |")
    verdict = "met" if warm_best <= TARGET_SECONDS else f"missed by {warm_best - TARGET_SECONDS:.1f} s"
    lines += ["", f"Target: first autodoc within {TARGET_SECONDS} s of a restart on a warm cache: "
              f"{warm_best:.1f} s, {verdict}."]
    if profiles:
        lines += ["", "Each batch size's compile taken apart (one process per cache state; seconds):", "",
                  "| XLA cache | import TF | load | size | trace | first call (compile or cache load + run) "
                  "| second call (run) |", "|---|---|---|---|---|---|---|"]
        for state, result in profiles.items():
            for size, timings in result["sizes"].items():
                lines.append(f"| {state} | {result['import']:.1f} | {result['load']:.1f} | {size} "
                             f"| {timings['trace']:.1f} | {timings['first_call']:.1f} | {timings['second_call']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
