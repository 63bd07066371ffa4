"""Turning a document into the writer's prompt.

GPT-2 continues text, so the prompt is the end of the document: the last `context_tokens` tokens of
the body, or of the title when the body is blank. The cut is made on token ids and the prompt text
is decoded back from them, so the text stored with an autodoc is exactly what the model read.
"""
import functools
from dataclasses import dataclass

# A UTF-8 character is at most 4 bytes, so at most 3 leading tokens can hold the tail of a character
# whose start fell outside the window.
_MAX_PARTIAL_TOKENS = 3


@dataclass(frozen=True)
class Prompt:
    """The text the model continues and its GPT-2 token ids (at most the writer's context length)."""

    text: str
    token_ids: tuple


def build_prompt(tokenizer, title, body, context_tokens):
    """The prompt for one document, or None when title and body are both blank.

    The body is used as stored (HTML included): it is the text the autodoc continues. Text that looks
    like a special token ("<|endoftext|>") is tokenized as plain text, so a document cannot end the
    model's input early. GPT-2 splits rare characters (emoji, CJK) into byte tokens; when the window
    starts inside such a character, the tokens holding its stray bytes are left out too, so the
    prompt never begins with a broken character (U+FFFD) that the text could not record.
    """
    if context_tokens < 1:
        raise ValueError(f"context_tokens must be at least 1, not {context_tokens}")
    source = body if body and body.strip() else title
    if not source or not source.strip():
        return None
    token_ids = tokenizer(source, split_special_tokens=True, verbose=False)["input_ids"][-context_tokens:]
    pieces = tokenizer.convert_ids_to_tokens(token_ids[:_MAX_PARTIAL_TOKENS + 1])
    start = next((i for i, piece in enumerate(pieces) if not _continues_a_character(piece)), 0)
    token_ids = token_ids[start:]
    return Prompt(text=tokenizer.decode(token_ids, clean_up_tokenization_spaces=False), token_ids=tuple(token_ids))


def _continues_a_character(piece):
    """Whether a byte-level BPE token starts with a UTF-8 continuation byte (10xxxxxx)."""
    first = _byte_decoder().get(piece[:1])
    return first is not None and first & 0xC0 == 0x80


@functools.cache
def _byte_decoder():
    """GPT-2's map from the printable characters its vocabulary uses back to raw bytes."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}
