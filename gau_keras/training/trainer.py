"""The resumable training loop: ``Trainer`` and ``train``.

Every ``save_every`` steps (and at the end) the Trainer checkpoints the run
in ``workdir/ckpt`` (see :mod:`gau_keras.training.resume`); started again
with the same arguments it continues from the last checkpoint.  Batches are
GLOBAL: each replica of the strategy gets its consecutive 1/R of the rows
and the loss is reduced over the whole batch.

Example::

    Trainer(model, loss, opt, dataset_fn, 1000, 'runs/x',
            save_every=500).train()
"""
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from gau_keras import precision as gk_precision
from gau_keras.progress import StepProgress
from gau_keras.training.resume import RunCheckpoints, batch_digest
from gau_keras.training.strategies import is_chief


def _require(ok, message):
    if not ok:
        raise ValueError(message)


#: Reductions of a ``tf.keras.losses.Loss`` the Trainer understands.
MEAN_REDUCTIONS = ('none', 'auto', 'sum_over_batch_size')
SUM_REDUCTIONS = ('sum',)

#: Under fp16, this many loss-scale skips in a row stop the run.
MAX_SKIPPED_STEPS = 50


def learning_rate_value(optimizer):
    """The optimizer's base learning rate as a float (a schedule's
    ``learning_rate`` or its value at step 0).  Example::

        learning_rate_value(AdamW(1e-4))   # -> 1e-4
    """
    optimizer = gk_precision.unwrap_optimizer(optimizer)
    lr = getattr(optimizer, '_learning_rate', None)
    if lr is None:
        lr = optimizer.learning_rate
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        base = getattr(lr, 'learning_rate', None)
        lr = base if isinstance(base, (int, float)) else lr(0)
    return float(tf.convert_to_tensor(lr))


def loss_reduction(loss):
    """'mean' or 'sum': how the Trainer reduces ``loss`` over the batch.

    Plain functions and Keras losses with reduction 'none', 'auto' or
    'sum_over_batch_size' give the mean over the global batch (non-batch
    axes averaged); reduction 'sum' gives the sum over all elements of the
    global batch.  Example::

        loss_reduction(tf.keras.losses.MeanSquaredError())   # -> 'mean'
    """
    reduction = getattr(loss, 'reduction', None)
    if not isinstance(loss, tf.keras.losses.Loss) or reduction is None:
        return 'mean'
    reduction = str(reduction).lower()
    if reduction in MEAN_REDUCTIONS:
        return 'mean'
    if reduction in SUM_REDUCTIONS:
        return 'sum'
    raise ValueError('loss %r has reduction %r; the Trainer supports %s'
                     % (loss, reduction, MEAN_REDUCTIONS + SUM_REDUCTIONS))


def elementwise_loss(loss, y_true, y_pred):
    """Per-element losses (leading axis = batch), before any reduction.

    For a ``tf.keras.losses.Loss`` this is its ``call`` (so its own
    reduction is never applied: the Trainer reduces over the GLOBAL batch).
    """
    if isinstance(loss, tf.keras.losses.Loss):
        values = loss.call(y_true, y_pred)
    else:
        values = loss(y_true, y_pred)
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 0:
        raise ValueError(
            'loss %r returned a scalar; the Trainer needs per-example losses '
            '(leading axis = batch): pass a tf.keras.losses.Loss or a '
            'function without reduction' % (loss,))
    return tf.cast(values, tf.float32)


def _finite(tensors):
    """True iff every float tensor is finite (one scalar)."""
    tensors = [t.values if isinstance(t, tf.IndexedSlices) else t
               for t in tensors if t is not None]
    checks = [tf.reduce_all(tf.math.is_finite(t)) for t in tensors
              if t.dtype.is_floating]
    return tf.reduce_all(checks) if checks else tf.constant(True)


class Trainer(object):
    """Resumable custom training loop (any strategy, precision, XLA).

    Arguments:
        model: a built Keras model, created inside ``strategy.scope()``.
        loss: ``loss(y_true, y_pred)`` → per-example losses (leading axis =
            batch; other axes are averaged), or a ``tf.keras.losses.Loss``
            with any reduction: 'none' / 'auto' / 'sum_over_batch_size'
            train on the mean over the GLOBAL batch, 'sum' on the sum (see
            ``loss_reduction``).  ``y_pred`` is cast to float32 first.
        optimizer: a tf-keras optimizer made inside ``strategy.scope()``;
            under fp16 it is wrapped in a ``LossScaleOptimizer``.
        dataset_fn: ``dataset_fn(position)`` → iterable of GLOBAL batches
            ``(x, y)`` starting at batch number ``position`` (the number of
            batches already consumed); x is what the model takes.  Under
            multi-worker training every worker runs the same ``dataset_fn``
            and feeds its own replicas' slices of each global batch.
        total_steps: number of batches (= optimizer calls; with gradient
            accumulation k of them make one update).
        workdir: checkpoints in ``workdir/ckpt``, TensorBoard logs in
            ``workdir/logs``.
        save_every: checkpoint period in steps (also saved at the end).
        save_at: optional ``save_at(step) -> bool``: further steps to
            checkpoint at (e.g. epoch ends, whatever ``save_every`` is).
        strategy: a ``tf.distribute`` strategy (default: the current one).
        jit_compile: XLA-compile forward + backward.
        verbose: 0 prints nothing; otherwise a progress bar on a terminal,
            and one line every ``progress_every`` steps (default
            ``log_every``) and at the end when stdout is not a terminal
            (a log file gets no ``\\r`` updates; ``gau_keras.progress``).
        callbacks: functions ``f(step, loss)`` called after each step,
            after its checkpoint when one is due (so a callback that fails,
            e.g. an evaluation, never loses the step it follows).

    Guarantees: no checkpoint holds non-finite weights or optimizer state (a
    non-finite loss or gradient stops the run with FloatingPointError naming
    the step; fp16 loss-scale skips are normal); resuming takes the newest
    checkpoint that reads completely and says which newer ones it skipped
    and why; a workdir with checkpoints is never restarted from step 0; a
    changed global batch size is refused; one trace serves every sequence
    length.

    Example::

        trainer = Trainer(model, loss, AdamW(1e-4), dataset_fn, 10000,
                          'runs/mlm', save_every=1000)
        trainer.train()     # resumes from runs/mlm/ckpt if it exists
    """

    def __init__(self, model, loss, optimizer, dataset_fn, total_steps,
                 workdir, save_every=100, strategy=None, jit_compile=False,
                 log_every=10, keep=3, verbose=1, callbacks=(), save_at=None,
                 progress_every=None):
        self.strategy = strategy or tf.distribute.get_strategy()
        self._check_args(model, loss, optimizer, dataset_fn, total_steps,
                         workdir, save_every)
        self.model, self.loss_fn, self.dataset_fn = model, loss, dataset_fn
        self.reduction = loss_reduction(loss)
        self.total_steps, self.save_every = int(total_steps), int(save_every)
        self.jit_compile, self.log_every = bool(jit_compile), int(log_every)
        self.verbose, self.callbacks = verbose, list(callbacks)
        self.save_at = save_at
        self.progress_every = progress_every or self.log_every
        self._restored = None       # the step restore() returned
        self.chief = is_chief(self.strategy)
        with self.strategy.scope():
            self.optimizer = gk_precision.wrap_optimizer(optimizer)
            self.optimizer.build(model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.workdir = str(workdir)
        self.checkpoints = RunCheckpoints(
            self.workdir, model, self.optimizer, self.step, self.position,
            self.strategy, keep=keep, say=self._say)
        self._train_step = None
        self._last_batch = None
        self._last_loss = None
        self._skipped = 0
        self.skipped_steps = 0
        self._verify_batch_size = False

    def _check_args(self, model, loss, optimizer, dataset_fn, total_steps,
                    workdir, save_every):
        _require(isinstance(model, tf.keras.Model),
                 'model must be a tf.keras Model, got %r' % (model,))
        _require(model.built and model.trainable_variables,
                 'model %r has no trainable variables (not built?)'
                 % model.name)
        _require(callable(loss), 'loss must be callable, got %r' % (loss,))
        _require(isinstance(optimizer, tf.keras.optimizers.Optimizer),
                 'optimizer must be a tf.keras (tf-keras) optimizer, got %r'
                 % (optimizer,))
        try:
            lr = learning_rate_value(optimizer)
        except (TypeError, ValueError, AttributeError):
            lr = 0.0    # a learning rate we cannot evaluate: not checked
        _require(lr >= 0 and lr != float('inf'),
                 'the learning rate of optimizer %s must be a finite number '
                 '>= 0, got %r' % (type(optimizer).__name__, lr))
        _require(callable(dataset_fn),
                 'dataset_fn must be callable (position -> batches), got %r'
                 % (dataset_fn,))
        for name, value in (('total_steps', total_steps),
                            ('save_every', save_every)):
            _require(isinstance(value, int) and value > 0,
                     '%s must be a positive integer, got %r' % (name, value))
        _require(isinstance(workdir, (str, os.PathLike)) and str(workdir),
                 'workdir must be a path, got %r' % (workdir,))
        for v in model.trainable_variables:
            _require(self.strategy.extended.variable_created_in_scope(v),
                     'model variable %s was not created inside the '
                     'strategy.scope() of %s: build the model under it'
                     % (v.name, type(self.strategy).__name__))

    @property
    def manager(self):
        """The ``tf.train.CheckpointManager`` of ``workdir/ckpt``."""
        return self.checkpoints.manager

    def _say(self, message):
        if self.chief and self.verbose:
            print(message, flush=True)

    def restore(self):
        """Restore the newest complete checkpoint of ``workdir``; return its
        step (0 when ``workdir/ckpt`` holds no checkpoint at all); see
        ``RunCheckpoints.restore``.  A ``train()`` that follows continues
        from that step without restoring again (so the caller can act on the
        restored state first, e.g. evaluate it)."""
        self._restored = self.checkpoints.restore()
        return self._restored

    # -- one step ----------------------------------------------------------

    def _replica_loss(self, x, y, global_batch):
        """This replica's share of the global batch's loss (forward pass).
        ``gau_keras.training.adversarial`` wraps it per instance."""
        y_pred = tf.nest.map_structure(
            lambda t: tf.cast(t, tf.float32), self.model(x, training=True))
        values = elementwise_loss(self.loss_fn, y, y_pred)
        rank = values.shape.rank
        if self.reduction == 'sum':
            return tf.reduce_sum(values)
        if rank and rank > 1:
            values = tf.reduce_mean(values, list(range(1, rank)))
        return tf.reduce_sum(values) / global_batch

    def _replica_grads(self, x, y, global_batch):
        optimizer = self.optimizer
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self._replica_loss(x, y, global_batch)
            scaled = gk_precision.scale_loss(optimizer, loss)
        grads = gk_precision.unscale_gradients(
            optimizer, tape.gradient(scaled, variables))
        return loss, grads, _finite(grads)

    def _apply_step(self, grads_fn, x, y, global_batch):
        """One replica's update: gradients, then the optimizer step; returns
        (loss, 1.0 if a gradient was not finite).
        ``gau_keras.training.adversarial`` wraps it per instance."""
        loss, grads, finite = grads_fn(x, y, global_batch)
        self.optimizer.apply_gradients(
            zip(grads, self.model.trainable_variables))
        return loss, 1.0 - tf.cast(finite, tf.float32)

    def _build_train_step(self):
        grads_fn = self._replica_grads
        if self.jit_compile:
            grads_fn = tf.function(grads_fn, jit_compile=True,
                                   reduce_retracing=True)

        def replica_step(x, y, global_batch):
            return self._apply_step(grads_fn, x, y, global_batch)

        # reduce_retracing: after a second sequence length the step is
        # traced once with that axis unknown, and serves every length
        @tf.function(reduce_retracing=True)
        def train_step(x, y, global_batch):
            losses, bad = self.strategy.run(replica_step,
                                            args=(x, y, global_batch))
            reduce = tf.distribute.ReduceOp.SUM
            return (self.strategy.reduce(reduce, losses, axis=None),
                    self.strategy.reduce(reduce, bad, axis=None))
        return train_step

    def _distribute(self, batch):
        """Split a global batch (x, y) into per-replica slices."""
        _require(isinstance(batch, (tuple, list)) and len(batch) == 2,
                 'dataset_fn must yield (x, y) pairs, got %r'
                 % (type(batch),))
        batch = tf.nest.map_structure(tf.convert_to_tensor, tuple(batch))
        size = int(tf.nest.flatten(batch)[0].shape[0])
        replicas = self.strategy.num_replicas_in_sync
        _require(size % replicas == 0,
                 'global batch size %d is not divisible by the %d replicas '
                 'of the strategy' % (size, replicas))
        if replicas == 1:
            return batch, size
        per = size // replicas

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return tf.nest.map_structure(lambda t: t[i * per:(i + 1) * per],
                                         batch)
        return (self.strategy.experimental_distribute_values_from_function(
            value_fn), size)

    # -- the loop ------------------------------------------------------------

    def train(self):
        """Run (or resume) up to ``total_steps``; return the last loss."""
        start = self._restored
        if start is None:       # restore() was not called before train()
            start = self.restore()
        self._restored = None
        if start:
            self._say('resuming from step %d of %d (%s)' % (
                start, self.total_steps, self.checkpoints.latest))
            self._verify_batch_size = True
        if start >= self.total_steps:
            return None
        writer = tf.summary.create_file_writer(
            os.path.join(self.workdir, 'logs')) if self.chief \
            else tf.summary.create_noop_writer()
        bar = StepProgress(self.total_steps, every=self.progress_every,
                           verbose=self.verbose if self.chief else 0)
        bar.start_at(start)
        batches = iter(self.dataset_fn(int(self.position.numpy())))
        loss = None
        with writer.as_default():
            for step in range(start, self.total_steps):
                loss = self._one_step(step, batches)
                bar.update(step + 1, [('loss', loss)])
                if (step + 1) % self.log_every == 0:
                    self._log(step + 1, loss)
                if self._due(step + 1):
                    self.save(step + 1)
                for callback in self.callbacks:
                    callback(step + 1, loss)
            writer.flush()
        self.checkpoints.remove_worker_copy()
        return loss

    def save(self, step):
        """Checkpoint now as ``ckpt-<step>`` after checking that every weight
        and optimizer variable is finite; return the path."""
        variables = list(self.model.weights) + list(
            gk_precision.unwrap_optimizer(self.optimizer).variables())
        if not bool(_finite(variables)):
            bad = [v.name for v in variables if v.dtype.is_floating and
                   not bool(_finite([v]))]
            raise FloatingPointError(
                'step %d: non-finite values in %s; not saved (the last '
                'checkpoint %s holds finite ones)' % (
                    step, ', '.join(bad[:5]), self.checkpoints.latest))
        info = None
        if self._last_batch is not None:
            rows, batch = self._last_batch
            info = {'precision': gk_precision.current_precision(),
                    'batch_rows': rows, 'batch_digest': batch_digest(batch),
                    'replicas': self.strategy.num_replicas_in_sync,
                    'reduction': self.reduction, 'loss': self._last_loss}
        return self.checkpoints.save(step, info)

    def _one_step(self, step, batches):
        try:
            batch = next(batches)
        except StopIteration:
            raise ValueError('dataset_fn ran out of batches at step %d of %d'
                             % (step, self.total_steps)) from None
        inputs, size = self._distribute(batch)
        if self._verify_batch_size:
            self._verify_batch_size = False
            saved = self.checkpoints.saved
            if size != saved.get('batch_rows', size):   # variable, or changed?
                self.checkpoints.check_batches(self.dataset_fn,
                                               int(self.position.numpy()))
        if self._train_step is None:
            self._train_step = self._build_train_step()
        loss, bad = self._train_step(*inputs, tf.constant(size, tf.float32))
        loss, bad = float(loss), float(bad) > 0
        self._check_finite(step + 1, loss, bad)
        self._last_batch = (size, batch)
        self._last_loss = loss
        self.step.assign(step + 1)
        self.position.assign(step + 1)
        return loss

    def _due(self, step):
        """True if ``step`` ends with a checkpoint."""
        return (step % self.save_every == 0 or step == self.total_steps or
                bool(self.save_at and self.save_at(step)))

    def _check_finite(self, step, loss, bad_grads):
        """Stop on a non-finite loss or gradient (numbered from 1, as the
        checkpoints); under fp16 a loss-scale skip is normal."""
        if not np.isfinite(loss):
            raise FloatingPointError(
                'step %d: the loss is %r; stopping before it is saved (the '
                'last checkpoint %s holds finite weights)'
                % (step, loss, self.checkpoints.latest))
        if not bad_grads:
            self._skipped = 0
            return
        if hasattr(self.optimizer, 'get_unscaled_gradients'):
            self._skipped += 1
            self.skipped_steps += 1
            if self._skipped <= MAX_SKIPPED_STEPS:
                return      # fp16: LossScaleOptimizer skipped this update
            raise FloatingPointError(
                'step %d: %d fp16 steps in a row had non-finite gradients '
                '(loss scale %s); stopping' % (
                    step, self._skipped,
                    float(self.optimizer.loss_scale)))
        raise FloatingPointError(
            'step %d: non-finite gradient with a finite loss (%g); stopping '
            'before it is saved (the last checkpoint %s holds finite '
            'weights; to resume from an earlier one, delete the newer '
            'ckpt-N files)' % (step, loss, self.checkpoints.latest))

    def _log(self, step, loss):
        optimizer = gk_precision.unwrap_optimizer(self.optimizer)
        lr = optimizer.learning_rate
        if callable(lr) and not isinstance(lr, tf.Variable):
            lr = lr(optimizer.iterations)
        write_scalar('loss', loss, step)
        write_scalar('learning_rate', lr, step)


def write_scalar(name, value, step):
    """A TensorBoard scalar on the default writer (no tensorboard needed).

    Example::

        with tf.summary.create_file_writer('logs').as_default():
            write_scalar('loss', 0.5, step=1)
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = 'scalars'
    return tf.summary.write(name, tf.cast(value, tf.float32), step=step,
                            metadata=metadata)


def train(model, loss, optimizer, dataset_fn, total_steps, workdir,
          **kwargs):
    """``Trainer(...).train()`` in one call.  Example::

        train(model, loss, opt, lambda pos: batches_from(pos), 1000, 'runs/x')
    """
    return Trainer(model, loss, optimizer, dataset_fn, total_steps, workdir,
                   **kwargs).train()
