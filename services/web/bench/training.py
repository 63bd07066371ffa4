"""Benchmark of fine-tuning throughput: Keras `fit` as it is, and with an XLA-compiled train step.

    cd services/web && .venv/bin/python -m bench.training                 # several minutes: mostly first steps
    cd services/web && .venv/bin/python -m bench.training --write         # and put the report in RESULTS.md
    cd services/web && .venv/bin/python -m bench.training --model tiny --steps 2   # a smoke run, ~1 minute
    cd services/web && .venv/bin/python -m bench.training --modes writer,writer+training   # the writer's cost

Both modes train through the trainer's own code (srcflask/static/src/pipeline/finetune.py:
fine_tune, its AdamW, its loss on continuation tokens), once with jit_compile=False and once with
jit_compile=True, each in a process of its own (its memory, its compilation), on the same model
and the same pairs. The model is a randomly initialised GPT-2 of GPT-2-small's shape, built as
bench/writer_bench.py builds it (no pretrained weights can be had here; the arithmetic per token is
the same). Every row is exactly --tokens tokens (long prompts, cut from the start by fine_tune's
window, and a ~60-token continuation, as an autodoc), so every step processes batch x tokens tokens.

fine_tune reports after every step (its on_progress); the time between two reports is one step.
The first step holds the tracing and, with XLA, the compilation: it is reported apart, and the
rate is the median over the --steps steps after it. After the last one on_progress answers False,
which stops training before anything is saved (nothing is written but the temporary model).

A training step costs about 6 FLOPs per matmul weight per token (forward, and the two products of
the backward pass) plus the attention scores; the report divides the measured rate by what the
machine's fp32 matmul rate (numpy, measured in the same run) would allow: its share of the floor.
From the rate it also estimates one epoch over 1,000 approved autodocs of that many tokens each.

What training costs the writer: the `writer` part writes batches of WRITER_BATCH autodocs with the
writer's own AutodocWriter (XLA, 5 beams, 60 new tokens) at the writer's production niceness, alone;
`writer+training` writes the same batches while a plain-`fit` training process runs beside it at the
trainer's niceness (TRAINER_NICE's default), started before the clock and stopped after it. Their
ratio is the slowdown an autodoc sees while a run is going, on the same machine in the same run.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .writer_bench import _children_cpu_seconds, _cpu_model, _machine_cpu_seconds, _version, _wait_for_idle

MODES = {"fit": False, "xla": True}  # mode -> jit_compile
WRITER_PARTS = ("writer", "writer+training")
WRITER_BATCH, WRITER_RUNS, PROMPT_TOKENS = 8, 3, 40
CONTINUATION_CHARS = 240  # ~60 GPT-2 tokens of English, as an autodoc
PROMPT_CHARS = 1500  # always longer than the window: fine_tune keeps its end
AUTODOCS = 1000
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Training throughput"


# Setup and modes (each in a child process, so the parent never imports TensorFlow)


def build(workdir, model):
    """Save the model and tokenizer to workdir/model and the pairs' texts to workdir/texts.json."""
    if model == "tiny":
        from tests.tinygpt2 import build_tiny_gpt2

        build_tiny_gpt2(workdir / "model")
        tokenizer = "the test suite's tiny byte-level BPE (tests/tinygpt2.py)"
    else:
        from .writer_bench import build as build_gpt2_small

        tokenizer = build_gpt2_small(workdir)["tokenizer"]
    text = (Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
            / "LICENSE.txt").read_text()
    return {"tokenizer": tokenizer, "text": " ".join(text.split())}


def train(workdir, mode, args, steps=None, on_step=None):
    """Fine-tune for 1 + `steps` (default args.steps) steps with fine_tune and time each step;
    `on_step(number)` is told of each step as it ends."""
    from transformers import GPT2TokenizerFast

    from srcflask.static.src.pipeline.finetune import TrainingCancelled, encode_pairs, fine_tune

    steps = steps or args.steps
    text = json.loads((workdir / "build.json").read_text())["text"]
    rows = args.batch_size * (steps + 1)
    pairs = [_pair(text, row) for row in range(rows)]
    validation = pairs[:args.batch_size]  # one batch: the parent's and no epoch's measure costs more
    tokenizer = GPT2TokenizerFast.from_pretrained(workdir / "model")
    shape = encode_pairs(tokenizer, pairs, args.tokens).input_ids.shape
    reports = []

    def on_progress(progress):
        reports.append(time.perf_counter())
        if on_step:
            on_step(len(reports))
        return len(reports) <= steps  # False after the last timed step: stop, save nothing

    started = time.perf_counter()
    try:
        fine_tune(workdir / "model", pairs, validation, workdir / f"out-{mode}", epochs=1,
                  batch_size=args.batch_size, learning_rate=5e-5, weight_decay=0.01, patience=0, seed=1234,
                  max_tokens=args.tokens, jit_compile=MODES[mode], on_progress=on_progress)
    except TrainingCancelled:
        pass
    steps = [later - earlier for earlier, later in zip(reports, reports[1:])]
    return {"rows": shape[0], "row_tokens": shape[1], "first_step_after_start": reports[0] - started,
            "steps": steps}


def _pair(text, row):
    """A long prompt and an autodoc-sized continuation, from a different place of `text` per row."""
    start = (row * 397) % max(1, len(text) - PROMPT_CHARS - CONTINUATION_CHARS)
    middle = start + PROMPT_CHARS
    return {"prompt": text[start:middle], "continuation": text[middle:middle + CONTINUATION_CHARS]}


def write_autodocs(workdir, args, beside_training):
    """Seconds per autodoc of the writer (batches of WRITER_BATCH), alone or beside a training
    process; this process runs at the writer's production niceness, the trainer at its own."""
    from srcflask.config import ProductionSettings, Settings
    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.evaluation.autodocwriter import AutodocWriter
    from srcflask.static.src.features.doctokenization import Prompt

    os.nice(ProductionSettings.model_fields["WRITER_NICE"].default)
    loaded = load_model(workdir / "model")
    writer = AutodocWriter(loaded, max_new_tokens=60, context_tokens=64, batch_sizes=(WRITER_BATCH,))
    writer.warm_up()
    text = json.loads((workdir / "build.json").read_text())["text"]
    ids = loaded.tokenizer(text, verbose=False)["input_ids"]
    windows = [ids[start:start + PROMPT_TOKENS] for start in range(200, 200 + WRITER_BATCH * 97, 97)]
    prompts = [Prompt(loaded.tokenizer.decode(window), tuple(window)) for window in windows]
    trainer, steps_file = None, workdir / "background-steps"
    if beside_training:
        niceness = Settings.model_fields["TRAINER_NICE"].default
        trainer = subprocess.Popen(
            # This child's own arguments, its "--child PART WORKDIR" replaced.
            [sys.executable, "-m", "bench.training", *sys.argv[1:-3], "--child", "background-fit", str(workdir)],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.nice(niceness))
        while not steps_file.exists():  # training is under way once its first step ended
            if trainer.poll() is not None:
                raise RuntimeError("the training process ended before its first step")
            time.sleep(0.5)
    try:
        steps_before = int(steps_file.read_text()) if trainer else 0
        seconds = []
        for _ in range(WRITER_RUNS):
            started = time.perf_counter()
            writer.write(prompts)
            seconds.append((time.perf_counter() - started) / len(prompts))
        steps_meanwhile = int(steps_file.read_text()) - steps_before if trainer else 0
    finally:
        if trainer:
            trainer.kill()
            trainer.wait()
    return {"seconds_per_autodoc": seconds, "training_steps_meanwhile": steps_meanwhile}


def matmul_gflops(size=2048, runs=5):
    """The machine's fp32 matrix product rate (numpy, all cores), best of `runs`."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size), np.float32), rng.standard_normal((size, size), np.float32)
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(runs))
    return 2 * size ** 3 / best / 1e9


def _seconds(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def child(part, workdir, args):
    """Run one part in this process and write its JSON beside the model."""
    import resource

    workdir = Path(workdir)
    if part == "build":
        result = build(workdir, args.model)
    elif part == "floor":
        result = {"matmul_gflops": matmul_gflops()}
    elif part == "background-fit":  # runs until the writer part kills it
        steps = workdir / "background-steps"
        train(workdir, "fit", args, steps=100, on_step=lambda number: steps.write_text(str(number)))
        return
    elif part in WRITER_PARTS:
        result = write_autodocs(workdir, args, beside_training=part == "writer+training")
    else:
        result = train(workdir, part, args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (workdir / f"{part}.json").write_text(json.dumps(result))


# The parent: runs the parts, prints (and with --write keeps) the report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode, after the first (default 5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per row (default 128)")
    parser.add_argument("--modes", default=",".join([*MODES, *WRITER_PARTS]),
                        help="comma-separated subset of " + ", ".join([*MODES, *WRITER_PARTS]))
    parser.add_argument("--model", choices=("gpt2-small", "tiny"), default="gpt2-small",
                        help="tiny: the test suite's 2-layer GPT-2, for a quick check of the bench itself")
    parser.add_argument("--wait-idle", type=float, default=0,
                        help="before each mode, wait up to this many seconds for an idle CPU (default 0: don't)")
    parser.add_argument("--write", action="store_true", help="put the report in bench/RESULTS.md (idle machine only)")
    parser.add_argument("--child", nargs=2, metavar=("PART", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 1 or args.tokens < 2:
        parser.error("--steps and --batch-size must be at least 1, --tokens at least 2")
    if args.child:
        child(*args.child, args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="training-bench-"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    results, others = {}, {}
    try:
        for part in ["build", "floor", *args.modes.split(",")]:
            if part not in ("build", "floor") and args.wait_idle:
                _wait_for_idle(args.wait_idle)
            print(f"[{time.strftime('%H:%M:%S')}] {part} ...", flush=True)
            busy, ours, started = _machine_cpu_seconds(), _children_cpu_seconds(), time.perf_counter()
            subprocess.run([sys.executable, "-m", "bench.training", *sys.argv[1:], "--child", part, str(workdir)],
                           cwd=Path(__file__).resolve().parent.parent, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # CPU the rest of the machine used meanwhile, in cores: what this part competed with.
            others[part] = max(0.0, ((_machine_cpu_seconds() - busy) - (_children_cpu_seconds() - ours)) / (
                time.perf_counter() - started))
            results[part] = json.loads((workdir / f"{part}.json").read_text())
        config = json.loads((workdir / "model" / "config.json").read_text())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = render(results, others, config, args)
    if args.write:
        write_section(report)
    print(report)


def training_flops_per_token(config, tokens):
    """~6 FLOPs per matmul weight per token (the LM head included: it shares the embedding but
    is a product of its own), plus the attention scores and their use (QK^T and AV, forward and
    backward) over a row of `tokens`."""
    d, layers = config["n_embd"], config["n_layer"]
    inner = config.get("n_inner") or 4 * d
    matmul_weights = layers * (4 * d * d + 2 * d * inner) + d * config["vocab_size"]
    return 6 * matmul_weights + 6 * 2 * layers * tokens * d


def render(results, others, config, args):
    from srcflask.services.registry import parameter_count

    setup, floor = results.pop("build"), results.pop("floor")["matmul_gflops"]
    writing = {part: results.pop(part) for part in WRITER_PARTS if part in results}
    row_tokens = next(iter(results.values()))["row_tokens"] if results else args.tokens
    flops = training_flops_per_token(config, row_tokens)
    ceiling = floor * 1e9 / flops
    lines = [
        HEADING,
        "",
        f"Written by `bench/training.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}. Rerun it before relying on "
        "these numbers: the machine is shared and noisy.",
        "",
        f"- Machine: {_cpu_model()}, {os.cpu_count()} logical CPUs; fp32 matmul floor measured in this run: "
        f"{floor:.0f} GFLOP/s (numpy, 2048x2048; other processes used {others['floor']:.2f} cores meanwhile).",
        f"- tensorflow-cpu {_version('tensorflow-cpu')}, tf-keras {_version('tf_keras')}, "
        f"transformers {_version('transformers')}.",
        f"- Model: randomly initialised GPT-2 ({args.model}: {config['n_layer']} layers, {config['n_embd']} wide, "
        f"{config['vocab_size']:,} tokens, {parameter_count(config):,} parameters), float32. "
        f"Tokenizer: {setup['tokenizer']}.",
        f"- Batch {args.batch_size} x {row_tokens} tokens; the trainer's fine_tune (AdamW, loss on the "
        f"continuation tokens); median of {args.steps} steps after the first. ~{flops / 1e6:,.0f} MFLOP per "
        f"token trained, so the matmul floor allows at most ~{ceiling:,.0f} tokens/s.",
        "",
        "| mode | tokens/s | s per step | steps (s) | share of the floor | first step, from the call (s) "
        f"| one epoch over {AUTODOCS:,} autodocs | peak RSS MB | other processes' CPU (cores) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rates = {}
    for mode, result in results.items():
        step = statistics.median(result["steps"])
        rates[mode] = args.batch_size * row_tokens / step
        epoch = AUTODOCS * row_tokens / rates[mode]
        lines.append(
            f"| {mode} (jit_compile={MODES[mode]}) | {rates[mode]:,.0f} | {step:.2f} "
            f"| {', '.join(f'{seconds:.2f}' for seconds in result['steps'])} | {rates[mode] / ceiling:.0%} "
            f"| {result['first_step_after_start']:.1f} | {epoch / 60:.1f} min | {result['peak_rss_mb']:.0f} "
            f"| {others[mode]:.2f} |")
    if {"fit", "xla"} <= rates.keys():
        lines += ["", f"XLA against plain `fit`: {rates['xla'] / rates['fit']:.2f}x the tokens per second."]
    if writing:
        lines += [
            "",
            f"The writer while training runs (batches of {WRITER_BATCH} autodocs, median of {WRITER_RUNS}; the writer "
            "at its production niceness, plain-`fit` training beside it at TRAINER_NICE's):",
            "",
            "| writer | s per autodoc | runs (s per autodoc) | training steps meanwhile | peak RSS MB |",
            "|---|---|---|---|---|",
        ]
        for part, result in writing.items():
            lines.append(f"| {part} | {statistics.median(result['seconds_per_autodoc']):.2f} "
                         f"| {', '.join(f'{seconds:.2f}' for seconds in result['seconds_per_autodoc'])} "
                         f"| {result['training_steps_meanwhile']} | {result['peak_rss_mb']:.0f} |")
        if len(writing) == 2:
            alone, beside = (statistics.median(writing[part]["seconds_per_autodoc"]) for part in WRITER_PARTS)
            lines += ["", f"Training beside it makes an autodoc take {beside / alone:.2f}x as long."]
    lines += [
        "",
        "The first step holds the model's load, the parent's validation loss and the tracing (and, with XLA,",
        "the compilation); a run pays it once. The epoch estimate is the training steps alone (no validation).",
        "",
    ]
    return "\n".join(lines)


def write_section(report):
    """Put the report in RESULTS.md in place of this benchmark's last one (at the end the first time),
    keeping every other benchmark's section as it is."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(f"\n{HEADING}\n")
    if start < 0:
        RESULTS.write_text(text.rstrip("\n") + "\n\n" + report)
        return
    end = text.find("\n## ", start + 1)
    RESULTS.write_text(text[:start + 1] + report + (text[end:] if end >= 0 else ""))


if __name__ == "__main__":
    main()
