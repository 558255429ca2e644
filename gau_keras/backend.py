"""Backend: the seed's formulas (Keras 2 is selected by ``import gau_keras``).

Every attention formula of the project is a plain TensorFlow function here,
named after the formula it computes, with the equation in its docstring.
Layers (``gau_keras.layers``, ``gau_keras.flash``) only wire them together.

All attention logits are normalised in float32, whatever the layer's compute
dtype, so that masking constants cannot overflow float16 and softmax / relu²
keep their precision under ``mixed_float16`` and ``mixed_bfloat16``.

Example::

    import numpy as np, tensorflow as tf
    from gau_keras import backend
    q = tf.random.normal([2, 5, 8])
    q_rot = backend.rotary_position_embedding(q, tf.range(5))
"""
import math

import numpy as np
import tensorflow as tf
from bert4keras.backend import keras, K  # noqa: F401  (tf-keras: see __init__)

#: Added to masked float32 logits. Finite (a fully masked row stays finite),
#: and only ever applied in float32, never in float16.
MASK_VALUE = -1e9

#: Valid values of the ``rope_layout`` option (checked by
#: ``check_rope_layout``).
ROPE_LAYOUTS = ('interleaved', 'half')


def rope_frequencies(dim, base=10000.0):
    """θ_i = base^(-2i/dim), i = 0 … dim/2 - 1 (float32)."""
    return tf.constant(rope_feature_rates(dim, 'half', base)[:dim // 2])


def sinusoidal_embeddings(positions, dim, base=10000.0):
    """Interleaved sin-cos table (bert4keras ``SinusoidalPositionEmbedding``).

    e[p, 2i] = sin(p·θ_i),  e[p, 2i+1] = cos(p·θ_i),  θ_i = base^(-2i/dim).
    """
    angles = tf.cast(positions, tf.float32)[..., None] * rope_frequencies(
        dim, base)
    table = tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1)
    return tf.reshape(table, tf.concat([tf.shape(angles)[:-1], [dim]], 0))


def rope_feature_rates(dim, layout='interleaved', base=10000.0):
    """θ for each of the ``dim`` features RoPE rotates, in ``layout`` order:
    'interleaved' (θ_0, θ_0, θ_1, θ_1, …), 'half' (θ_0 … θ_{d/2-1}, θ_0 …).

    A numpy float32 vector (θ_i = base^(-2i/dim) computed in float64, then
    rounded once), so that a RoPE call adds one constant to the graph
    instead of the ops that would compute and repeat it.
    """
    check_rope_layout(layout)
    if dim % 2:
        raise ValueError('RoPE needs an even dimension, got %d' % dim)
    theta = base ** (-2.0 * np.arange(dim // 2) / dim)
    rates = (np.repeat(theta, 2) if layout == 'interleaved' else
             np.concatenate([theta, theta]))
    return rates.astype(np.float32)


def rotary_position_embedding(x, positions, layout='interleaved',
                              base=10000.0):
    """RoPE: rotate each pair (x_a, x_b) of x by the angle p·θ_i.

        x_a' = x_a·cos(pθ_i) - x_b·sin(pθ_i)
        x_b' = x_b·cos(pθ_i) + x_a·sin(pθ_i)
    i.e.  x' = x ⊙ cos + rot(x) ⊙ sin,  rot: (x_a, x_b) → (-x_b, x_a).

    layout 'interleaved' pairs (x_2i, x_2i+1), as bert4keras and the GAU-α
    release; 'half' pairs (x_i, x_i+d/2), as GPT-NeoX.  x has shape
    [b, n, ..., d] (e.g. FLASH's four stacked projections [b, n, 4, s]);
    ``positions`` has shape [n] or [b, n].  Angles are computed in float32.
    """
    x = tf.convert_to_tensor(x)
    dim = x.shape[-1]
    rates = rope_feature_rates(dim, layout, base)
    angles = tf.cast(positions, tf.float32)[..., None] * rates
    if layout == 'interleaved':
        pairs = tf.reshape(x, tf.concat([tf.shape(x)[:-1], [dim // 2, 2]], 0))
        sign = tf.constant([-1.0, 1.0], x.dtype)
        rot = tf.reshape(tf.reverse(pairs, [-1]) * sign, tf.shape(x))
    else:
        rot = tf.concat([-x[..., dim // 2:], x[..., :dim // 2]], -1)
    for _ in range(x.shape.rank - 3):  # broadcast over the middle axes
        angles = angles[..., None, :]
    cos = tf.cast(tf.cos(angles), x.dtype)
    sin = tf.cast(tf.sin(angles), x.dtype)
    return x * cos + rot * sin


#: Whether ``swish`` computes its gradient in one XLA-fused pass (set False
#: on a TensorFlow build without XLA; the result is the same formula).
FUSE_SWISH_GRADIENT = True


def _swish_gradient(x, dy):
    s = tf.sigmoid(x)
    return dy * s * (1.0 + x * (1.0 - s))


_fused_swish_gradient = tf.function(_swish_gradient, jit_compile=True,
                                    reduce_retracing=True)


def swish_gradient(x, dy):
    """dL/dx of φ(x) = x·σ(x):   dy · σ(x) · (1 + x·(1 - σ(x))).

    One XLA-compiled elementwise pass (reads x and dy, writes dx) when
    ``FUSE_SWISH_GRADIENT``; TensorFlow's own silu gradient runs the same
    formula as six separate ops over the [b, n, 2e+s] projection, which took
    about as long as the layer's QKᵀ and its gradients together at n=512
    (``docs/gau_speed.md``).

    Example: ``swish_gradient(tf.zeros([2]), tf.ones([2]))`` → [0.5, 0.5].
    """
    if FUSE_SWISH_GRADIENT:
        return _fused_swish_gradient(x, dy)
    return _swish_gradient(x, dy)


@tf.custom_gradient
def swish(x):
    """φ(x) = x·σ(x) (= tf.nn.silu), with the fused ``swish_gradient``.

    The forward pass is ``tf.nn.silu`` (oneDNN fuses it into one op); the
    GAU and FLASH layers use this as the activation of their input
    projection when the configured activation is swish / silu.

    Example: ``swish(tf.constant([0.0, 1.0]))`` → [0.0, 0.7310586].
    """
    def grad(dy):
        return swish_gradient(x, dy)
    return tf.nn.silu(x), grad


def causal_mask(q_len, k_len):
    """bool [q_len, k_len]: query i sees key j iff j ≤ i + (k_len - q_len)."""
    i = tf.range(q_len)[:, None] + (k_len - q_len)
    j = tf.range(k_len)[None, :]
    return j <= i


def combine_masks(*masks):
    """Logical AND of the boolean masks that are not None (None if none)."""
    out = None
    for m in masks:
        if m is None:
            continue
        m = tf.cast(m, tf.bool)
        out = m if out is None else tf.logical_and(out, m)
    return out


def visible_counts(mask, k_len):
    """n per query: how many keys the query may see (≥ 1), float32 [.., m, 1].

    Sums the mask's last axis, so a key mask [b, 1, n_k] costs O(b·n_k) and
    gives [b, 1, 1].  Example: ``visible_counts(key_mask[:, None, :], n)``.
    """
    if mask is None:
        return tf.cast(k_len, tf.float32)
    n = tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1, keepdims=True)
    return tf.maximum(n, 1.0)


def causal_visible_counts(q_len, k_len, key_mask=None):
    """n_i of causal attention, float32 [b|1, q_len, 1], from a prefix sum:

        n_i = #{ j ≤ i + (k_len - q_len) : key_mask[j] }   (≥ 1)

    i.e. i + 1 (+ the cached-prefix offset k_len - q_len) without padding.
    O(b·k_len) (an int32 cumsum of the [b, k_len] key mask, exact at any
    length), instead of summing a [b, q_len, k_len] mask.

    Example: ``causal_visible_counts(3, 3)`` → [[[1.], [2.], [3.]]].
    """
    last = tf.range(q_len) + (k_len - q_len)  # last key query i may see
    if key_mask is None:
        n = tf.cast(last + 1, tf.float32)[None, :, None]
    else:
        seen = tf.cumsum(tf.cast(key_mask, tf.int32), axis=-1)
        seen = tf.pad(seen, [[0, 0], [1, 0]])  # seen[:, j+1]: real keys ≤ j
        seen = tf.gather(seen, tf.clip_by_value(last + 1, 0, k_len), axis=1)
        n = tf.cast(seen, tf.float32)[:, :, None]
    return tf.maximum(n, 1.0)


def mask_bias(mask):
    """The additive float32 form of a boolean mask (True = may attend):

        bias = 0 where mask,  MASK_VALUE where not

    ``a + mask_bias(mask)`` masks float32 logits for every registered
    normalization as ``tf.where(mask, a, MASK_VALUE)`` does: masked entries
    end up within |a| of MASK_VALUE, so softmax and relu² give them exactly
    0.  But the bias keeps the mask's own shape (e.g. [b, 1, n] for key
    padding), and the gradient of the addition with respect to a is the
    identity: no [b, m, n] select (and zeros) in the backward pass.

    Example: ``mask_bias(tf.constant([True, False]))`` → [0., -1e9].
    """
    return tf.where(tf.cast(mask, tf.bool), 0.0, MASK_VALUE)


#: From this many keys on, ``attention_values`` computes A·V as (Vᵀ·Aᵀ)ᵀ.
TRANSPOSED_VALUES_MIN_KEYS = 1024


def attention_values(a, v):
    """O = A V for A [b, m, n] and V [b, n, e]: O [b, m, e].

    From ``TRANSPOSED_VALUES_MIN_KEYS`` keys on, computed as (Vᵀ Aᵀ)ᵀ
    (one batched matmul with both operands transposed, then a transpose of
    the [b, e, m] result): oneDNN's batched matmul runs the plain
    [n, n]·[n, e] layout about half as fast as this one at n = 2048,
    e = 1536 (fp32, 2 cores), and no faster below 1024 keys
    (``scripts/bench_gau.py``).  The gradients are the usual
    matmuls.  A static number of keys picks the layout while tracing,
    otherwise a ``tf.cond`` picks it at run time.

    Example: ``attention_values(tf.ones([1, 4, 4]) / 4, v)`` averages v.
    """
    def plain():
        return tf.matmul(a, v)

    def transposed():
        o_t = tf.matmul(v, a, transpose_a=True, transpose_b=True)
        return tf.transpose(o_t, [0, 2, 1])

    n = a.shape[-1]
    if n is not None:
        return transposed() if n >= TRANSPOSED_VALUES_MIN_KEYS else plain()
    return tf.cond(tf.shape(a)[-1] >= TRANSPOSED_VALUES_MIN_KEYS,
                   transposed, plain)


# ---- attention normalizations: one registry --------------------------------
#
# name → f(a, n): a = float32 logits QKᵀ/√s (QKᵀ with attention_scale=False)
# in which masked entries are large negative (MASK_VALUE, or MASK_VALUE plus
# the logit), n = float32 number of keys each query may see (≥ 1),
# broadcastable to a.  f returns float32 A and must give such masked
# entries weight 0 (relu, softmax and exp do).  Both
# attention layers (GatedAttentionUnit and the local part of FLASH's
# MixedChunkAttention) look their ``normalization`` up here, so a new one is
# one line:
#
#     backend.register_normalization('relu_n', lambda a, n: tf.nn.relu(a) / n)

#: The attention normalizations by name (see ``register_normalization``).
ATTENTION_NORMALIZATIONS = {}


def register_normalization(name, fn=None):
    """Adds ``fn(a, n) → A`` to the registry under ``name``.

    Use as a call, ``register_normalization('relu_n', f)``, or as a
    decorator, ``@register_normalization('relu_n')``.  Returns ``fn``.
    """
    if fn is None:
        return lambda f: register_normalization(name, f)
    if not isinstance(name, str) or not name:
        raise ValueError('register_normalization: the name must be a '
                         'non-empty string, got %r' % (name,))
    if not callable(fn):
        raise TypeError('register_normalization(%r): %r is not callable'
                        % (name, fn))
    ATTENTION_NORMALIZATIONS[name] = fn
    return fn


def normalization_names():
    """The registered normalization names, sorted."""
    return tuple(sorted(ATTENTION_NORMALIZATIONS))


def check_normalization(method, owner='normalization'):
    """Returns ``method`` if it is registered, else raises naming ``owner``.

    Example: ``check_normalization('softmax_plus')`` → 'softmax_plus'.
    """
    if not isinstance(method, str) or method not in ATTENTION_NORMALIZATIONS:
        raise ValueError('%s: normalization must be one of %s, got %r'
                         % (owner, ', '.join(normalization_names()), method))
    return method


def get_normalization(method, owner='normalization'):
    """The function f(a, n) registered as ``method``.

    Example: ``A = get_normalization('squared_relu')(a, n)``.
    """
    return ATTENTION_NORMALIZATIONS[check_normalization(method, owner)]


def check_rope_layout(layout, owner='rope_layout'):
    """Returns ``layout`` if it is in ``ROPE_LAYOUTS``, else raises naming
    ``owner``.  Example: ``check_rope_layout('half')`` → 'half'."""
    if layout not in ROPE_LAYOUTS:
        raise ValueError('%s: rope_layout must be one of %s, got %r'
                         % (owner, ROPE_LAYOUTS, layout))
    return layout


@register_normalization('squared_relu')
def squared_relu_attention(a, n):
    """A = relu²(QKᵀ/√s) / n, with a = QKᵀ/√s and n the visible keys per query.

    The seed's 1/(n·s) overall: the 1/s is carried by a = QKᵀ/√s squared.
    (The paper's pseudo-code divides by n² instead: ``'squared_relu_n2'``.)
    Masked logits, set to a large negative value, give relu² = 0.
    """
    return tf.square(tf.nn.relu(a)) / n


@register_normalization('squared_relu_n2')
def squared_relu_n2_attention(a, n):
    """A = relu²(a / n) = relu²(a) / n²  (the paper's pseudo-code, 1/n²).

    The GAU pseudo-code of Hua et al. (arXiv 2202.10447, code 1) computes
    ``relu(QKᵀ / n)²`` with n the sequence length; here n is the number of
    keys each query may see (the real length, the visible keys of a chunk in
    FLASH's local part).  The layer's ``attention_scale`` still applies to
    a: with the default ``attention_scale=True``, a = QKᵀ/√s and
    A = relu²(QKᵀ) / (s·n²); ``attention_scale=False`` gives the paper's
    relu²(QKᵀ/n) literally.
    """
    return tf.square(tf.nn.relu(a / n))


@register_normalization('softmax_plus')
def softmax_plus_attention(a, n):
    """A = softmax(log(max(n, 16)) / log(512) · QKᵀ/√s)  (a = QKᵀ/√s).

    The entropy-invariant scaling of https://kexue.fm/archives/8823, with n
    the number of keys each query sees (real, unpadded length).
    """
    scale = tf.math.log(tf.maximum(n, 16.0)) / math.log(512.0)
    return tf.nn.softmax(a * scale, axis=-1)


@register_normalization('softmax')
def softmax_attention(a, n=None):
    """A = softmax(QKᵀ/√s)  (n is not used)."""
    del n
    return tf.nn.softmax(a, axis=-1)


def normalize_biased_attention(logits, bias=None, n=None,
                               method='softmax_plus'):
    """A = f(a + bias, n) in float32, f the registered ``method``.

    a = logits cast to float32 (QKᵀ/√s; float16 / bfloat16 logits cannot
    overflow here).  bias: float32, broadcastable to a, holding the masking
    as ``mask_bias`` (plus any additive float bias), or None.  n: the keys
    each query may see (``visible_counts``, ``causal_visible_counts``, or
    the scalar key count), broadcastable to a.  The GAU's path: no
    [b, m, n] mask is reduced or selected.

    Example: ``normalize_biased_attention(a, mask_bias(key_mask[:, None]),
    visible_counts(key_mask[:, None], n_k))``.
    """
    a = tf.cast(logits, tf.float32)
    if bias is not None:
        a = a + tf.cast(bias, tf.float32)
    if n is None:
        n = tf.cast(tf.shape(a)[-1], tf.float32)
    return get_normalization(method)(a, n)


def normalize_attention(logits, mask=None, bias=None, method='softmax_plus'):
    """Masks and normalises attention logits a = QKᵀ/√s in float32.

    mask: boolean, broadcastable to logits ([b, m, n] or [m, n]), True where a
    query may see a key; it also gives n (visible keys per query).  bias: an
    additive float bias (cast to float32).  Returns float32 A.
    """
    a = tf.cast(logits, tf.float32)
    if bias is not None:
        a = a + tf.cast(bias, tf.float32)
    if mask is not None:
        a = tf.where(mask, a, MASK_VALUE)
    n = visible_counts(mask, tf.shape(a)[-1])
    return get_normalization(method)(a, n)


# bert4keras.backend helpers that ported scripts import (they work unchanged),
# so `from bert4keras.backend import X` → `from gau_keras.backend import X`.
from bert4keras.backend import (  # noqa: E402,F401
    set_gelu, gelu_erf, gelu_tanh, search_layer, sequence_masking, align,
    batch_gather, multilabel_categorical_crossentropy,
    sparse_multilabel_categorical_crossentropy, root_mean_square, leaky_relu,
    apply_rotary_position_embeddings, is_tf_keras)


# Every other public name of bert4keras.backend, so that
# `from bert4keras.backend import X` ports as `from gau_keras.backend import X`
# (gau_keras.bert4keras_names: what is left out and why).
from gau_keras.bert4keras_names import reexport as _reexport  # noqa: E402
_reexport(globals(), 'backend')
