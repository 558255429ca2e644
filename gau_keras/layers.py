"""Keras layers: the Gated Attention Unit, RoPE, and precision-safe basics.

This module also answers ``from bert4keras.layers import X`` for ported
scripts (``from gau_keras.layers import X``): the float32 output layers of
``gau_keras.output_layers`` (CRF, MEMM, GlobalPointer, ...), a
``MultiHeadAttention`` with one attention-dropout sublayer, and the keras /
bert4keras layers that bert4keras's examples import.

Example::

    import gau_keras
    from gau_keras.layers import GatedAttentionUnit
    x = gau_keras.keras.layers.Input((None, 64))
    y = GatedAttentionUnit(units=128, key_size=32)(x)        # [b, n, 64]
    model = keras.models.load_model(path, custom_objects=custom_objects())
"""
import tensorflow as tf
from bert4keras import layers as b4k_layers

from gau_keras import backend
from gau_keras.backend import keras
from gau_keras.output_layers import (  # noqa: F401  (bert4keras names)
    ConditionalRandomField, EfficientGlobalPointer, GlobalPointer, Loss,
    MaximumEntropyMarkovModel)
from gau_keras.registry import custom_objects, register  # noqa: F401


def mask_of(mask, index=0):
    """The Keras mask of input ``index`` (None if that input has none).

    Example: ``mask_of([m0, m1], 1)`` → m1; ``mask_of(m0)`` → m0.
    """
    if isinstance(mask, (list, tuple)):
        return mask[index] if len(mask) > index else None
    return mask if index == 0 else None


@register
class RoFormerV2Initializer(keras.initializers.Initializer):
    """RoFormerV2's truncated normal, serialisable (a Keras custom object).

        std = 1.13684723 / √fan · gain · L^(-1/order)

    fan = shape[1] for embedding-like matrices (shape[0] > 10000 or < 10),
    else shape[0]; L = number of layers; order 3 for GAU-α.  Example::

        init = RoFormerV2Initializer(num_hidden_layers=24)
        kernel = init([768, 3200])
    """

    def __init__(self, num_hidden_layers, order=3, gain=1.0):
        self.num_hidden_layers, self.order, self.gain = (
            num_hidden_layers, order, gain)

    def stddev(self, shape):
        embedding_like = len(shape) > 1 and (shape[0] > 10000 or shape[0] < 10)
        fan = shape[1] if embedding_like else shape[0]
        gain = self.gain * self.num_hidden_layers**(-1.0 / self.order)
        return 1.13684723 / fan**0.5 * gain

    def __call__(self, shape, dtype=None, **kwargs):
        shape = [int(d) for d in shape]
        return tf.random.truncated_normal(shape, stddev=self.stddev(shape),
                                          dtype=dtype or tf.float32)

    def get_config(self):
        return {'num_hidden_layers': self.num_hidden_layers,
                'order': self.order, 'gain': self.gain}


@register
class FreshTruncatedNormal(keras.initializers.Initializer):
    """Truncated normal that draws new values at every call.

    (tf-keras's unseeded ``TruncatedNormal`` returns the same values at
    each call, so bert4keras models that share one instance would start
    with identical q / k / v kernels.)
    """

    def __init__(self, stddev=0.02):
        self.stddev = stddev

    def __call__(self, shape, dtype=None, **kwargs):
        return tf.random.truncated_normal(shape, stddev=self.stddev,
                                          dtype=dtype or tf.float32)

    def get_config(self):
        return {'stddev': self.stddev}


@register
class Embedding(b4k_layers.Embedding):
    """bert4keras Embedding whose ``mode='dense'`` (tied output) also works
    under mixed precision: the kernel is cast to the input's dtype.

    Ids must be [batch, length] and whole numbers: bert4keras's inputs are
    float32, so ids 3.7 would silently become 3; a 1-D or non-integer input
    raises an error naming the layer (in eager / graph runs; XLA drops the
    value check).  Example::

        Embedding(100, 8)(tf.constant([[1, 2, 0]]))      # [1, 3, 8]
    """

    def call(self, inputs, mode='embedding'):
        if mode == 'embedding':
            return super(Embedding, self).call(self.checked_ids(inputs))
        kernel = tf.cast(self.embeddings, inputs.dtype)
        return tf.matmul(inputs, kernel, transpose_b=True)

    def checked_ids(self, ids):
        """``ids`` as int32 after checking rank 2 and whole-number values."""
        ids = tf.convert_to_tensor(ids)
        if ids.shape.rank is not None and ids.shape.rank != 2:
            raise ValueError(
                'layer %r: token / segment ids must have shape [batch, '
                'length], got shape %s; wrap one sequence as [ids]'
                % (self.name, tuple(ids.shape)))
        if ids.dtype.is_integer:
            return tf.cast(ids, 'int32')
        if not ids.dtype.is_floating:
            raise TypeError('layer %r: token ids must be integers, got dtype '
                            '%s' % (self.name, ids.dtype.name))
        as_int = tf.cast(ids, 'int32')
        tf.debugging.assert_equal(
            tf.cast(as_int, ids.dtype), ids,
            message='layer %s: token / segment ids must be whole numbers '
            '(they would be truncated); got non-integer values' % self.name)
        return as_int


@register
class LayerNormalization(b4k_layers.LayerNormalization):
    """bert4keras LayerNormalization computed in float32.

    With ``zero_mean=False, scale=False, offset=False`` it is the GAU-α /
    RoFormerV2 parameter-free RMS norm  y = x / sqrt(mean(x²) + ε).
    The statistics are taken in float32, so float16 inputs cannot overflow
    in x²; the output has the layer's compute dtype.
    """

    def call(self, inputs):
        if self.conditional:
            x, cond = inputs
            x32 = tf.cast(x, tf.float32)
            out = super(LayerNormalization, self).call(
                [x32, tf.cast(cond, tf.float32)])
        else:
            x = inputs
            out = super(LayerNormalization, self).call(tf.cast(x, tf.float32))
        return tf.cast(out, x.dtype)


@register
class RotaryEmbedding(keras.layers.Layer):
    """Applies RoPE to a [b, n, d] tensor at positions 0 … n-1 (or given ids).

    ``layout='interleaved'`` is bert4keras's (and the GAU-α release's);
    ``'half'`` is GPT-NeoX's.  Call as ``RotaryEmbedding()(x)`` or
    ``RotaryEmbedding()([x, position_ids])``.
    """

    def __init__(self, layout='interleaved', base=10000.0, **kwargs):
        super(RotaryEmbedding, self).__init__(**kwargs)
        self.layout = backend.check_rope_layout(layout, self.name)
        self.base = base
        self.supports_masking = True

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            x, positions = inputs
        else:
            x, positions = inputs, tf.range(tf.shape(inputs)[1])
        return backend.rotary_position_embedding(x, positions, self.layout,
                                                 self.base)

    def compute_mask(self, inputs, mask=None):
        return mask_of(mask)

    def get_config(self):
        config = super(RotaryEmbedding, self).get_config()
        config.update(layout=self.layout, base=self.base)
        return config


@register
class UniLMMask(keras.layers.Layer):
    """UniLM attention mask from segment ids: bool [b, n, n].

    Query i sees key j iff cumsum(s)_j ≤ cumsum(s)_i: the source (segment 0)
    is fully visible, the target (segment 1) causal.  The cumsum is taken
    in int32, exact at any length and dtype policy.
    """

    def call(self, segment_ids):
        idxs = tf.cumsum(tf.cast(segment_ids, tf.int32), axis=1)
        return idxs[:, None, :] <= idxs[:, :, None]

    def compute_mask(self, inputs, mask=None):
        return None


@register
class FirstToken(keras.layers.Layer):
    """The first position of a sequence: [b, n, d] → [b, d] (bert4keras's
    pooler input, ``Lambda(lambda x: x[:, 0])``, as a layer so that saved
    models reload without Lambda code).

    Example: ``cls = FirstToken(name='Pooler')(sequence_output)``.
    """

    def call(self, inputs):
        return inputs[:, 0]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return input_shape[:1] + input_shape[2:]


@register
class ScaleOffset(keras.layers.Layer):
    """Per-dimension scale (+ offset) of the last axis:  y = x·γ (+ β)."""

    def __init__(self, heads=None, offset=True, **kwargs):
        super(ScaleOffset, self).__init__(**kwargs)
        self.heads, self.offset = heads, offset

    def build(self, input_shape):
        shape = (int(input_shape[-1]),)
        if self.heads:
            shape = (self.heads,) + shape
        self.gamma = self.add_weight(
            name='gamma', shape=shape,
            initializer=keras.initializers.RandomNormal(1.0, 0.02))
        if self.offset:
            self.beta = self.add_weight(name='beta', shape=shape,
                                        initializer='zeros')
        super(ScaleOffset, self).build(input_shape)

    def call(self, z):
        """z [..., s] → [..., s], or [..., heads, s] when ``heads`` is set."""
        if self.heads:
            z = z[..., None, :]
        out = z * tf.cast(self.gamma, z.dtype)
        if self.offset:
            out = out + tf.cast(self.beta, z.dtype)
        return out

    def checkpoint_weights(self):
        return [self.gamma] + ([self.beta] if self.offset else [])

    def get_config(self):
        config = super(ScaleOffset, self).get_config()
        config.update(heads=self.heads, offset=self.offset)
        return config


@register
class GatedUnitBase(keras.layers.Layer):
    """Options and sublayers shared by the GAU and the mixed-chunk FLASH layer.

    ``normalization`` is any name of ``backend.ATTENTION_NORMALIZATIONS``;
    ``rope_layout`` one of ``backend.ROPE_LAYOUTS`` (both checked here, the
    error naming the layer).  Subclasses build their projections with
    ``_dense`` and apply ``_rope`` / ``_dropout``.  Example::

        class MyUnit(GatedUnitBase):
            def build(self, input_shape):
                self.i_dense = self._dense(self.units, 'i_dense')
                super(MyUnit, self).build(input_shape)
    """

    def __init__(self, units, key_size=128, activation='swish', use_bias=True,
                 normalization='softmax_plus', attention_dropout=None,
                 causal=False, use_rope=True, rope_layout='interleaved',
                 attention_scale=True, kernel_initializer='glorot_uniform',
                 **kwargs):
        super(GatedUnitBase, self).__init__(**kwargs)
        self.units, self.key_size = int(units), int(key_size)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.normalization = backend.check_normalization(normalization,
                                                         self.name)
        self.attention_dropout = attention_dropout or 0.0
        # A Keras Dropout draws from a per-layer generator that resumable
        # runs can checkpoint (tf.nn.dropout uses the global seed).
        self.attention_dropout_layer = keras.layers.Dropout(
            self.attention_dropout, dtype='float32',
            name='attention_dropout') if self.attention_dropout else None
        self.causal, self.use_rope = causal, use_rope
        self.rope_layout = backend.check_rope_layout(rope_layout, self.name)
        self.attention_scale = attention_scale
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def _fresh_initializer(self):
        init = self.kernel_initializer
        if isinstance(init, keras.initializers.Initializer):
            return init.__class__.from_config(init.get_config())
        return init

    def _dense(self, units, name, activation=None):
        if activation is not None and getattr(
                activation, '__name__', None) in ('swish', 'silu'):
            activation = backend.swish  # same φ, one-pass fused gradient
        return keras.layers.Dense(
            units, activation=activation, use_bias=self.use_bias,
            kernel_initializer=self._fresh_initializer(), name=name,
            dtype=self.dtype_policy)

    def _rope(self, x, positions):
        if not self.use_rope:
            return x
        return backend.rotary_position_embedding(x, positions,
                                                 self.rope_layout)

    def _dropout(self, a, training):
        """Dropout on the float32 attention weights A (training only)."""
        if self.attention_dropout_layer is None:
            return a
        return self.attention_dropout_layer(a, training=training)

    def compute_mask(self, inputs, mask=None):
        return mask_of(mask)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(
                input_shape[0], (list, tuple, tf.TensorShape)):
            return input_shape[0]
        return input_shape

    def get_config(self):
        config = super(GatedUnitBase, self).get_config()
        config.update(
            units=self.units, key_size=self.key_size,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias, normalization=self.normalization,
            attention_dropout=self.attention_dropout, causal=self.causal,
            use_rope=self.use_rope, rope_layout=self.rope_layout,
            attention_scale=self.attention_scale,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer))
        return config


def _positions(x, position_ids):
    if position_ids is not None:
        return position_ids
    return tf.range(tf.shape(x)[1])


@register
class GatedAttentionUnit(GatedUnitBase):
    """Gated Attention Unit (GAU), single head (arXiv 2202.10447).

        U = φ(X W_u),  V = φ(X W_v),  Z = φ(X W_z)   one dense, split [u, v, z]
        Q = RoPE(γ_q ⊙ Z + β_q),  K = RoPE(γ_k ⊙ Z + β_k)
        A = normalize(Q Kᵀ / √s)        any backend.ATTENTION_NORMALIZATIONS
        O = (U ⊙ A V) W_o

    Self-attention: ``gau(x)`` or ``gau(x, attention_bias=bias)``.
    Cross-attention (``self_attention=False``): ``gau([x, context])``; then
    U and Z_q come from x, V and Z_k from the context.  ``attention_bias`` is
    boolean (True = may attend; bert4keras LM / UniLM masks) or an additive
    float, broadcastable to [b, n_q, n_k].  Keras masks (``mask_zero``) mask
    padded keys, and n in the normalisation is each query's number of visible
    keys, so a padded batch gives the unpadded outputs on real tokens.

    Example::

        x = keras.layers.Input((None, 768))
        y = GatedAttentionUnit(units=1536, key_size=128, use_bias=False)(x)
    """

    def __init__(self, units, key_size=128, self_attention=True, **kwargs):
        super(GatedAttentionUnit, self).__init__(units, key_size, **kwargs)
        self.self_attention = self_attention

    def build(self, input_shape):
        if self.self_attention:
            hidden = int(input_shape[-1])
            self.i_dense = self._dense(2 * self.units + self.key_size,
                                       'i_dense', self.activation)
        else:
            hidden = int(input_shape[0][-1])
            self.i_dense = self._dense(self.units + self.key_size, 'i_dense',
                                       self.activation)
            self.kv_dense = self._dense(self.units + self.key_size,
                                        'kv_dense', self.activation)
        self.o_dense = self._dense(hidden, 'o_dense')
        self.q_scaleoffset = ScaleOffset(offset=self.use_bias,
                                         name='q_scaleoffset',
                                         dtype=self.dtype_policy)
        self.k_scaleoffset = ScaleOffset(offset=self.use_bias,
                                         name='k_scaleoffset',
                                         dtype=self.dtype_policy)
        super(GatedAttentionUnit, self).build(input_shape)

    def project(self, inputs):
        """U, V, Z_q, Z_k from the input(s) (one dense in self-attention)."""
        e, s = self.units, self.key_size
        if self.self_attention:
            u, v, z = tf.split(self.i_dense(inputs), [e, e, s], axis=-1)
            return u, v, z, z
        x, context = inputs
        u, zq = tf.split(self.i_dense(x), [e, s], axis=-1)
        v, zk = tf.split(self.kv_dense(context), [e, s], axis=-1)
        return u, v, zq, zk

    def attention_logits(self, q, k):
        """a = Q Kᵀ / √s  (Q pre-scaled, so float16 products stay small)."""
        if self.attention_scale:
            q = q * tf.cast(self.key_size**-0.5, q.dtype)
        return tf.einsum('bmd,bnd->bmn', q, k)

    def attention_mask(self, q_len, k_len, key_mask, bias):
        """(additive float32 bias or None, visible keys n) of the masking.

        Key padding, causality and a boolean ``attention_bias`` become one
        additive bias (``backend.mask_bias``; a float ``attention_bias`` is
        added to it).  n, float32 and broadcastable to the [b, m, n_k]
        logits, counts the keys each query may see, from the cheapest source:

            no mask:             the scalar n_k
            key padding only:    [b, 1, 1], the lengths of the key mask
            causal (± padding):  [b|1, m, 1], a prefix sum of the key mask
            boolean bias:        [b|1, m, 1], the sum of the combined mask
        """
        padding = None if key_mask is None else tf.cast(key_mask,
                                                        tf.bool)[:, None, :]
        float_bias = None
        if bias is not None and bias.dtype != tf.bool:
            float_bias = tf.cast(bias, tf.float32)
            bias = None
        if bias is not None:  # UniLM / LM masks: sum the full mask
            bias = bias if bias.shape.rank == 3 else bias[None]
            causal = (backend.causal_mask(q_len, k_len)[None] if self.causal
                      else None)
            full = backend.combine_masks(padding, bias, causal)
            n, add = backend.visible_counts(full, k_len), backend.mask_bias(
                full)
        elif self.causal:
            n = backend.causal_visible_counts(q_len, k_len, key_mask)
            add = backend.mask_bias(backend.causal_mask(q_len, k_len))[None]
            if padding is not None:
                add = add + backend.mask_bias(padding)
        elif padding is not None:
            n = backend.visible_counts(padding, k_len)
            add = backend.mask_bias(padding)
        else:
            n, add = tf.cast(k_len, tf.float32), None
        if float_bias is not None:
            float_bias = float_bias if float_bias.shape.rank == 3 else (
                float_bias[None])
            add = float_bias if add is None else add + float_bias
        return add, n

    def call(self, inputs, mask=None, attention_bias=None, position_ids=None,
             training=None):
        u, v, zq, zk = self.project(inputs)
        x = inputs if self.self_attention else inputs[0]
        context = inputs if self.self_attention else inputs[1]
        key_mask = mask_of(mask, 0 if self.self_attention else 1)
        pos_q = _positions(x, position_ids)
        pos_k = pos_q if self.self_attention else _positions(context, None)
        q = self._rope(self.q_scaleoffset(zq), pos_q)
        k = self._rope(self.k_scaleoffset(zk), pos_k)
        logits = self.attention_logits(q, k)
        bias, n = self.attention_mask(tf.shape(q)[1], tf.shape(k)[1],
                                      key_mask, attention_bias)
        # Masked keys get A = 0 exactly (exp / relu² of ≈ MASK_VALUE), so
        # their V rows contribute exactly nothing.
        a = backend.normalize_biased_attention(logits, bias, n,
                                               self.normalization)
        a = tf.cast(self._dropout(a, training), v.dtype)
        return self.o_dense(u * backend.attention_values(a, v))

    def checkpoint_weights(self):
        """Weights in release order: i_dense, (kv_dense), o_dense, q, k."""
        dense = [self.i_dense] + ([] if self.self_attention else
                                  [self.kv_dense]) + [self.o_dense]
        out = []
        for layer in dense:
            out += [layer.kernel] + ([layer.bias] if self.use_bias else [])
        for so in (self.q_scaleoffset, self.k_scaleoffset):
            out += so.checkpoint_weights()
        return out

    def get_config(self):
        config = super(GatedAttentionUnit, self).get_config()
        config.update(self_attention=self.self_attention)
        return config


# ---- bert4keras.layers names for ported scripts ----------------------------

@register
class MultiHeadAttention(b4k_layers.MultiHeadAttention):
    """bert4keras's MultiHeadAttention with one attention-dropout sublayer.

    bert4keras's ``pay_attention_to`` creates a new ``Dropout`` at every
    call.  When dropout draws from a per-layer ``tf.random.Generator``
    (``gau_keras.training.set_seed``, the Trainer), that is a new variable
    at every trace, which ``tf.function`` refuses on a retrace ("only
    supports singleton tf.Variables created on the first call"), and its
    state could not be checkpointed.  Here the layer owns one Dropout
    (``attention_dropout``), used for every call; the maths is bert4keras's.
    ``build_transformer_model`` puts it into bert4keras's models (bert,
    roformer, roformer_v2, ...).  Example::

        att = MultiHeadAttention(heads=2, head_size=8, attention_dropout=0.1)
    """

    def build(self, input_shape):
        super(MultiHeadAttention, self).build(input_shape)
        self.attention_dropout_layer = keras.layers.Dropout(
            self.attention_dropout, name='attention_dropout') if (
                self.attention_dropout) else None

    def pay_attention_to(self, inputs, mask=None, **kwargs):
        # bert4keras looks its Dropout class up in its module at call time:
        # hand it this layer's one Dropout instead of a new one.
        created = b4k_layers.Dropout
        b4k_layers.Dropout = lambda rate: self.attention_dropout_layer
        try:
            return super(MultiHeadAttention, self).pay_attention_to(
                inputs, mask, **kwargs)
        finally:
            b4k_layers.Dropout = created


# bert4keras.layers star-imports keras.layers; these are the names its
# examples use, plus its own layers that gau_keras uses as they are.
Input = keras.layers.Input
Layer = keras.layers.Layer
Dense = keras.layers.Dense
Dropout = keras.layers.Dropout
Lambda = keras.layers.Lambda
Activation = keras.layers.Activation
Add = keras.layers.Add
Concatenate = keras.layers.Concatenate
Multiply = keras.layers.Multiply
Average = keras.layers.Average
Reshape = keras.layers.Reshape
Masking = keras.layers.Masking
LSTM = keras.layers.LSTM
Bidirectional = keras.layers.Bidirectional
Conv1D = keras.layers.Conv1D
GlobalAveragePooling1D = b4k_layers.GlobalAveragePooling1D
GlobalMaxPooling1D = b4k_layers.GlobalMaxPooling1D
FeedForward = b4k_layers.FeedForward
PositionEmbedding = b4k_layers.PositionEmbedding
SinusoidalPositionEmbedding = b4k_layers.SinusoidalPositionEmbedding
RelativePositionEmbedding = b4k_layers.RelativePositionEmbedding
RelativePositionEmbeddingT5 = b4k_layers.RelativePositionEmbeddingT5
Concatenate1D = b4k_layers.Concatenate1D
BatchSplit = b4k_layers.BatchSplit
BatchConcat = b4k_layers.BatchConcat

#: The bert4keras.layers names above that are keras / bert4keras classes
#: used unchanged.
BERT4KERAS_NAMES = (
    'Input', 'Layer', 'Dense', 'Dropout', 'Lambda', 'Activation', 'Add',
    'Concatenate', 'Multiply', 'Average', 'Reshape', 'Masking', 'LSTM',
    'Bidirectional', 'Conv1D', 'GlobalAveragePooling1D',
    'GlobalMaxPooling1D', 'FeedForward',
    'PositionEmbedding', 'SinusoidalPositionEmbedding',
    'RelativePositionEmbedding', 'RelativePositionEmbeddingT5',
    'Concatenate1D', 'BatchSplit', 'BatchConcat')


# Every other public name of bert4keras.layers (the keras layers it
# star-imports, its helpers), so that
# `from bert4keras.layers import X` ports as `from gau_keras.layers import X`
# (gau_keras.bert4keras_names: what is left out and why).
from gau_keras.bert4keras_names import reexport as _reexport  # noqa: E402
_reexport(globals(), 'layers', sources=[backend])
