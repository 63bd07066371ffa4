"""An XLA-compatible "no repeated n-gram" ban for beam search.

transformers' TFNoRepeatNGramLogitsProcessor builds Python lists of the whole vocabulary per beam and
raises NotImplementedError under tf.function, so the XLA writer cannot use it. This is the same rule
expressed as fixed-shape tensor operations: for each row, find the earlier positions where the
previous n-1 tokens equal the row's last n-1 tokens and ban the token that followed them.

Rows may be left-padded (the writer pads every prompt to one length so XLA compiles once); `start`
gives each row's first real token so padding can neither create a ban nor hide one. On an unpadded
row the result is exactly what the eager processor computes over the same tokens (prompt included).
"""


def banned_tokens(tokens, start, cur_len, ngram_size, vocab_size):
    """Which next tokens would repeat an n-gram, as a (rows, vocab_size) bool tensor.

    tokens: (rows, length) int32, the sequences so far; only positions [start, cur_len) are read.
    start: (rows,) int32, index of each row's first real (non-padding) token.
    cur_len: scalar int32 tensor, the number of filled positions (padding included).
    """
    import tensorflow as tf

    n = ngram_size
    rows, length = tokens.shape
    # An n-gram starting at j occupies j .. j+n-1; its last token is the one that gets banned.
    windows = length - n + 1
    j = tf.range(windows)[None, :]
    match = (j >= start[:, None]) & (j <= cur_len - n)
    for offset in range(n - 1):
        # max(., 0) only keeps the gather in range while fewer than n-1 tokens exist; such rows
        # have no valid window (the mask above is all False), as in the eager processor.
        last = tf.gather(tokens, tf.maximum(cur_len - (n - 1) + offset, 0), axis=1)
        match &= tokens[:, offset:offset + windows] == last[:, None]
    followers = tokens[:, n - 1:n - 1 + windows]
    row_ids = tf.broadcast_to(tf.range(rows)[:, None], followers.shape)
    counts = tf.scatter_nd(
        tf.stack([row_ids, followers], axis=-1), tf.cast(match, tf.int32), [rows, vocab_size]
    )
    return counts > 0


def ban_repeated_ngrams(scores, tokens, start, cur_len, ngram_size):
    """`scores` with -inf for every next token that would repeat an n-gram (as the eager processor)."""
    import tensorflow as tf

    banned = banned_tokens(tokens, start, cur_len, ngram_size, scores.shape[-1])
    return tf.where(banned, tf.constant(-float("inf"), scores.dtype), scores)
