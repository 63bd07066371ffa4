"""What shadow drafts cost a writer: the candidate held in memory beside the active model.

    cd services/web && nice .venv/bin/python -m bench.shadow_cost       # about 5 minutes

Two randomly initialised GPT-2s of GPT-2-small's exact shape (bench/writer_bench.py's build,
and a second one from another seed: the candidate), loaded and compiled the way the writer does
(writer.WriterRuntime._build: the active model for batch sizes 1, 4 and 8; the candidate for
batch size 1 only). Measured in one fresh process:

- resident memory (VmRSS, after a first write) with the active model alone, then with the
  candidate beside it: what holding a second model costs;
- the candidate's load and compile time, paid once per writer process and candidate (on its
  first shadow draft);
- one shadow draft's write (batch 1) against a real batch of 8 (medians of 3): a writer claims
  a shadow draft only when no real autodoc waits, one at a time, so a real autodoc saved just
  after that claim waits at most one such write (on top of the batch already in progress);
- real autodocs (batch 1, the active model) written one after another while the candidate
  loads in a thread of its own, as the writer loads it (writer.CandidateLoad), against the
  same write alone: what a load costs a real autodoc now that it no longer waits the load out.

Appends a "Shadow drafts" section to bench/RESULTS.md.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .writer_bench import BEAMS, CONTEXT, NEW_TOKENS, NGRAM, RESULTS, _timed, build

RUNS = 3
CONFIG = {"WRITER_TF_INTRA_THREADS": 0, "WRITER_TF_INTER_THREADS": 0, "WRITER_MAX_NEW_TOKENS": NEW_TOKENS,
          "WRITER_CONTEXT_TOKENS": CONTEXT, "WRITER_COMPILE_IN_BACKGROUND": False}


def build_both(workdir):
    """The active model (writer_bench's build) and a candidate of the same shape, other weights."""
    import shutil

    import tensorflow as tf
    from transformers import GPT2Config, TFGPT2LMHeadModel

    setup = build(workdir)
    tf.keras.utils.set_random_seed(1)
    candidate = TFGPT2LMHeadModel(GPT2Config())
    candidate(candidate.dummy_inputs)
    candidate.save_pretrained(workdir / "candidate")
    for path in (workdir / "model").iterdir():
        if not (workdir / "candidate" / path.name).exists():
            shutil.copy(path, workdir / "candidate")
    return setup


def resident_mb():
    """This process's resident memory now (not its peak), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(workdir):
    import gc

    import tensorflow  # noqa: F401  (imported before any clock)

    from srcflask.static.src.features.doctokenization import Prompt
    from srcflask.writer import WriterRuntime

    setup = json.loads((workdir / "build.json").read_text())
    result = {"rss_before_mb": resident_mb(), "load_average": os.getloadavg()[0]}
    started = time.perf_counter()
    active = WriterRuntime._build(CONFIG, str(workdir / "model"))
    result["active_load_compile_s"] = time.perf_counter() - started
    assert (active.num_beams, active.no_repeat_ngram_size) == (BEAMS, NGRAM)
    prompts = [Prompt(active.tokenizer.decode(ids), tuple(ids)) for ids in setup["prompts"][:8]]
    active.write(prompts)
    gc.collect()
    result["rss_active_mb"] = resident_mb()

    started = time.perf_counter()
    candidate = WriterRuntime._build(CONFIG, str(workdir / "candidate"), batch_sizes=(1,))
    result["candidate_load_compile_s"] = time.perf_counter() - started
    result["candidate_load_s"] = candidate.loaded.info["load_seconds"]
    candidate.write(prompts[:1])
    gc.collect()
    result["rss_both_mb"] = resident_mb()

    result["shadow_write"], _ = _timed(lambda: candidate.write(prompts[:1]), RUNS)
    result["real_batch_8"], _ = _timed(lambda: active.write(prompts), RUNS)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    result["real_batch_1"], _ = _timed(lambda: active.write(prompts[:1]), RUNS)
    result["during_load"] = writes_during_a_load(WriterRuntime._build, str(workdir / "candidate"),
                                                 lambda: active.write(prompts[:1]))
    return result


def writes_during_a_load(build, folder, write):
    """Seconds of each `write` run back to back while the candidate in `folder` loads and
    compiles in another thread, the load's own seconds and how many writes it saw end."""
    loading = threading.Thread(target=build, args=(CONFIG, folder), kwargs={"batch_sizes": (1,)})
    started = time.perf_counter()
    loading.start()
    writes = []
    while loading.is_alive():
        began = time.perf_counter()
        write()
        writes.append(time.perf_counter() - began)
    loading.join()
    return {"load_s": time.perf_counter() - started, "writes": [round(w, 2) for w in writes],
            "median": statistics.median(writes), "max": max(writes)}


def child(part, workdir):
    workdir = Path(workdir)
    if part == "build":
        result = build_both(workdir)
        (workdir / "build.json").write_text(json.dumps(result))
    else:
        (workdir / "measure.json").write_text(json.dumps(measure(workdir)))


def main():
    with tempfile.TemporaryDirectory(prefix="shadow-cost-") as workdir:
        for part in ("build", "measure"):  # each in a fresh process: the measure's memory is its own
            subprocess.run([sys.executable, "-m", "bench.shadow_cost", "--child", part, workdir], check=True)
        setup = json.loads((Path(workdir) / "build.json").read_text())
        result = json.loads((Path(workdir) / "measure.json").read_text())
    section = render(setup, result)
    print(section)
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write("\n" + section)


def render(setup, r):
    one, both = r["rss_active_mb"], r["rss_both_mb"]
    shadow, batch = r["shadow_write"]["median"], r["real_batch_8"]["median"]
    single, load = r["real_batch_1"]["median"], r["during_load"]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""## Shadow drafts

Written by `bench/shadow_cost.py` on {when}. Two random GPT-2-small-shaped models
({setup["parameters"]:,} parameters each, float32; tokenizer: {setup["tokenizer"]}), {CONTEXT}-token
context, {NEW_TOKENS} new tokens, {BEAMS} beams; loaded and compiled by the writer's own `_build`
(active: batch sizes 1, 4, 8; candidate: batch size 1 only), in one fresh process.

| | resident MB (VmRSS after a first write) |
|---|---|
| writer with the active model | {one:.0f} |
| with the candidate loaded beside it | {both:.0f} |
| the candidate's share | +{both - one:.0f} ({both / one:.2f}x) |

Peak RSS of the process: {r["peak_rss_mb"]:.0f} MB.

| | seconds |
|---|---|
| candidate: load + compile (batch 1), once per process and candidate | {r["candidate_load_compile_s"]:.1f} (load {r["candidate_load_s"]:.1f}) |
| one shadow draft (batch 1), median of {RUNS} | {shadow:.2f} (runs {r["shadow_write"]["runs"]}) |
| a real batch of 8 (active model), median of {RUNS} | {batch:.2f} (runs {r["real_batch_8"]["runs"]}) |
| shadow write / real batch of 8 | {shadow / batch:.2f} |

A writer claims a shadow draft only when no real autodoc waits and one at a time, so a real
autodoc saved right after such a claim waits at most one shadow write ({shadow:.1f} s here, {shadow / batch:.2f}x
a batch of 8) beyond what it would have waited anyway. Once per writer process and candidate
the candidate is loaded and compiled ({r["candidate_load_compile_s"]:.0f} s here), in a thread of its own
(writer.CandidateLoad): real autodocs go on being written meanwhile, sharing the cores with it.

| real autodoc, batch 1, active model | seconds |
|---|---|
| alone, median of {RUNS} | {single:.2f} (runs {r["real_batch_1"]["runs"]}) |
| while the candidate loads beside it: median, slowest of {len(load["writes"])} | {load["median"]:.2f}, {load["max"]:.2f} ({load["median"] / single:.2f}x, {load["max"] / single:.2f}x alone) |
| the load itself, beside those writes | {load["load_s"]:.1f} |
| before (the load in the writer's own thread): an autodoc saved as the load began waited the load + its write | {r["candidate_load_compile_s"] + single:.1f} |

The candidate's float32 weights alone are {setup["parameters"] * 4 / 1e6:.0f} MB; the resident figure above can be
lower when the candidate reuses heap freed after the active model's load (see the peak). The
memory figures are robust on a busy machine; the timings are not: the machine's 1-minute load
average was {r["load_average"]:.1f} when the measure began ({os.cpu_count()} cores).
"""


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
