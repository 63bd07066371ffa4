"""The ML stack's known-harmless notes are dropped where they are made, and nothing else is.

transformers' TF model module says "All model checkpoint layers were used ..." and "All the
layers of ... were initialized ..." on every good load, at WARNING level: the log drops those
two (and its deprecation of TensorFlow, whose version is pinned). The same module's real
warnings — layers a checkpoint did not have, left with random weights — must still be seen.
"""
import logging

import pytest

from .tinygpt2 import tiny_model_dir  # noqa: F401  (the fixture)

MODULE_LOGGER = "transformers.modeling_tf_utils"


class Kept(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def kept(app):
    """What the module's logger lets through once the app configured logging (its filters run
    before any handler, transformers' own included)."""
    handler = Kept()
    logger = logging.getLogger(MODULE_LOGGER)
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_a_good_load_says_nothing(kept, tiny_model_dir):  # noqa: F811
    from transformers import TFGPT2LMHeadModel

    TFGPT2LMHeadModel.from_pretrained(tiny_model_dir)

    assert kept == []


def test_layers_left_newly_initialized_are_still_reported(kept, tiny_model_dir):  # noqa: F811
    """A head the checkpoint does not have gets random weights: that warning is real."""
    from transformers import TFGPT2ForSequenceClassification

    TFGPT2ForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)

    assert any("newly initialized" in message and "score" in message for message in kept), kept
