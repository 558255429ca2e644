"""Tests of the mixed-chunk attention layer (gau_keras.flash).

The truth is ``flash_numpy_reference``, a token-by-token numpy transcription
of the formulas; the other tests check properties (causality, padding,
cached decoding, precision) against the layer's own float32 full pass.
"""
import os
import sys

import gau_keras  # noqa: F401  (must come before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras.backend import keras
from gau_keras import backend
from gau_keras.flash import MixedChunkAttention, check_chunk_size

sys.path.insert(0, os.path.dirname(__file__))
import flash_numpy_reference as ref  # noqa: E402

D, E, S = 6, 10, 4


def make_layer(chunk_size=4, causal=False, use_bias=True, seed=0, **kwargs):
    """A built layer whose weights (biases and offsets too) are random."""
    layer = MixedChunkAttention(units=E, key_size=S, chunk_size=chunk_size,
                                causal=causal, use_bias=use_bias, **kwargs)
    layer(tf.zeros([1, 3, D]))
    rng = np.random.RandomState(seed)
    for w in layer.checkpoint_weights():
        w.assign(rng.normal(0, 0.5, w.shape).astype('float32'))
    return layer


def weights_dict(layer):
    """The layer's weights, by name, for the numpy reference."""
    ws = [w.numpy().astype('float64') for w in layer.checkpoint_weights()]
    if layer.use_bias:
        i_k, i_b, o_k, o_b, gamma, beta = ws
    else:
        (i_k, o_k, gamma), i_b, o_b, beta = ws, None, None, None
    return dict(i_kernel=i_k, i_bias=i_b, o_kernel=o_k, o_bias=o_b,
                gamma=gamma, beta=beta)


def inputs(b, n, seed=1):
    return np.random.RandomState(seed).normal(size=(b, n, D)).astype(
        'float32')


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('n', [11, 3, 8])   # not a multiple of c, < c, = 2c
def test_matches_numpy_reference(causal, n):
    layer = make_layer(chunk_size=4, causal=causal)
    x = inputs(2, n)
    expected = ref.mixed_chunk_attention(x, weights_dict(layer), 4, causal)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize('causal', [False, True])
def test_matches_reference_softmax_plus_without_bias_with_mask(causal):
    layer = make_layer(chunk_size=3, causal=causal, use_bias=False,
                       normalization='softmax_plus')
    x = inputs(2, 10, seed=2)
    mask = np.ones((2, 10), bool)
    mask[0, 7:] = False       # right padding
    mask[1, [1, 4]] = False   # masked tokens inside chunks
    expected = ref.mixed_chunk_attention(x, weights_dict(layer), 3, causal,
                                         mask, 'softmax_plus')
    got = layer(tf.constant(x), mask=tf.constant(mask)).numpy()
    real = mask[..., None]
    np.testing.assert_allclose(np.where(real, got, 0),
                               np.where(real, expected, 0),
                               rtol=1e-5, atol=1e-5)


def test_reference_disagrees_with_wrong_causal_divisor():
    """The test above can fail: the causal prefix divided by n is wrong."""
    layer = make_layer(chunk_size=4, causal=True)
    x = inputs(1, 12)
    w = weights_dict(layer)
    causal = ref.mixed_chunk_attention(x, w, 4, causal=True)
    assert not np.allclose(layer(x).numpy(),
                           ref.mixed_chunk_attention(x, w, 4, causal=False),
                           atol=1e-3)
    np.testing.assert_allclose(layer(x).numpy(), causal, atol=1e-5)


@pytest.mark.parametrize('t', [1, 4, 6, 9])
def test_causal_no_leak(t):
    layer = make_layer(chunk_size=4, causal=True)
    x = inputs(2, 13)
    y = layer(x).numpy()
    x2 = x.copy()
    x2[:, t:] = np.random.RandomState(7).normal(size=x2[:, t:].shape)
    y2 = layer(x2).numpy()
    np.testing.assert_array_equal(y[:, :t], y2[:, :t])
    assert not np.allclose(y[:, t:], y2[:, t:])


@pytest.mark.parametrize('causal', [False, True])
def test_padding_invariance(causal):
    layer = make_layer(chunk_size=4, causal=causal)
    lengths = [11, 6, 3]
    x = inputs(3, 13)
    mask = np.arange(13)[None] < np.array(lengths)[:, None]
    x_padded = np.where(mask[..., None], x, 123.0).astype('float32')
    y = layer(tf.constant(x_padded), mask=tf.constant(mask)).numpy()
    for i, n in enumerate(lengths):
        alone = layer(x[i:i + 1, :n]).numpy()[0]
        np.testing.assert_allclose(y[i, :n], alone, rtol=1e-5, atol=1e-6)


def test_decode_step_equals_full_causal_pass():
    layer = make_layer(chunk_size=4, causal=True, normalization='softmax_plus')
    x = inputs(2, 14)
    mask = np.ones((2, 14), bool)
    mask[1, [2, 5, 8]] = False
    full = layer(tf.constant(x), mask=tf.constant(mask)).numpy()
    state, outs = layer.initial_state(2), []
    for t in range(14):
        y, state = layer.decode_step(tf.constant(x[:, t:t + 1]), state,
                                     tf.constant(t), mask[:, t])
        outs.append(y.numpy())
    np.testing.assert_allclose(np.concatenate(outs, 1), full, rtol=1e-5,
                               atol=1e-5)


def test_decode_needs_causal():
    with pytest.raises(ValueError, match='causal'):
        make_layer(causal=False).initial_state(1)


@pytest.mark.parametrize('bad', [0, -4, 2.5, True, '8', None])
def test_bad_chunk_size_is_named(bad):
    with pytest.raises(ValueError, match='chunk_size'):
        MixedChunkAttention(units=8, key_size=4, chunk_size=bad)
    with pytest.raises(ValueError, match='chunk_size'):
        check_chunk_size(bad)


def test_cross_attention_input_is_refused():
    layer = MixedChunkAttention(units=8, key_size=4, chunk_size=2)
    with pytest.raises(ValueError, match='self-attention'):
        layer([tf.zeros([1, 3, 4]), tf.zeros([1, 3, 4])])


def test_get_config_round_trip_and_model_json():
    layer = MixedChunkAttention(units=12, key_size=4, chunk_size=5,
                                causal=True, use_bias=False,
                                normalization='softmax_plus',
                                rope_layout='half', name='mca')
    config = layer.get_config()
    again = MixedChunkAttention.from_config(config)
    assert again.get_config() == config
    assert again.chunk_size == 5 and again.causal

    inp = keras.layers.Input((None, D))
    model = keras.Model(inp, layer(inp))
    clone = keras.models.model_from_json(model.to_json())
    clone.set_weights(model.get_weights())
    x = inputs(2, 9)
    np.testing.assert_array_equal(model(x).numpy(), clone(x).numpy())


def _largest_static_tensor(fn, spec):
    graph = tf.function(fn).get_concrete_function(spec).graph
    biggest = 0
    for op in graph.get_operations():
        for out in op.outputs:
            if out.shape.is_fully_defined():
                biggest = max(biggest, out.shape.num_elements())
    return biggest


def test_global_memory_is_per_chunk_not_per_token():
    """No tensor of size b·n·s·e (or b·n·n): K_linᵀV is formed per chunk."""
    b, n, c, e, s = 2, 256, 16, 32, 8
    layer = MixedChunkAttention(units=e, key_size=s, chunk_size=c,
                                causal=True)
    layer(tf.zeros([1, c, D]))
    spec = tf.TensorSpec([b, n, D], tf.float32)
    biggest = _largest_static_tensor(lambda x: layer(x), spec)
    assert biggest >= b * n * (2 * e + s)          # the shapes were static
    assert biggest <= max(b * n * (2 * e + s), b * (n // c) * s * e,
                          b * n * c)
    assert biggest < b * n * s * e


@pytest.mark.parametrize('policy,tol', [('mixed_float16', 2e-2),
                                        ('mixed_bfloat16', 6e-2)])
@pytest.mark.parametrize('causal', [False, True])
def test_mixed_precision_close_to_float32(policy, tol, causal):
    reference = make_layer(chunk_size=8, causal=causal)
    x = inputs(2, 61, seed=3)
    expected = reference(x).numpy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = MixedChunkAttention(units=E, key_size=S, chunk_size=8,
                                    causal=causal)
        layer(tf.zeros([1, 3, D]))
    finally:
        keras.mixed_precision.set_global_policy('float32')
    for w, v in zip(layer.checkpoint_weights(),
                    reference.checkpoint_weights()):
        w.assign(v)
    got = layer(x)
    assert got.dtype != tf.float32
    got = tf.cast(got, tf.float32).numpy()
    assert np.isfinite(got).all()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=tol * scale)
