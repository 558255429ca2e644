"""Adversarial training (FGM) and gradient penalty on the embeddings, TF2.

bert4keras's examples ``task_iflytek_adversarial_training.py`` and
``task_iflytek_gradient_penalty.py`` build these recipes from TF1 graph-mode
Keras (``model._make_train_function``, ``K.gradients``,
``model._feed_inputs``).  The two functions here keep the examples' names
and arguments and change the training step of a compiled Keras model (its
``train_step``, so ``model.fit`` runs them) or of a
:class:`~gau_keras.training.Trainer`:

* ``adversarial_training(model, 'Embedding-Token', epsilon=1)``: the
  gradient ``g`` of the loss with respect to the embedding matrix ``E``
  (dense: rows of repeated tokens summed), ``E += epsilon * g / (||g|| +
  1e-8)``, the ordinary step (forward, backward, optimizer update) at the
  perturbed ``E``, then ``E -= delta``.
* ``gradient_penalty(model, 'Embedding-Token', epsilon=1)``: trains on
  ``loss + 0.5 * epsilon * gp`` where ``gp`` is the squared norm of the
  gradient of the loss with respect to the embedding rows the batch looked up
  (bert4keras's ``K.sum(K.gradients(loss, [embeddings])[0].values**2)``: one
  row per token position; a dense gradient, e.g. when the matrix is also the
  MLM output, is used whole).  The logged ``loss`` is the loss without the
  penalty.

Both work under loss scaling (``mixed_float16``: the embedding gradient is
taken of the scaled loss and unscaled; a non-finite one perturbs nothing,
and the optimizer skips the step as usual) and under ``tf.distribute``
strategies: FGM all-reduces the embedding gradient, so every replica adds
the same perturbation, the one of the global batch.  With R replicas the
gradient penalty is computed per replica, on the replica's own batch mean,
and the R penalties are averaged (with one replica: bert4keras's penalty).

Example::

    model.compile(loss='sparse_categorical_crossentropy', optimizer=Adam(2e-5))
    adversarial_training(model, 'Embedding-Token', 0.5)   # after compile
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator))
"""
import types

import tensorflow as tf

from gau_keras.precision import scale_loss, unscale_gradients

__all__ = ['adversarial_training', 'embedding_matrix', 'gradient_penalty']


def embedding_matrix(model, embedding_name='Embedding-Token'):
    """The embedding variable of the layer ``embedding_name`` in ``model``
    (a Keras model; nested models are searched too).

    Example::

        embedding_matrix(model, 'Embedding-Token').shape   # (vocab, hidden)
    """
    layer = _find_layer(model, embedding_name)
    if layer is None or getattr(layer, 'embeddings', None) is None:
        raise ValueError('Embedding layer %r not found in model %r (layers: '
                         '%s)' % (embedding_name, model.name, ', '.join(
                             l.name for l in model.layers)))
    return layer.embeddings


def _find_layer(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            found = _find_layer(layer, name)
            if found is not None:
                return found
    return None


# -- pieces shared by the Keras and the Trainer steps -----------------------

def _unscaled(optimizer, gradient):
    return unscale_gradients(optimizer, [gradient])[0]


def _perturbation(gradient, epsilon):
    """``epsilon * g / (||g|| + 1e-8)`` of the global batch's dense gradient
    (zero when ``g`` is not finite, e.g. an fp16 overflow)."""
    gradient = tf.cast(tf.convert_to_tensor(gradient), tf.float32)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        gradient = ctx.all_reduce(tf.distribute.ReduceOp.SUM, gradient)
    norm = tf.norm(gradient)
    delta = epsilon * gradient / (norm + 1e-8)
    return tf.where(tf.math.is_finite(norm), delta, tf.zeros_like(delta))


def _add(variable, delta):
    """``variable += delta`` from a replica function (or outside one)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return variable.assign_add(delta)

    def merge(strategy, value):
        return strategy.extended.update(
            variable, lambda v, d: v.assign_add(d), args=(value,),
            group=False)
    return ctx.merge_call(merge, args=(delta,))


def _penalty(gradient, replicas):
    """Squared norm of the looked-up rows' gradient (bert4keras's
    ``.values``), of the replica's own batch mean."""
    if isinstance(gradient, tf.IndexedSlices):
        gradient = gradient.values
    gradient = tf.cast(gradient, tf.float32) * replicas
    return tf.reduce_sum(tf.square(gradient)) / replicas


def _replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def _check(epsilon, embedding):
    epsilon = float(epsilon)
    if not epsilon >= 0 or epsilon == float('inf'):
        raise ValueError('epsilon must be a finite number >= 0, got %r'
                         % (epsilon,))
    if embedding.dtype.base_dtype != tf.float32:
        raise ValueError('the embedding matrix %s must be float32, got %s'
                         % (embedding.name, embedding.dtype))
    return epsilon


# -- Keras models (model.fit) ---------------------------------------------

def _loss_metric_variables(model, y_pred):
    """The variables of the compiled loss's metrics (built if needed), so a
    loss computed only for the perturbation leaves them as they were."""
    container = getattr(model, 'compiled_loss', None)
    if container is None:
        return []
    if not container._built:
        container.build(y_pred)
    return [v for m in container.metrics for v in m.variables]


def _quiet_loss(model, x, y, sample_weight):
    """The compiled loss of one forward pass, leaving the loss metrics
    unchanged (the ordinary step that follows updates them)."""
    y_pred = model(x, training=True)
    variables = _loss_metric_variables(model, y_pred)
    saved = [tf.identity(v) for v in variables]
    with tf.control_dependencies(saved):
        loss = model.compute_loss(x, y, y_pred, sample_weight)
    with tf.control_dependencies([loss]):
        for v, value in zip(variables, saved):
            v.assign(value)
    return loss


def _fgm_train_step(embedding, epsilon, train_step):
    def step(model, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss = _quiet_loss(model, x, y, sample_weight)
            scaled = scale_loss(model.optimizer, loss)
        gradient = _unscaled(model.optimizer, tape.gradient(scaled, embedding))
        delta = _perturbation(gradient, epsilon)
        _add(embedding, delta)
        logs = train_step(data)
        _add(embedding, -delta)
        return logs
    return step


def _gp_train_step(embedding, epsilon):
    def step(model, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x, y, y_pred, sample_weight)
                scaled = scale_loss(model.optimizer, loss)
            gradient = _unscaled(model.optimizer,
                                 inner.gradient(scaled, embedding))
            total = loss + 0.5 * epsilon * _penalty(gradient, _replicas())
        model._validate_target_and_loss(y, loss)
        model.optimizer.minimize(total, model.trainable_variables, tape=tape)
        return model.compute_metrics(x, y, y_pred, sample_weight)
    return step


def _swap_train_step(model, step):
    if getattr(model, 'optimizer', None) is None:
        raise ValueError('compile model %r before adding adversarial '
                         'training or a gradient penalty' % model.name)
    model.train_step = types.MethodType(step, model)
    model.train_function = None     # make_train_function traces the new step
    return model


# -- the Trainer ------------------------------------------------------------

def _is_trainer(obj):
    return hasattr(obj, '_replica_loss') and hasattr(obj, '_apply_step')


def _fgm_trainer(trainer, embedding, epsilon):
    apply_step = trainer._apply_step

    def step(grads_fn, x, y, global_batch):
        with tf.GradientTape() as tape:
            loss = trainer._replica_loss(x, y, global_batch)
            scaled = scale_loss(trainer.optimizer, loss)
        gradient = _unscaled(trainer.optimizer,
                             tape.gradient(scaled, embedding))
        delta = _perturbation(gradient, epsilon)
        _add(embedding, delta)
        out = apply_step(grads_fn, x, y, global_batch)
        _add(embedding, -delta)
        return out
    trainer._apply_step = step
    trainer._train_step = None
    return trainer


def _gp_trainer(trainer, embedding, epsilon):
    replica_loss = trainer._replica_loss

    def loss_fn(x, y, global_batch):
        with tf.GradientTape() as inner:
            loss = replica_loss(x, y, global_batch)
            scaled = scale_loss(trainer.optimizer, loss)
        gradient = _unscaled(trainer.optimizer,
                             inner.gradient(scaled, embedding))
        return loss + 0.5 * epsilon * _penalty(gradient, _replicas())
    trainer._replica_loss = loss_fn
    trainer._train_step = None
    return trainer


# -- the public entry points ------------------------------------------------

def adversarial_training(model, embedding_name='Embedding-Token', epsilon=1):
    """Add FGM adversarial training to a compiled Keras model or a Trainer
    (bert4keras's ``adversarial_training``; returns ``model``).

    Each step: gradient ``g`` of the loss with respect to the embedding
    matrix, ``delta = epsilon * g / (||g|| + 1e-8)`` added to the matrix, the
    ordinary training step, ``delta`` subtracted again.

    Example::

        model.compile(loss='sparse_categorical_crossentropy',
                      optimizer=Adam(2e-5))
        adversarial_training(model, 'Embedding-Token', 0.5)
        model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator))

        trainer = Trainer(model, loss, opt, dataset_fn, 1000, 'runs/x')
        adversarial_training(trainer, 'Embedding-Token', 0.5).train()
    """
    if _is_trainer(model):
        embedding = embedding_matrix(model.model, embedding_name)
        return _fgm_trainer(model, embedding, _check(epsilon, embedding))
    embedding = embedding_matrix(model, embedding_name)
    step = _fgm_train_step(embedding, _check(epsilon, embedding),
                           model.train_step)
    return _swap_train_step(model, step)


def gradient_penalty(model, embedding_name='Embedding-Token', epsilon=1):
    """Train a compiled Keras model or a Trainer on ``loss + 0.5 * epsilon *
    ||gradient of the loss w.r.t. the looked-up embeddings||^2``
    (bert4keras's ``loss_with_gradient_penalty``; returns ``model``).

    Example::

        model.compile(loss=sparse_categorical_crossentropy, optimizer=Adam(2e-5))
        gradient_penalty(model, 'Embedding-Token', epsilon=1)
        model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator))
    """
    if _is_trainer(model):
        embedding = embedding_matrix(model.model, embedding_name)
        return _gp_trainer(model, embedding, _check(epsilon, embedding))
    embedding = embedding_matrix(model, embedding_name)
    return _swap_train_step(model, _gp_train_step(
        embedding, _check(epsilon, embedding)))
