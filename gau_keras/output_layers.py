"""Output layers of bert4keras scripts, computing in float32 under every
precision policy: ``ConditionalRandomField``, ``MaximumEntropyMarkovModel``,
``GlobalPointer``, ``EfficientGlobalPointer`` and the ``Loss`` base layer.

These layers sit at a model's output and turn activations into scores and
losses.  bert4keras 0.11.5's versions raise ``TypeError`` under
``mixed_float16`` / ``mixed_bfloat16`` on tf-keras 2.21 (a float32
transition matrix or scale meets float16 / bfloat16 activations), and its
``Loss`` layer takes its loss in the compute dtype.  The classes here keep
bert4keras's names, arguments, weights and outputs, and compute in float32
whatever the global policy (their ``dtype`` defaults to ``'float32'``; the
model body stays in mixed precision).  GlobalPointer's RoPE angles are taken
in float32 too, so positions above 256 stay exact under bfloat16.

The same classes are importable from ``gau_keras.layers`` (where ported
``from bert4keras.layers import ...`` lines look for them).  The CLUE task
heads are another module, ``gau_keras.clue.heads``.

Example (sequence labelling, as bert4keras's NER example)::

    from gau_keras.output_layers import ConditionalRandomField
    crf = ConditionalRandomField(lr_multiplier=100)
    output = crf(keras.layers.Dense(num_labels)(hidden))
    model.compile(loss=crf.sparse_loss, optimizer=opt,
                  metrics=[crf.sparse_accuracy])
"""
import numpy as np
import tensorflow as tf
from bert4keras import layers as b4k_layers

from gau_keras import backend
from gau_keras.backend import keras
from gau_keras.registry import register


class Float32Head(object):
    """Mixin: the layer's dtype policy defaults to float32.

    Keras then casts floating inputs to float32 before ``call`` and creates
    float32 variables, so a head after a mixed-precision body computes its
    scores and losses in float32.  Pass ``dtype=...`` to override.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('dtype', 'float32')
        super(Float32Head, self).__init__(*args, **kwargs)


def _float32(*tensors):
    out = [tf.cast(t, tf.float32) for t in tensors]
    return out[0] if len(out) == 1 else out


@register
class ConditionalRandomField(Float32Head, b4k_layers.ConditionalRandomField):
    """bert4keras's linear-chain CRF, computed in float32.

    The layer passes the emission scores through (padded steps → -inf), holds
    the transition matrix ``trans`` [k, k], and gives the losses
    -log p(y|x) = log Z - (Σ_t x_t[y_t] + Σ_t trans[y_t, y_t+1]).

    Example::

        crf = ConditionalRandomField(lr_multiplier=1000)
        scores = crf(keras.layers.Dense(9)(hidden))          # [b, n, 9]
        model.compile(loss=crf.sparse_loss, metrics=[crf.sparse_accuracy])
        decoder = ViterbiDecoder(trans=K.eval(crf.trans), starts=[0], ends=[0])
    """

    def dense_loss(self, y_true, y_pred):
        return super(ConditionalRandomField, self).dense_loss(
            *_float32(y_true, y_pred))

    def sparse_loss(self, y_true, y_pred):
        return super(ConditionalRandomField, self).sparse_loss(
            y_true, _float32(y_pred))

    def sparse_accuracy(self, y_true, y_pred):
        return super(ConditionalRandomField, self).sparse_accuracy(
            y_true, _float32(y_pred))


@register
class MaximumEntropyMarkovModel(Float32Head,
                                b4k_layers.MaximumEntropyMarkovModel):
    """bert4keras's (bidirectional) MEMM, computed in float32.

    Example: ``memm = MaximumEntropyMarkovModel(); y = memm(scores)``, then
    ``model.compile(loss=memm.sparse_loss, metrics=[memm.sparse_accuracy])``.
    """

    def basic_loss(self, y_true, y_pred, go_backwards=False):
        return super(MaximumEntropyMarkovModel, self).basic_loss(
            y_true, _float32(y_pred), go_backwards)

    def basic_accuracy(self, y_true, y_pred, go_backwards=False):
        return super(MaximumEntropyMarkovModel, self).basic_accuracy(
            y_true, _float32(y_pred), go_backwards)


def span_mask(mask, n, tril_mask=True):
    """bool [b|1, 1, n, n]: span (i, j) is scored iff both tokens are real
    and, with ``tril_mask``, i ≤ j (bert4keras drops the lower triangle)."""
    masks = []
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
        masks.append(mask[:, None, :, None] & mask[:, None, None, :])
    if tril_mask:
        i = tf.range(n)
        masks.append((i[:, None] <= i[None, :])[None, None])
    return backend.combine_masks(*masks)


def global_pointer_scores(q, k, head_size, mask=None, tril_mask=True):
    """s_α(i, j) = q_{i,α} · k_{j,α} / √head_size, masked spans → -inf.

    q, k: [b, n, heads, head_size] (RoPE already applied); returns float32
    [b, heads, n, n].  Example: ``global_pointer_scores(q, k, 64, mask)``.
    """
    q, k = _float32(q, k)
    logits = tf.einsum('bmhd,bnhd->bhmn', q, k) / head_size**0.5
    return _masked(logits, mask, tril_mask)


def _masked(logits, mask, tril_mask):
    full = span_mask(mask, tf.shape(logits)[-1], tril_mask)
    if full is None:
        return logits
    return tf.where(full, logits, tf.constant(-np.inf, logits.dtype))


@register
class GlobalPointer(Float32Head, b4k_layers.GlobalPointer):
    """bert4keras's GlobalPointer (https://kexue.fm/archives/8373), float32.

    One dense gives, per head α, q_α and k_α (RoPE-rotated when ``RoPE``);
    the output [b, heads, n, n] is s_α(i, j) = q_{i,α}·k_{j,α}/√head_size
    with padded tokens and (``tril_mask``) spans j < i at -inf.  Same
    arguments and weights as bert4keras's.

    Example::

        scores = GlobalPointer(heads=len(categories), head_size=64)(hidden)
        model.compile(loss=global_pointer_crossentropy, optimizer=opt)
    """

    def fresh_initializer(self):
        """A new instance of the kernel initializer for each dense (a
        shared unseeded one would give them identical values)."""
        init = self.kernel_initializer
        return init.__class__.from_config(init.get_config())

    def build(self, input_shape):
        self.dense = keras.layers.Dense(
            units=self.head_size * self.heads * 2, use_bias=self.use_bias,
            kernel_initializer=self.fresh_initializer(),
            dtype=self.dtype_policy, name='dense')
        self.built = True

    def rope(self, x):
        """RoPE at positions 0 … n-1 on x [b, n, ..., d] (angles float32)."""
        if not self.RoPE:
            return x
        return backend.rotary_position_embedding(x, tf.range(tf.shape(x)[1]))

    def call(self, inputs, mask=None):
        x = _float32(self.dense(inputs))
        shape = tf.concat([tf.shape(x)[:2], [self.heads, 2 * self.head_size]],
                          0)
        x = tf.reshape(x, shape)
        q, k = x[..., :self.head_size], x[..., self.head_size:]
        return global_pointer_scores(self.rope(q), self.rope(k),
                                     self.head_size, mask, self.tril_mask)


@register
class EfficientGlobalPointer(GlobalPointer):
    """bert4keras's EfficientGlobalPointer (https://kexue.fm/archives/8877).

    Shared q, k (interleaved in one dense of 2·head_size) plus per-head
    start / end biases from a second dense on that output (channels 2α+1
    and 2α, as bert4keras):
    s_α(i, j) = q_i·k_j/√head_size + (b_{2α+1}(i) + b_{2α}(j)) / 2.

    Example: ``scores = EfficientGlobalPointer(heads=9, head_size=64)(h)``.
    """

    def build(self, input_shape):
        dense = dict(use_bias=self.use_bias, dtype=self.dtype_policy)
        self.p_dense = keras.layers.Dense(
            self.head_size * 2, name='p_dense',
            kernel_initializer=self.fresh_initializer(), **dense)
        self.q_dense = keras.layers.Dense(
            self.heads * 2, name='q_dense',
            kernel_initializer=self.fresh_initializer(), **dense)
        self.built = True

    def call(self, inputs, mask=None):
        x = _float32(self.p_dense(inputs))
        q, k = self.rope(x[..., ::2]), self.rope(x[..., 1::2])
        logits = tf.einsum('bmd,bnd->bmn', q, k) / self.head_size**0.5
        bias = tf.einsum('bnh->bhn', _float32(self.q_dense(x))) / 2
        logits = (logits[:, None] + bias[:, ::2, None]
                  + bias[:, 1::2, :, None])
        return _masked(logits, mask, self.tril_mask)


@register
class Loss(Float32Head, b4k_layers.Loss):
    """bert4keras's ``Loss`` layer (subclass it, write ``compute_loss``),
    taking its loss in float32 under mixed precision.

    Example (UniLM seq2seq, as bert4keras's examples)::

        class CrossEntropy(Loss):
            def compute_loss(self, inputs, mask=None):
                y_true, y_mask, y_pred = inputs
                ...
        output = CrossEntropy(2)(model.inputs + model.outputs)
    """


__all__ = ['ConditionalRandomField', 'MaximumEntropyMarkovModel',
           'GlobalPointer', 'EfficientGlobalPointer', 'Loss',
           'Float32Head', 'global_pointer_scores', 'span_mask']
