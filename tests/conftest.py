"""Shared fixtures.  ``import gau_keras`` must come before TensorFlow."""
import json
import os
import sys

import gau_keras  # noqa: F401  (selects tf-keras before TF is imported)
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: A tiny GAU-α config: d=16, e=32, s=8, 2 layers.
TINY_GAU = {
    'vocab_size': 50, 'hidden_size': 16, 'intermediate_size': 32,
    'attention_key_size': 8, 'num_attention_heads': 1,
    'num_hidden_layers': 2, 'hidden_act': 'swish', 'type_vocab_size': 2,
    'hidden_dropout_prob': 0.1, 'attention_probs_dropout_prob': 0.1,
}


def _set_policy(name):
    tf.keras.mixed_precision.set_global_policy(name)


@pytest.fixture
def policy():
    """``policy('mixed_bfloat16')`` sets a global policy; float32 is always
    restored afterwards, whatever happens in the test."""
    try:
        yield _set_policy
    finally:
        _set_policy('float32')


@pytest.fixture(autouse=True)
def _float32_guard():
    """Every test starts (and ends) with the float32 policy."""
    _set_policy('float32')
    try:
        yield
    finally:
        _set_policy('float32')


def write_json(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=2)
    return str(path)


@pytest.fixture
def config_writer(tmp_path):
    """``config_writer(dict, name='config.json')`` → path of a JSON file."""
    def write(config, name='config.json'):
        return write_json(tmp_path / name, config)
    return write


@pytest.fixture(scope='module')
def tiny_config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'gau_alpha_tiny.json'
    return write_json(path, TINY_GAU)


def padded_batch(rng, lengths, n, vocab_size, segments=False):
    """token ids [b, n] with rows of the given real lengths (0 = padding),
    and segment ids (second half of each row = 1 when ``segments``)."""
    tokens = np.zeros((len(lengths), n), np.int32)
    seg = np.zeros((len(lengths), n), np.int32)
    for r, length in enumerate(lengths):
        tokens[r, :length] = rng.integers(1, vocab_size, length)
        if segments:
            seg[r, length // 2:length] = 1
    return tokens, seg
