"""gau_keras.backend formulas against the plain-numpy transcription."""
import gau_keras  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
from gau_keras import backend


def test_keras_is_keras2():
    assert tf.keras.layers.Layer.__module__.startswith('tf_keras')
    assert gau_keras.keras.__name__.startswith('tf_keras')


def test_rope_frequencies():
    np.testing.assert_allclose(
        backend.rope_frequencies(8).numpy(),
        10000.0 ** (-2.0 * np.arange(4) / 8), rtol=1e-6)
    with pytest.raises(ValueError, match='even'):
        backend.rope_frequencies(7)


def test_rope_feature_rates_pair_the_features_of_each_layout():
    theta = 10000.0 ** (-2.0 * np.arange(3) / 6)
    np.testing.assert_allclose(backend.rope_feature_rates(6, 'interleaved'),
                               [theta[0], theta[0], theta[1], theta[1],
                                theta[2], theta[2]], rtol=1e-7)
    np.testing.assert_allclose(backend.rope_feature_rates(6, 'half'),
                               np.concatenate([theta, theta]), rtol=1e-7)
    assert backend.rope_feature_rates(6).dtype == np.float32
    with pytest.raises(ValueError, match='even'):
        backend.rope_feature_rates(7)
    with pytest.raises(ValueError, match='rope_layout'):
        backend.rope_feature_rates(6, 'spiral')


@pytest.mark.parametrize('layout', ['interleaved', 'half'])
def test_rope_matches_numpy(layout):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 8)).astype(np.float32)
    got = backend.rotary_position_embedding(x, tf.range(11), layout).numpy()
    np.testing.assert_allclose(got, ref.rope(x, None, layout), atol=1e-5)
    # per-row positions [b, n]
    pos = np.stack([np.arange(11), np.arange(11) + 5])
    got = backend.rotary_position_embedding(x, pos, layout).numpy()
    np.testing.assert_allclose(got, ref.rope(x, pos, layout), atol=1e-5)


@pytest.mark.parametrize('layout', ['interleaved', 'half'])
@pytest.mark.parametrize('custom_positions', [False, True])
def test_rope_over_stacked_heads_matches_numpy(layout, custom_positions):
    # FLASH rotates its four projections stacked as [b, n, 4, s] at once.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 7, 4, 8)).astype(np.float32)
    pos = (rng.integers(0, 50, (2, 7)) if custom_positions else None)
    got = backend.rotary_position_embedding(
        x, np.arange(7) if pos is None else pos, layout).numpy()
    for h in range(4):
        np.testing.assert_allclose(got[:, :, h], ref.rope(x[:, :, h], pos,
                                                          layout), atol=1e-5)


def test_rope_interleaved_explicit_pair():
    # Hand-computed: pair (x0, x1) = (1, 0) at p=1, θ_0 = 1 → (cos 1, sin 1);
    # pair (x2, x3) = (0, 1) at p=1, θ_1 = 10000^(-1/2) → (-sin θ, cos θ).
    x = np.array([[[0., 0., 0., 0.], [1., 0., 0., 1.]]], np.float32)
    got = backend.rotary_position_embedding(x, tf.range(2)).numpy()[0, 1]
    t = 10000.0 ** -0.5
    np.testing.assert_allclose(got, [np.cos(1), np.sin(1), -np.sin(t),
                                     np.cos(t)], atol=1e-6)


def test_rope_half_explicit_pair():
    # half layout pairs (x0, x2) and (x1, x3).
    x = np.array([[[0., 0., 0., 0.], [1., 0., 0., 1.]]], np.float32)
    got = backend.rotary_position_embedding(x, tf.range(2), 'half').numpy()
    t = 10000.0 ** -0.5
    np.testing.assert_allclose(got[0, 1], [np.cos(1), -np.sin(t), np.sin(1),
                                           np.cos(t)], atol=1e-6)


@pytest.mark.parametrize('layout', ['interleaved', 'half'])
def test_rope_scores_depend_only_on_relative_position(layout):
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, 1, 16)).astype(np.float32)
    k = rng.normal(size=(1, 1, 16)).astype(np.float32)

    def score(pq, pk):
        rq = backend.rotary_position_embedding(q, [pq], layout).numpy()
        rk = backend.rotary_position_embedding(k, [pk], layout).numpy()
        return float(np.sum(rq * rk))

    base = score(3, 7)
    for shift in (1, 10, 50):
        assert score(3 + shift, 7 + shift) == pytest.approx(base, abs=1e-4)
    # ...and does depend on it (rotation is not the identity).
    assert abs(score(3, 8) - base) > 1e-3
    # rotation preserves norms
    rq = backend.rotary_position_embedding(q, [123], layout).numpy()
    assert np.linalg.norm(rq) == pytest.approx(np.linalg.norm(q), rel=1e-5)


def test_rope_bad_layout():
    with pytest.raises(ValueError, match='rope_layout.*interleaved.*half'):
        backend.rotary_position_embedding(tf.zeros([1, 2, 4]), tf.range(2),
                                          'neox')


def test_rope_matches_bert4keras_interleaved():
    """Second independent check: bert4keras's RoPE helper."""
    from bert4keras.backend import apply_rotary_position_embeddings
    from bert4keras.backend import sinusoidal_embeddings
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 8)).astype(np.float32)
    sin = sinusoidal_embeddings(tf.range(9, dtype=tf.float32)[None], 8)
    want = apply_rotary_position_embeddings(sin, tf.constant(x)).numpy()
    got = backend.rotary_position_embedding(x, tf.range(9)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(
        backend.sinusoidal_embeddings(tf.range(9), 8).numpy(),
        sin.numpy()[0], atol=1e-6)


def test_causal_mask():
    np.testing.assert_array_equal(backend.causal_mask(4, 4).numpy(),
                                  ref.causal(4))
    np.testing.assert_array_equal(backend.causal_mask(2, 5).numpy(),
                                  ref.causal(2, 5))
    assert backend.causal_mask(3, 3).numpy().sum() == 6


def _logits_and_mask(seed=3, b=2, m=5, n=7):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(b, m, n)).astype(np.float32) * 3
    mask = rng.random((b, m, n)) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    return a, mask


@pytest.mark.parametrize('method', ['softmax_plus', 'squared_relu',
                                    'squared_relu_n2', 'softmax'])
def test_normalizations_match_numpy(method):
    a, mask = _logits_and_mask()
    got = backend.normalize_attention(a, mask, method=method).numpy()
    np.testing.assert_allclose(got, ref.normalize(a, mask, method),
                               rtol=1e-5, atol=1e-6)
    # unmasked
    got = backend.normalize_attention(a, method=method).numpy()
    np.testing.assert_allclose(got, ref.normalize(a, None, method),
                               rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32


def test_softmax_plus_scale_uses_visible_count_floor_16():
    # 4 visible keys: scale = log(16)/log(512) (floored at 16), not log(4).
    a = np.array([[[1.0, 2.0, 0.5, -1.0]]], np.float32)
    got = backend.normalize_attention(a, method='softmax_plus').numpy()
    z = np.exp(a[0, 0] * np.log(16) / np.log(512))
    np.testing.assert_allclose(got[0, 0], z / z.sum(), rtol=1e-6)
    # 100 visible keys out of 128: scale uses 100.
    rng = np.random.default_rng(4)
    a = rng.normal(size=(1, 1, 128)).astype(np.float32)
    mask = np.arange(128) < 100
    got = backend.normalize_attention(a, mask[None, None],
                                      method='softmax_plus').numpy()[0, 0]
    z = np.exp(a[0, 0, :100] * np.log(100) / np.log(512))
    np.testing.assert_allclose(got[:100], z / z.sum(), rtol=1e-5)
    assert np.all(got[100:] == 0)


def test_squared_relu_divides_by_visible_count():
    a = np.array([[[1.0, -2.0, 3.0, 4.0]]], np.float32)
    mask = np.array([[[True, True, True, False]]])
    got = backend.normalize_attention(a, mask, method='squared_relu').numpy()
    np.testing.assert_allclose(got[0, 0], [1 / 3, 0, 3, 0], rtol=1e-6)


@pytest.mark.parametrize('method', ['softmax_plus', 'squared_relu',
                                    'squared_relu_n2', 'softmax'])
def test_normalization_with_float_bias(method):
    a, mask = _logits_and_mask(seed=5)
    bias = np.random.default_rng(6).normal(size=a.shape[1:]).astype(
        np.float32)
    got = backend.normalize_attention(a, mask, bias, method).numpy()
    np.testing.assert_allclose(got, ref.normalize(a + bias, mask, method),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('method', ['softmax_plus', 'squared_relu',
                                    'squared_relu_n2', 'softmax'])
def test_normalization_float16_logits_stay_finite(method):
    a = np.full((1, 2, 6), 60000.0, np.float16)  # near float16 max
    mask = np.array([True, True, False, False, False, False])[None, None]
    got = backend.normalize_attention(tf.constant(a), mask, method=method)
    assert got.dtype == tf.float32
    assert np.all(np.isfinite(got.numpy()))
    # a fully masked row stays finite too
    got = backend.normalize_attention(a, np.zeros((1, 2, 6), bool),
                                      method=method)
    assert np.all(np.isfinite(got.numpy()))


def test_unknown_normalization():
    with pytest.raises(ValueError, match='normalization.*softmax_plus'):
        backend.normalize_attention(np.zeros((1, 2, 2), np.float32),
                                    method='relu2')
    with pytest.raises(ValueError, match='squared_relu'):
        backend.check_normalization('sparsemax')


def test_squared_relu_n2_divides_by_visible_count_squared():
    """relu²(a/n): the paper's pseudo-code, with n the visible keys (3)."""
    a = np.array([[[1.0, -2.0, 3.0, 4.0]]], np.float32)
    mask = np.array([[[True, True, True, False]]])
    got = backend.normalize_attention(a, mask,
                                      method='squared_relu_n2').numpy()
    np.testing.assert_allclose(got[0, 0], [1 / 9, 0, 1, 0], rtol=1e-6)


def test_registry_holds_every_normalization_once():
    assert set(backend.normalization_names()) >= {
        'softmax_plus', 'squared_relu', 'squared_relu_n2', 'softmax'}
    for name in backend.normalization_names():
        assert backend.get_normalization(name) is (
            backend.ATTENTION_NORMALIZATIONS[name])


def test_register_normalization_one_line():
    """A new normalization is one line, and the GAU uses it by name."""
    from gau_keras.layers import GatedAttentionUnit
    backend.register_normalization('test_relu_n', lambda a, n:
                                   tf.nn.relu(a) / n)
    try:
        a = np.array([[[1.0, -2.0, 3.0, 4.0]]], np.float32)
        mask = np.array([[[True, True, True, False]]])
        got = backend.normalize_attention(a, mask, method='test_relu_n')
        np.testing.assert_allclose(got.numpy()[0, 0], [1 / 3, 0, 1, 0],
                                   rtol=1e-6)
        layer = GatedAttentionUnit(units=4, key_size=2,
                                   normalization='test_relu_n')
        assert layer(tf.ones([1, 3, 4])).shape == (1, 3, 4)
    finally:
        backend.ATTENTION_NORMALIZATIONS.pop('test_relu_n')
    with pytest.raises(ValueError, match='test_relu_n'):
        backend.check_normalization('test_relu_n')


def test_register_normalization_refuses_bad_entries():
    with pytest.raises(TypeError, match='callable'):
        backend.register_normalization('x', 3)
    with pytest.raises(ValueError, match='non-empty string'):
        backend.register_normalization('', lambda a, n: a)
    with pytest.raises(ValueError, match='my_layer.*normalization'):
        backend.check_normalization(None, 'my_layer')


def test_rope_layout_check_names_owner():
    assert backend.check_rope_layout('half') == 'half'
    with pytest.raises(ValueError, match="gau_3: rope_layout.*'neox'"):
        backend.check_rope_layout('neox', 'gau_3')


@pytest.mark.parametrize('dtype,eps', [('float16', 2.0**-11),
                                       ('bfloat16', 2.0**-8)])
@pytest.mark.parametrize('layout', ['interleaved', 'half'])
def test_rope_low_precision_at_position_2000(dtype, eps, layout):
    """Angles near 2000 rad are taken in float32: the fp16 / bf16 result is
    the exact rotation of the same (rounded) values, up to the rounding of
    the output.  Angles in the low dtype would be off by whole radians."""
    rng = np.random.default_rng(7)
    x = tf.cast(rng.normal(size=(2, 24, 4, 16)), dtype)
    positions = 1990 + np.arange(24)
    got = backend.rotary_position_embedding(x, positions, layout)
    assert got.dtype == tf.as_dtype(dtype)
    x64 = np.asarray(tf.cast(x, tf.float64))
    for h in range(4):
        want = ref.rope(x64[:, :, h], positions, layout)
        np.testing.assert_allclose(
            np.asarray(tf.cast(got[:, :, h], tf.float64)), want,
            atol=4 * eps * np.abs(x64).max())


def _numpy_swish_and_grad(x):
    s = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    return x * s, s + x * s * (1.0 - s)  # φ(x), φ'(x)


@pytest.mark.parametrize('fused', [True, False])
def test_swish_value_and_gradient_match_numpy(fused, monkeypatch):
    monkeypatch.setattr(backend, 'FUSE_SWISH_GRADIENT', fused)
    rng = np.random.default_rng(3)
    x = rng.normal(scale=4.0, size=(3, 5, 7)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = backend.swish(xt)
    dx = tape.gradient(y, xt, output_gradients=tf.constant(dy))
    want_y, want_d = _numpy_swish_and_grad(x)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx.numpy(), dy * want_d, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_swish_gradient_low_precision_and_inside_xla(dtype):
    """Same gradient as TensorFlow's silu in 16 bits, also when the whole
    step is XLA-compiled (the fused gradient nests in the outer cluster)."""
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(scale=3.0, size=(4, 6)), dtype)

    def grads(f):
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = f(x)
            return tape.gradient(y, x)
        return [tf.cast(run(x), tf.float32).numpy(),
                tf.cast(tf.function(run, jit_compile=True)(x),
                        tf.float32).numpy()]

    ours, theirs = grads(backend.swish), grads(tf.nn.silu)
    tol = 1e-2 if dtype == 'float16' else 4e-2
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_gated_layers_use_the_fused_swish_for_swish_only():
    from gau_keras.layers import GatedAttentionUnit
    gau = GatedAttentionUnit(8, key_size=4, activation='swish')
    gau(tf.zeros([1, 3, 6]))
    assert gau.i_dense.activation is backend.swish
    relu = GatedAttentionUnit(8, key_size=4, activation='relu')
    relu(tf.zeros([1, 3, 6]))
    assert relu.i_dense.activation is not backend.swish
    assert relu.get_config()['activation'] == 'relu'
    assert gau.get_config()['activation'] == 'swish'
