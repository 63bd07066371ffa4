"""The autodoc writer: GPT-2 beam search compiled with XLA, fed in fixed-shape batches.

The search is the one transformers' TF `generate` runs for num_beams=5, no_repeat_ngram_size=4,
early_stopping=True (a port of `TFGenerationMixin.beam_search`, step for step), and the tests check
that it writes the same tokens as eager `generate` on the same prompt. It differs only in how the
work is laid out, which is where the time goes on a 2-core CPU:

* It is one XLA program per batch size. Prompts are left-padded to `context_tokens` and batches are
  padded up to one of `batch_sizes`, so the program is compiled once per size (warm_up) and reused.
  An attention mask hides the padding and positions are counted over real tokens only, as in
  `generate` with left padding.
* The prompt is run once per document, not once per beam: all beams share its keys and values.
  `generate` repeats the prompt num_beams times and copies the whole cache on every step.
* Each step writes its keys/values in place into a fixed-size cache, and only the generated part of
  the cache follows the beams when they are reselected.
* transformers' n-gram ban cannot run under XLA; ngramban.py is the same rule in tensor form.

The model's own layers (embeddings, layer norms, projections, MLPs, and the whole transformer for the
prompt) do the arithmetic in float32; only the attention of the decoding steps is written here, to
read the shared prompt cache.
"""
import threading
from dataclasses import dataclass

from .ngramban import ban_repeated_ngrams

# transformers' beam search marks impossible scores with -1e9 (not -inf) and relies on it.
_NEG = -1.0e9

# Generation-config options that would make eager `generate` do something this search does not.
_UNSUPPORTED = {
    "repetition_penalty": (None, 1.0),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "bad_words_ids": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_decoder_ids": (None,),
}


@dataclass(frozen=True)
class Continuation:
    """What the model wrote after a prompt: the text and its token ids (end-of-text not included)."""

    text: str
    token_ids: tuple


class AutodocWriter:
    """Writes continuations for batches of prompts with one loaded GPT-2.

    Calls to `write` are serialised by a lock: the compiled programs and TensorFlow's thread pools
    are meant for one writer thread at a time, and parallel calls would only fight over the same
    cores. Compilations are serialised by another lock, so that `warm_up` can compile the larger
    sizes in a thread of its own while `write` already writes with the smaller ones. TensorFlow's
    thread counts are process-wide and set when the model is loaded (load_model's
    intra_op_threads/inter_op_threads).

    `batch_sizes` are the batch shapes warm_up compiles (each costs seconds of compilation and some
    memory); `write` drains its prompts in batches of the largest size compiled so far and pads the
    last batch up to the smallest compiled size that holds it: with only batch size 1 compiled, 3
    prompts go as 1 + 1 + 1.
    """

    def __init__(self, loaded_model, max_new_tokens=60, context_tokens=64, num_beams=5,
                 no_repeat_ngram_size=4, batch_sizes=(1, 4, 8)):
        import tensorflow as tf

        model = loaded_model.model
        config, generation = model.config, model.generation_config
        if context_tokens + max_new_tokens > config.n_positions:
            raise ValueError(f"context_tokens + max_new_tokens ({context_tokens} + {max_new_tokens}) exceeds "
                             f"the model's {config.n_positions} positions")
        if num_beams < 2 or no_repeat_ngram_size < 1 or max_new_tokens < 1 or not batch_sizes:
            raise ValueError("beam search needs num_beams >= 2, no_repeat_ngram_size >= 1, max_new_tokens >= 1 "
                             "and at least one batch size")
        if generation.eos_token_id is None:
            raise ValueError("the model's generation config has no eos_token_id")
        unsupported = [name for name, neutral in _UNSUPPORTED.items() if getattr(generation, name, None) not in neutral]
        if unsupported:
            raise ValueError(f"the model's generation config sets {', '.join(unsupported)}, which this writer "
                             "does not reproduce")
        eos = generation.eos_token_id
        self._eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.loaded = loaded_model
        self.tokenizer = loaded_model.tokenizer
        self.max_new_tokens = max_new_tokens
        self.context_tokens = context_tokens
        self.num_beams = num_beams
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.batch_sizes = tuple(sorted(set(batch_sizes)))
        self._length_penalty = float(generation.length_penalty)
        self._pad_id = self._eos_ids[0]
        self.settings = {
            "num_beams": num_beams,
            "no_repeat_ngram_size": no_repeat_ngram_size,
            "early_stopping": True,
            "length_penalty": self._length_penalty,
            "do_sample": False,
            "max_new_tokens": max_new_tokens,
            "context_tokens": context_tokens,
            "dtype": "float32",
            "backend": "tf-xla",
        }
        self._tf = tf
        self._lock = threading.Lock()
        # Tracing walks the model's Keras layers in Python: one size is traced and compiled at a time.
        self._compile_lock = threading.Lock()
        # One trace and one XLA compilation per input shape, i.e. per batch size: a tf.function of
        # its own per size, so that one size can be compiled (warm_up in another thread) while
        # write runs another. Without AutoGraph: the search's loop is an explicit tf.while_loop and
        # no Python branch looks at a tensor, so AutoGraph's rewriting of the source of every
        # function it reaches (the model's Keras layers included) would only add its cost, most
        # of the first trace's several seconds on every start (bench/cold_start.py --profile).
        self._programs = {size: tf.function(self._beam_search, jit_compile=True, autograph=False)
                          for size in self.batch_sizes}
        # The search's `steps` argument: a whole continuation, or none past the first token (a
        # warm-up run only has to compile its program; writing 60 tokens for nothing cost seconds
        # per size at every start, and the larger sizes' warm-ups ran beside the first real writes).
        self._all_steps, self._no_steps = tf.constant(max_new_tokens - 1), tf.constant(0)
        # The sizes compiled so far, ascending: once there is one, write uses only these.
        self.compiled_sizes = ()
        self._step_products = _StepProducts(model, _WEIGHT_PARTS, _LOGIT_PARTS)

    def warm_up(self, sizes=None):
        """Compile the programs of `sizes` (default: every batch size), smallest first, now rather
        than on a real batch: per size one trace, one XLA compilation (or a load from XLA's
        persistent cache) and one run that stops after the first token. Sizes already compiled are
        skipped. It may run in another thread while write runs: write never waits for it and uses
        each size once it is compiled."""
        sizes = self.batch_sizes if sizes is None else tuple(sorted(set(sizes)))
        unknown = set(sizes) - set(self.batch_sizes)
        if unknown:
            raise ValueError(f"batch sizes {sorted(unknown)} are not among this writer's {self.batch_sizes}")
        for size in sizes:
            self._run(size, *self._pad([(self._pad_id,)] * size, size), self._no_steps)

    def trace(self):
        """Trace the program of every batch size now, without compiling or running it. A traced
        program's name, part of its key in XLA's persistent cache, carries a number from a counter
        TensorFlow shares across the process (the tensors `write` makes move it on): traced in a
        fixed order before any writing, each size gets the same key in every process, so a size
        compiled later, while the writer writes, is still found in the cache."""
        with self._compile_lock:
            for size in self.batch_sizes:
                self._programs[size].get_concrete_function(*self._pad([(self._pad_id,)] * size, size),
                                                           self._all_steps)

    def batch_limit(self, wanted):
        """How many prompts to hand write at once: `wanted`, but while larger sizes are still being
        compiled no more than the largest compiled one (more would go as several batches of that
        size, one after another, when a larger program may be ready by the next batch)."""
        compiled = self.compiled_sizes
        if compiled and compiled[-1] < self.batch_sizes[-1]:
            return min(wanted, compiled[-1])
        return wanted

    def _run(self, size, ids, mask, steps=None):
        """The program of batch size `size` on a padded batch, for at most `steps` tokens after the
        first (default: all of them); the first call of a size traces and compiles it, under the
        compile lock, and marks it compiled."""
        steps = self._all_steps if steps is None else steps
        if size not in self.compiled_sizes:
            with self._compile_lock:
                if size not in self.compiled_sizes:  # not compiled by another thread meanwhile
                    generated = self._programs[size](ids, mask, steps).numpy()
                    self.compiled_sizes = tuple(sorted({*self.compiled_sizes, size}))
                    return generated
        return self._programs[size](ids, mask, steps).numpy()

    def write(self, prompts):
        """One Continuation per prompt, in order. Prompts are Prompt objects (see doctokenization)."""
        token_lists = [tuple(prompt.token_ids) for prompt in prompts]
        for token_ids in token_lists:
            if not 1 <= len(token_ids) <= self.context_tokens:
                raise ValueError(f"a prompt must have 1 to {self.context_tokens} tokens, not {len(token_ids)}")
        results = []
        with self._lock:
            # Only compiled sizes, so that a batch never waits for a compilation (a writer never
            # warmed up compiles each size on its first batch, as a plain tf.function would).
            sizes = self.compiled_sizes or self.batch_sizes
            for begin in range(0, len(token_lists), sizes[-1]):
                chunk = token_lists[begin:begin + sizes[-1]]
                size = next(size for size in sizes if size >= len(chunk))
                generated = self._run(size, *self._pad(chunk, size))
                results.extend(self._continuation(row) for row in generated[:len(chunk)])
        return results

    def _pad(self, chunk, size):
        """Left-pad every prompt to context_tokens and the batch to `size` rows (copies of the first
        prompt: they finish with it, so they never lengthen the loop)."""
        import numpy as np

        rows = list(chunk) + [chunk[0]] * (size - len(chunk))
        ids = np.full((size, self.context_tokens), self._pad_id, dtype=np.int32)
        mask = np.zeros((size, self.context_tokens), dtype=np.int32)
        for row, token_ids in enumerate(rows):
            ids[row, self.context_tokens - len(token_ids):] = token_ids
            mask[row, self.context_tokens - len(token_ids):] = 1
        return self._tf.constant(ids), self._tf.constant(mask)

    def _continuation(self, generated):
        """The tokens before the first end-of-text (the rest is padding), and their text."""
        token_ids = []
        for token in generated.tolist():
            if token in self._eos_ids:
                break
            token_ids.append(token)
        return Continuation(text=self.tokenizer.decode(token_ids, clean_up_tokenization_spaces=False),
                            token_ids=tuple(token_ids))

    # Everything below runs inside the compiled program.

    def _beam_search(self, input_ids, attention_mask, steps):
        """(batch, context) left-padded prompts -> (batch, max_new_tokens) best continuations, padded
        with end-of-text, of at most 1 + `steps` tokens (a scalar tensor: one program serves writing
        and warming up). Mirrors TFGenerationMixin.beam_search with early_stopping=True."""
        tf = self._tf
        transformer = self.loaded.model.transformer
        batch, prompt_len = input_ids.shape
        beams, new_tokens = self.num_beams, self.max_new_tokens
        total_len = prompt_len + new_tokens
        real_len = tf.reduce_sum(attention_mask, axis=1)
        ban_start = tf.repeat(prompt_len - real_len, beams)  # first real token of each (batch*beam) row

        # The prompt, once per document, through the model's own transformer.
        prompt_out = transformer(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=tf.math.cumsum(attention_mask, axis=-1, exclusive=True),
                                 use_cache=True, training=False)
        prompt_cache = prompt_out.past_key_values  # per layer: (2, batch, heads, prompt_len, head_dim)
        prompt_bias = tf.cast(1 - attention_mask, tf.float32)[:, None, None, :] * _NEG
        first_log_probs = tf.nn.log_softmax(self._logits(prompt_out.last_hidden_state[:, -1]))

        heads = self.loaded.model.config.n_head
        head_dim = self.loaded.model.config.n_embd // heads
        # Per layer, keys and values of the generated tokens: (batch, heads, beams, step, head_dim).
        empty = tf.zeros((batch, heads, beams, new_tokens, head_dim))
        state = {
            "generated": tf.constant(0),
            "running": tf.concat([tf.repeat(input_ids[:, None, :], beams, axis=1),
                                  tf.fill((batch, beams, new_tokens), self._pad_id)], axis=-1),
            "running_scores": tf.tile(tf.constant([[0.0] + [_NEG] * (beams - 1)]), [batch, 1]),
            "sequences": tf.fill((batch, beams, total_len), self._pad_id),
            "scores": tf.fill((batch, beams), _NEG),
            "finished": tf.zeros((batch, beams), tf.bool),
            "cache": [(empty, empty) for _ in transformer.h],
        }
        state = self._select(state, tf.repeat(first_log_probs[:, None, :], beams, axis=1), ban_start, prompt_len)

        def keep_going(state):
            # TF beam_search's stopping test, with early_stopping=True.
            best_running = state["running_scores"][:, :1] / (
                tf.cast(state["generated"], tf.float32) ** self._length_penalty)
            worst_finished = tf.where(state["finished"], tf.reduce_min(state["scores"], axis=1, keepdims=True), _NEG)
            improvable = tf.reduce_any(best_running > worst_finished)
            return (state["generated"] < new_tokens) & ~tf.reduce_all(state["finished"]) & improvable

        def step(state):
            logits, cache = self._decode(state, real_len, prompt_cache, prompt_bias)
            return [self._select(dict(state, cache=cache), tf.nn.log_softmax(logits), ban_start, prompt_len)]

        (state,) = tf.while_loop(keep_going, step, [state],
                                 maximum_iterations=tf.minimum(steps, new_tokens - 1))
        # As in transformers: a document none of whose beams finished returns its best running beam.
        any_finished = tf.reduce_any(state["finished"], axis=1)
        best = tf.where(any_finished[:, None], state["sequences"][:, 0], state["running"][:, 0])
        return best[:, prompt_len:]

    def _logits(self, hidden):
        """The LM head: GPT-2 ties it to the token embeddings."""
        return self._step_products.logits(hidden)

    def _decode(self, state, real_len, prompt_cache, prompt_bias):
        """Feed each beam its last token: the logits (batch, beams, vocab) for the next one, and the
        cache with this token's keys/values written at step generated-1."""
        tf = self._tf
        model = self.loaded.model
        transformer = model.transformer
        running, generated = state["running"], state["generated"]
        batch, beams, total_len = running.shape
        new_tokens = total_len - prompt_bias.shape[-1]
        heads = model.config.n_head
        head_dim = model.config.n_embd // heads
        step = generated - 1

        tokens = tf.reshape(running[:, :, total_len - new_tokens - 1 + generated], (batch * beams, 1))
        positions = tf.reshape(tf.repeat(real_len, beams) + step, (batch * beams, 1))
        x = transformer.wte(tokens) + transformer.wpe(positions)
        # Steps not generated yet are masked out; prompt padding is masked by prompt_bias.
        gen_bias = tf.where(tf.range(new_tokens) <= step, 0.0, _NEG)[None, None, None, :]
        scale = tf.math.sqrt(tf.cast(head_dim, tf.float32))
        new_cache = []
        products = self._step_products
        for layer, (block, layer_prompt, (keys, values)) in enumerate(zip(transformer.h, prompt_cache, state["cache"])):
            a = block.ln_1(x)
            # (batch*beams, 1, 3*embd) -> 3 x (batch, heads, beams, head_dim): head-major, like the
            # caches, so every product below is a plain batched matmul over (batch, heads).
            query, key, value = (tf.transpose(tf.reshape(t, (batch, beams, heads, head_dim)), [0, 2, 1, 3])
                                 for t in tf.split(products.dense(a, layer, "attention"), 3, axis=2))
            keys = _write_step(keys, key, step)
            values = _write_step(values, value, step)
            new_cache.append((keys, values))
            prompt_keys, prompt_values = layer_prompt[0], layer_prompt[1]
            prompt_scores = tf.matmul(query, prompt_keys, transpose_b=True) / scale + prompt_bias
            # (batch, heads, beams, 1, head_dim) x (batch, heads, beams, head_dim, steps): each beam's own cache.
            own_scores = tf.matmul(query[:, :, :, None, :], keys, transpose_b=True)[:, :, :, 0, :] / scale + gen_bias
            # + 1e-9 as in transformers' stable_softmax, so the arithmetic stays the same.
            weights = tf.nn.softmax(tf.concat([prompt_scores, own_scores], axis=-1) + 1e-9, axis=-1)
            prompt_len = prompt_keys.shape[2]
            attended = (tf.matmul(weights[..., :prompt_len], prompt_values)
                        + tf.matmul(weights[..., prompt_len:][:, :, :, None, :], values)[:, :, :, 0, :])
            attended = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), (batch * beams, 1, heads * head_dim))
            x = x + products.dense(attended, layer, "attention_projection")
            x = x + products.dense(block.mlp.act(products.dense(block.ln_2(x), layer, "expansion")), layer,
                                   "mlp_projection")
        hidden = transformer.ln_f(x)
        return tf.reshape(self._logits(tf.reshape(hidden, (batch * beams, -1))), (batch, beams, -1)), new_cache

    def _select(self, state, log_probs, ban_start, prompt_len):
        """One beam-search update (steps 2 to 8 of TFGenerationMixin.beam_search): ban repeated
        n-grams, keep the 2*beams best candidates, move finished ones to `sequences`, reorder the
        running beams and their cache."""
        tf = self._tf
        running = state["running"]
        batch, beams, total_len = running.shape
        vocab = log_probs.shape[-1]
        cur_len = prompt_len + state["generated"]

        log_probs = ban_repeated_ngrams(tf.reshape(log_probs, (batch * beams, vocab)),
                                        tf.reshape(running, (batch * beams, total_len)),
                                        ban_start, cur_len, self.no_repeat_ngram_size)
        log_probs = tf.reshape(log_probs, (batch, beams, vocab)) + state["running_scores"][:, :, None]
        topk_log_probs, topk_indices = tf.math.top_k(tf.reshape(log_probs, (batch, beams * vocab)), k=2 * beams)
        topk_beams = topk_indices // vocab
        topk_ids = topk_indices % vocab
        topk_sequences = tf.gather(running, topk_beams, batch_dims=1)
        topk_sequences = tf.where(tf.range(total_len) == cur_len, topk_ids[:, :, None], topk_sequences)

        eos_in_next = tf.reduce_any(topk_ids[:, :, None] == tf.constant(self._eos_ids), axis=-1)
        just_finished = eos_in_next & (tf.range(2 * beams) < beams)[None, :]
        # Candidates ending in EOS cannot keep running.
        running_topk_log_probs = topk_log_probs + tf.cast(eos_in_next, tf.float32) * _NEG
        next_topk = tf.math.top_k(running_topk_log_probs, k=beams).indices
        next_running = tf.gather(topk_sequences, next_topk, batch_dims=1)
        next_running_scores = tf.gather(running_topk_log_probs, next_topk, batch_dims=1)

        finished_scores = topk_log_probs / (tf.cast(cur_len + 1 - prompt_len, tf.float32) ** self._length_penalty)
        batch_full = tf.reduce_all(state["finished"], axis=-1, keepdims=True)  # early_stopping=True
        finished_scores += tf.cast(~just_finished | batch_full, tf.float32) * _NEG
        merged_scores = tf.concat([state["scores"], finished_scores], axis=1)
        best = tf.math.top_k(merged_scores, k=beams).indices

        parents = tf.gather(topk_beams, next_topk, batch_dims=1)
        return {
            "generated": state["generated"] + 1,
            "running": next_running,
            "running_scores": next_running_scores,
            "sequences": tf.gather(tf.concat([state["sequences"], topk_sequences], axis=1), best, batch_dims=1),
            "scores": tf.gather(merged_scores, best, batch_dims=1),
            "finished": tf.gather(tf.concat([state["finished"], just_finished], axis=1), best, batch_dims=1),
            # The generated part of the cache follows its beams; the prompt part is shared.
            "cache": [(tf.gather(keys, parents, axis=2, batch_dims=1), tf.gather(values, parents, axis=2, batch_dims=1))
                      for keys, values in state["cache"]],
        }


# How the decode step's weight products are laid out: each block's matrices (and the tied output
# projection) as this many column blocks, copied once at load (~500 MB more for GPT-2-small). With
# 5 beams a step multiplies a few rows by every weight matrix, so its time goes into reading the
# weights, and XLA runs independent products of column blocks on both cores at once: 4 blocks
# made a step 11% faster at batch 1 and 12% at batch 8 than the model's own matrices
# (bench/writer_profile.py, "Where a decode step goes"). 1 uses the model's variables, no copy.
_WEIGHT_PARTS = 4
_LOGIT_PARTS = 4


class _StepProducts:
    """The decode step's weight products, x @ W + b per block and the tied output projection, over
    weights split into column blocks (see _WEIGHT_PARTS). Splitting the columns leaves every output
    element the same sum over the same inputs, so the tokens do not change (tests check them
    against eager generate)."""

    _LAYERS = {"attention": ("attn", "c_attn"), "attention_projection": ("attn", "c_proj"),
               "expansion": ("mlp", "c_fc"), "mlp_projection": ("mlp", "c_proj")}

    def __init__(self, model, weight_parts, logit_parts):
        import tensorflow as tf

        self._tf = tf
        transformer = model.transformer
        self._blocks = []
        for block in transformer.h:
            layers = {name: getattr(getattr(block, owner), attribute) for name, (owner, attribute) in self._LAYERS.items()}
            self._blocks.append({name: (self._columns(layer.weight, weight_parts, axis=1), layer.bias)
                                 for name, layer in layers.items()})
        # The embeddings are (vocab, embd): the output projection's column blocks are their row blocks.
        self._embeddings = self._columns(transformer.wte.embeddings, logit_parts, axis=0)

    def dense(self, x, layer, name):
        """(..., in) -> (..., out): what the block's Conv1D `name` computes."""
        parts, bias = self._blocks[layer][name]
        product = self._products(self._tf.reshape(x, (-1, x.shape[-1])), parts, transpose=False)
        return self._tf.reshape(product + bias, (*x.shape[:-1], product.shape[-1]))

    def logits(self, hidden):
        return self._products(hidden, self._embeddings, transpose=True)

    def _products(self, x, parts, transpose):
        products = [self._tf.matmul(x, part, transpose_b=transpose) for part in parts]
        return self._tf.concat(products, axis=-1) if len(products) > 1 else products[0]

    def _columns(self, weight, parts, axis):
        """`weight` itself (parts == 1: no copy), or a copy as `parts` contiguous constants along `axis`."""
        if parts == 1:
            return [weight]
        tf = self._tf
        return [tf.constant(part) for part in tf.split(weight, _even_splits(weight.shape[axis], parts), axis=axis)]


def _even_splits(length, parts):
    return [length // parts + (1 if index < length % parts else 0) for index in range(parts)]


def _write_step(cache, entry, step):
    """cache (batch, heads, beams, new_tokens, head_dim) with `entry` (batch, heads, beams, head_dim)
    written at `step`; XLA updates the buffer in place."""
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

    return dynamic_update_slice(cache, entry[:, :, :, None, :], tf.stack([0, 0, 0, step, 0]))

