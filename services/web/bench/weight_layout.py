"""Which layout of the blocks' weights XLA's CPU dots read faster for the decode step's few rows.

    cd services/web && .venv/bin/python -m bench.weight_layout [ROWS ...]     # default 5 40: batch 1 and 8

The twelve blocks' four products of GPT-2-small (768→2304, 768→768, 768→3072, 3072→768), in four
column blocks as the writer runs them (autodocwriter._StepProducts), compiled with XLA and timed
with x of ROWS rows (5 beams per document): the weights stored as the model keeps them, (in, out),
against stored transposed, (out, in), so that each output is a dot of two contiguous rows, as in
the tied output projection, and against stored in bfloat16 (half the bytes to read; the rows cast
to bfloat16, each product back to float32), the issue's opt-in candidate. Random weights; prints
ms and the bytes of weights read per second.
Measured 2026-12-04 21:48 UTC on an AMD EPYC: the transposed layout was 1.31x slower at 5 rows
(10.5 against 13.8 GB/s) and 1.23x at 40, so the writer keeps the model's own (README, "Speed").
bfloat16: see bench/RESULTS.md, "Against the machine's floors and PyTorch".
"""
import os
import statistics
import sys
import time

LAYERS, PARTS, RUNS = 12, 4, 15
SHAPES = ((768, 2304), (768, 768), (768, 3072), (3072, 768))


def main(rows_list):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    weights = [[rng.standard_normal(shape).astype(np.float32) * 0.02 for shape in SHAPES] for _ in range(LAYERS)]
    layouts = {
        "(in, out), as the model keeps them": [[[tf.constant(part) for part in np.array_split(w, PARTS, axis=1)]
                                                for w in layer] for layer in weights],
        "(out, in), transposed": [[[tf.constant(part)
                                    for part in np.array_split(np.ascontiguousarray(w.T), PARTS, axis=0)]
                                   for w in layer] for layer in weights],
        "(in, out) in bfloat16": [[[tf.constant(part, dtype=tf.bfloat16) for part in np.array_split(w, PARTS, axis=1)]
                                   for w in layer] for layer in weights],
    }
    parameters = sum(a * b for a, b in SHAPES) * LAYERS

    def megabytes(name):
        return parameters * (2 if "bfloat16" in name else 4) / 1e6

    def program(name):
        transposed = name.startswith("(out")
        dtype = tf.bfloat16 if "bfloat16" in name else tf.float32

        @tf.function(jit_compile=True, autograph=False)
        def products(x768, x3072):
            sums = []
            for layer in layouts[name]:
                for (inputs, _), parts in zip(SHAPES, layer):
                    x = tf.cast(x768 if inputs == 768 else x3072, dtype)
                    sums.append(tf.reduce_sum(tf.concat([tf.cast(tf.matmul(x, part, transpose_b=transposed), tf.float32)
                                                         for part in parts], -1)))
            return tf.add_n(sums)
        return products

    programs = {name: program(name) for name in layouts}
    for rows in rows_list:
        x768 = tf.constant(rng.standard_normal((rows, 768)).astype(np.float32))
        x3072 = tf.constant(rng.standard_normal((rows, 3072)).astype(np.float32))
        line = []
        for name, products in programs.items():
            products(x768, x3072).numpy()  # compile
            walls = []
            for _ in range(RUNS):
                started = time.perf_counter()
                products(x768, x3072).numpy()
                walls.append(time.perf_counter() - started)
            ms = statistics.median(walls) * 1000
            line.append(f"{name}: {ms:.1f} ms ({megabytes(name) / ms:.1f} GB/s)")
        print(f"{rows} rows: " + "; ".join(line), flush=True)


if __name__ == "__main__":
    main([int(argument) for argument in sys.argv[1:]] or [5, 40])
