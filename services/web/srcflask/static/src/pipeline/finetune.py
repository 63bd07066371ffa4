"""Fine-tuning a GPT-2 on (prompt → continuation) pairs, and measuring one on them.

The writer continues a prompt, so a model learns from what editors approved by being shown the
prompt and asked for the approved continuation: each pair is tokenized as prompt + continuation +
end-of-text, and only the continuation's tokens (its end-of-text included) count in the loss. The
prompt's tokens are the context, labelled -100, which transformers' TF loss leaves out (it divides by
the number of labels that are not -100), and so does `evaluate` here. A pair longer than `max_tokens`
loses the start of its prompt first, as the writer's own prompt window does; only a continuation that
alone fills the window is cut at its end.

Training is Keras `fit` on TFGPT2LMHeadModel's own loss with AdamW (no weight decay on biases and
layer norms, as in GPT-2's training), fixed seeds, and early stopping on the validation loss with the
best epoch's weights restored. The validation loss that early stopping watches is the one `evaluate`
reports — the mean over every continuation token of the validation side, not a mean of batch means —
and the parent's loss is measured by the same code before the first step, so the two numbers the
promotion gate compares come from one definition. Every batch has the same shape (rows padded to the
longest pair, the last batch filled with rows that count for nothing), so an XLA-compiled train step
(`jit_compile=True`) is compiled once.

Nothing here knows of Flask or the database: the caller passes folders and pairs, and hears of
progress through `on_progress`, which may answer False to stop (TrainingCancelled; nothing saved).
Models and tokenizers are read from local folders only, and no code from a folder is ever run.
"""
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..nativelog import quiet_native_startup

IGNORED = -100  # the label transformers' losses skip
# No weight decay on biases and layer norms (GPT-2's recipe): pulling a layer norm's gain towards 0
# is not regularisation. Regular expressions searched in the variables' names.
NO_DECAY = ("bias", r"/ln_\w*/")


class TrainingCancelled(Exception):
    """`on_progress` answered False: training stopped and nothing was saved."""


@dataclass(frozen=True)
class Encoded:
    """Pairs as the model reads them: rows of equal length, right-padded."""

    input_ids: object  # int32 array (rows, length)
    attention_mask: object  # int32 array, 0 on padding
    labels: object  # int32 array, IGNORED on prompt and padding tokens
    tokens: int  # continuation tokens, the ones the loss counts


@dataclass(frozen=True)
class FineTuneResult:
    """What one fine-tuning did, for the model's metadata.json and the run's record."""

    epochs_run: int
    best_epoch: int
    seconds: float
    parent_validation_loss: float
    parent_validation_perplexity: float
    validation_loss: float
    validation_perplexity: float
    validation_tokens: int
    train_tokens: int
    train_pairs: int
    validation_pairs: int
    history: tuple  # validation loss after each epoch


def perplexity(loss):
    """exp(loss), infinite rather than an OverflowError for a hopeless model."""
    return math.exp(loss) if loss < 700 else math.inf


def encode_pairs(tokenizer, pairs, max_tokens, *, fill_to=1):
    """Tokenize `pairs` ({"prompt", "continuation"}) for training or measuring; see the module's
    docstring for the layout. The rows are padded to the longest one, and rows that count for
    nothing are added until their number is a multiple of `fill_to` (the batch size)."""
    import numpy as np

    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2, not {max_tokens}")
    if not pairs:
        raise ValueError("there are no pairs to encode")
    eos = tokenizer.eos_token_id
    rows = []
    for pair in pairs:
        # Text that looks like a special token is plain text, as in the writer's prompts.
        prompt = tokenizer(pair["prompt"], split_special_tokens=True, verbose=False)["input_ids"]
        continuation = tokenizer(pair["continuation"], split_special_tokens=True, verbose=False)["input_ids"]
        # The first continuation token is predicted from the token before it: with no prompt,
        # GPT-2's start of text (the end-of-text token) is that token.
        prompt = prompt or [eos]
        continuation = (continuation + [eos])[:max_tokens - 1]
        rows.append((prompt[-(max_tokens - len(continuation)):], continuation))
    length = max(len(prompt) + len(continuation) for prompt, continuation in rows)
    count = -(-len(rows) // fill_to) * fill_to
    input_ids = np.full((count, length), eos, dtype=np.int32)
    attention_mask = np.zeros((count, length), dtype=np.int32)
    labels = np.full((count, length), IGNORED, dtype=np.int32)
    for row, (prompt, continuation) in enumerate(rows):
        ids = prompt + continuation
        input_ids[row, :len(ids)] = ids
        attention_mask[row, :len(ids)] = 1
        labels[row, len(prompt):len(ids)] = continuation
    return Encoded(input_ids, attention_mask, labels, sum(len(continuation) for _, continuation in rows))


def load_pretrained(model_dir):
    """The TFGPT2LMHeadModel and tokenizer of a local save_pretrained folder (no hub, no remote code)."""
    with quiet_native_startup():
        from transformers import GPT2TokenizerFast, TFGPT2LMHeadModel

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no GPT-2 model in {model_dir} (config.json is missing)")
    tokenizer = GPT2TokenizerFast.from_pretrained(model_dir, local_files_only=True)
    model = TFGPT2LMHeadModel.from_pretrained(model_dir, local_files_only=True)
    return model, tokenizer


def evaluate(model_dir, pairs, *, batch_size, max_tokens):
    """(loss, perplexity, tokens) of the model in `model_dir` on `pairs`: the mean cross-entropy over
    every continuation token, its exp, and how many tokens that is."""
    model, tokenizer = load_pretrained(model_dir)
    encoded = encode_pairs(tokenizer, pairs, max_tokens, fill_to=batch_size)
    loss = _Measure(model, batch_size)(encoded)
    return loss, perplexity(loss), encoded.tokens


class _Measure:
    """The mean loss over the continuation tokens of encoded pairs, with one compiled program."""

    def __init__(self, model, batch_size, jit_compile=False):
        import tensorflow as tf

        self._model, self._batch_size = model, batch_size
        self._sums = tf.function(self._batch_sums, jit_compile=jit_compile)

    def _batch_sums(self, input_ids, attention_mask, labels):
        import tensorflow as tf

        logits = self._model(input_ids=input_ids, attention_mask=attention_mask, training=False).logits
        # Token t is predicted from the logits at t - 1.
        labels, logits = labels[:, 1:], logits[:, :-1]
        counted = labels != IGNORED
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0), logits=logits)
        return tf.reduce_sum(tf.where(counted, losses, 0.0)), tf.reduce_sum(tf.cast(counted, tf.float32))

    def __call__(self, encoded):
        total, tokens = 0.0, 0.0
        for start in range(0, len(encoded.input_ids), self._batch_size):
            rows = slice(start, start + self._batch_size)
            loss_sum, count = self._sums(encoded.input_ids[rows], encoded.attention_mask[rows], encoded.labels[rows])
            total, tokens = total + float(loss_sum), tokens + float(count)
        return total / tokens


def fine_tune(parent_dir, train_pairs, validation_pairs, out_dir, *, epochs, batch_size, learning_rate,
              weight_decay, patience, seed, max_tokens, jit_compile=False, on_progress=None):
    """Fine-tune the GPT-2 in `parent_dir` on `train_pairs`, keep the weights of the epoch with the
    lowest validation loss, and save them with the tokenizer into `out_dir` (save_pretrained, TF
    weights). `on_progress(dict(epoch, epochs, step, steps, loss, seconds_left))` is called after
    every step; when it returns False training stops and TrainingCancelled is raised. Returns a
    FineTuneResult."""
    import tensorflow as tf
    import tf_keras

    from .callbacks import Progress, Validate

    if epochs < 1 or batch_size < 1 or patience < 0:
        raise ValueError("epochs and batch_size must be at least 1, patience at least 0")
    if not train_pairs or not validation_pairs:
        raise ValueError("fine-tuning needs pairs on both the training and the validation side")
    started = time.monotonic()
    tf_keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow: dropout and shuffling repeat
    model, tokenizer = load_pretrained(parent_dir)
    if max_tokens > model.config.n_positions:
        raise ValueError(f"max_tokens ({max_tokens}) exceeds the model's {model.config.n_positions} positions")
    train = encode_pairs(tokenizer, train_pairs, max_tokens, fill_to=batch_size)
    validation = encode_pairs(tokenizer, validation_pairs, max_tokens, fill_to=batch_size)
    measure = _Measure(model, batch_size, jit_compile)
    parent_loss = measure(validation)

    optimizer = tf_keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    model.compile(optimizer=optimizer, loss="auto", jit_compile=jit_compile)
    steps = len(train.input_ids) // batch_size
    dataset = (tf.data.Dataset.from_tensor_slices({"input_ids": train.input_ids, "attention_mask": train.attention_mask,
                                                   "labels": train.labels})
               .shuffle(len(train.input_ids), seed=seed, reshuffle_each_iteration=True)
               .batch(batch_size))
    progress = Progress(on_progress, epochs, steps)
    early_stopping = tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                      restore_best_weights=True)
    # The validation callback writes logs["val_loss"] before early stopping reads it (same order).
    history = model.fit(dataset, epochs=epochs, verbose=0,
                        callbacks=[progress, Validate(measure, validation), early_stopping])
    if progress.cancelled:
        raise TrainingCancelled("training was cancelled")
    losses = tuple(history.history["val_loss"])
    best_epoch = min(range(len(losses)), key=losses.__getitem__)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return FineTuneResult(
        epochs_run=len(losses), best_epoch=best_epoch + 1, seconds=round(time.monotonic() - started, 2),
        parent_validation_loss=parent_loss, parent_validation_perplexity=perplexity(parent_loss),
        validation_loss=losses[best_epoch], validation_perplexity=perplexity(losses[best_epoch]),
        validation_tokens=validation.tokens, train_tokens=train.tokens,
        train_pairs=len(train_pairs), validation_pairs=len(validation_pairs), history=losses,
    )

