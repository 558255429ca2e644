"""The GAU's fast masking and A·V paths against the plain-numpy reference.

GatedAttentionUnit masks with an additive bias (``backend.mask_bias``),
takes n from the key lengths or a prefix sum instead of a [b, m, n] mask,
leaves V unmasked (padded keys get zero weight in A), and computes A·V as (Vᵀ Aᵀ)ᵀ from
``backend.TRANSPOSED_VALUES_MIN_KEYS`` keys on.  Each path is checked here
against numpy (float64 transcriptions of the formulas), with garbage in the
padded positions, in both A·V layouts (the threshold is lowered so that
small inputs take the transposed one), and with static and unknown lengths.
"""
import gau_keras  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
from gau_keras import backend
from gau_keras.layers import GatedAttentionUnit

D, E, S = 12, 20, 8
ATOL = 2e-5
NORMALIZATIONS = ['softmax_plus', 'squared_relu', 'squared_relu_n2',
                  'softmax']


@pytest.fixture(params=['plain', 'transposed'])
def layout(request, monkeypatch):
    """Runs a test with A·V in each layout (threshold 1: always transposed)."""
    if request.param == 'transposed':
        monkeypatch.setattr(backend, 'TRANSPOSED_VALUES_MIN_KEYS', 1)
    else:
        monkeypatch.setattr(backend, 'TRANSPOSED_VALUES_MIN_KEYS', 10**9)
    return request.param


def params(rng):
    return {'i_kernel': rng.normal(0, 1, (D, 2 * E + S)) / np.sqrt(D),
            'o_kernel': rng.normal(0, 1, (E, D)) / np.sqrt(E),
            'q_gamma': 1 + 0.2 * rng.normal(size=S),
            'k_gamma': 1 + 0.2 * rng.normal(size=S)}


def gau_with(p, **kwargs):
    layer = GatedAttentionUnit(units=E, key_size=S, use_bias=False, **kwargs)
    layer(tf.zeros([1, 3, D]))
    layer.i_dense.kernel.assign(p['i_kernel'])
    layer.o_dense.kernel.assign(p['o_kernel'])
    layer.q_scaleoffset.gamma.assign(p['q_gamma'])
    layer.k_scaleoffset.gamma.assign(p['k_gamma'])
    return layer


def padded_inputs(rng, lengths, n, where='right'):
    """x [b, n, D] with large garbage on padding, and the key mask."""
    x = rng.normal(size=(len(lengths), n, D))
    mask = np.zeros((len(lengths), n), bool)
    for i, length in enumerate(lengths):
        if where == 'right':
            mask[i, :length] = True
        else:  # left padding
            mask[i, n - length:] = True
    x = np.where(mask[..., None], x, 50.0 * rng.normal(size=x.shape))
    return x.astype(np.float32), mask


# ----------------------------------------------------------------- backend


def test_mask_bias_masks_like_where_for_every_normalization():
    """a + mask_bias(mask), n from the mask: the reference's masked A (masked
    entries exactly 0), for every registered normalization."""
    rng = np.random.default_rng(0)
    a = (rng.normal(size=(2, 5, 7)) * 3).astype(np.float32)
    mask = rng.random((2, 5, 7)) > 0.4
    mask[..., 2] = True
    bias = backend.mask_bias(mask)
    assert bias.dtype == tf.float32
    np.testing.assert_array_equal(bias.numpy(),
                                  np.where(mask, 0.0, backend.MASK_VALUE))
    for method in backend.normalization_names():
        if method not in NORMALIZATIONS:
            continue
        got = backend.normalize_biased_attention(
            a, bias, backend.visible_counts(mask, 7), method).numpy()
        np.testing.assert_allclose(got, ref.normalize(a, mask, method),
                                   rtol=1e-5, atol=1e-6)
        assert np.all(got[~mask] == 0)


def test_normalize_biased_attention_float16_logits_stay_finite():
    a = tf.constant(np.full((1, 2, 6), 60000.0, np.float16))
    mask = np.array([True, True, False, False, False, False])[None, None]
    for method in NORMALIZATIONS:
        got = backend.normalize_biased_attention(
            a, backend.mask_bias(mask), backend.visible_counts(mask, 6),
            method)
        assert got.dtype == tf.float32
        assert np.all(np.isfinite(got.numpy()))
        assert np.all(got.numpy()[..., 2:] == 0)


@pytest.mark.parametrize('q_len,k_len', [(6, 6), (2, 6), (6, 3)])
@pytest.mark.parametrize('with_mask', [False, True])
def test_causal_visible_counts_match_mask_sums(q_len, k_len, with_mask):
    """Prefix-sum counts = the row sums of (causal ∧ key mask), floored at 1,
    also for a cached prefix (q < k) and queries before any key (q > k)."""
    rng = np.random.default_rng(1)
    key_mask = rng.random((3, k_len)) > 0.4 if with_mask else None
    full = np.broadcast_to(ref.causal(q_len, k_len), (3, q_len, k_len))
    if with_mask:
        full = full & key_mask[:, None, :]
    want = np.maximum(full.sum(-1, keepdims=True), 1)
    got = backend.causal_visible_counts(q_len, k_len, key_mask).numpy()
    np.testing.assert_array_equal(np.broadcast_to(got, want.shape), want)


@pytest.mark.parametrize('n', [3, 6])
def test_attention_values_layouts_and_dynamic_length(n, monkeypatch):
    """O = A V in both layouts, chosen statically and by tf.cond; and their
    gradients equal the numpy ones."""
    monkeypatch.setattr(backend, 'TRANSPOSED_VALUES_MIN_KEYS', 5)
    rng = np.random.default_rng(2)
    a = rng.random((2, 4, n)).astype(np.float32)
    v = rng.normal(size=(2, n, 3)).astype(np.float32)
    g = rng.normal(size=(2, 4, 3)).astype(np.float32)
    want = np.einsum('bmn,bne->bme', a, v)

    def value_and_grads(a, v):
        with tf.GradientTape() as tape:
            tape.watch([a, v])
            o = backend.attention_values(a, v)
        return (o,) + tuple(tape.gradient(o, [a, v], output_gradients=g))

    spec = tf.TensorSpec([None, None, None], tf.float32)
    dynamic = tf.function(value_and_grads, input_signature=[spec, spec])
    for fn in (value_and_grads, tf.function(value_and_grads), dynamic):
        o, da, dv = fn(tf.constant(a), tf.constant(v))
        np.testing.assert_allclose(o.numpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(da.numpy(), np.einsum('bme,bne->bmn', g,
                                                         v), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(dv.numpy(), np.einsum('bmn,bme->bne', a,
                                                         g), rtol=1e-5,
                                   atol=1e-6)
    graph = dynamic.get_concrete_function().graph
    assert any(op.type in ('If', 'StatelessIf') for op in
               graph.get_operations())


# ------------------------------------------------------------------- layer


@pytest.mark.parametrize('normalization', NORMALIZATIONS)
def test_key_padding_matches_numpy_and_unpadded(normalization, layout):
    """Key padding only: n = the real length; garbage on padding changes
    nothing; each sample equals its unpadded self."""
    rng = np.random.default_rng(3)
    p = params(rng)
    layer = gau_with(p, normalization=normalization)
    x, mask = padded_inputs(rng, [9, 5, 1], 9)
    got = layer(x, mask=tf.constant(mask)).numpy()
    want = ref.gau(x, p, E, S, key_mask=mask, normalization=normalization)
    np.testing.assert_allclose(got[mask], want[mask], atol=ATOL)
    for i, length in enumerate([9, 5, 1]):
        alone = layer(x[i:i + 1, :length]).numpy()[0]
        np.testing.assert_allclose(got[i, :length], alone, atol=ATOL)


@pytest.mark.parametrize('normalization', NORMALIZATIONS)
@pytest.mark.parametrize('where', ['right', 'left'])
def test_causal_with_padding_matches_numpy(normalization, where, layout):
    """Causal + key padding (n_i from the prefix sum), right and left
    padding; causal alone: n_i = i + 1."""
    rng = np.random.default_rng(4)
    p = params(rng)
    layer = gau_with(p, normalization=normalization, causal=True)
    x, mask = padded_inputs(rng, [8, 4], 8, where)
    got = layer(x, mask=tf.constant(mask)).numpy()
    want = ref.gau(x, p, E, S, key_mask=mask, is_causal=True,
                   normalization=normalization)
    rows = mask & (np.cumsum(mask, 1) > 0)
    np.testing.assert_allclose(got[rows], want[rows], atol=ATOL)
    got = layer(x).numpy()  # (the garbage rows are real inputs here)
    want = ref.gau(x, p, E, S, is_causal=True, normalization=normalization)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=ATOL)


@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu'])
def test_bool_bias_with_padding_matches_numpy(normalization, layout):
    """UniLM bool bias [b, n, n] and LM bias [n, n], with key padding."""
    rng = np.random.default_rng(5)
    p = params(rng)
    layer = gau_with(p, normalization=normalization)
    x, mask = padded_inputs(rng, [7, 5], 7)
    segments = np.array([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]])
    for bias in (ref.unilm_mask(segments), ref.lm_mask(7)):
        got = layer(x, mask=tf.constant(mask),
                    attention_bias=tf.constant(bias)).numpy()
        want = ref.gau(x, p, E, S, key_mask=mask, bool_bias=bias,
                       normalization=normalization)
        np.testing.assert_allclose(got[mask], want[mask], atol=ATOL)


@pytest.mark.parametrize('causal', [False, True])
def test_float_bias_with_padding_matches_numpy(causal, layout):
    """An additive float bias [n, n] on top of key padding (± causal)."""
    rng = np.random.default_rng(6)
    p = params(rng)
    layer = gau_with(p, causal=causal)
    x, mask = padded_inputs(rng, [6, 4], 6)
    bias = rng.normal(size=(6, 6)).astype(np.float32)
    got = layer(x, mask=tf.constant(mask),
                attention_bias=tf.constant(bias)).numpy()
    want = ref.gau(x, p, E, S, key_mask=mask, float_bias=bias,
                   is_causal=causal)
    np.testing.assert_allclose(got[mask], want[mask], atol=ATOL)


def test_unknown_length_and_gradients_equal_in_both_layouts(monkeypatch):
    """A tf.function with unknown length picks the layout by tf.cond; the
    outputs and weight gradients of both layouts agree (padded batch)."""
    rng = np.random.default_rng(7)
    p = params(rng)
    layer = gau_with(p)
    x, mask = padded_inputs(rng, [6, 3], 6)
    spec = [tf.TensorSpec([None, None, D]), tf.TensorSpec([None, None],
                                                          tf.bool)]

    def run(x, mask):
        with tf.GradientTape() as tape:
            y = layer(x, mask=mask)
            loss = tf.reduce_sum(tf.where(mask[..., None], y, 0.0) ** 2)
        return [y] + tape.gradient(loss, layer.trainable_weights)

    results = {}
    for threshold in (1, 10**9):
        monkeypatch.setattr(backend, 'TRANSPOSED_VALUES_MIN_KEYS', threshold)
        fn = tf.function(run, input_signature=spec)
        results[threshold] = [t.numpy() for t in fn(x, mask)]
    want = ref.gau(x, p, E, S, key_mask=mask)
    np.testing.assert_allclose(results[1][0][mask], want[mask], atol=ATOL)
    for a, b in zip(results[1], results[10**9]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('policy_name', ['mixed_float16', 'mixed_bfloat16'])
def test_mixed_precision_transposed_path_finite_and_close(policy_name,
                                                          monkeypatch,
                                                          policy):
    """Under mixed precision the fast path (additive float32 mask, A·V
    transposed) stays finite and close to float32, causal + padding."""
    monkeypatch.setattr(backend, 'TRANSPOSED_VALUES_MIN_KEYS', 1)
    rng = np.random.default_rng(8)
    p = params(rng)
    x, mask = padded_inputs(rng, [8, 5], 8)
    want = gau_with(p, causal=True)(x, mask=tf.constant(mask)).numpy()
    policy(policy_name)
    layer = gau_with(p, causal=True)
    got = layer(x, mask=tf.constant(mask))
    assert got.dtype == layer.compute_dtype
    got = tf.cast(got, tf.float32).numpy()
    assert np.all(np.isfinite(got))
    tol = 2e-2 if policy_name == 'mixed_float16' else 8e-2
    np.testing.assert_allclose(got[mask], want[mask],
                               atol=tol * np.abs(want[mask]).max())
