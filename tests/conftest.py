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


# ---- shared paths ------------------------------------------------------------

#: The repository root and its configs/ folder.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_path(name):
    """Path of a shipped config by name: ``config_path('flash_tiny')``."""
    try:
        from gau_keras.configs import preset_path
    except ImportError:       # before configs became package data
        return os.path.join(ROOT, 'configs', name + '.json')
    return preset_path(name)


# ---- the layer harness: checks every attention layer must pass ---------------


class LayerHarness(object):
    """Serialisation, save → load and mixed-precision checks for a layer.

    Used by the tests of both attention layers (``GatedAttentionUnit`` in
    test_layers.py, ``MixedChunkAttention`` in test_flash.py) through the
    ``layer_harness`` fixture.  ``make(**kwargs)`` builds a layer (under the
    current dtype policy) and ``call(layer, x)`` runs it.

    Example::

        def test_round_trip(layer_harness):
            layer_harness.config_round_trip(make, call, x)
    """

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path

    @staticmethod
    def copy_weights(source, target):
        for w, v in zip(target.checkpoint_weights(),
                        source.checkpoint_weights()):
            w.assign(v)

    def config_round_trip(self, make, call, x):
        """from_config(get_config()) is the same layer: same config, and
        with the same weights the same outputs (exactly)."""
        layer = make()
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        call(clone, x)
        self.copy_weights(layer, clone)
        np.testing.assert_array_equal(call(clone, x).numpy(),
                                      call(layer, x).numpy())
        return clone

    def save_load(self, make, x):
        """A Keras model holding the layer survives ``model.save`` →
        ``load_model`` (no custom_objects: the layer is registered) with
        the same outputs, exactly."""
        from gau_keras.backend import keras
        layer = make()
        inp = keras.layers.Input((None, x.shape[-1]))
        model = keras.Model(inp, layer(inp))
        path = str(self.tmp_path / ('%s.keras' % layer.name))
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
        return loaded

    def mixed_precision_close(self, make, call, x, policy_name, tol,
                              real=None):
        """Under ``policy_name`` the layer (same weights) computes in the low
        dtype and stays within ``tol`` × max|float32 output| of float32, on
        the rows where ``real`` (bool [b, n]) is True.  Returns the error
        relative to that scale."""
        reference = make()
        want = call(reference, x).numpy()
        _set_policy(policy_name)
        try:
            layer = make()
        finally:
            _set_policy('float32')
        call(layer, x)
        self.copy_weights(reference, layer)
        got = call(layer, x)
        assert got.dtype == tf.as_dtype(policy_name.replace('mixed_', ''))
        got = tf.cast(got, tf.float32).numpy()
        assert np.isfinite(got).all()
        if real is not None:
            got, want = got[real], want[real]
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, atol=tol * scale)
        return np.abs(got - want).max() / scale


@pytest.fixture
def layer_harness(tmp_path):
    """A ``LayerHarness`` writing into the test's tmp_path."""
    return LayerHarness(tmp_path)
