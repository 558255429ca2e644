"""Keras heads for the CLUE tasks on a gau_keras encoder, and their losses.

* ``classification``: [CLS] → Dropout → Dense(classes) logits [b, classes];
* ``multiple_choice``: inputs [b, choices, n]; every (context, question +
  choice) sequence goes through the encoder, [CLS] → Dense(1), scores
  [b, choices], invalid (padding) choices at -1e4;
* ``span``: Dense(2) per token → start / end logits [b, n, 2] (padding at
  -1e4);
* ``global_pointer``: gau_keras.output_layers.GlobalPointer → [b, types, n, n].

Heads compute in float32 whatever the precision policy.  No Lambda layers
(the models reload in Keras safe mode).

Example::

    encoder = gau_keras.build_transformer_model('gau_alpha_tiny',
                                                model='gau_alpha')
    model = build_head(task, encoder)
    loss = head_loss(task.head)            # loss(y_true, y_pred) → [b]
"""
import tensorflow as tf

from gau_keras.backend import keras
from gau_keras.layers import FirstToken  # noqa: F401  (x[:, 0], the [CLS])
from gau_keras.output_layers import GlobalPointer
from gau_keras.registry import register

NEG = -1e4


@register
class FoldChoices(keras.layers.Layer):
    """[b, c, n] → [b·c, n]."""

    def call(self, x):
        return tf.reshape(x, [-1, tf.shape(x)[-1]])


@register
class UnfoldChoices(keras.layers.Layer):
    """(scores [b·c, 1], ids [b, c, n], valid [b, c]) → [b, c] float32
    with invalid choices at -1e4."""

    def __init__(self, **kwargs):
        kwargs.setdefault('dtype', 'float32')
        super().__init__(**kwargs)

    def call(self, inputs):
        scores, ids, valid = inputs
        scores = tf.reshape(tf.cast(scores, tf.float32), tf.shape(ids)[:2])
        return tf.where(tf.cast(valid, tf.bool), scores, NEG)


@register
class MaskPadding(keras.layers.Layer):
    """(logits [b, n, k], ids [b, n]) → logits with padding (id 0) at
    -1e4, float32."""

    def __init__(self, **kwargs):
        kwargs.setdefault('dtype', 'float32')
        super().__init__(**kwargs)

    def call(self, inputs):
        logits, ids = inputs
        real = tf.not_equal(ids, 0)[..., None]
        return tf.where(real, tf.cast(logits, tf.float32), NEG)

    def compute_mask(self, inputs, mask=None):
        return None


def _dense(units, name):
    return keras.layers.Dense(
        units, dtype='float32', name=name,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))


def build_head(task, encoder, dropout=0.1, head_size=64):
    """Keras model = ``encoder`` + the head of ``task.head``."""
    builders = {'classification': _classifier, 'multiple_choice': _chooser,
                'span': _pointer, 'global_pointer': _global_pointer}
    return builders[task.head](task, encoder, dropout, head_size)


def _classifier(task, encoder, dropout, head_size):
    h = FirstToken(name='CLUE-CLS')(encoder.output)
    h = keras.layers.Dropout(dropout, name='CLUE-Dropout')(h)
    out = _dense(len(task.labels), 'CLUE-Classifier')(h)
    return keras.Model(encoder.inputs, out, name='clue_' + task.name)


def _chooser(task, encoder, dropout, head_size):
    ids = keras.layers.Input((None, None), dtype='int32', name='Choice-Ids')
    segs = keras.layers.Input((None, None), dtype='int32',
                              name='Choice-Segments')
    valid = keras.layers.Input((None,), dtype='int32', name='Choice-Valid')
    fold = FoldChoices(name='CLUE-Fold')
    h = encoder([fold(ids), fold(segs)])
    h = keras.layers.Dropout(dropout, name='CLUE-Dropout')(
        FirstToken(name='CLUE-CLS')(h))
    score = _dense(1, 'CLUE-Score')(h)
    out = UnfoldChoices(name='CLUE-Choices')([score, ids, valid])
    return keras.Model([ids, segs, valid], out, name='clue_' + task.name)


def _pointer(task, encoder, dropout, head_size):
    h = keras.layers.Dropout(dropout, name='CLUE-Dropout')(encoder.output)
    logits = _dense(2, 'CLUE-Pointer')(h)
    out = MaskPadding(name='CLUE-Mask')([logits, encoder.inputs[0]])
    return keras.Model(encoder.inputs, out, name='clue_' + task.name)


def _global_pointer(task, encoder, dropout, head_size):
    out = GlobalPointer(heads=len(task.labels), head_size=head_size,
                        name='CLUE-GlobalPointer')(encoder.output)
    return keras.Model(encoder.inputs, out, name='clue_' + task.name)


# --------------------------------------------------------------------------
# losses: loss(y_true, y_pred) → per-example values [b]
# --------------------------------------------------------------------------

def softmax_loss(y_true, y_pred):
    """−log softmax(y_pred)[y_true]; y_true [b] ints, y_pred [b, k]."""
    y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        y_true, tf.cast(y_pred, tf.float32))


def pointer_loss(y_true, y_pred):
    """(CE(start) + CE(end)) / 2; y_true [b, 2] positions, y_pred [b, n,
    2]."""
    y_true = tf.cast(y_true, tf.int32)
    y_pred = tf.cast(y_pred, tf.float32)
    start = softmax_loss(y_true[:, 0], y_pred[..., 0])
    end = softmax_loss(y_true[:, 1], y_pred[..., 1])
    return (start + end) / 2


def multilabel_loss(y_true, y_pred):
    """Su Jianlin's multilabel categorical cross-entropy per (example, type):
    log(1 + Σ_neg e^s) + log(1 + Σ_pos e^-s) over the n×n spans, averaged
    over types → [b].  -inf (masked) scores count as absent."""
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    shape = tf.shape(y_pred)
    y_true = tf.reshape(y_true, [shape[0], shape[1], -1])
    y_pred = tf.reshape(y_pred, [shape[0], shape[1], -1])
    finite = tf.math.is_finite(y_pred)
    y_pred = tf.where(finite, y_pred, -1e12)
    pos = tf.where(y_true > 0.5, -y_pred, -1e12)
    neg = tf.where(y_true > 0.5, -1e12, y_pred)
    zeros = tf.zeros_like(pos[..., :1])
    loss = (tf.reduce_logsumexp(tf.concat([neg, zeros], -1), -1) +
            tf.reduce_logsumexp(tf.concat([pos, zeros], -1), -1))
    return tf.reduce_mean(loss, -1)


def head_loss(head):
    """The loss of a head kind."""
    return {'classification': softmax_loss, 'multiple_choice': softmax_loss,
            'span': pointer_loss, 'global_pointer': multilabel_loss}[head]
