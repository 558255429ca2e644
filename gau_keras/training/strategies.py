"""Distribution strategies, precision and seeding of a training run.

``setup`` applies the run-wide settings in one call and returns the
strategy under which to build the model and optimizer.  Example::

    s = setup('bf16', strategy='mirrored', seed=42)
    with s.strategy.scope():
        model = ...
"""
import collections
import os

import tensorflow as tf

from gau_keras import precision as gk_precision

STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')


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


def setup(mixed_precision='fp32', xla=False, strategy='default', tpu=None,
          seed=42, deterministic=False):
    """Apply precision and seed; return ``Setup(strategy, jit_compile,
    precision)``.

    ``mixed_precision`` is 'fp32' | 'fp16' | 'bf16' | 'auto' (the faster of
    fp32 and bf16 here, measured); ``strategy`` one of
    ``STRATEGIES`` (``tpu`` names the TPU); ``xla`` asks the Trainer to
    ``jit_compile`` its step.  Example::

        s = setup('bf16', strategy='mirrored', seed=0)
        with s.strategy.scope():
            model = ...
    """
    dist = get_strategy(strategy, tpu)
    policy = gk_precision.set_precision(mixed_precision)
    set_seed(seed, deterministic)
    return Setup(dist, bool(xla), policy)


def check_learning_rate(learning_rate, weight_decay=0.0):
    """Raise ValueError unless lr > 0 and weight decay >= 0, both finite."""
    for name, value in (('learning_rate', learning_rate),
                        ('weight_decay', weight_decay)):
        if not (value >= 0 and value != float('inf')) or (
                name == 'learning_rate' and value == 0):
            raise ValueError('%s must be a %s number, got %r' % (
                name, 'positive' if name == 'learning_rate'
                else 'non-negative', value))
