"""gau_keras.layers against the plain-numpy reference (random weights)."""
import gau_keras  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
from gau_keras import keras
from gau_keras.layers import (Embedding, GatedAttentionUnit,
                              LayerNormalization, RotaryEmbedding,
                              ScaleOffset, custom_objects)

D, E, S = 12, 20, 8        # hidden, units (e), key size (s)
ATOL = 2e-5


def random_params(rng, d=D, e=E, s=S, use_bias=False, cross=False, d_ctx=None):
    i_width = e + s if cross else 2 * e + s
    p = {'i_kernel': rng.normal(0, 1, (d, i_width)) / np.sqrt(d),
         'o_kernel': rng.normal(0, 1, (e, d)) / np.sqrt(e),
         'q_gamma': 1 + 0.2 * rng.normal(size=s),
         'k_gamma': 1 + 0.2 * rng.normal(size=s)}
    if cross:
        d_ctx = d_ctx or d
        p['kv_kernel'] = rng.normal(0, 1, (d_ctx, e + s)) / np.sqrt(d_ctx)
    if use_bias:
        p['i_bias'] = 0.1 * rng.normal(size=i_width)
        p['o_bias'] = 0.1 * rng.normal(size=d)
        p['q_beta'] = 0.1 * rng.normal(size=s)
        p['k_beta'] = 0.1 * rng.normal(size=s)
        if cross:
            p['kv_bias'] = 0.1 * rng.normal(size=e + s)
    return {k: v.astype(np.float32) for k, v in p.items()}


def set_params(layer, p):
    """Assigns reference params to a built GatedAttentionUnit by sublayer."""
    dense = [('i_dense', 'i'), ('o_dense', 'o')]
    if not layer.self_attention:
        dense.append(('kv_dense', 'kv'))
    for attr, key in dense:
        sub = getattr(layer, attr)
        sub.kernel.assign(p[key + '_kernel'])
        if layer.use_bias:
            sub.bias.assign(p[key + '_bias'])
        else:
            assert getattr(sub, 'bias', None) is None
    for attr, key in (('q_scaleoffset', 'q'), ('k_scaleoffset', 'k')):
        sub = getattr(layer, attr)
        sub.gamma.assign(p[key + '_gamma'])
        if layer.use_bias:
            sub.beta.assign(p[key + '_beta'])


def make_gau(p, d_ctx=None, **kwargs):
    kwargs.setdefault('use_bias', False)
    layer = GatedAttentionUnit(units=E, key_size=S, **kwargs)
    if layer.self_attention:
        layer(tf.zeros([1, 3, D]))
    else:
        layer([tf.zeros([1, 3, D]), tf.zeros([1, 4, d_ctx or D])])
    set_params(layer, p)
    return layer


@pytest.fixture(scope='module')
def rng():
    return np.random.default_rng(1234)


def x_of(rng, b=2, n=7, d=D):
    return rng.normal(size=(b, n, d)).astype(np.float32)


# --------------------------------------------------------------- self / GAU


@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu',
                                           'squared_relu_n2', 'softmax'])
@pytest.mark.parametrize('layout', ['interleaved', 'half'])
def test_gau_self_attention_matches_numpy(rng, normalization, layout):
    p = random_params(rng)
    layer = make_gau(p, normalization=normalization, rope_layout=layout)
    x = x_of(rng)
    got = layer(x).numpy()
    want = ref.gau(x, p, E, S, normalization=normalization, layout=layout)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-4)


def test_gau_use_bias_matches_numpy(rng):
    p = random_params(rng, use_bias=True)
    layer = make_gau(p, use_bias=True)
    assert len(layer.trainable_weights) == 8
    x = x_of(rng)
    np.testing.assert_allclose(layer(x).numpy(), ref.gau(x, p, E, S),
                               atol=ATOL, rtol=1e-4)


def test_gau_without_rope_and_scale(rng):
    p = random_params(rng)
    layer = make_gau(p, use_rope=False, attention_scale=False,
                     normalization='softmax')
    x = x_of(rng)
    want = ref.gau(x, p, E, S, use_rope=False, attention_scale=False,
                   normalization='softmax')
    np.testing.assert_allclose(layer(x).numpy(), want, atol=ATOL, rtol=1e-4)


def test_gau_position_ids(rng):
    p = random_params(rng)
    layer = make_gau(p)
    x = x_of(rng)
    pos = np.stack([np.arange(7) + 3, np.arange(7) * 2]).astype(np.int32)
    got = layer(x, position_ids=pos).numpy()
    np.testing.assert_allclose(got, ref.gau(x, p, E, S, positions=pos),
                               atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu',
                                           'squared_relu_n2'])
def test_gau_key_padding_mask_matches_numpy(rng, normalization):
    p = random_params(rng)
    layer = make_gau(p, normalization=normalization)
    x = x_of(rng, b=3, n=9)
    mask = np.arange(9)[None] < np.array([[9], [4], [1]])
    got = layer(x, mask=tf.constant(mask)).numpy()
    want = ref.gau(x, p, E, S, key_mask=mask, normalization=normalization)
    np.testing.assert_allclose(got[mask], want[mask], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu',
                                           'softmax'])
def test_gau_padding_invariance_with_keras_mask(rng, normalization):
    """A padded batch gives the unpadded outputs on real tokens."""
    p = random_params(rng)
    layer = make_gau(p, normalization=normalization)
    lengths = [10, 3, 6]
    x = x_of(rng, b=3, n=16)
    mask = np.arange(16)[None] < np.array(lengths)[:, None]
    padded = layer(x, mask=tf.constant(mask)).numpy()
    for r, length in enumerate(lengths):
        alone = layer(x[r:r + 1, :length]).numpy()[0]
        np.testing.assert_allclose(padded[r, :length], alone, atol=ATOL,
                                   rtol=1e-4)


def test_gau_keras_mask_propagates_from_embedding(rng):
    """Functional model: Embedding(mask_zero) → GAU; mask reaches the GAU
    and is propagated to its output."""
    p = random_params(rng)
    ids = keras.layers.Input((None,), dtype='int32')
    emb = keras.layers.Embedding(30, D, mask_zero=True)
    gau = GatedAttentionUnit(units=E, key_size=S, use_bias=False)
    h = gau(emb(ids))
    assert getattr(h, '_keras_mask', None) is not None
    model = keras.Model(ids, h)
    set_params(gau, p)
    tokens = np.array([[5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6]], np.int32)
    got = model(tokens).numpy()
    table = emb.get_weights()[0]
    want = ref.gau(table[tokens], p, E, S, key_mask=tokens != 0)
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=ATOL, rtol=1e-4)
    np.testing.assert_allclose(got[0, :3], model(tokens[:1, :3]).numpy()[0],
                               atol=ATOL)


# ------------------------------------------------------------------ causal


def test_gau_causal_matches_numpy(rng):
    p = random_params(rng)
    layer = make_gau(p, causal=True)
    x = x_of(rng, n=8)
    np.testing.assert_allclose(layer(x).numpy(),
                               ref.gau(x, p, E, S, is_causal=True),
                               atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu',
                                           'softmax'])
def test_gau_causal_no_leak(rng, normalization):
    p = random_params(rng)
    layer = make_gau(p, causal=True, normalization=normalization)
    x = x_of(rng, n=10)
    y = layer(x).numpy()
    x2 = x.copy()
    x2[:, 6:] = rng.normal(size=x2[:, 6:].shape) * 5
    y2 = layer(x2).numpy()
    np.testing.assert_allclose(y2[:, :6], y[:, :6], atol=1e-6)
    assert np.abs(y2[:, 6:] - y[:, 6:]).max() > 1e-3
    # causal + right padding: the real prefix equals the unpadded output
    mask = np.arange(10)[None] < np.array([[4], [10]])
    padded = layer(x, mask=tf.constant(mask)).numpy()
    np.testing.assert_allclose(padded[0, :4], layer(x[:1, :4]).numpy()[0],
                               atol=ATOL)


@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu',
                                           'squared_relu_n2'])
def test_gau_causal_left_and_mid_padding(rng, normalization):
    """Causal + padding before and inside the text: matches numpy, and the
    left-padded row equals the unpadded text alone (RoPE is relative).  A
    causal layer that ignored the key mask fails both (right padding alone
    could not show it)."""
    p = random_params(rng)
    layer = make_gau(p, normalization=normalization, causal=True)
    x = x_of(rng, b=2, n=12)
    x[:, :4] = 50.0                       # loud padding values
    mask = np.ones((2, 12), bool)
    mask[0, :4] = False                   # left padding
    mask[1, :4] = False
    mask[1, [6, 9]] = False               # masked tokens inside the text
    got = layer(x, mask=tf.constant(mask)).numpy()
    want = ref.gau(x, p, E, S, key_mask=mask, is_causal=True,
                   normalization=normalization)
    np.testing.assert_allclose(got[mask], want[mask], atol=ATOL, rtol=1e-4)
    alone = layer(x[:1, 4:]).numpy()[0]
    np.testing.assert_allclose(got[0, 4:], alone, atol=ATOL, rtol=1e-4)


def test_gau_causal_n_is_i_plus_1(rng):
    """squared_relu with causality divides row i by i+1 (unpadded)."""
    p = random_params(rng)
    layer = make_gau(p, causal=True, normalization='squared_relu')
    x = x_of(rng, b=1, n=6)
    want = ref.gau(x, p, E, S, bool_bias=ref.causal(6)[None],
                   normalization='squared_relu')
    np.testing.assert_allclose(layer(x).numpy(), want, atol=ATOL, rtol=1e-4)


# ------------------------------------------------------------------ biases


def test_gau_bool_bias_2d_lm_mask(rng):
    p = random_params(rng)
    layer = make_gau(p)
    x = x_of(rng, n=8)
    lm = ref.lm_mask(8)
    got = layer(x, attention_bias=tf.constant(lm)).numpy()
    np.testing.assert_allclose(got, ref.gau(x, p, E, S, bool_bias=lm[None]),
                               atol=ATOL, rtol=1e-4)
    # same as causal=True
    causal_layer = make_gau(p, causal=True)
    np.testing.assert_allclose(causal_layer(x).numpy(), got, atol=1e-6)


def test_gau_bool_bias_3d_unilm_mask(rng):
    p = random_params(rng)
    layer = make_gau(p)
    x = x_of(rng, n=8)
    seg = np.array([[0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 0]])
    key_mask = np.array([[1] * 8, [1] * 7 + [0]], bool)
    uni = ref.unilm_mask(seg)
    got = layer(x, mask=tf.constant(key_mask),
                attention_bias=tf.constant(uni)).numpy()
    want = ref.gau(x, p, E, S, bool_bias=uni, key_mask=key_mask)
    np.testing.assert_allclose(got[key_mask], want[key_mask], atol=ATOL,
                               rtol=1e-4)


def test_gau_float_bias(rng):
    p = random_params(rng)
    layer = make_gau(p)
    x = x_of(rng, n=6)
    bias2 = rng.normal(size=(6, 6)).astype(np.float32)
    got = layer(x, attention_bias=tf.constant(bias2)).numpy()
    np.testing.assert_allclose(got, ref.gau(x, p, E, S, float_bias=bias2),
                               atol=ATOL, rtol=1e-4)
    bias3 = rng.normal(size=(2, 6, 6)).astype(np.float32)
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], bool)
    got = layer(x, mask=tf.constant(mask),
                attention_bias=tf.constant(bias3)).numpy()
    want = ref.gau(x, p, E, S, float_bias=bias3, key_mask=mask)
    np.testing.assert_allclose(got[mask], want[mask], atol=ATOL, rtol=1e-4)


# ------------------------------------------------------------------- cross


@pytest.mark.parametrize('use_bias', [False, True])
def test_gau_cross_attention_matches_numpy(rng, use_bias):
    d_ctx = 10
    p = random_params(rng, use_bias=use_bias, cross=True, d_ctx=d_ctx)
    layer = make_gau(p, d_ctx=d_ctx, self_attention=False, use_bias=use_bias)
    x = x_of(rng, b=2, n=5)
    ctx = x_of(rng, b=2, n=9, d=d_ctx)
    got = layer([x, ctx]).numpy()
    assert got.shape == (2, 5, D)
    np.testing.assert_allclose(got, ref.gau(x, p, E, S, context=ctx),
                               atol=ATOL, rtol=1e-4)
    # context padding mask (second element of the mask list)
    cmask = np.arange(9)[None] < np.array([[9], [3]])
    got = layer([x, ctx], mask=[None, tf.constant(cmask)]).numpy()
    want = ref.gau(x, p, E, S, context=ctx, key_mask=cmask)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-4)
    alone = layer([x[1:], ctx[1:, :3]]).numpy()
    np.testing.assert_allclose(got[1], alone[0], atol=ATOL)


def test_gau_cross_attention_weights_and_shapes(rng):
    d_ctx = 6
    layer = GatedAttentionUnit(units=E, key_size=S, self_attention=False,
                               use_bias=False)
    x = keras.layers.Input((None, D))
    ctx = keras.layers.Input((None, d_ctx))
    y = layer([x, ctx])
    assert tuple(y.shape) == (None, None, D)
    shapes = {w.name.split('/')[-2] + '/' + w.name.split('/')[-1]: tuple(
        w.shape) for w in layer.weights}
    assert shapes['i_dense/kernel:0'] == (D, E + S)
    assert shapes['kv_dense/kernel:0'] == (d_ctx, E + S)
    assert shapes['o_dense/kernel:0'] == (E, D)
    model = keras.Model([x, ctx], y)
    out = model([x_of(rng, 3, 4), x_of(rng, 3, 11, d_ctx)])
    assert out.shape == (3, 4, D)


# ----------------------------------------------------------- other layers


@pytest.mark.parametrize('layout', ['interleaved', 'half'])
def test_rotary_embedding_layer(rng, layout):
    x = x_of(rng, n=5, d=8)
    layer = RotaryEmbedding(layout)
    np.testing.assert_allclose(layer(x).numpy(), ref.rope(x, None, layout),
                               atol=1e-5)
    pos = np.array([[4, 5, 6, 7, 8], [0, 0, 1, 1, 2]])
    np.testing.assert_allclose(layer([x, pos]).numpy(),
                               ref.rope(x, pos, layout), atol=1e-5)
    clone = RotaryEmbedding.from_config(layer.get_config())
    assert clone.layout == layout


def test_rms_layer_normalization(rng):
    ln = LayerNormalization(zero_mean=False, scale=False, offset=False)
    x = x_of(rng) * 7
    np.testing.assert_allclose(ln(x).numpy(), ref.rms_norm(x), rtol=1e-5)
    assert ln.epsilon == pytest.approx(ref.RMS_EPS)
    assert not ln.weights


def test_rms_layer_normalization_float16_no_overflow():
    ln = LayerNormalization(zero_mean=False, scale=False, offset=False,
                            dtype='mixed_float16')
    x = np.full((1, 2, 8), 1000.0, np.float16)  # x² = 1e6 > float16 max
    y = ln(tf.constant(x))
    assert y.dtype == tf.float16
    np.testing.assert_allclose(y.numpy().astype(np.float32), 1.0, atol=1e-3)


def test_scale_offset(rng):
    so = ScaleOffset(offset=True)
    x = x_of(rng, d=4)
    so(x)
    g, b = np.array([1., 2., 3., 4.]), np.array([0., 1., 0., -1.])
    so.gamma.assign(g)
    so.beta.assign(b)
    np.testing.assert_allclose(so(x).numpy(), x * g + b, rtol=1e-6)
    heads = ScaleOffset(heads=3, offset=False)
    assert heads(x).shape == (2, 7, 3, 4)


def test_embedding_dense_mode_under_mixed_precision(rng, policy):
    policy('mixed_float16')
    emb = Embedding(20, 8)
    ids = np.array([[1, 2, 3]])
    h = emb(ids)
    assert h.dtype == tf.float16
    logits = emb(h, mode='dense')
    table = emb.embeddings.numpy()
    want = table[ids] @ table.T
    np.testing.assert_allclose(logits.numpy().astype(np.float32), want,
                               atol=2e-2)


# ----------------------------------------------------------- config & errors


def _gau_call(layer, x):
    return layer(x)


def test_gau_get_config_round_trip(rng, layer_harness):
    p = random_params(rng)
    clone = layer_harness.config_round_trip(
        lambda: make_gau(p, normalization='squared_relu_n2',
                         rope_layout='half', causal=True), _gau_call,
        x_of(rng))
    assert (clone.normalization, clone.causal) == ('squared_relu_n2', True)
    assert set(custom_objects()) >= {'GatedAttentionUnit', 'RotaryEmbedding',
                                     'LayerNormalization', 'Embedding'}


def test_gau_save_load(rng, layer_harness):
    p = random_params(rng)
    layer_harness.save_load(
        lambda: make_gau(p, normalization='squared_relu', causal=True),
        x_of(rng))


def test_gau_bad_options():
    with pytest.raises(ValueError, match='rope_layout'):
        GatedAttentionUnit(units=4, key_size=2, rope_layout='neox')
    with pytest.raises(ValueError, match='normalization'):
        GatedAttentionUnit(units=4, key_size=2, normalization='relu2')
    with pytest.raises(ValueError, match='rope_layout'):
        RotaryEmbedding('neox')


def test_gau_odd_key_size_fails_clearly():
    layer = GatedAttentionUnit(units=4, key_size=3)
    with pytest.raises(ValueError, match='even'):
        layer(tf.zeros([1, 2, 4]))


# ---------------------------------------------------------- mixed precision


@pytest.mark.parametrize('name,tol', [('mixed_bfloat16', 0.04),
                                      ('mixed_float16', 0.005)])
@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu'])
def test_gau_mixed_precision_close_to_float32(rng, layer_harness, name, tol,
                                              normalization):
    p = random_params(rng)
    x = x_of(rng, b=2, n=64)
    mask = np.zeros((2, 64), bool)
    mask[0, :3] = True       # 3 real tokens out of 64
    mask[1, :40] = True
    x[~mask] = rng.normal(size=x[~mask].shape) * 3   # padding ≠ zeros
    layer_harness.mixed_precision_close(
        lambda: make_gau(p, normalization=normalization),
        lambda layer, x: layer(x, mask=tf.constant(mask)), x, name, tol,
        real=mask)


# ------------------------------------------- bert4keras's own GAU, checked


def _b4k_gau(p, normalization='softmax_plus'):
    from bert4keras.layers import GatedAttentionUnit as B4KGAU
    layer = B4KGAU(units=E, key_size=S, use_bias=False,
                   normalization=normalization)
    return layer


def _b4k_call(layer, x, mask=None, bias=None):
    from bert4keras.backend import sinusoidal_embeddings
    n = x.shape[1]
    sin = sinusoidal_embeddings(tf.range(n, dtype=tf.float32)[None], S)
    inputs = [tf.constant(x)] + ([tf.constant(bias)] if bias is not None
                                 else []) + [sin]
    masks = [None if mask is None else tf.constant(mask)] + [None] * (
        len(inputs) - 1)
    return layer(inputs, mask=masks, a_bias=True if bias is not None else None,
                 p_bias='rotary')


def test_bert4keras_gau_weight_order_differs_from_release_mapping():
    """bert4keras 0.11.5's GAU on tf-keras 2.21 lists [i, q, k, o]; the
    GAU-α release mapping lists [i, o, q, k], so a positional load would
    put o_dense's kernel into q_scaleoffset.  Ours lists release order."""
    x = np.zeros((1, 3, D), np.float32)
    layer = _b4k_gau(None)
    _b4k_call(layer, x)
    assert [tuple(w.shape) for w in layer.trainable_weights] == [
        (D, 2 * E + S), (S,), (S,), (E, D)]
    ours = GatedAttentionUnit(units=E, key_size=S, use_bias=False)
    ours(tf.zeros([1, 3, D]))
    assert [tuple(w.shape) for w in ours.checkpoint_weights()] == [
        (D, 2 * E + S), (E, D), (S,), (S,)]


@pytest.mark.parametrize('with_bias', [False, True])
def test_matches_bert4keras_gau(rng, with_bias):
    """Second independent check: bert4keras's own layer, same weights."""
    p = random_params(rng)
    ours = make_gau(p)
    theirs = _b4k_gau(p)
    x = x_of(rng, b=2, n=9)
    mask = np.arange(9)[None] < np.array([[9], [5]])
    bias = ref.unilm_mask(np.array([[0] * 4 + [1] * 5] * 2)) if with_bias \
        else None
    _b4k_call(theirs, x, mask, bias)
    by_shape = {(D, 2 * E + S): p['i_kernel'], (E, D): p['o_kernel']}
    scale = [w for w in theirs.trainable_weights if tuple(w.shape) == (S,)]
    for w in theirs.trainable_weights:
        if tuple(w.shape) in by_shape:
            w.assign(by_shape[tuple(w.shape)])
    scale[0].assign(p['q_gamma'])
    scale[1].assign(p['k_gamma'])
    want = _b4k_call(theirs, x, mask, bias).numpy()
    got = ours(x, mask=tf.constant(mask),
               attention_bias=None if bias is None else tf.constant(bias))
    np.testing.assert_allclose(got.numpy()[mask], want[mask], atol=ATOL,
                               rtol=1e-4)


@pytest.mark.parametrize('name', ['mixed_float16', 'mixed_bfloat16'])
def test_bert4keras_gau_breaks_under_mixed_precision(rng, policy, name):
    """Why we replaced it: under mixed precision bert4keras 0.11.5's GAU
    fails with a float32 / float16 dtype clash; ours works (tests above)."""
    policy(name)
    layer = _b4k_gau(None)
    x = x_of(rng, b=1, n=4)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='expected to be a (half|bfloat16) tensor'):
        _b4k_call(layer, x, np.array([[1, 1, 1, 0]], bool))


@pytest.mark.parametrize('name', ['mixed_bfloat16', 'mixed_float16'])
@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu'])
def test_gau_mixed_precision_gradients_finite(rng, policy, name,
                                              normalization):
    p = random_params(rng)
    policy(name)
    layer = make_gau(p, normalization=normalization, causal=True)
    x = tf.constant(x_of(rng, b=2, n=64))
    mask = tf.constant(np.arange(64)[None] < np.array([[3], [64]]))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, mask=mask)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights + [x])
    for g in grads:
        assert g is not None
        assert np.all(np.isfinite(tf.cast(g, tf.float32).numpy()))


def test_attention_dropout(rng):
    p = random_params(rng)
    layer = make_gau(p, attention_dropout=0.5)
    x = x_of(rng)
    np.testing.assert_allclose(layer(x, training=False).numpy(),
                               ref.gau(x, p, E, S), atol=ATOL, rtol=1e-4)
    assert np.abs(layer(x, training=True).numpy() -
                  layer(x, training=False).numpy()).max() > 1e-3


def test_gau_cross_attention_causal_is_end_aligned(rng):
    """Causal cross-attention: query i of m sees keys j ≤ i + (n - m)
    (the cached-prefix convention of backend.causal_mask)."""
    p = random_params(rng, cross=True)
    layer = make_gau(p, self_attention=False, causal=True)
    x, ctx = x_of(rng, n=3), x_of(rng, n=7)
    want = ref.gau(x, p, E, S, context=ctx, bool_bias=ref.causal(3, 7)[None])
    np.testing.assert_allclose(layer([x, ctx]).numpy(), want, atol=ATOL,
                               rtol=1e-4)


# ---- registration -------------------------------------------------------------

def _gau_keras_classes(base):
    """Every class derived from ``base`` that a gau_keras module defines
    (all modules imported)."""
    import importlib
    import pkgutil
    found = {}
    for info in pkgutil.walk_packages(gau_keras.__path__, 'gau_keras.'):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, base) and
                    obj.__module__ == module.__name__):
                found[obj.__module__ + '.' + obj.__name__] = obj
    return found


def test_every_layer_and_initializer_class_is_registered():
    """Each Layer / Initializer class of every gau_keras module is a Keras
    custom object under its name, and in gau_keras.layers.custom_objects()
    (so a saved model that holds it loads)."""
    from gau_keras import layers
    classes = _gau_keras_classes((keras.layers.Layer,
                                  keras.initializers.Initializer))
    assert {'gau_keras.layers.GatedAttentionUnit',
            'gau_keras.flash.MixedChunkAttention',
            'gau_keras.output_layers.ConditionalRandomField',
            'gau_keras.layers.FirstToken'} <= set(classes)
    registered = keras.utils.get_custom_objects()
    ours = layers.custom_objects()
    for path, cls in classes.items():
        assert registered.get(cls.__name__) is cls, path
        assert ours.get(cls.__name__) is cls, path


def test_register_plain_name_and_package():
    from gau_keras.registry import custom_objects, register

    @register
    class PlainRegistered(keras.layers.Layer):
        pass

    @register(package='gau_keras_test', plain_name=False)
    class PackageRegistered(keras.layers.Layer):
        pass
    registered = keras.utils.get_custom_objects()
    try:
        assert registered['PlainRegistered'] is PlainRegistered
        assert custom_objects()['PlainRegistered'] is PlainRegistered
        assert keras.utils.get_registered_name(PlainRegistered) == (
            'PlainRegistered')
        assert 'PackageRegistered' not in custom_objects()
        assert keras.utils.get_registered_name(PackageRegistered) == (
            'gau_keras_test>PackageRegistered')
        assert keras.utils.get_registered_object(
            'gau_keras_test>PackageRegistered') is PackageRegistered
        # the returned dict is a copy
        custom_objects().clear()
        assert 'PlainRegistered' in custom_objects()
    finally:
        registered.pop('PlainRegistered', None)
        registered.pop('gau_keras_test>PackageRegistered', None)
        from gau_keras import registry
        registry._PLAIN.pop('PlainRegistered', None)
