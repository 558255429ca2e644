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
import hashlib
import json
import os
import re
import shutil

import numpy as np
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
    g.add_argument('--learning_rate', type=_positive_float, default=1e-4)
    g.add_argument('--weight_decay', type=_non_negative_float, default=0.01)
    g.add_argument('--lr_schedule', type=_json_schedule, default=None,
                   help='bert4keras schedule as JSON, e.g. \'{"1000": 1}\'')
    g.add_argument('--grad_accum_steps', type=_positive_int, default=1)
    g.add_argument('--batch_size', type=_positive_int, default=32,
                   help='GLOBAL batch size (all replicas together)')
    g.add_argument('--steps', type=_positive_int, default=1000)
    g.add_argument('--save_every', type=_positive_int, default=500)
    g.add_argument('--workdir', default='runs/default')
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError('%r is not a positive integer'
                                         % (text,))
    return value


def _number(text, ok, what):
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not (value == value and ok(value) and value != float('inf')):
        raise argparse.ArgumentTypeError('%r is not a %s number'
                                         % (text, what))
    return value


def _positive_float(text):
    return _number(text, lambda v: v > 0, 'positive')


def _non_negative_float(text):
    return _number(text, lambda v: v >= 0, 'non-negative')


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
    for name in ('learning_rate', 'weight_decay'):
        value = getattr(args, name)
        if not (value >= 0 and value != float('inf')) or (
                name == 'learning_rate' and value == 0):
            raise ValueError('%s must be a %s number, got %r' % (
                name, 'positive' if name == 'learning_rate'
                else 'non-negative', value))
    return gk_optimizers.build_optimizer(
        args.optimizer, args.learning_rate, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, grad_accum_steps=args.grad_accum_steps)


# --------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------

def _layer_paths(module, prefix=''):
    """(path, layer) for every nested layer: 'Outer/inner', duplicates of a
    name under one parent numbered 'name#2'.  Independent of the layers
    that a precision policy adds (e.g. a float32 output cast)."""
    seen = collections.Counter()
    for child in module._flatten_layers(include_self=False, recursive=False):
        seen[child.name] += 1
        name = child.name if seen[child.name] == 1 else '%s#%d' % (
            child.name, seen[child.name])
        path = prefix + name
        yield path, child
        yield from _layer_paths(child, path + '/')


def layer_random_generators(model):
    """{layer path: tf.random.Generator} of the model's random layers.

    Keras draws dropout masks from a generator per layer (after
    ``set_seed``, which enables ``tf.random.Generator``); these are created
    lazily and a functional model does not checkpoint weightless layers, so
    the trainer creates them now and saves their states itself, keyed by the
    layer's path ('Transformer-0-GatedAttentionUnit/attention_dropout'), so
    the same model built under another precision policy matches.  Ops such
    as ``tf.nn.dropout`` that use the global seed cannot be restored.
    """
    generators = {}
    for path, layer in _layer_paths(model):
        rng = getattr(layer, '_random_generator', None)
        if rng is None or not hasattr(rng, '_maybe_init'):
            continue
        rng._maybe_init()
        if getattr(rng, '_generator', None) is not None:
            generators[path.replace('/', '.')] = rng._generator
    return generators


def legacy_random_generators(model):
    """The RNG keys of checkpoints written before the path keys ('<index in
    model.submodules>_<layer name>'); read only, to resume old workdirs."""
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


class CheckpointMismatchError(ValueError):
    """A workdir's checkpoint that cannot continue this run (another model,
    optimizer or batch size)."""


class NoUsableCheckpointError(RuntimeError):
    """The workdir holds checkpoints but none of them restores."""


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


def checkpoint_number(prefix):
    """N of '.../ckpt-N' (None for other names)."""
    tail = os.path.basename(str(prefix)).rsplit('-', 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def checkpoint_problem(prefix):
    """None if checkpoint ``prefix`` reads completely, else the reason.

    Checks that the index and data files exist and that every tensor reads
    (TensorFlow verifies each tensor's CRC32C), naming the file at fault.
    Example::

        checkpoint_problem('runs/x/ckpt/ckpt-40')   # -> None or a reason
    """
    index = prefix + '.index'
    if not tf.io.gfile.exists(index):
        return 'its index file %s is missing' % index
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        return 'its index %s is unreadable: %s' % (
            index, str(e).strip().splitlines()[0])
    data = sorted(tf.io.gfile.glob(prefix + '.data-*'))
    if not data:
        return 'its data file %s.data-* is missing' % prefix
    for name in reader.get_variable_to_shape_map():
        try:
            reader.get_tensor(name)
        except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
            return 'its data file %s is truncated or corrupt (%s: %s)' % (
                ', '.join(data), name, str(e).strip().splitlines()[0])
    return None


def find_checkpoints(directory, prefix='ckpt'):
    """Checkpoint prefixes ``directory/ckpt-N``, newest first: every N that
    has files or is named by the ``checkpoint`` state file (which may be
    unreadable or out of date).  Example::

        find_checkpoints('runs/x/ckpt')   # -> ['.../ckpt-40', '.../ckpt-30']
    """
    numbers = set()
    for path in tf.io.gfile.glob(os.path.join(directory, prefix + '-*.*')):
        stem, ext = os.path.basename(path).split('.', 1)
        if (ext == 'index' or ext.startswith('data-')) and \
                not ext.endswith('.skipped'):
            numbers.add(checkpoint_number(stem))
    state = _state_paths(directory)
    for path in state or ():
        n = checkpoint_number(path)
        if n is not None:
            numbers.add(n)
    numbers.discard(None)
    return [os.path.join(directory, '%s-%d' % (prefix, n))
            for n in sorted(numbers, reverse=True)]


def _state_paths(directory):
    """Paths named by ``directory/checkpoint``; None if it is unreadable."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError):
        return None
    if state is None:
        return None
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path:
        paths.append(state.model_checkpoint_path)
    return [p if os.path.isabs(p) else os.path.join(directory, p)
            for p in paths]


def _restore_error(checkpoint, prefix):
    """Restore; None if every object matched, else the assertion text."""
    try:
        checkpoint.restore(prefix).assert_existing_objects_matched()
    except AssertionError as e:
        return str(e)
    return None


def _only_loss_scale_unmatched(message):
    """True if an ``assert_existing_objects_matched`` message lists only the
    fp16 loss-scale variables (absent from an fp32/bf16 checkpoint)."""
    names = re.findall(r"<tf.Variable '([^']+)'", message)
    found = re.search(r'Found (\d+) Python objects', message)
    return bool(found and names and int(found.group(1)) == len(names) and
                set(names) <= {'current_loss_scale:0', 'good_steps:0'})


def _batch_digest(batch):
    digest = hashlib.sha1()
    for t in tf.nest.flatten(batch):
        array = np.asarray(t)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


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
        strategy: a ``tf.distribute`` strategy (default: the current one).
        jit_compile: XLA-compile forward + backward.
        callbacks: functions ``f(step, loss)`` called after each step.

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
                 log_every=10, keep=3, verbose=1, callbacks=()):
        self.strategy = strategy or tf.distribute.get_strategy()
        self._check_args(model, loss, optimizer, dataset_fn, total_steps,
                         workdir, save_every)
        self.model, self.loss_fn, self.dataset_fn = model, loss, dataset_fn
        self.reduction = loss_reduction(loss)
        self.total_steps, self.save_every = int(total_steps), int(save_every)
        self.jit_compile, self.log_every = bool(jit_compile), int(log_every)
        self.verbose, self.callbacks = verbose, list(callbacks)
        self.chief = is_chief(self.strategy)
        with self.strategy.scope():
            self.optimizer = gk_precision.wrap_optimizer(optimizer)
            self.optimizer.build(model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.run_info = tf.Variable('', dtype=tf.string, trainable=False)
        self.workdir = str(workdir)
        self._keep = keep
        self._setup_checkpoint()
        self._train_step = None
        self._last_batch = None
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

    def _setup_checkpoint(self):
        with self.strategy.scope():
            self.rng = layer_random_generators(self.model)
        parts = dict(model=self.model, step=self.step,
                     position=self.position, rng=self.rng)
        self.checkpoint = tf.train.Checkpoint(
            optimizer=self.optimizer, run_info=self.run_info, **parts)
        # restores across precisions: the inner optimizer, no loss scale
        self._plain_checkpoint = tf.train.Checkpoint(
            optimizer=gk_precision.unwrap_optimizer(self.optimizer), **parts)
        self.directory = os.path.join(self.workdir, 'ckpt')
        directory = self.directory
        if not self.chief:  # every worker saves; only the chief keeps it
            resolver = self.strategy.cluster_resolver
            directory = os.path.join(self.workdir, 'tmp_worker_%s_%s' % (
                resolver.task_type, resolver.task_id))
        self._tmp_dir = None if self.chief else directory
        self._save_dir = directory
        self._state_note = None
        try:
            self._new_manager()
        except (ValueError, tf.errors.OpError) as e:   # unreadable state
            state = os.path.join(directory, 'checkpoint')
            self._state_note = ('the checkpoint state file %s is unreadable '
                                '(%s); set aside as %s.unreadable' % (
                                    state, str(e).splitlines()[0], state))
            tf.io.gfile.rename(state, state + '.unreadable', overwrite=True)
            self._new_manager()

    def _new_manager(self):
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._save_dir, max_to_keep=self._keep)

    # -- restoring ---------------------------------------------------------

    def _say(self, message):
        if self.chief and self.verbose:
            print(message, flush=True)

    def restore(self):
        """Restore the newest complete checkpoint of ``workdir``; return its
        step (0 when ``workdir/ckpt`` holds no checkpoint at all).

        A newer checkpoint whose files are missing, truncated or corrupt (or
        an unreadable ``checkpoint`` state file) is skipped with a message
        naming the file; when checkpoints exist but none restores,
        NoUsableCheckpointError (never a silent restart from step 0).
        """
        if self._state_note:
            self._say(self._state_note)
        candidates = find_checkpoints(self.directory)
        if not candidates:
            self._no_checkpoints()
            return 0
        skipped = []
        for prefix in candidates:
            problem = checkpoint_problem(prefix)
            if problem is None:
                break
            skipped.append((prefix, problem))
        else:
            raise NoUsableCheckpointError(
                'workdir %s holds checkpoints but none restores:\n  %s\n'
                'Refusing to start again from step 0 (that would overwrite '
                'them); move %s away to start from scratch.' % (
                    self.workdir, '\n  '.join('%s: %s' % p for p in skipped),
                    self.directory))
        self._restore_from(prefix)
        for bad, reason in skipped:
            self._say('skipping checkpoint %s: %s' % (bad, reason))
        if skipped:
            self._say('resuming from the newest complete checkpoint %s'
                      % prefix)
        if skipped or self.manager.latest_checkpoint != prefix:
            self._repair_state(prefix, [p for p, _ in skipped])
        return int(self.step.numpy())

    def _no_checkpoints(self):
        """Only an empty (or absent) checkpoint folder means a fresh run."""
        state = os.path.join(self.directory, 'checkpoint')
        if tf.io.gfile.exists(state):
            named = _state_paths(self.directory)
            raise NoUsableCheckpointError(
                'workdir %s has a checkpoint state file %s (%s) but no '
                'checkpoint files: refusing to start again from step 0; '
                'move %s away to start from scratch' % (
                    self.workdir, state,
                    'unreadable' if named is None
                    else 'naming ' + ', '.join(named),
                    self.directory))

    def _saved_info(self, prefix):
        try:
            raw = tf.train.load_variable(
                prefix, 'run_info/.ATTRIBUTES/VARIABLE_VALUE')
            return json.loads(raw.decode() if isinstance(raw, bytes)
                              else raw)
        except (tf.errors.OpError, ValueError, KeyError):
            return {}

    def _restore_from(self, prefix):
        info = self._saved_info(prefix)
        precision = gk_precision.current_precision()
        checkpoint = self.checkpoint
        if info.get('precision', precision) != precision:
            self._say('checkpoint %s was written under %s, this run uses %s:'
                      ' weights and optimizer state are float32 in both, '
                      'continuing (the fp16 loss scale starts afresh)'
                      % (prefix, info['precision'], precision))
            checkpoint = self._plain_checkpoint
        error = _restore_error(checkpoint, prefix)
        if error and self.rng and not info:     # written before run_info
            legacy = tf.train.Checkpoint(
                optimizer=checkpoint.optimizer, model=self.model,
                step=self.step, position=self.position,
                rng=legacy_random_generators(self.model))
            if _restore_error(legacy, prefix) is None:
                error = None
        if error and not (checkpoint is self._plain_checkpoint and
                          _only_loss_scale_unmatched(error)):
            raise CheckpointMismatchError(
                'checkpoint %s does not fit this Trainer (another model, '
                'optimizer or dropout layout?): %s' % (
                    prefix, error.splitlines()[0][:600]))
        self.run_info.assign(json.dumps(info))
        self._saved = info

    def _repair_state(self, prefix, skipped):
        """Point the state file at ``prefix`` (and the older complete
        checkpoints) and set the skipped files aside as ``*.skipped``."""
        if not self.chief:
            return
        for bad in skipped:
            for path in tf.io.gfile.glob(bad + '.*'):
                if not path.endswith('.skipped'):
                    tf.io.gfile.rename(path, path + '.skipped',
                                       overwrite=True)
        number = checkpoint_number(prefix)
        older = [p for p in find_checkpoints(self.directory)
                 if checkpoint_number(p) <= number]
        tf.compat.v1.train.update_checkpoint_state(
            self.directory, prefix, all_model_checkpoint_paths=older[::-1])
        self._new_manager()

    def _check_same_batches(self):
        """After a resume whose first batch has another size than the last
        one saved: the batch before ``position`` must still have the size it
        had when it was trained (else the data position has shifted)."""
        info = getattr(self, '_saved', {})
        position = int(self.position.numpy())
        if not position or 'batch_rows' not in info:
            return
        batch = next(iter(self.dataset_fn(position - 1)))
        rows = int(np.shape(tf.nest.flatten(batch)[0])[0])
        if rows != info['batch_rows']:
            raise CheckpointMismatchError(
                'the global batch size changed: batch %d had %d rows when '
                'checkpoint %s was written, dataset_fn now gives it %d rows, '
                'so data position %d would point to other examples; resume '
                'with the original batch size, or use a new workdir'
                % (position - 1, info['batch_rows'],
                   self.manager.latest_checkpoint, rows, position))
        if _batch_digest(batch) != info.get('batch_digest'):
            self._say('warning: batch %d differs from the one trained before'
                      ' the checkpoint (same size): the data changed'
                      % (position - 1))

    # -- one step ----------------------------------------------------------

    def _replica_grads(self, x, y, global_batch):
        optimizer = self.optimizer
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = tf.nest.map_structure(
                lambda t: tf.cast(t, tf.float32), self.model(x, training=True))
            values = elementwise_loss(self.loss_fn, y, y_pred)
            rank = values.shape.rank
            if self.reduction == 'sum':
                loss = tf.reduce_sum(values)
            else:
                if rank and rank > 1:
                    values = tf.reduce_mean(values, list(range(1, rank)))
                loss = tf.reduce_sum(values) / global_batch
            scaled = loss
            if hasattr(optimizer, 'get_scaled_loss'):
                scaled = optimizer.get_scaled_loss(loss)
        grads = tape.gradient(scaled, variables)
        if hasattr(optimizer, 'get_unscaled_gradients'):
            grads = optimizer.get_unscaled_gradients(grads)
        return loss, grads, _finite(grads)

    def _build_train_step(self):
        grads_fn = self._replica_grads
        if self.jit_compile:
            grads_fn = tf.function(grads_fn, jit_compile=True,
                                   reduce_retracing=True)

        def replica_step(x, y, global_batch):
            loss, grads, finite = grads_fn(x, y, global_batch)
            self.optimizer.apply_gradients(
                zip(grads, self.model.trainable_variables))
            return loss, 1.0 - tf.cast(finite, tf.float32)

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
        start = self.restore()
        if start:
            self._say('resuming from step %d of %d (%s)' % (
                start, self.total_steps, self.manager.latest_checkpoint))
            self._verify_batch_size = True
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
                    self.save(step + 1)
            writer.flush()
        if self._tmp_dir:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
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
                    step, ', '.join(bad[:5]), self.manager.latest_checkpoint))
        if self._last_batch is not None:
            rows, digest = self._last_batch[0], _batch_digest(
                self._last_batch[1])
            self.run_info.assign(json.dumps({
                'precision': gk_precision.current_precision(),
                'batch_rows': rows, 'batch_digest': digest,
                'replicas': self.strategy.num_replicas_in_sync,
                'reduction': self.reduction}))
        return self.manager.save(checkpoint_number=step)

    def _one_step(self, step, batches):
        try:
            batch = next(batches)
        except StopIteration:
            raise ValueError('dataset_fn ran out of batches at step %d of %d'
                             % (step, self.total_steps)) from None
        inputs, size = self._distribute(batch)
        if self._verify_batch_size:
            self._verify_batch_size = False
            if size != getattr(self, '_saved', {}).get('batch_rows', size):
                self._check_same_batches()   # a variable size, or changed?
        if self._train_step is None:
            self._train_step = self._build_train_step()
        loss, bad = self._train_step(*inputs, tf.constant(size, tf.float32))
        loss, bad = float(loss), float(bad) > 0
        self._check_finite(step + 1, loss, bad)
        self._last_batch = (size, batch)
        self.step.assign(step + 1)
        self.position.assign(step + 1)
        for callback in self.callbacks:
            callback(step + 1, loss)
        return loss

    def _check_finite(self, step, loss, bad_grads):
        """Stop on a non-finite loss or gradient (numbered from 1, as the
        checkpoints); under fp16 a loss-scale skip is normal."""
        if not np.isfinite(loss):
            raise FloatingPointError(
                'step %d: the loss is %r; stopping before it is saved (the '
                'last checkpoint %s holds finite weights)'
                % (step, loss, self.manager.latest_checkpoint))
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
            'ckpt-N files)' % (step, loss, self.manager.latest_checkpoint))

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
