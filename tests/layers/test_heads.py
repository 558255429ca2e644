"""gau_keras.output_layers: CRF, MEMM, GlobalPointer, EfficientGlobalPointer,
Loss; and gau_keras.layers.MultiHeadAttention.

Checked against brute force (CRF: every label path enumerated), plain-numpy
transcriptions (GlobalPointer scores with RoPE), bert4keras's own layers in
float32, and trained on gau_alpha / flash_quad / flash (each model and each
precision at least once).
"""
import itertools

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest
import tensorflow as tf
from bert4keras import layers as b4k_layers

from gau_keras import layers, output_layers
from gau_keras.backend import K, keras
from gau_keras.snippets import ViterbiDecoder

from tiny_configs import COMPAT_SIZE, build_tiny as tiny_model

#: Each model once and each precision once; FLASH (EfficientGlobalPointer)
#: in both low precisions, GAU-α / FLASH-Quad (GlobalPointer) in float32 and
#: bfloat16 (GlobalPointer under float16: the layer tests above).
MODEL_RUNS = [('gau_alpha', 'float32')] + [
    pytest.param(*run, marks=pytest.mark.slow) for run in (
        ('flash_quad', 'mixed_bfloat16'), ('flash', 'mixed_float16'),
        ('flash', 'mixed_bfloat16'))]


def batch(rng, b=3, n=6, lengths=(6, 4, 5)):
    tokens = np.zeros((b, n), 'int32')
    for r, length in enumerate(lengths):
        tokens[r, :length] = rng.integers(1, COMPAT_SIZE['vocab_size'],
                                          length)
    return [tokens, np.zeros_like(tokens)], np.array(lengths)


# ---- numpy truths -------------------------------------------------------

def crf_nll_brute_force(emissions, trans, labels):
    """-log p(labels) with Z summed over every path (k^n of them)."""
    k, n = trans.shape[0], len(labels)

    def score(path):
        return (sum(emissions[t, path[t]] for t in range(n))
                + sum(trans[path[t], path[t + 1]] for t in range(n - 1)))
    all_scores = [score(p) for p in itertools.product(range(k), repeat=n)]
    log_z = np.logaddexp.reduce(all_scores)
    return log_z - score(labels), max(
        itertools.product(range(k), repeat=n), key=score)


def rope_numpy(x, positions):
    """Interleaved RoPE: (x_2i, x_2i+1) rotated by p·10000^(-2i/d)."""
    d = x.shape[-1]
    theta = 10000.0 ** (-2.0 * np.arange(d // 2) / d)
    angle = positions[:, None] * theta                      # [n, d/2]
    shape = (1, len(positions)) + (1,) * (x.ndim - 3) + (d // 2,)
    cos, sin = np.cos(angle).reshape(shape), np.sin(angle).reshape(shape)
    a, b = x[..., ::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., ::2], out[..., 1::2] = a * cos - b * sin, b * cos + a * sin
    return out


def span_masked(logits, lengths):
    """Masks spans with a padded token or j < i to -inf (bert4keras's)."""
    out = logits.copy()
    n = logits.shape[-1]
    for r, length in enumerate(lengths):
        out[r, :, length:, :] = -np.inf
        out[r, :, :, length:] = -np.inf
    out[..., np.tril_indices(n, -1)[0], np.tril_indices(n, -1)[1]] = -np.inf
    return out


def global_pointer_numpy(x, kernel, bias, heads_, size, lengths):
    h = (x @ kernel + bias).reshape(x.shape[:2] + (heads_, 2 * size))
    n = x.shape[1]
    q = rope_numpy(h[..., :size], np.arange(n))
    k = rope_numpy(h[..., size:], np.arange(n))
    return span_masked(np.einsum('bmhd,bnhd->bhmn', q, k) / size**0.5,
                       lengths)


def efficient_global_pointer_numpy(x, pk, pb, qk, qb, heads_, size, lengths):
    h = x @ pk + pb
    n = x.shape[1]
    q, k = rope_numpy(h[..., ::2], np.arange(n)), rope_numpy(h[..., 1::2],
                                                             np.arange(n))
    logits = np.einsum('bmd,bnd->bmn', q, k) / size**0.5
    bias = np.einsum('bnh->bhn', h @ qk + qb) / 2
    # bert4keras: end bias from the even channels, start bias from the odd
    logits = logits[:, None] + bias[:, ::2, None, :] + bias[:, 1::2, :, None]
    return span_masked(logits, lengths)


# ---- the heads on their own ------------------------------------------------

def masked_input(n_features):
    x = keras.layers.Input((None, n_features))
    return x, keras.layers.Masking(0.0)(x)


def padded_features(rng, lengths, n, d):
    x = rng.normal(size=(len(lengths), n, d)).astype('float32')
    for r, length in enumerate(lengths):
        x[r, length:] = 0.0
    return x


@pytest.mark.parametrize('cls', [output_layers.GlobalPointer,
                                 output_layers.EfficientGlobalPointer])
def test_global_pointers_equal_numpy_and_bert4keras(cls):
    rng = np.random.default_rng(0)
    lengths = [7, 3]
    x = padded_features(rng, lengths, 7, 12)
    inp, masked = masked_input(12)
    ours = keras.Model(inp, cls(heads=3, head_size=8)(masked))
    layer = ours.layers[-1]
    if cls is output_layers.GlobalPointer:
        kernel, bias = layer.dense.get_weights()
        want = global_pointer_numpy(x, kernel, bias, 3, 8, lengths)
    else:
        (pk, pb), (qk, qb) = (layer.p_dense.get_weights(),
                              layer.q_dense.get_weights())
        want = efficient_global_pointer_numpy(x, pk, pb, qk, qb, 3, 8,
                                              lengths)
    got = ours.predict(x, verbose=0)
    assert got.dtype == np.float32 and got.shape == (2, 3, 7, 7)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], atol=1e-5)
    b4k_cls = getattr(b4k_layers, cls.__name__)
    theirs = keras.Model(inp, b4k_cls(heads=3, head_size=8)(masked))
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(theirs.predict(x, verbose=0)[finite],
                               got[finite], atol=1e-5)


def test_global_pointer_under_bfloat16_equals_float32_on_rounded_input(
        policy):
    """After a bf16 body, scores (RoPE angles at positions up to 600
    included) are the float32 scores of the bf16-rounded input."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 600, 8)).astype('float32')
    x16 = tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy()
    inp = keras.layers.Input((None, 8))
    ref = keras.Model(inp, output_layers.GlobalPointer(1, 8, tril_mask=False)(inp))
    policy('mixed_bfloat16')
    inp16 = keras.layers.Input((None, 8))
    body = keras.layers.Activation('linear')(inp16)          # bf16 tensor
    assert body.dtype == tf.bfloat16
    bf16 = keras.Model(inp16, output_layers.GlobalPointer(1, 8,
                                                  tril_mask=False)(body))
    bf16.set_weights(ref.get_weights())
    got = bf16.predict(x, verbose=0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref.predict(x16, verbose=0), atol=1e-4)


def test_crf_loss_and_viterbi_equal_brute_force():
    rng = np.random.default_rng(2)
    lengths = [5, 3]
    x = padded_features(rng, lengths, 5, 3)
    inp, masked = masked_input(3)
    crf = output_layers.ConditionalRandomField(lr_multiplier=10)
    model = keras.Model(inp, crf(masked))
    trans = rng.normal(size=(3, 3)).astype('float32')
    crf.set_weights([trans / 10])
    np.testing.assert_allclose(K.eval(crf.trans), trans, rtol=1e-6)
    labels = np.array([[0, 2, 1, 1, 0], [2, 2, 0, 0, 0]], 'int32')
    scores = model.predict(x, verbose=0)
    assert np.isneginf(scores[1, 3:]).all()
    losses = K.eval(crf.sparse_loss(tf.constant(labels), tf.constant(scores)))
    viterbi = ViterbiDecoder(trans=trans)
    for r, length in enumerate(lengths):
        nll, best = crf_nll_brute_force(x[r, :length], trans,
                                        labels[r, :length])
        np.testing.assert_allclose(losses[r], nll, rtol=1e-5)
        assert tuple(viterbi.decode(scores[r, :length].copy())) == best


@pytest.mark.parametrize('name', ['ConditionalRandomField',
                                  'GlobalPointer', 'EfficientGlobalPointer'])
def test_bert4keras_heads_fail_under_mixed_precision_ours_do_not(name,
                                                                 policy):
    """The reason gau_keras.output_layers exists: bert4keras's raise under fp16."""
    policy('mixed_float16')
    x = tf.random.normal([2, 3, 8])
    labels = tf.zeros([2, 3], tf.int32)
    args = {} if name == 'ConditionalRandomField' else dict(heads=2,
                                                            head_size=4)

    def run(layer):
        out = layer(x)
        if name == 'ConditionalRandomField':
            return layer.sparse_loss(labels, out)
        return out
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
        run(getattr(b4k_layers, name)(**args))
    out = run(getattr(output_layers, name)(**args))
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()) |
                                              np.isneginf(out.numpy()))


def test_loss_layer_computes_in_float32(policy):
    policy('mixed_bfloat16')

    class MeanSquare(output_layers.Loss):
        def compute_loss(self, inputs, mask=None):
            assert inputs[1].dtype == tf.float32
            return K.mean(K.square(inputs[1] - inputs[0]))

    inp = keras.layers.Input((4,))
    y = keras.layers.Dense(4)(inp)
    out = MeanSquare(1)([inp, y])
    assert out.dtype == tf.float32
    model = keras.Model(inp, out)
    model.compile(optimizer='sgd')
    x = np.ones((2, 4), 'float32')
    loss = model.test_on_batch(x)
    want = np.mean((model.predict(x, verbose=0) - x)**2)
    np.testing.assert_allclose(loss, want, rtol=1e-5)


# ---- on the three models, three policies ---------------------------------

def multilabel_crossentropy(y_true, y_pred):
    """bert4keras's global_pointer_crossentropy (its NER example)."""
    from bert4keras.backend import multilabel_categorical_crossentropy
    bh = K.prod(K.shape(y_pred)[:2])
    y_true = K.reshape(y_true, (bh, -1))
    y_pred = K.reshape(y_pred, (bh, -1))
    return K.mean(multilabel_categorical_crossentropy(y_true, y_pred))


@pytest.mark.parametrize('name,precision', MODEL_RUNS)
def test_crf_and_global_pointer_train_on_models(name, precision, policy):
    policy(precision)
    rng = np.random.default_rng(3)
    base = tiny_model(name)
    hidden = base.output
    crf = output_layers.ConditionalRandomField(lr_multiplier=10)
    tags = crf(keras.layers.Dense(5)(hidden))
    pointer = (output_layers.EfficientGlobalPointer if name == 'flash'
               else output_layers.GlobalPointer)
    spans = pointer(2, 8)(hidden)
    model = keras.Model(base.inputs, [tags, spans])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=[crf.sparse_loss, multilabel_crossentropy],
                  run_eagerly=True)        # tiny: tracing would dominate
    x, lengths = batch(rng)
    y_tags = rng.integers(0, 5, (3, 6)).astype('int32')
    y_spans = np.zeros((3, 2, 6, 6), 'float32')
    y_spans[:, 0, 1, 2] = 1.0
    # 6 steps: under mixed_float16 the dynamic loss scale (2^15 at first)
    # may skip the first updates on float16 overflow.
    losses = [model.train_on_batch(x, [y_tags, y_spans])[0]
              for _ in range(6)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    scores, span_scores = [o.numpy() for o in model(x)]
    assert scores.dtype == span_scores.dtype == np.float32
    # The CRF loss from the model's scores is the brute-force -log p.
    trans = K.eval(crf.trans)
    loss = K.eval(crf.sparse_loss(tf.constant(y_tags), tf.constant(scores)))
    r = 1
    nll, best = crf_nll_brute_force(scores[r, :lengths[r]], trans,
                                    y_tags[r, :lengths[r]])
    np.testing.assert_allclose(loss[r], nll, rtol=1e-4)
    path = ViterbiDecoder(trans).decode(scores[r, :lengths[r]].copy())
    assert tuple(path) == best


@pytest.mark.parametrize('name', ['roformer_v2', 'bert'])
def test_bert4keras_attention_dropout_retraces_and_is_checkpointable(name):
    """bert4keras's MultiHeadAttention makes a new Dropout per call: once
    dropout draws from per-layer generators (set_seed), a retrace creates a
    new variable and tf.function refuses.  The builder's one-Dropout layer
    retraces, keeps bert4keras's maths, and its RNG is found for resume."""
    from gau_keras import training
    training.set_seed(0, deterministic=False)
    cfg = dict(vocab_size=50, hidden_size=16, intermediate_size=32,
               num_attention_heads=2, num_hidden_layers=1, hidden_act='gelu',
               type_vocab_size=2, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.5, max_position_embeddings=32)
    model = gau_keras.build_transformer_model(model=name, **cfg)
    att = model.get_layer('Transformer-0-MultiHeadSelfAttention')
    assert isinstance(att, layers.MultiHeadAttention)
    step = tf.function(lambda x: model([x, 0 * x], training=True),
                       reduce_retracing=True)
    rng = np.random.default_rng(0)
    for n in (5, 7, 9):  # new lengths: retraces
        x = rng.integers(1, 50, (2, n))
        assert step(x).shape == (2, n, 16)
    x = rng.integers(1, 50, (2, 6))
    assert not np.allclose(step(x), step(x))  # dropout is on in training
    # bert4keras's own layer with the same weights: same outputs at inference
    config = att.get_config()
    del config['kernel_initializer']  # roformer_v2's is a bound method
    ref = b4k_layers.MultiHeadAttention.from_config(config)
    q = tf.constant(rng.normal(size=(2, 6, 16)), tf.float32)
    ref([q, q, q])
    ref.set_weights(att.get_weights())
    np.testing.assert_allclose(att([q, q, q], training=False),
                               ref([q, q, q], training=False), atol=1e-6)
    assert any(k.endswith('attention_dropout') for k in
               training.layer_random_generators(model))
