"""FLASH: mixed-chunk attention, linear in the sequence length.

FLASH (Hua et al., "Transformer Quality in Linear Time", arXiv 2202.10447,
section 3) is a Gated Attention Unit whose attention is split in two:

    U, V, Z = φ(X W_i)                   one dense, split [e, e, s]
    Q_quad, K_quad, Q_lin, K_lin = RoPE(γ_j ⊙ Z + β_j)   (4 scale-offsets)
    the sequence is cut into G chunks of c tokens (zero-padded at the end)
    V̂_quad,g = relu²(Q_quad,g K_quad,gᵀ / √s) / n_loc · V_g  local, exact
    V̂_lin,g  = Q_lin,g · Σ_h K_lin,hᵀ V_h / n                 global, linear
    O = [U ⊙ (V̂_quad + V̂_lin)] W_o

n_loc is, by default (``local_normalizer='visible'``), the number of keys
the query sees inside its chunk: the real keys of the chunk, and for causal
rows only those at or before the query; ``local_normalizer='chunk'`` is the
paper's literal n_loc = c for every row.  Any registered normalization
(``backend.ATTENTION_NORMALIZATIONS``) may replace relu²/n_loc.

Causal: the local part gets a lower-triangular mask and the global part sums
only the chunks h < g, divided by the number of real tokens it sums.

Every formula is a function below, named after it; ``MixedChunkAttention``
only wires them together.  Sums over tokens are taken in float32 whatever
the layer's dtype policy.

Example::

    import gau_keras
    from gau_keras.flash import MixedChunkAttention
    x = gau_keras.keras.layers.Input((None, 64))
    y = MixedChunkAttention(units=128, key_size=32, chunk_size=64)(x)
"""
import collections
import numbers

import tensorflow as tf

from gau_keras import backend
from gau_keras.layers import GatedUnitBase, ScaleOffset, mask_of
from gau_keras.registry import register


def visible_key_counts(mask, chunk_size):
    """m = Σ_j mask[.., i, j] (≥ 1): the keys query i sees in its chunk."""
    del chunk_size
    n = tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1, keepdims=True)
    return tf.maximum(n, 1.0)


def chunk_key_counts(mask, chunk_size):
    """m = c for every query (the paper's 1/c)."""
    del mask
    return tf.cast(chunk_size, tf.float32)


#: Values of ``local_normalizer`` → m(mask, c), the divisor of the local
#: part: the keys each query sees in its chunk, or the chunk size.
LOCAL_NORMALIZERS = {'visible': visible_key_counts, 'chunk': chunk_key_counts}


def check_local_normalizer(local_normalizer, owner='MixedChunkAttention'):
    """Returns ``local_normalizer`` if valid, or raises naming ``owner``.

    Example: ``check_local_normalizer('chunk')`` → 'chunk'.
    """
    if not isinstance(local_normalizer, str) or (
            local_normalizer not in LOCAL_NORMALIZERS):
        raise ValueError('%s: local_normalizer must be one of %s, got %r'
                         % (owner, ', '.join(sorted(LOCAL_NORMALIZERS)),
                            local_normalizer))
    return local_normalizer


def check_chunk_size(chunk_size, owner='MixedChunkAttention'):
    """Returns ``chunk_size`` as an int, or raises naming ``owner``.

    Example: ``check_chunk_size(256)`` → 256; ``check_chunk_size(0)`` raises.
    """
    if (isinstance(chunk_size, bool) or
            not isinstance(chunk_size, numbers.Integral) or chunk_size < 1):
        raise ValueError('%s: chunk_size must be a positive integer, got %r'
                         % (owner, chunk_size))
    return int(chunk_size)


def pad_to_chunks(x, chunk_size):
    """Zero-pads axis 1 of x [b, n, ...] up to a multiple of ``chunk_size``.

    Example: x [2, 5, 8], chunk_size 4 → [2, 8, 8].
    """
    # Non-negative operands only: ONNX's integer Mod (tf2onnx's FloorMod)
    # rounds towards zero, so (-n) % c would come out negative there.
    pad = (chunk_size - tf.shape(x)[1] % chunk_size) % chunk_size
    paddings = [[0, 0], [0, pad]] + [[0, 0]] * (x.shape.rank - 2)
    return tf.pad(x, paddings)


def split_chunks(x, chunk_size):
    """x [b, n, ...] → [b, g, c, ...], g = ⌈n / c⌉ (zero-padded).

    Example: x [2, 5, 8], chunk_size 4 → [2, 2, 4, 8].
    """
    x = pad_to_chunks(x, chunk_size)
    shape = tf.shape(x)
    new_shape = tf.concat([[shape[0], -1, chunk_size], shape[2:]], 0)
    return tf.reshape(x, new_shape)


def merge_chunks(x, length):
    """x [b, g, c, ...] → [b, length, ...] (inverse of ``split_chunks``)."""
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([[shape[0], shape[1] * shape[2]],
                                 shape[3:]], 0))
    return x[:, :length]


def local_key_counts(mask, chunk_size, local_normalizer='visible'):
    """n_loc of each query of a chunk, float32, broadcastable to [.., c, c].

        'visible':  n_loc = Σ_j mask[.., i, j]  (≥ 1): the keys query i sees
        'chunk':    n_loc = c                    (the paper's 1/c)

    mask: bool [..., c|1, c], True where query i may see key j.

    Example: ``local_key_counts(m, 4)`` → [b, g, c, 1].
    """
    return LOCAL_NORMALIZERS[check_local_normalizer(local_normalizer)](
        mask, chunk_size)


def chunk_attention_weights(logits, mask, n, normalization):
    """float32 A = f(a, n) inside a chunk, zero wherever ``mask`` is False.

        squared_relu:  A = relu²(a) / n      (a = Q Kᵀ/√s)
        any other registered normalization f (``backend.get_normalization``)

    n: the keys each query divides by (``local_key_counts``).

    Example: ``chunk_attention_weights(a, m, local_key_counts(m, 4),
    'squared_relu')``.
    """
    a = tf.where(mask, tf.cast(logits, tf.float32), backend.MASK_VALUE)
    a = backend.get_normalization(normalization)(a, n)
    return a * tf.cast(mask, tf.float32)


def quadratic_chunk_attention(q, k, v, key_mask, causal=False,
                              normalization='squared_relu', dropout=None,
                              local_normalizer='visible'):
    """V̂_quad,g = A_g V_g,  A_g = relu²(Q_g K_gᵀ / √s) / n_loc  per chunk g.

    q, k [b, g, c, s] (q already multiplied by 1/√s), v [b, g, c, e],
    key_mask bool [b, g, c] (False on padding).  ``causal`` adds the lower
    triangular mask inside the chunk.  n_loc: ``local_key_counts``.
    ``dropout`` (a function) is applied to A.  Returns [b, g, c, e] in v's
    dtype.

    Example: ``quadratic_chunk_attention(q, k, v, m, causal=True)``.
    """
    chunk_size = tf.shape(k)[2]
    logits = tf.einsum('bgis,bgjs->bgij', q, k)
    mask = key_mask[:, :, None, :]
    if causal:
        mask = tf.logical_and(mask, backend.causal_mask(chunk_size,
                                                        chunk_size))
    n = local_key_counts(mask, chunk_size, local_normalizer)
    a = chunk_attention_weights(logits, mask, n, normalization)
    if dropout is not None:
        a = dropout(a)
    return tf.einsum('bgij,bgje->bgie', tf.cast(a, v.dtype), v)


def linear_global_attention(q, k, v, lengths):
    """V̂_lin,g = Q_lin,g · Σ_h K_lin,hᵀ V_h / n   (non-causal, float32).

    Equal to full linear attention Q Kᵀ V / n.  q, k [b, g, c, s],
    v [b, g, c, e] with zero rows on padding, lengths float [b] = n, the
    real length of each sample.  Memory O(b·s·e).

    Example: ``linear_global_attention(q, k, v, tf.constant([5., 3.]))``.
    """
    q, k, v = (tf.cast(t, tf.float32) for t in (q, k, v))
    kv = tf.einsum('bgcs,bgce->bse', k, v)
    kv = kv / tf.maximum(lengths, 1.0)[:, None, None]
    return tf.einsum('bgcs,bse->bgce', q, kv)


def causal_linear_global_attention(q, k, v, chunk_counts):
    """V̂_lin,g = Q_lin,g · Σ_{h<g} K_lin,hᵀ V_h / N_g   (causal, float32).

    N_g = Σ_{h<g} (real tokens of chunk h); chunk 0 gets 0.  q, k
    [b, g, c, s], v [b, g, c, e] with zero rows on padding, chunk_counts
    float [b, g].  Memory O(b·g·s·e): one K_hᵀV_h per chunk, prefix-summed.

    Example: ``causal_linear_global_attention(q, k, v, counts)``.
    """
    q, k, v = (tf.cast(t, tf.float32) for t in (q, k, v))
    kv = tf.cumsum(tf.einsum('bgcs,bgce->bgse', k, v), axis=1, exclusive=True)
    n = tf.cumsum(chunk_counts, axis=1, exclusive=True)
    kv = kv / tf.maximum(n, 1.0)[:, :, None, None]
    return tf.einsum('bgcs,bgse->bgce', q, kv)


def _token_mask(x, mask):
    if mask is None:
        return tf.ones(tf.shape(x)[:2], tf.bool)
    return tf.cast(mask, tf.bool)


#: The decoding state of one causal MixedChunkAttention layer (float32 sums,
#: caches in the layer's compute dtype):
#: kv_global [b, s, e] Σ K_linᵀV of the finished chunks, n_global [b] their
#: real tokens, kv_chunk / n_chunk the same for the current chunk, k_cache
#: [b, c, s] / v_cache [b, c, e] its K_quad / V rows, m_cache [b, c] its mask.
DecodeState = collections.namedtuple(
    'DecodeState', ['kv_global', 'n_global', 'kv_chunk', 'n_chunk',
                    'k_cache', 'v_cache', 'm_cache'])


@register
class MixedChunkAttention(GatedUnitBase):
    """FLASH's mixed-chunk attention layer (a GAU with chunked attention).

    Local quadratic attention inside chunks of ``chunk_size`` tokens plus
    global linear attention across chunks; ``causal=True`` for language
    models.  Any length works (padded internally to a multiple of the chunk
    size); Keras-masked (padding) tokens add nothing to any sum, so a padded
    batch gives the unpadded outputs on real tokens.  Options as in
    ``GatedAttentionUnit``; ``normalization`` ('squared_relu' by default, or
    any name in ``backend.ATTENTION_NORMALIZATIONS``) applies to the local
    part, with n = the keys each query sees in its chunk
    (``local_normalizer='visible'``, default) or n = c (``'chunk'``, the
    paper's literal 1/c).

    Weights: ``i_dense`` kernel [d, 2e+s] (columns u, v, z), ``o_dense``
    kernel [e, d], ``qk_scaleoffset`` γ (and β with ``use_bias``) [4, s] in
    the order q_quad, k_quad, q_lin, k_lin.

    Example::

        x = keras.layers.Input((None, 768))
        y = MixedChunkAttention(units=1536, key_size=128, chunk_size=256,
                                causal=True, use_bias=False)(x)
    """

    def __init__(self, units, key_size=128, chunk_size=256,
                 normalization='squared_relu', local_normalizer='visible',
                 **kwargs):
        super(MixedChunkAttention, self).__init__(
            units, key_size, normalization=normalization, **kwargs)
        self.chunk_size = check_chunk_size(chunk_size, self.name)
        self.local_normalizer = check_local_normalizer(local_normalizer,
                                                       self.name)

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(
                input_shape[0], (list, tuple, tf.TensorShape)):
            raise ValueError('%s: MixedChunkAttention is self-attention '
                             'only; call it on one tensor' % self.name)
        e, s = self.units, self.key_size
        self.i_dense = self._dense(2 * e + s, 'i_dense', self.activation)
        self.o_dense = self._dense(int(input_shape[-1]), 'o_dense')
        self.qk_scaleoffset = ScaleOffset(heads=4, offset=self.use_bias,
                                          name='qk_scaleoffset',
                                          dtype=self.dtype_policy)
        super(MixedChunkAttention, self).build(input_shape)

    def project(self, x, positions):
        """U, V and RoPE'd Q_quad (×1/√s), K_quad, Q_lin, K_lin of x."""
        e, s = self.units, self.key_size
        u, v, z = tf.split(self.i_dense(x), [e, e, s], axis=-1)
        qk = self.qk_scaleoffset(z)                      # [b, n, 4, s]
        if self.use_rope:
            qk = backend.rotary_position_embedding(qk, positions,
                                                   self.rope_layout)
        q_quad, k_quad, q_lin, k_lin = tf.unstack(qk, 4, axis=-2)
        if self.attention_scale:
            q_quad = q_quad * tf.cast(s**-0.5, q_quad.dtype)
        return u, v, q_quad, k_quad, q_lin, k_lin

    # Python control flow on static flags only, so AutoGraph has nothing to
    # convert; skipping it makes building a model ~25% faster.
    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, mask=None, position_ids=None, training=None):
        if isinstance(inputs, (list, tuple)):
            raise ValueError('%s: MixedChunkAttention is self-attention '
                             'only; call it on one tensor' % self.name)
        n, c = tf.shape(inputs)[1], self.chunk_size
        positions = tf.range(n) if position_ids is None else position_ids
        token_mask = _token_mask(inputs, mask_of(mask))
        u, v, q_quad, k_quad, q_lin, k_lin = self.project(inputs, positions)
        v = v * tf.cast(token_mask, v.dtype)[..., None]
        q_quad, k_quad, q_lin, k_lin, v = (
            split_chunks(t, c) for t in (q_quad, k_quad, q_lin, k_lin, v))
        m = split_chunks(token_mask, c)
        v_quad = quadratic_chunk_attention(
            q_quad, k_quad, v, m, self.causal, self.normalization,
            lambda a: self._dropout(a, training), self.local_normalizer)
        counts = tf.reduce_sum(tf.cast(m, tf.float32), axis=2)
        if self.causal:
            v_lin = causal_linear_global_attention(q_lin, k_lin, v, counts)
        else:
            v_lin = linear_global_attention(q_lin, k_lin, v,
                                            tf.reduce_sum(counts, axis=1))
        o = merge_chunks(v_quad + tf.cast(v_lin, v.dtype), n)
        return self.o_dense(u * o)

    # ---- cached decoding (causal) -----------------------------------------

    def initial_state(self, batch_size):
        """Empty ``DecodeState`` for ``decode_step`` (causal layers only).

        Example: ``state = layer.initial_state(2)``; ``state.k_cache`` is
        [2, c, s].
        """
        if not self.causal:
            raise ValueError('%s: cached decoding needs causal=True'
                             % self.name)
        b, c, s, e = batch_size, self.chunk_size, self.key_size, self.units
        dtype = self.compute_dtype
        return DecodeState(
            kv_global=tf.zeros([b, s, e]), n_global=tf.zeros([b]),
            kv_chunk=tf.zeros([b, s, e]), n_chunk=tf.zeros([b]),
            k_cache=tf.zeros([b, c, s], dtype),
            v_cache=tf.zeros([b, c, e], dtype), m_cache=tf.zeros([b, c]))

    def decode_step(self, x, state, position, token_mask=None):
        """One causal step: x [b, 1, d] at ``position`` → (y [b, 1, d], state).

        The state carries Σ K_linᵀV of the finished chunks (and their real
        token count), the same sum of the current chunk, and the current
        chunk's K_quad / V / mask, so a step costs O(c·e + s·e).

        Example::

            state = layer.initial_state(1)
            for t in range(n):
                y, state = layer.decode_step(x[:, t:t + 1], state, t)
        """
        kv_g, n_g, kv_c, n_c, k_cache, v_cache, m_cache = state
        c = self.chunk_size
        m = (tf.ones(tf.shape(x)[:1]) if token_mask is None
             else tf.cast(tf.reshape(token_mask, [-1]), tf.float32))
        u, v, q_quad, k_quad, q_lin, k_lin = self.project(
            x, tf.reshape(position, [1]))
        v = v * tf.cast(m, v.dtype)[:, None, None]
        slot = tf.math.floormod(position, c)
        hot = tf.one_hot(slot, c)
        k_cache = _write(k_cache, k_quad, hot)
        v_cache = _write(v_cache, v, hot)
        m_cache = m_cache * (1.0 - hot) + hot * m[:, None]
        visible = (m_cache * tf.cast(tf.range(c) <= slot, tf.float32)) > 0
        visible = visible[:, None, :]                        # [b, 1, c]
        logits = tf.einsum('bis,bjs->bij', q_quad, k_cache)
        n_local = local_key_counts(visible, c, self.local_normalizer)
        a = chunk_attention_weights(logits, visible, n_local,
                                    self.normalization)
        v_quad = tf.einsum('bij,bje->bie', tf.cast(a, v.dtype), v_cache)
        v_lin = tf.einsum('bis,bse->bie', tf.cast(q_lin, tf.float32),
                          kv_g / tf.maximum(n_g, 1.0)[:, None, None])
        y = self.o_dense(u * (v_quad + tf.cast(v_lin, v.dtype)))
        kv_c = kv_c + tf.einsum('bis,bie->bse', tf.cast(k_lin, tf.float32),
                                tf.cast(v, tf.float32))
        n_c = n_c + m
        done = tf.cast(tf.equal(slot, c - 1), tf.float32)
        state = DecodeState(
            kv_global=kv_g + done * kv_c, n_global=n_g + done * n_c,
            kv_chunk=kv_c * (1.0 - done), n_chunk=n_c * (1.0 - done),
            k_cache=k_cache, v_cache=v_cache, m_cache=m_cache)
        return y, state

    def checkpoint_weights(self):
        """Weights in checkpoint order: i_dense, o_dense, qk_scaleoffset."""
        out = []
        for layer in (self.i_dense, self.o_dense):
            out += [layer.kernel] + ([layer.bias] if self.use_bias else [])
        return out + self.qk_scaleoffset.checkpoint_weights()

    def get_config(self):
        config = super(MixedChunkAttention, self).get_config()
        config.update(chunk_size=self.chunk_size,
                      local_normalizer=self.local_normalizer)
        return config


def _write(cache, value, hot):
    """cache [b, c, d] with the row ``hot`` (one-hot [c]) set to value."""
    hot = tf.cast(hot, cache.dtype)[None, :, None]
    return cache * (1 - hot) + hot * value


__all__ = ['MixedChunkAttention', 'DecodeState', 'LOCAL_NORMALIZERS',
           'quadratic_chunk_attention', 'linear_global_attention',
           'causal_linear_global_attention', 'chunk_attention_weights',
           'local_key_counts', 'visible_key_counts', 'chunk_key_counts',
           'split_chunks', 'merge_chunks',
           'pad_to_chunks', 'check_chunk_size', 'check_local_normalizer']
