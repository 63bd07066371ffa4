"""Where a decode step of the writer goes, and what XLA's CPU flags change; writes a section of bench/RESULTS.md.

    cd services/web && .venv/bin/python -m bench.writer_profile            # about 10 minutes

The same random GPT-2-small and prompts as bench/writer_bench.py. Two views, both in wall time per
decode step (5 beams per document) and as shares of the whole step, measured in one run:

* **Pieces**: each piece of the step compiled alone with XLA on tensors of the step's shapes: the
  twelve blocks' weight products with their layer norms and activations (the weights the step must
  read), the 50,257-wide output projection, log-softmax, the n-gram ban, top-k over all beams'
  candidates, and the beams' cache reordering.
* **Ablation**: the writer's real search with one piece made free at a time (the output projection
  replaced by a broadcast, the ban by the identity, the cache reordering skipped). A step's cost is
  (a 60-token call - a 2-token call) / 58, so the prompt and the fixed costs of a call drop out. All
  variants run interleaved in one process, so the machine's mood touches them alike. The same
  table compares the weight layouts of the step (autodocwriter._WEIGHT_PARTS: the matrices in 1, 2
  or 4 column blocks).

`--flags` adds the whole search at batch 1 and 8 under each set of XLA_FLAGS worth trying (each in
its own process: XLA reads its flags once).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .writer_bench import BEAMS, CONTEXT, NEW_TOKENS, NGRAM, RESULTS, _cpu_model, _version

HEADING = "## Where a decode step goes"
# The weight layouts compared (autodocwriter._WEIGHT_PARTS and _LOGIT_PARTS): the whole step with
# every weight matrix and the output projection in this many column blocks.
LAYOUTS = {f"weights in {parts} column block{'s' if parts > 1 else ''}": parts for parts in (1, 2, 4)}
FLAG_SETS = {
    "default": "",
    "oneDNN custom calls": "--xla_cpu_experimental_onednn_custom_call=true",
    "XNNPACK dots": "--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
    "YNNPACK dots": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
    "single-threaded Eigen": "--xla_cpu_multi_thread_eigen=false",
}


def _median_ms(function, *args, runs=15):
    function(*args)
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        result = function(*args)
        for tensor in (result if isinstance(result, (tuple, list)) else [result]):
            tensor.numpy()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) * 1000


def pieces(workdir, batch):
    """Each piece of one decode step alone, compiled with XLA, in ms."""
    import numpy as np
    import tensorflow as tf

    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.evaluation.ngramban import ban_repeated_ngrams

    transformer = load_model(workdir / "model").model.transformer
    rows, vocab, heads = batch * BEAMS, transformer.config.vocab_size, transformer.config.n_head
    head_dim = transformer.config.n_embd // heads

    def blocks(x):
        for block in transformer.h:
            attended = block.attn.c_attn(block.ln_1(x))[:, :, :transformer.config.n_embd]
            x = x + block.attn.c_proj(attended)
            x = x + block.mlp(block.ln_2(x), training=False)
        return x

    cache = [tf.random.normal((batch, heads, BEAMS, NEW_TOKENS, head_dim)) for _ in range(2 * len(transformer.h))]
    parents = tf.constant(np.random.default_rng(0).integers(0, BEAMS, (batch, BEAMS)), tf.int32)
    logits = tf.random.normal((rows, vocab))
    tokens = tf.constant(np.random.default_rng(0).integers(0, vocab, (rows, CONTEXT + NEW_TOKENS)), tf.int32)
    compiled = {
        "12 blocks' weight products (+ layer norms, GELU)": (blocks, tf.random.normal((rows, 1, transformer.config.n_embd))),
        "output projection (50,257 wide)": (
            lambda hidden: tf.matmul(hidden, transformer.wte.embeddings, transpose_b=True),
            tf.random.normal((rows, transformer.config.n_embd))),
        "log-softmax": (tf.nn.log_softmax, logits),
        "n-gram ban": (lambda scores, ids: ban_repeated_ngrams(scores, ids, tf.zeros((rows,), tf.int32),
                                                               tf.constant(CONTEXT + NEW_TOKENS // 2), NGRAM),
                       logits, tokens),
        "top-k over all beams": (lambda scores: tf.math.top_k(tf.reshape(scores, (batch, -1)), k=2 * BEAMS), logits),
        "cache reordering": (lambda *layers: [tf.gather(layer, parents, axis=2, batch_dims=1) for layer in layers],
                             *cache),
    }
    return {name: _median_ms(tf.function(function, jit_compile=True), *args)
            for name, (function, *args) in compiled.items()}


def ablation(workdir, batch, runs):
    """The real search with one piece made free at a time: ms per decode step."""
    import tensorflow as tf

    import srcflask.static.src.evaluation.autodocwriter as autodocwriter
    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.features.doctokenization import Prompt

    loaded = load_model(workdir / "model")
    setup = json.loads((workdir / "build.json").read_text())
    prompts = [Prompt("", tuple(ids)) for ids in setup["prompts"][:batch]]
    vocab = loaded.model.config.vocab_size

    def writer(variant, new_tokens):
        real_ban, parts = autodocwriter.ban_repeated_ngrams, (autodocwriter._WEIGHT_PARTS, autodocwriter._LOGIT_PARTS)
        if variant in LAYOUTS:
            autodocwriter._WEIGHT_PARTS = autodocwriter._LOGIT_PARTS = LAYOUTS[variant]
        try:
            made = autodocwriter.AutodocWriter(loaded, max_new_tokens=new_tokens, context_tokens=CONTEXT,
                                               num_beams=BEAMS, no_repeat_ngram_size=NGRAM, batch_sizes=(batch,))
        finally:
            autodocwriter._WEIGHT_PARTS, autodocwriter._LOGIT_PARTS = parts
        if variant == "without the output projection":
            made._logits = lambda hidden: tf.broadcast_to(hidden[:, :1], (hidden.shape[0], vocab))
        elif variant == "without cache reordering":
            select = made._select

            def keep_cache(state, *args):
                return dict(select(state, *args), cache=state["cache"])
            made._select = keep_cache
        elif variant == "without the n-gram ban":
            autodocwriter.ban_repeated_ngrams = lambda scores, *args: scores
        try:
            made.warm_up()  # traced (and the ban looked up) here
        finally:
            autodocwriter.ban_repeated_ngrams = real_ban
        return made

    variants = ["whole step", "without the output projection", "without the n-gram ban", "without cache reordering",
                *LAYOUTS]
    writers = {(variant, length): writer(variant, length) for variant in variants for length in (2, NEW_TOKENS)}
    walls = {key: [] for key in writers}
    for _ in range(runs):
        for key, made in writers.items():
            started = time.perf_counter()
            made.write(prompts)
            walls[key].append(time.perf_counter() - started)
    return {variant: (statistics.median(walls[variant, NEW_TOKENS]) - statistics.median(walls[variant, 2]))
            / (NEW_TOKENS - 2) * 1000 for variant in variants}


def flags_run(workdir, batch, runs):
    """The whole search under this process's XLA_FLAGS: seconds per autodoc."""
    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.evaluation.autodocwriter import AutodocWriter
    from srcflask.static.src.features.doctokenization import Prompt

    loaded = load_model(workdir / "model")
    setup = json.loads((workdir / "build.json").read_text())
    made = AutodocWriter(loaded, max_new_tokens=NEW_TOKENS, context_tokens=CONTEXT, num_beams=BEAMS,
                         no_repeat_ngram_size=NGRAM, batch_sizes=(batch,))
    made.warm_up()
    prompts = [Prompt("", tuple(ids)) for ids in setup["prompts"][:batch]]
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        written = made.write(prompts)
        walls.append(time.perf_counter() - started)
    return {"seconds": statistics.median(walls) / batch, "tokens": [list(one.token_ids) for one in written]}


def child(kind, workdir, batch, runs):
    workdir = Path(workdir)
    result = {"pieces": lambda: pieces(workdir, batch), "ablation": lambda: ablation(workdir, batch, runs),
              "flags": lambda: flags_run(workdir, batch, runs)}[kind]()
    print(json.dumps(result))


def _run_child(workdir, kind, batch, runs, xla_flags=""):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", XLA_FLAGS=xla_flags)
    output = subprocess.run([sys.executable, "-m", "bench.writer_profile", "--child", kind, str(workdir), str(batch),
                             str(runs)], cwd=Path(__file__).resolve().parent.parent, env=env, check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved timed calls per variant")
    parser.add_argument("--flags", action="store_true", help="also time the search under each XLA flag set")
    parser.add_argument("--print-only", action="store_true", help="print the report, leave RESULTS.md alone")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "WORKDIR", "BATCH", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, workdir, batch, runs = args.child
        child(kind, workdir, int(batch), int(runs))
        return
    workdir = Path(tempfile.mkdtemp(prefix="writer-profile-"))
    subprocess.run([sys.executable, "-c", "import sys, json; from pathlib import Path; "
                    "from bench.writer_bench import build; w = Path(sys.argv[1]); "
                    "(w / 'build.json').write_text(json.dumps(build(w)))", str(workdir)],
                   cwd=Path(__file__).resolve().parent.parent, check=True, capture_output=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    measured = {batch: {"pieces": _run_child(workdir, "pieces", batch, args.runs),
                        "ablation": _run_child(workdir, "ablation", batch, args.runs)} for batch in (1, 8)}
    flags = {}
    if args.flags:
        for name, value in FLAG_SETS.items():
            flags[name] = {batch: _run_child(workdir, "flags", batch, args.runs, value) for batch in (1, 8)}
    report = render(measured, flags)
    print(report)
    if not args.print_only:
        write_section(report)


def render(measured, flags):
    lines = [HEADING, "", f"Written by `bench/writer_profile.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}: "
             f"{_cpu_model()}, {os.cpu_count()} logical CPUs; tensorflow-cpu {_version('tensorflow-cpu')}, "
             f"transformers {_version('transformers')}. ms per decode step ({BEAMS} beams per document), medians.",
             "", "| piece (compiled alone) | batch 1, ms | share of the step | batch 8, ms | share of the step |",
             "|---|---|---|---|---|"]
    whole = {batch: measured[batch]["ablation"]["whole step"] for batch in measured}
    for name in measured[1]["pieces"]:
        cells = [f"{measured[batch]['pieces'][name]:.1f} | {measured[batch]['pieces'][name] / whole[batch]:.0%}"
                 for batch in (1, 8)]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += ["", "| the search's step (ablation; layouts) | batch 1, ms | saved | batch 8, ms | saved |",
              "|---|---|---|---|---|"]
    for name in measured[1]["ablation"]:
        cells = []
        for batch in (1, 8):
            value = measured[batch]["ablation"][name]
            cells.append(f"{value:.1f} | {'-' if name == 'whole step' else f'{1 - value / whole[batch]:.0%}'}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    if flags:
        base = flags["default"]
        lines += ["", "| XLA_FLAGS | batch 1, s per autodoc | vs default | batch 8, s per autodoc | vs default "
                  "| same tokens as default |", "|---|---|---|---|---|---|"]
        for name, result in flags.items():
            same = all(result[batch]["tokens"] == base[batch]["tokens"] for batch in (1, 8))
            lines.append(f"| {name} (`{FLAG_SETS[name] or 'none'}`) | {result[1]['seconds']:.2f} | "
                         f"{base[1]['seconds'] / result[1]['seconds']:.2f}x | {result[8]['seconds']:.2f} | "
                         f"{base[8]['seconds'] / result[8]['seconds']:.2f}x | {'yes' if same else 'no'} |")
    return "\n".join(lines) + "\n"


def write_section(report):
    """Replace this benchmark's section of RESULTS.md (or add it after the writer benchmark's)."""
    text = RESULTS.read_text()
    start = text.find("\n" + HEADING)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + "\n" + report + (text[end:] if end >= 0 else "")
    else:
        anchor = text.find("\n## gunicorn settings")
        text = text[:anchor] + "\n" + report + text[anchor:]
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
