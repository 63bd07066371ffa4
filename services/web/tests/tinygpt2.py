"""A tiny GPT-2 built at test time, so the writer is tested through the real transformers classes.

No pretrained weights can be downloaded here, and the writer's behaviour (padding, beam search, the
n-gram ban) does not depend on the weights being meaningful. The model is a 2-layer GPT-2 with a
byte-level BPE tokenizer trained on the sentences below, initialised from a fixed seed and saved in
the same save_pretrained layout `flask writer fetch` installs, so it is loaded by the real code path.
"""
import pytest

SEED = 1234

# Repeated phrases give the tokenizer merges that span words, and give tests prompts that make the
# n-gram ban fire. Unicode and HTML are there because document bodies contain both.
CORPUS = [
    "The committee reviewed the budget and approved the budget for the next year.",
    "A document describes the method, the data and the results of the study.",
    "Results of the study show that the method works on the data we collected.",
    "The sponsor submits a document; the editor reviews the document and writes notes.",
    "Autodoc writes a short continuation of the document so that the editor can start.",
    "Beam search keeps the five best partial continuations at every step.",
    "No repeated four-gram may appear twice in the same continuation.",
    "The model reads the last tokens of the body and continues the text.",
    "When the body is empty the title is used as the prompt instead.",
    "Funding for the project comes from the research council and the university.",
    "The project started in spring and will end after three years of work.",
    "We thank the reviewers for their careful reading of the manuscript.",
    "Appendix A lists the tables; Appendix B lists the figures and the code.",
    "The table shows the mean, the median and the standard deviation.",
    "Each experiment was repeated five times with a different random seed.",
    "<p>The <b>summary</b> is written in HTML &amp; contains <a href=\"/doc/1\">links</a>.</p>",
    "<ul><li>First item</li><li>Second item</li></ul>",
    "Café, naïve, résumé and coöperate keep their accents.",
    "Grüße aus München – „Anführungszeichen“ und Ümläute.",
    "日本語の文書も書けます。研究の結果を示します。",
    "中文文档：研究方法与数据。",
    "Emoji in text 🚀✨ and flags 🇫🇷 should not break anything 👍🏽.",
    "Combining marks: e\u0301 a\u0308 o\u0302 n\u0303.",
    "Math symbols ∑ ∫ √ ≤ ≥ ≠ and arrows → ← ↔.",
    "The quick brown fox jumps over the lazy dog again and again.",
    "It was the best of times, it was the worst of times.",
    "Data were collected in 2023 and analysed in 2024 by the team.",
    "The editor approved the revision and the sponsor was notified.",
    "Please see section 3.2 for the details of the evaluation protocol.",
    "In conclusion, the results support the hypothesis stated above.",
    "Future work will extend the method to larger data sets and models.",
    "The writer runs in one thread and drains the queue in batches.",
]

EOS = "<|endoftext|>"


def build_tiny_gpt2(path):
    """Train the tokenizer, initialise a 2-layer GPT-2 from SEED and save both into `path`.

    Returns `path`. Imports are local so that collecting tests stays cheap.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2TokenizerFast, TFGPT2LMHeadModel

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=600, min_frequency=2, special_tokens=[EOS])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token=EOS, eos_token=EOS, unk_token=EOS)

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = TFGPT2LMHeadModel(config)
    model(model.dummy_inputs)  # creates the weights
    _initialise(model, config.initializer_range)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _initialise(model, initializer_range):
    """GPT-2's own initialisation (normal(0, initializer_range) matrices, zero biases, unit layer
    norms), drawn from numpy with SEED. TensorFlow's seeded initialisers also depend on how many
    random ops the process ran before, so the model would change with the tests that ran first."""
    import numpy as np

    for index, weight in enumerate(model.weights):
        name = weight.name
        if "gamma" in name:
            value = np.ones(weight.shape)
        elif "beta" in name or "bias" in name:
            value = np.zeros(weight.shape)
        else:
            value = np.random.default_rng([SEED, index]).normal(0.0, initializer_range, weight.shape)
        weight.assign(value.astype(weight.dtype.as_numpy_dtype))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder holding the tiny GPT-2 in save_pretrained layout, built once per test session."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))
