"""Tests of the mixed-chunk attention layer (gau_keras.flash).

The truth is ``flash_numpy_reference``, a token-by-token numpy transcription
of the formulas; the other tests check properties (causality, padding,
chunk-size invariance, precision) and the shared layer harness of conftest.
Cached decoding: test_decoding.py.
"""
import gau_keras  # noqa: F401  (must come before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import backend
from gau_keras.flash import (MixedChunkAttention, check_chunk_size,
                             local_key_counts)

import flash_numpy_reference as ref

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


def masked_close(got, want, mask, atol=1e-5):
    real = np.asarray(mask)[..., None]
    np.testing.assert_allclose(np.where(real, got, 0),
                               np.where(real, want, 0), rtol=1e-5, atol=atol)


# ------------------------------------------------------ the numpy reference


@pytest.mark.parametrize('local_normalizer', ['visible', 'chunk'])
@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('n', [11, 3, 8])   # not a multiple of c, < c, = 2c
def test_matches_numpy_reference(causal, n, local_normalizer):
    layer = make_layer(chunk_size=4, causal=causal,
                       local_normalizer=local_normalizer)
    x = inputs(2, n)
    expected = ref.mixed_chunk_attention(x, weights_dict(layer), 4, causal,
                                         local_normalizer=local_normalizer)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu',
                                           'squared_relu_n2', 'softmax'])
@pytest.mark.parametrize('local_normalizer', ['visible', 'chunk'])
@pytest.mark.parametrize('causal', [False, True])
def test_matches_reference_every_normalization_with_mask(
        causal, local_normalizer, normalization):
    layer = make_layer(chunk_size=3, causal=causal, use_bias=False,
                       normalization=normalization,
                       local_normalizer=local_normalizer)
    x = inputs(2, 10, seed=2)
    mask = np.ones((2, 10), bool)
    mask[0, 7:] = False       # right padding
    mask[1, [1, 4]] = False   # masked tokens inside chunks
    expected = ref.mixed_chunk_attention(
        x, weights_dict(layer), 3, causal, mask, normalization,
        local_normalizer=local_normalizer)
    got = layer(tf.constant(x), mask=tf.constant(mask)).numpy()
    masked_close(got, expected, mask)


@pytest.mark.parametrize('causal', [False, True])
def test_position_ids_half_layout_and_no_scale_match_reference(causal):
    """FLASH honours position_ids, rope_layout='half', attention_scale."""
    layer = make_layer(chunk_size=4, causal=causal, rope_layout='half',
                       attention_scale=False)
    x = inputs(2, 9, seed=5)
    positions = np.array([np.arange(9) * 3 + 7, np.arange(9)[::-1]])
    expected = ref.mixed_chunk_attention(
        x, weights_dict(layer), 4, causal, positions=positions,
        rope_layout='half', attention_scale=False)
    got = layer(tf.constant(x), position_ids=tf.constant(positions)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for wrong in (dict(positions=None, rope_layout='half',
                       attention_scale=False),
                  dict(positions=positions, rope_layout='interleaved',
                       attention_scale=False),
                  dict(positions=positions, rope_layout='half',
                       attention_scale=True)):
        other = ref.mixed_chunk_attention(x, weights_dict(layer), 4, causal,
                                          **wrong)
        assert not np.allclose(got, other, atol=1e-3), wrong


def test_reference_disagrees_with_wrong_causal_divisor():
    """A causal layer vs a *causal* reference whose global part divides by
    the real length n (the paper's pseudo-code) instead of the number of
    tokens it sums: they must disagree, so the causal tests can fail."""
    layer = make_layer(chunk_size=4, causal=True)
    x = inputs(1, 12)
    w = weights_dict(layer)
    got = layer(x).numpy()
    wrong = ref.mixed_chunk_attention(x, w, 4, causal=True,
                                      global_divisor='length')
    assert not np.allclose(got, wrong, atol=1e-3)
    np.testing.assert_allclose(got[:, :4], wrong[:, :4], atol=1e-5)  # chunk 0
    np.testing.assert_allclose(
        got, ref.mixed_chunk_attention(x, w, 4, causal=True), atol=1e-5)


# ------------------------------------------------- the local normaliser


@pytest.mark.parametrize('causal', [False, True])
def test_visible_normaliser_short_input_is_chunk_size_invariant(causal):
    """n < c: with 'visible' every query divides by the keys it sees, so a
    3-token input gives the same output for c = 3, 8 and 256; with the
    paper's 'chunk' (1/c) the local weight shrinks as c grows."""
    x = inputs(2, 3, seed=4)
    outs = {}
    for normaliser in ('visible', 'chunk'):
        for c in (3, 8, 256):
            layer = make_layer(chunk_size=c, causal=causal,
                               local_normalizer=normaliser)
            outs[normaliser, c] = layer(x).numpy()
    for c in (8, 256):
        np.testing.assert_allclose(outs['visible', c], outs['visible', 3],
                                   rtol=1e-5, atol=1e-6)
        assert not np.allclose(outs['chunk', c], outs['chunk', 3],
                               atol=1e-3)
    if not causal:   # c = n = 3: every key is visible, the two agree
        np.testing.assert_allclose(outs['chunk', 3], outs['visible', 3],
                                   rtol=1e-5, atol=1e-6)


def test_local_key_counts_by_hand():
    key_mask = tf.constant([[True, False, True, True]])[:, None, None, :]
    causal = tf.logical_and(key_mask, backend.causal_mask(4, 4))
    np.testing.assert_array_equal(
        local_key_counts(causal, 4).numpy()[0, 0, :, 0], [1, 1, 2, 3])
    np.testing.assert_array_equal(
        local_key_counts(key_mask, 4).numpy().reshape(-1), [3])
    assert float(local_key_counts(causal, 4, 'chunk')) == 4.0
    none = tf.zeros([1, 1, 1, 4], tf.bool)        # no visible key → 1
    assert float(tf.reshape(local_key_counts(none, 4), [])) == 1.0


def test_bad_local_normalizer_is_named():
    with pytest.raises(ValueError, match="local_normalizer.*'paper'"):
        MixedChunkAttention(units=8, key_size=4, local_normalizer='paper')


def test_any_registered_normalization_reaches_the_local_part():
    """A normalization registered in backend is usable by name at once: one
    that returns A = 0 leaves only the global part (the reference with
    Q_quad = 0, whose relu² weights are 0)."""
    backend.register_normalization('test_zero',
                                   lambda a, n: tf.zeros_like(a))
    try:
        layer = make_layer(chunk_size=4, normalization='test_zero')
        x = inputs(2, 7)
        w = weights_dict(layer)
        w['gamma'][0] = 0
        w['beta'][0] = 0
        expected = ref.mixed_chunk_attention(x, w, 4)
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5,
                                   atol=1e-6)
        assert not np.allclose(make_layer(chunk_size=4)(x).numpy(),
                               expected, atol=1e-3)
    finally:
        backend.ATTENTION_NORMALIZATIONS.pop('test_zero')


# ---------------------------------------------------------- properties


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
def test_padding_invariance_left_and_right(causal):
    """Padding before the text (one whole chunk, so the chunks line up) and
    after it: a causal layer that ignored the mask would let the left
    padding leak into every later token."""
    c = 4
    layer = make_layer(chunk_size=c, causal=causal)
    lengths = [7, 5, 2]
    n = c + max(lengths) + 2
    x = inputs(3, n)
    mask = np.zeros((3, n), bool)
    for i, length in enumerate(lengths):
        mask[i, c:c + length] = True
    x_padded = np.where(mask[..., None], x, 123.0).astype('float32')
    y = layer(tf.constant(x_padded), mask=tf.constant(mask)).numpy()
    for i, length in enumerate(lengths):
        alone = layer(x[i:i + 1, c:c + length]).numpy()[0]
        np.testing.assert_allclose(y[i, c:c + length], alone, rtol=1e-5,
                                   atol=1e-5)


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


# ------------------------------------------------ the shared layer harness

HARNESS_OPTIONS = dict(chunk_size=5, causal=True, use_bias=False,
                       normalization='softmax_plus', rope_layout='half',
                       local_normalizer='chunk')


def _call(layer, x):
    return layer(x)


def test_config_round_trip(layer_harness):
    clone = layer_harness.config_round_trip(
        lambda: make_layer(**HARNESS_OPTIONS), _call, inputs(2, 9))
    assert (clone.chunk_size, clone.local_normalizer) == (5, 'chunk')


def test_save_load(layer_harness):
    loaded = layer_harness.save_load(
        lambda: make_layer(**HARNESS_OPTIONS), inputs(2, 9))
    layer = [l for l in loaded.layers
             if isinstance(l, MixedChunkAttention)][0]
    assert layer.local_normalizer == 'chunk' and layer.causal


@pytest.mark.parametrize('policy_name,tol', [('mixed_float16', 5e-3),
                                             ('mixed_bfloat16', 4e-2)])
@pytest.mark.parametrize('causal', [False, True])
def test_mixed_precision_close_to_float32(layer_harness, policy_name, tol,
                                          causal):
    """n = 61, c = 8 (errors measured: fp16 ≤ 1.7e-3, bf16 ≤ 2e-2 of the
    output scale)."""
    x = inputs(2, 61, seed=3)
    layer_harness.mixed_precision_close(
        lambda: make_layer(chunk_size=8, causal=causal), _call, x,
        policy_name, tol)


@pytest.mark.parametrize('policy_name,tol', [('mixed_float16', 5e-3),
                                             ('mixed_bfloat16', 4e-2)])
@pytest.mark.parametrize('causal', [False, True])
def test_mixed_precision_long_sequence(layer_harness, policy_name, tol,
                                       causal):
    """n = 2048 at positions 2000 … 4047: RoPE angles must be taken in
    float32 (in bf16 a position near 2000 is rounded to a multiple of 8; in
    fp16 an angle near 2000 rad to a multiple of 1).  Measured: fp16 ≤ 2e-3,
    bf16 ≤ 1.8e-2 of the output scale; with the angles in the low dtype
    0.1 – 0.4."""
    n = 2048
    x = inputs(1, n, seed=6)
    positions = tf.constant(2000 + np.arange(n)[None], tf.int32)
    layer_harness.mixed_precision_close(
        lambda: make_layer(chunk_size=64, causal=causal),
        lambda layer, x: layer(x, position_ids=positions), x, policy_name,
        tol)


def _global_truth(q, k, v, c, causal):
    """float64 Q Σ KᵀV / N from the (low-precision) values themselves."""
    q, k, v = (np.asarray(tf.cast(t, tf.float64)) for t in (q, k, v))
    b, n = q.shape[:2]
    out = np.zeros((b, n, v.shape[-1]))
    for i in range(n):
        keys = np.arange((i // c) * c) if causal else np.arange(n)
        if len(keys):
            kv = np.einsum('bjs,bje->bse', k[:, keys], v[:, keys])
            out[:, i] = np.einsum('bs,bse->be', q[:, i], kv) / len(keys)
    return out


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
@pytest.mark.parametrize('causal', [False, True])
def test_global_sums_are_float32_for_low_precision_inputs(dtype, causal):
    """Σ K_linᵀV over 2048 tokens from fp16 / bf16 Q, K, V is summed (and
    returned) in float32: it equals the float64 sum of the same values to
    1e-5 of its scale; a bf16 sum would be off by ~4e-3, an fp16 one by
    ~5e-4."""
    from gau_keras.flash import (causal_linear_global_attention,
                                 linear_global_attention, merge_chunks,
                                 split_chunks)
    b, n, c, s, e = 1, 2048, 64, 4, 10
    rng = np.random.RandomState(9)
    q, k, v = (tf.cast(rng.normal(size=(b, n, w)), dtype)
               for w in (s, s, e))
    want = _global_truth(q, k, v, c, causal)
    qc, kc, vc = (split_chunks(t, c) for t in (q, k, v))
    if causal:
        got = causal_linear_global_attention(qc, kc, vc,
                                             tf.fill([b, n // c], float(c)))
    else:
        got = linear_global_attention(qc, kc, vc, tf.constant([float(n)]))
    assert got.dtype == tf.float32
    got = merge_chunks(got, n).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
