"""The writer's ML core on a tiny GPT-2: loading, prompts, the XLA beam search against eager `generate`,
the n-gram ban, and fetching (which must fail cleanly here: the hub is out of reach)."""
import hashlib
import random

import pytest

from srcflask.static.mlmodels.seedmlmodels.headmodel import (
    ModelFetchFailed,
    ModelNotInstalled,
    fetch_model,
    hub_reachable,
    load_model,
)
from srcflask.static.src.evaluation.autodocwriter import AutodocWriter, Continuation
from srcflask.static.src.features.doctokenization import Prompt, build_prompt

from .tinygpt2 import tiny_model_dir  # noqa: F401

NEW_TOKENS = 20
CONTEXT = 32
BEAMS, NGRAM = 5, 4

# Repeated phrases make the n-gram ban fire; the lengths differ so a batch mixes paddings.
TEXTS = [
    "The committee reviewed the budget and approved the budget and approved the budget",
    "the the the the the the the the",
    "Emoji 🚀 and 日本語",
    "In conclusion, the results support the hypothesis stated above. In conclusion, the results",
    "Data",
    "<p>The <b>summary</b> is written in HTML &amp; contains</p>",
]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):  # noqa: F811
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def tokenizer(loaded):
    return loaded.tokenizer


@pytest.fixture(scope="module")
def writer(loaded):
    """One writer for the module: each batch size costs an XLA compilation."""
    writer = AutodocWriter(loaded, max_new_tokens=NEW_TOKENS, context_tokens=CONTEXT, num_beams=BEAMS,
                           no_repeat_ngram_size=NGRAM, batch_sizes=(1, 4))
    writer.warm_up()
    return writer


@pytest.fixture(scope="module")
def prompts(tokenizer):
    eos = tokenizer.eos_token_id
    built = [build_prompt(tokenizer, "", text, CONTEXT) for text in TEXTS]
    # Prompts ending in end-of-text: the best beam finishes at once while the rest of a batch
    # goes on, which exercises the finished-beam bookkeeping and early stopping.
    ended = tokenizer("The model reads")["input_ids"] + [eos]
    middle = tokenizer("the end.")["input_ids"] + [eos] + tokenizer("Next")["input_ids"]
    return built + [Prompt(tokenizer.decode(ended), tuple(ended)), Prompt(tokenizer.decode(middle), tuple(middle))]


def eager_generate(loaded, token_ids, **overrides):
    """transformers' own eager TF beam search on one unpadded prompt: the reference."""
    import tensorflow as tf

    settings = dict(num_beams=BEAMS, no_repeat_ngram_size=NGRAM, early_stopping=True, max_new_tokens=NEW_TOKENS)
    settings.update(overrides)
    output = loaded.model.generate(tf.constant([list(token_ids)]), **settings).numpy()[0][len(token_ids):]
    tokens = output.tolist()
    eos = loaded.tokenizer.eos_token_id
    return tuple(tokens[:tokens.index(eos)] if eos in tokens else tokens)


@pytest.fixture(scope="module")
def reference(loaded, prompts):
    return [eager_generate(loaded, prompt.token_ids) for prompt in prompts]


# Loading


def test_load_model_once_per_process(tiny_model_dir):  # noqa: F811
    first = load_model(tiny_model_dir)
    assert load_model(str(tiny_model_dir) + "/") is first
    assert first.model.config.n_layer == 2
    assert first.tokenizer.is_fast
    weights = (tiny_model_dir / "tf_model.h5").read_bytes()
    assert first.info["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert first.info["name"] == tiny_model_dir.name
    assert first.info["path"] == str(tiny_model_dir.resolve())
    assert first.info["load_seconds"] >= 0


def test_missing_folder_is_not_installed(tmp_path):
    with pytest.raises(ModelNotInstalled) as error:
        load_model(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)
    assert "flask writer fetch" in str(error.value)


@pytest.mark.parametrize("files", [(), ("config.json",), ("config.json", "tokenizer.json")])
def test_incomplete_folder_is_not_installed(tmp_path, files):
    for name in files:
        (tmp_path / name).write_text("{}")
    with pytest.raises(ModelNotInstalled, match="incomplete.*flask writer fetch"):
        load_model(tmp_path)


def test_pytorch_weights_need_torch(tmp_path, tiny_model_dir):  # noqa: F811
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torch is installed: PyTorch weights would be converted")
    for name in ("config.json", "tokenizer.json", "vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((tiny_model_dir / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"not really")
    with pytest.raises(ModelNotInstalled, match="torch is not installed"):
        load_model(tmp_path)


# Prompts


def test_prompt_is_the_last_tokens_of_the_body(tokenizer):
    body = "Each experiment was repeated five times with a different random seed. " * 5
    prompt = build_prompt(tokenizer, "A title", body, 12)
    assert prompt.token_ids == tuple(tokenizer(body)["input_ids"][-12:])
    assert prompt.text == tokenizer.decode(prompt.token_ids)
    assert body.endswith(prompt.text)


@pytest.mark.parametrize("body", ["", "   \n\t ", None])
def test_prompt_falls_back_to_the_title(tokenizer, body):
    prompt = build_prompt(tokenizer, "Budget of the project", body, 64)
    assert prompt.text == "Budget of the project"


@pytest.mark.parametrize("title,body", [("", ""), ("  ", " \n"), (None, None)])
def test_nothing_to_write_from(tokenizer, title, body):
    assert build_prompt(tokenizer, title, body, 64) is None


@pytest.mark.parametrize("body", [
    "Emoji in text 🚀✨ and flags 🇫🇷 should not break anything 👍🏽.",
    "日本語の文書も書けます。研究の結果を示します。",
    "Combining marks: e\u0301 a\u0308 o\u0302 n\u0303.",
    '<p>The <b>summary</b> is in HTML &amp; has <a href="/doc/1">links</a>.</p>',
])
def test_unicode_and_html_round_trip(tokenizer, body):
    whole = build_prompt(tokenizer, "", body, 1000)
    assert whole.text == body
    for context in range(1, 24):
        prompt = build_prompt(tokenizer, "", body, context)
        assert 1 <= len(prompt.token_ids) <= context
        assert prompt.text == tokenizer.decode(prompt.token_ids)
        # A window starting inside a multi-byte character drops its stray bytes.
        assert not prompt.text.startswith("\ufffd")
        assert body.endswith(prompt.text)


def test_special_token_text_stays_text(tokenizer):
    prompt = build_prompt(tokenizer, "", "before <|endoftext|> after", 64)
    assert tokenizer.eos_token_id not in prompt.token_ids
    assert prompt.text == "before <|endoftext|> after"


# The XLA beam search


@pytest.mark.slow
def test_the_ban_matters_for_these_prompts(loaded, prompts, reference):
    """Without the n-gram ban eager generate writes something else: the equality below tests the ban."""
    assert eager_generate(loaded, prompts[1].token_ids, no_repeat_ngram_size=0) != reference[1]


@pytest.mark.slow
def test_writer_equals_eager_generate_one_at_a_time(writer, prompts, reference):
    written = [writer.write([prompt])[0] for prompt in prompts]
    assert [continuation.token_ids for continuation in written] == reference
    # Not a degenerate model: most documents get a real continuation.
    assert sum(len(tokens) == NEW_TOKENS for tokens in reference) >= len(TEXTS)


@pytest.mark.slow
def test_writer_equals_eager_generate_in_padded_batches(writer, prompts, reference):
    """8 prompts of mixed lengths, two of which stop at once: two batches of 4, left-padded."""
    written = writer.write(prompts)
    assert [continuation.token_ids for continuation in written] == reference
    # 3 prompts: one batch of 4 with a row of batch padding.
    assert [c.token_ids for c in writer.write(prompts[2:5])] == reference[2:5]


@pytest.mark.slow
def test_a_warm_up_run_stops_after_the_first_token(writer, loaded, prompts, reference):
    """warm_up compiles each size by running its program, which it stops after the first token
    (a whole continuation there was seconds per size of every start, spent on nothing)."""
    assert len(reference[0]) == NEW_TOKENS  # the whole search writes every token of this prompt
    generated = writer._run(1, *writer._pad([prompts[0].token_ids], 1), writer._no_steps)[0].tolist()
    eos = loaded.tokenizer.eos_token_id
    assert generated[0] != eos and generated[1:] == [eos] * (NEW_TOKENS - 1)


@pytest.mark.slow
def test_continuations_are_text_of_their_tokens(writer, tokenizer, prompts):
    for continuation in writer.write(prompts[:4]):
        assert isinstance(continuation, Continuation)
        assert continuation.text == tokenizer.decode(continuation.token_ids)
        assert tokenizer.eos_token_id not in continuation.token_ids


@pytest.mark.slow
def test_no_repeated_ngram_in_prompt_and_continuation(writer, prompts):
    for prompt, continuation in zip(prompts, writer.write(prompts)):
        tokens = list(prompt.token_ids) + list(continuation.token_ids)
        for end in range(len(prompt.token_ids), len(tokens)):
            ngram = tuple(tokens[end - NGRAM + 1:end + 1])
            earlier = {tuple(tokens[i - NGRAM + 1:i + 1]) for i in range(NGRAM - 1, end)}
            assert len(ngram) < NGRAM or ngram not in earlier


@pytest.mark.slow
def test_writing_is_deterministic(writer, prompts):
    assert writer.write(prompts[:5]) == writer.write(prompts[:5])


def test_settings_stamp(loaded):
    writer = AutodocWriter(loaded, max_new_tokens=60, context_tokens=64)
    assert writer.settings == {
        "num_beams": 5, "no_repeat_ngram_size": 4, "early_stopping": True, "length_penalty": 1.0,
        "do_sample": False, "max_new_tokens": 60, "context_tokens": 64, "dtype": "float32", "backend": "tf-xla",
    }


def test_writer_refuses_what_it_cannot_do(loaded, tokenizer):
    with pytest.raises(ValueError, match="positions"):
        AutodocWriter(loaded, max_new_tokens=200, context_tokens=64)
    writer = AutodocWriter(loaded, max_new_tokens=5, context_tokens=4)
    with pytest.raises(ValueError, match="1 to 4 tokens"):
        writer.write([Prompt("x", tuple(range(5)))])
    with pytest.raises(ValueError, match="1 to 4 tokens"):
        writer.write([Prompt("", ())])


# The n-gram ban on its own, against transformers' eager processor


def test_ngram_ban_matches_eager_processor_with_left_padding():
    import numpy as np
    import tensorflow as tf
    from transformers.generation.tf_logits_process import TFNoRepeatNGramLogitsProcessor

    from srcflask.static.src.evaluation.ngramban import ban_repeated_ngrams

    vocab, length, rng = 6, 24, random.Random(7)
    for ngram in (2, 3, 4):
        eager = TFNoRepeatNGramLogitsProcessor(ngram)
        for _ in range(40):
            real = [rng.randrange(vocab) for _ in range(rng.randrange(1, 16))]
            pad = length - 4 - len(real)
            # Padding made of the row's own tokens, which would create bans if it were read.
            row = [real[i % len(real)] for i in range(pad)] + real + [rng.randrange(vocab) for _ in range(4)]
            scores = tf.zeros((1, vocab))
            expected = eager(tf.constant([real]), scores, len(real)).numpy()
            got = ban_repeated_ngrams(scores, tf.constant([row]), tf.constant([pad]), tf.constant(pad + len(real)),
                                      ngram).numpy()
            np.testing.assert_array_equal(got, expected)


# Fetching


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Point huggingface_hub at a closed local port, whatever the network this runs on."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def test_hub_unreachable(unreachable_hub):
    assert hub_reachable(timeout=1) is False


def test_fetch_fails_cleanly_when_the_hub_is_unreachable(unreachable_hub, tmp_path):
    target = tmp_path / "weights" / "gpt2"
    with pytest.raises(ModelFetchFailed) as error:
        fetch_model("gpt2", target, progress=False)
    assert "cannot be reached" in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no chained traceback
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no half-downloaded staging folder left
