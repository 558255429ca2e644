"""The pretraining model: the Transformer with its tied MLM head, the loss
at the chosen positions only, the statistics the progress bar shows, the
release's LAMB, held-out accuracy and the release-layout export.

Example::

    t = build_pretraining_model('gau_alpha_tiny', vocab_size=5000)
    trained, head = training_view(t)             # logits at chosen rows
    stats = PretrainingStats()
    loss = stats.loss_fn(head)                   # for training.Trainer
    opt = release_optimizer(grad_accum_steps=4)  # inside strategy.scope()
    export_release(t, 'out/export', release_config('gau_alpha_tiny', 5000),
                   'vocab.txt')
"""
import os

import numpy as np
import tensorflow as tf

from gau_keras import configs as gk_configs
from gau_keras import optimizers as gk_optimizers
from gau_keras import release_checkpoints
from gau_keras.backend import keras
from gau_keras.files import copy_file, write_json

MODELS = ('gau_alpha', 'flash_quad', 'flash')

#: GAU-α's released pretraining (ZhuiyiTechnology/GAU-alpha, train.py):
#: LAMB without bias correction, lr 1.76e-3, weight decay 0.01, 4-step
#: gradient accumulation, batch 128 × maxlen 512 per replica group.
RELEASE_LAMB = dict(learning_rate=1.76e-3, weight_decay=0.01,
                    bias_correction=False)
RELEASE_SCHEDULE = {0: 1.0, 160000: 0.5, 640000: 0.1, 1280000: 0.01}


def build_pretraining_model(config, model='gau_alpha', objective='mlm',
                            vocab_size=None, **overrides):
    """The Transformer (``return_keras_model=False``) with the tied MLM head
    giving logits; objective 'lm' builds application 'lm' (causal).
    Example::

        t = build_pretraining_model('gau_alpha_tiny', vocab_size=5000)
        t.model  # inputs [token_ids, segment_ids] → logits [b, n, vocab]
    """
    from gau_keras.models import build_transformer_model
    if model not in MODELS:
        raise ValueError('model must be one of %s, got %r' % (MODELS, model))
    if vocab_size is not None:
        overrides['vocab_size'] = int(vocab_size)
    return build_transformer_model(
        config, model=model, with_mlm='linear',
        application='lm' if objective == 'lm' else 'encoder',
        return_keras_model=False, **overrides)


# Tied MLM heads that ``chosen_positions_model`` splits: (the layer whose
# output ends the encoder part, the head's layers applied to gathered rows).
MLM_HEADS = (
    ('Output-MLM-Dropout', ('Embedding-Token',)),  # GAU-α, FLASH, RoFormerV2
    (None, ('MLM-Dense', 'MLM-Norm', 'Embedding-Token', 'MLM-Bias')),  # BERT
)


def chosen_positions_model(transformer):
    """(encoder, head) that compute MLM logits at the chosen positions only.

    The tied MLM head of ``transformer`` (``build_pretraining_model``) is
    logits = dropout(h) · Eᵀ at every position, [b, n, vocab] (BERT's:
    LayerNorm(dense(h)) · Eᵀ + bias), although only the ~15 % chosen
    positions carry loss.  ``encoder`` is the same Keras graph up to the
    head (same layers, variables and RNG states; BERT's head layers keep
    their own variables, so train ``transformer.model``'s), returning
    [b, n, H]; ``head(rows)`` maps gathered rows [k, H] to float32 logits
    [k, vocab] through the same head layers.  The loss is the same as with
    ``transformer.model``, at ~1/6 of the head's cost.  Returns None for a
    model with neither head (see ``MLM_HEADS``).
    Example::

        encoder, head = chosen_positions_model(t)
        loss = PretrainingStats().loss_fn(head)   # loss(y, encoder(x))
    """
    model = transformer.model
    names = {layer.name for layer in model.layers}
    for cut, head_names in MLM_HEADS:
        if names.issuperset(head_names + ((cut,) if cut else ())):
            break
    else:
        return None
    layers = [model.get_layer(name) for name in head_names]
    hidden = (model.get_layer(cut).output if cut else layers[0].input)
    encoder = keras.Model(model.inputs, hidden, name=model.name + '_chosen')

    def head(rows):
        x = rows[None]
        for layer in layers:
            x = (layer(x, mode='dense') if layer.name == 'Embedding-Token'
                 else layer(x))
        return tf.cast(x[0], tf.float32)
    return encoder, head


def training_view(transformer, objective='mlm', jit_compile=False,
                  mlm_logits='chosen'):
    """(Keras model the Trainer trains, head for ``loss_fn``): the
    ``chosen_positions_model`` for MLM, the full model (head None) for
    'lm', under XLA (static shapes only) or with ``mlm_logits='all'``."""
    if objective == 'mlm' and mlm_logits == 'chosen' and not jit_compile:
        chosen = chosen_positions_model(transformer)
        # the Trainer updates the encoder's variables: not for a head with
        # variables of its own (BERT's)
        if chosen is not None and _same_variables(
                chosen[0], transformer.model):
            return chosen
    return transformer.model, None


def _same_variables(a, b):
    return ({v.ref() for v in a.trainable_variables}
            == {v.ref() for v in b.trainable_variables})


class PretrainingStats(object):
    """Sums updated inside the training step (on-read variables summed
    over replicas): chosen positions, correct predictions, real tokens.
    ``take()`` returns and resets them.  Example::

        stats = PretrainingStats(); loss = stats.loss_fn()
    """

    def __init__(self):
        def var(name):
            return tf.Variable(
                0.0, trainable=False, name=name,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM)
        self.chosen, self.correct, self.tokens = (
            var('chosen'), var('correct'), var('tokens'))

    def loss_fn(self, head=None):
        """Per-example loss ``Σ_t weights_t · CE_t`` (see ``pad_batch``),
        accumulating the statistics on the way.  With ``head`` (see
        ``chosen_positions_model``) the model's output is the hidden state
        [b, n, H] and only the chosen positions go through ``head``."""
        if head is not None:
            return self._chosen_loss(head)

        def loss(y_true, logits):
            labels, weights, real = y_true
            labels = tf.cast(labels, tf.int32)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, tf.cast(logits, tf.float32))
            weights = tf.cast(weights, tf.float32)
            chosen = tf.cast(weights > 0, tf.float32)
            right = tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32),
                                     labels), tf.float32)
            self.chosen.assign_add(tf.reduce_sum(chosen))
            self.correct.assign_add(tf.reduce_sum(chosen * right))
            self.tokens.assign_add(tf.reduce_sum(tf.cast(real, tf.float32)))
            return tf.reduce_sum(weights * ce, axis=1)
        return loss

    def _chosen_loss(self, head):
        def loss(y_true, hidden):
            labels, weights, real = y_true
            weights = tf.cast(weights, tf.float32)
            where = tf.where(weights > 0)                 # [k, 2]
            logits = head(tf.gather_nd(hidden, where))    # [k, vocab]
            labels = tf.cast(tf.gather_nd(labels, where), tf.int32)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, logits)
            right = tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32),
                                     labels), tf.float32)
            self.chosen.assign_add(tf.cast(tf.shape(where)[0], tf.float32))
            self.correct.assign_add(tf.reduce_sum(right))
            self.tokens.assign_add(tf.reduce_sum(tf.cast(real, tf.float32)))
            return tf.math.unsorted_segment_sum(
                tf.gather_nd(weights, where) * ce, where[:, 0],
                tf.shape(weights)[0])
        return loss

    def take(self):
        values = [float(v.read_value()) for v in
                  (self.chosen, self.correct, self.tokens)]
        for v in (self.chosen, self.correct, self.tokens):
            v.assign(0.0)
        return values


def release_optimizer(learning_rate=RELEASE_LAMB['learning_rate'],
                      weight_decay=RELEASE_LAMB['weight_decay'],
                      lr_schedule=None, grad_accum_steps=1):
    """LAMB as GAU-α's release trained: no bias correction, weight decay
    and trust ratio on matrices only (rank ≤ 1 variables and names matching
    'Norm' / 'bias' excluded), ``RELEASE_SCHEDULE`` unless given.  Create it
    inside ``strategy.scope()``.  Example::

        opt = release_optimizer(grad_accum_steps=4)
    """
    return gk_optimizers.build_optimizer(
        'lamb', learning_rate, weight_decay=weight_decay,
        lr_schedule=lr_schedule or dict(RELEASE_SCHEDULE),
        grad_accum_steps=grad_accum_steps, bias_correction=False)


def mlm_accuracy(model, batches):
    """(accuracy, mean loss) over the chosen positions of ``batches``."""
    right = chosen_total = loss_total = 0.0
    for x, (labels, weights, _) in batches:
        logits = model.predict_on_batch(list(x)).astype(np.float32)
        chosen = weights > 0
        logits = logits - logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        picked = np.take_along_axis(logp, labels[..., None], -1)[..., 0]
        right += float(((logits.argmax(-1) == labels) & chosen).sum())
        loss_total += float(-(picked * chosen).sum())
        chosen_total += float(chosen.sum())
    chosen_total = max(chosen_total, 1.0)
    return right / chosen_total, loss_total / chosen_total


def export_release(transformer, folder, config, vocab):
    """Writes the release layout into ``folder``: ``bert_model.ckpt.*``
    (TF1 names), ``bert_config.json`` (``config`` dict) and ``vocab.txt``
    (copied from the ``vocab`` path).  Returns the checkpoint prefix.
    Example::

        export_release(t, 'out/export', cfg, 'vocab.txt')
        build_transformer_model('out/export/bert_config.json',
                                'out/export/bert_model.ckpt', 'gau_alpha')
    """
    os.makedirs(folder, exist_ok=True)
    prefix = release_checkpoints.save_weights_as_checkpoint(
        transformer, os.path.join(folder, 'bert_model.ckpt'))
    write_json(os.path.join(folder, 'bert_config.json'), config)
    copy_file(vocab, os.path.join(folder, 'vocab.txt'))
    return prefix


def release_config(config_path, vocab_size, **overrides):
    """The config dict to export: the file's keys, ``vocab_size`` set."""
    config = gk_configs.read_json(gk_configs.resolve_config_path(config_path))
    config.update(overrides)
    config['vocab_size'] = int(vocab_size)
    return config
