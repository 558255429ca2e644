"""Resumable training loop, strategies and the flags shared by the scripts.

A run is ``Trainer(...).train()``: every ``save_every`` steps (and at the end)
it saves model, optimizer, step, data position and the layers' RNG states with
``tf.train.CheckpointManager`` in ``workdir``; started again with the same
command it continues from the last checkpoint, so a killed run ends with the
same weights as an uninterrupted one (same seed, ``enable_op_determinism``).

Batch sizes are GLOBAL: ``dataset_fn`` yields whole batches, each replica of
the strategy gets its consecutive 1/R of the rows, and the loss is the mean
over the global batch, so results do not depend on the number of replicas.

Example (a script)::

    parser = argparse.ArgumentParser()
    add_training_args(parser)
    args = parser.parse_args()
    setup = setup_from_args(args)            # precision, seed, strategy
    with setup.strategy.scope():
        model = gau_keras.build_transformer_model(cfg, with_mlm='linear')
        opt = optimizer_from_args(args)
    Trainer(model, loss, opt, dataset_fn, args.steps, args.workdir,
            save_every=args.save_every, strategy=setup.strategy,
            jit_compile=setup.jit_compile).train()
"""
import argparse
import collections
import json
import os
import shutil

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from gau_keras import optimizers as gk_optimizers
from gau_keras import precision as gk_precision

STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

def use_logical_cpus(n):
    """Split the CPU into ``n`` logical devices (before TF runs any op).

    Lets ``MirroredStrategy`` be tried on a CPU-only machine.  Example::

        use_logical_cpus(2); strategy = get_strategy('mirrored')
    """
    cpu = tf.config.list_physical_devices('CPU')[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(n))
    except RuntimeError as e:
        if len(tf.config.list_logical_devices('CPU')) != n:
            raise RuntimeError('use_logical_cpus(%d) must run before '
                               'TensorFlow initialises its devices: %s'
                               % (n, e))


def get_strategy(name='default', tpu=None):
    """A ``tf.distribute`` strategy by name: default, mirrored, multi_worker,
    tpu.

    'mirrored' uses every local GPU (or every logical CPU when there is no
    GPU); 'multi_worker' needs the ``TF_CONFIG`` environment variable; 'tpu'
    connects to ``tpu`` (name or grpc address; '' = local / Colab).
    Example::

        strategy = get_strategy('mirrored')
        with strategy.scope(): model = ...
    """
    if name in (None, 'default'):
        return tf.distribute.get_strategy()
    if name == 'mirrored':
        gpus = tf.config.list_logical_devices('GPU')
        devices = gpus or tf.config.list_logical_devices('CPU')
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == 'multi_worker':
        if 'TF_CONFIG' not in os.environ:
            raise ValueError("strategy 'multi_worker' needs the TF_CONFIG "
                             'environment variable (cluster and task of this '
                             'worker); it is not set')
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == 'tpu':
        return _tpu_strategy(tpu)
    raise ValueError('strategy must be one of %s, got %r' % (STRATEGIES, name))


def _tpu_strategy(tpu):
    if not tpu and not tf.config.list_logical_devices('TPU') and \
            not os.environ.get('TPU_NAME'):
        raise RuntimeError("strategy 'tpu': no TPU found (no local TPU "
                           'device, no --tpu name, no TPU_NAME variable)')
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise RuntimeError("strategy 'tpu': cannot use TPU %r: %s"
                           % (tpu, e)) from e
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True for the worker that writes checkpoints, logs and prints."""
    resolver = getattr(strategy, 'cluster_resolver', None)
    if resolver is None or not resolver.task_type:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if 'chief' in cluster:
        return resolver.task_type == 'chief'
    return resolver.task_type == 'worker' and resolver.task_id == 0


# --------------------------------------------------------------------------
# Flags shared by the scripts
# --------------------------------------------------------------------------

def add_training_args(parser):
    """Add the training-stack flags to an ``argparse`` parser; returns it.

    --mixed_precision {fp32,fp16,bf16} --xla --strategy {...} --tpu
    --seed --deterministic --optimizer --learning_rate --weight_decay
    --lr_schedule '{"1000": 1}' --grad_accum_steps --batch_size (global)
    --steps --save_every --workdir.  Example::

        parser = add_training_args(argparse.ArgumentParser())
    """
    g = parser.add_argument_group('training stack (gau_keras.training)')
    g.add_argument('--mixed_precision', default='fp32',
                   choices=['fp32', 'fp16', 'bf16'])
    g.add_argument('--xla', action='store_true',
                   help='jit_compile the forward and backward pass')
    g.add_argument('--strategy', default='default', choices=STRATEGIES)
    g.add_argument('--tpu', default=None, help="TPU name for --strategy tpu")
    g.add_argument('--seed', type=int, default=42)
    g.add_argument('--deterministic', action='store_true',
                   help='tf.config.experimental.enable_op_determinism()')
    g.add_argument('--optimizer', default='adamw',
                   choices=sorted(gk_optimizers.OPTIMIZERS))
    g.add_argument('--learning_rate', type=float, default=1e-4)
    g.add_argument('--weight_decay', type=float, default=0.01)
    g.add_argument('--lr_schedule', type=_json_schedule, default=None,
                   help='bert4keras schedule as JSON, e.g. \'{"1000": 1}\'')
    g.add_argument('--grad_accum_steps', type=int, default=1)
    g.add_argument('--batch_size', type=int, default=32,
                   help='GLOBAL batch size (all replicas together)')
    g.add_argument('--steps', type=int, default=1000)
    g.add_argument('--save_every', type=int, default=500)
    g.add_argument('--workdir', default='runs/default')
    return parser


def _json_schedule(text):
    try:
        schedule = {int(k): float(v) for k, v in json.loads(text).items()}
        gk_optimizers.check_schedule(schedule)
    except (ValueError, AttributeError, TypeError) as e:
        raise argparse.ArgumentTypeError('--lr_schedule %r: %s' % (text, e))
    return schedule


Setup = collections.namedtuple('Setup', 'strategy jit_compile precision')


def set_seed(seed, deterministic=True):
    """Seed Python, NumPy and TF; RNG states become checkpointable.

    Call before building the model.  Layers draw dropout masks from their
    own ``tf.random.Generator`` (saved with the model), and
    ``deterministic`` turns on ``enable_op_determinism``.  Example::

        set_seed(42)
    """
    tf.keras.backend.experimental.enable_tf_random_generator()
    tf.keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def setup_from_args(args):
    """Apply precision and seed; return ``Setup(strategy, jit_compile,
    precision)``.  Example::

        setup = setup_from_args(parser.parse_args())
    """
    for name in ('mixed_precision', 'xla', 'strategy', 'seed'):
        if not hasattr(args, name):
            raise ValueError('setup_from_args: args has no %r; call '
                             'add_training_args(parser) first' % name)
    strategy = get_strategy(args.strategy, getattr(args, 'tpu', None))
    policy = gk_precision.set_precision(args.mixed_precision)
    set_seed(args.seed, getattr(args, 'deterministic', False))
    return Setup(strategy, bool(args.xla), policy)


def optimizer_from_args(args):
    """``build_optimizer`` from the flags (call inside strategy.scope())."""
    return gk_optimizers.build_optimizer(
        args.optimizer, args.learning_rate, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, grad_accum_steps=args.grad_accum_steps)


# --------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------

def layer_random_generators(model):
    """{layer path: tf.random.Generator} of the model's random layers.

    Keras draws dropout masks from a generator per layer (after
    ``set_seed``, which enables ``tf.random.Generator``); these are created
    lazily and a functional model does not checkpoint weightless layers, so
    the trainer creates them now and saves their states itself.  Ops such as
    ``tf.nn.dropout`` that use the global seed cannot be restored.
    """
    generators = {}
    for i, layer in enumerate(model.submodules):
        rng = getattr(layer, '_random_generator', None)
        if rng is None or not hasattr(rng, '_maybe_init'):
            continue
        rng._maybe_init()
        if getattr(rng, '_generator', None) is not None:
            generators['%d_%s' % (i, layer.name)] = rng._generator
    return generators


def _require(ok, message):
    if not ok:
        raise ValueError(message)


class Trainer(object):
    """Resumable custom training loop (any strategy, precision, XLA).

    Arguments:
        model: a built Keras model, created inside ``strategy.scope()``.
        loss: ``loss(y_true, y_pred)`` → per-example losses (leading axis =
            batch; other axes are averaged), e.g.
            ``tf.keras.losses.SparseCategoricalCrossentropy(True,
            reduction='none')``.  ``y_pred`` is cast to float32 first.
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
        strategy: a ``tf.distribute`` strategy (default: the current one).
        jit_compile: XLA-compile forward + backward.
        callbacks: functions ``f(step, loss)`` called after each step.

    Example::

        trainer = Trainer(model, loss, AdamW(1e-4), dataset_fn, 10000,
                          'runs/mlm', save_every=1000)
        trainer.train()     # resumes from runs/mlm/ckpt if it exists
    """

    def __init__(self, model, loss, optimizer, dataset_fn, total_steps,
                 workdir, save_every=100, strategy=None, jit_compile=False,
                 log_every=10, keep=3, verbose=1, callbacks=()):
        self.strategy = strategy or tf.distribute.get_strategy()
        self._check_args(model, loss, optimizer, dataset_fn, total_steps,
                         workdir, save_every)
        self.model, self.loss_fn, self.dataset_fn = model, loss, dataset_fn
        self.total_steps, self.save_every = int(total_steps), int(save_every)
        self.jit_compile, self.log_every = bool(jit_compile), int(log_every)
        self.verbose, self.callbacks = verbose, list(callbacks)
        self.chief = is_chief(self.strategy)
        with self.strategy.scope():
            self.optimizer = gk_precision.wrap_optimizer(optimizer)
            self.optimizer.build(model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.workdir = str(workdir)
        self._setup_checkpoint(keep)
        self._train_step = None

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

    def _setup_checkpoint(self, keep):
        with self.strategy.scope():
            self.rng = layer_random_generators(self.model)
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step,
            position=self.position, rng=self.rng)
        directory = os.path.join(self.workdir, 'ckpt')
        if not self.chief:  # every worker saves; only the chief keeps it
            resolver = self.strategy.cluster_resolver
            directory = os.path.join(self.workdir, 'tmp_worker_%s_%s' % (
                resolver.task_type, resolver.task_id))
        self._tmp_dir = None if self.chief else directory
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=keep)

    def restore(self):
        """Restore the latest checkpoint of ``workdir`` if any; return step."""
        latest = tf.train.latest_checkpoint(
            os.path.join(self.workdir, 'ckpt'))
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return int(self.step.numpy())

    # -- one step ----------------------------------------------------------

    def _replica_grads(self, x, y, global_batch):
        optimizer = self.optimizer
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = tf.nest.map_structure(
                lambda t: tf.cast(t, tf.float32), self.model(x, training=True))
            per_example = tf.cast(self.loss_fn(y, y_pred), tf.float32)
            rank = per_example.shape.rank
            if rank and rank > 1:
                per_example = tf.reduce_mean(per_example, list(range(1, rank)))
            loss = tf.reduce_sum(per_example) / global_batch
            scaled = loss
            if hasattr(optimizer, 'get_scaled_loss'):
                scaled = optimizer.get_scaled_loss(loss)
        grads = tape.gradient(scaled, variables)
        if hasattr(optimizer, 'get_unscaled_gradients'):
            grads = optimizer.get_unscaled_gradients(grads)
        return loss, grads

    def _build_train_step(self):
        grads_fn = self._replica_grads
        if self.jit_compile:
            grads_fn = tf.function(grads_fn, jit_compile=True)

        def replica_step(x, y, global_batch):
            loss, grads = grads_fn(x, y, global_batch)
            self.optimizer.apply_gradients(
                zip(grads, self.model.trainable_variables))
            return loss

        @tf.function
        def train_step(x, y, global_batch):
            losses = self.strategy.run(replica_step,
                                       args=(x, y, global_batch))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses,
                                        axis=None)
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
        start = self.restore()
        if start and self.chief and self.verbose:
            print('resuming from step %d of %d (%s)' % (
                start, self.total_steps, self.manager.latest_checkpoint))
        if start >= self.total_steps:
            return None
        writer = tf.summary.create_file_writer(
            os.path.join(self.workdir, 'logs')) if self.chief \
            else tf.summary.create_noop_writer()
        bar = tf.keras.utils.Progbar(self.total_steps, verbose=self.verbose
                                     if self.chief else 0)
        bar.update(start)
        batches = iter(self.dataset_fn(int(self.position.numpy())))
        loss = None
        with writer.as_default():
            for step in range(start, self.total_steps):
                loss = self._one_step(step, batches)
                bar.update(step + 1, [('loss', loss)])
                if (step + 1) % self.log_every == 0:
                    self._log(step + 1, loss)
                if (step + 1) % self.save_every == 0 or \
                        step + 1 == self.total_steps:
                    self.manager.save(checkpoint_number=step + 1)
            writer.flush()
        if self._tmp_dir:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
        return loss

    def _one_step(self, step, batches):
        try:
            batch = next(batches)
        except StopIteration:
            raise ValueError('dataset_fn ran out of batches at step %d of %d'
                             % (step, self.total_steps)) from None
        inputs, size = self._distribute(batch)
        if self._train_step is None:
            self._train_step = self._build_train_step()
        loss = float(self._train_step(*inputs, tf.constant(size, tf.float32)))
        if loss != loss:
            raise FloatingPointError('loss is NaN at step %d' % step)
        self.step.assign(step + 1)
        self.position.assign(step + 1)
        for callback in self.callbacks:
            callback(step + 1, loss)
        return loss

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
