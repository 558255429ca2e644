"""Mixed precision and XLA toggles.

One switch for the whole run, called before the model is built::

    import gau_keras
    gau_keras.set_precision('bf16')      # 'fp32' | 'fp16' | 'bf16'
    model = gau_keras.build_transformer_model(config_path, with_mlm='linear')
    optimizer = gau_keras.precision.wrap_optimizer(optimizer)  # fp16: scaling
    model.compile(optimizer, loss, jit_compile=True)           # XLA

'fp16' uses dynamic loss scaling (``LossScaleOptimizer``); 'bf16' needs none
(same exponent range as float32).  Variables stay float32 in both; the
``Trainer`` of ``gau_keras.training`` casts outputs to float32 before the
loss, so losses and reported values are float32.
"""
import warnings

import tensorflow as tf

#: Accepted names → Keras mixed precision policy names.
PRECISIONS = {
    'fp32': 'float32', 'float32': 'float32',
    'fp16': 'mixed_float16', 'mixed_float16': 'mixed_float16',
    'bf16': 'mixed_bfloat16', 'mixed_bfloat16': 'mixed_bfloat16',
}


class PrecisionWarning(UserWarning):
    """The chosen mixed precision is not native on this device (slow)."""


def cpu_flags(path='/proc/cpuinfo'):
    """The CPU's feature flags ('avx2', 'avx512_bf16', 'amx_bf16', ...) from
    the 'flags' (x86) or 'Features' (ARM) line; empty if unreadable."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() in ('flags', 'Features'):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


#: The CPU flags that decide fp32 / bf16 speed (printed with benchmarks).
SPEED_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile')


def cpu_flags_summary(flags=None):
    """'avx2=yes avx512f=yes avx512_bf16=no amx_bf16=no amx_tile=no' for
    this CPU (or for the given ``flags``): every benchmark prints it."""
    flags = cpu_flags() if flags is None else flags
    return ' '.join('%s=%s' % (k, 'yes' if k in flags else 'no')
                    for k in SPEED_FLAGS)


def gpu_compute_capabilities():
    """(major, minor) of each visible GPU, e.g. [(8, 0)] on an A100."""
    caps = []
    for gpu in tf.config.list_physical_devices('GPU'):
        details = tf.config.experimental.get_device_details(gpu)
        caps.append(tuple(details.get('compute_capability') or (0, 0)))
    return caps


#: CPU flags that give native bfloat16 / float16 arithmetic.
NATIVE_CPU_FLAGS = {'mixed_bfloat16': ('avx512_bf16', 'amx_bf16', 'bf16'),
                    'mixed_float16': ('avx512_fp16', 'amx_fp16')}
#: Oldest GPU compute capability with fast bfloat16 / float16 (tensor cores).
NATIVE_GPU_CAPABILITY = {'mixed_bfloat16': (8, 0), 'mixed_float16': (7, 0)}


def native_support_problem(policy, flags=None, gpus=None):
    """None if the device computes ``policy``'s dtype natively, else why not.

    The device is the GPUs if any are visible, else the CPU.  Example::

        native_support_problem('mixed_bfloat16', {'avx2'}, [])   # -> '...'
    """
    if policy not in NATIVE_CPU_FLAGS:
        return None
    dtype = policy.split('_')[1]
    gpus = gpu_compute_capabilities() if gpus is None else gpus
    if gpus:
        need = NATIVE_GPU_CAPABILITY[policy]
        slow = [cap for cap in gpus if tuple(cap) < need]
        if not slow:
            return None
        return ('a GPU of compute capability %s has no fast %s (it needs %d.%d '
                'or newer%s)' % ('.'.join(map(str, slow[0])), dtype, need[0],
                                need[1], ': Ampere (A100, RTX 30xx) or newer'
                                if dtype == 'bfloat16' else ': Volta or newer'))
    flags = cpu_flags() if flags is None else flags
    if not flags and policy == 'mixed_bfloat16':
        return None          # unknown CPU: no claim either way
    if any(flag in flags for flag in NATIVE_CPU_FLAGS[policy]):
        return None
    if policy == 'mixed_bfloat16':
        return ('this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16 '
                'flag), so TensorFlow emulates it: on such a CPU a gau_alpha '
                'base training step ran at 0.54x the speed of fp32')
    return ('this CPU has no native float16 arithmetic (no avx512_fp16 or '
            'amx_fp16 flag); fp16 is meant for GPUs and is expected to be '
            'slower than fp32 here')


def set_precision(precision='fp32', warn=True):
    """Set the global Keras dtype policy and return its name.

    With ``warn``, a ``PrecisionWarning`` says when the device has no native
    support for the chosen type (bf16 on a CPU without avx512_bf16 / AMX or
    on a GPU older than Ampere; fp16 on a CPU or a GPU older than Volta).

    Example::

        gau_keras.set_precision('fp16')   # -> 'mixed_float16'
    """
    key = str(precision).strip().lower()
    if key not in PRECISIONS:
        raise ValueError(
            'precision must be one of fp32, fp16, bf16 (or the Keras policy '
            'names float32, mixed_float16, mixed_bfloat16), got %r'
            % (precision,))
    policy = PRECISIONS[key]
    tf.keras.mixed_precision.set_global_policy(policy)
    problem = native_support_problem(policy) if warn else None
    if problem:
        warnings.warn('set_precision(%r): %s. It still computes correctly; '
                      'use fp32 here for speed.' % (precision, problem),
                      PrecisionWarning, stacklevel=2)
    return policy


def current_precision():
    """Name of the global policy: 'float32', 'mixed_float16', ...

    Example::

        if current_precision() == 'mixed_float16': ...
    """
    return tf.keras.mixed_precision.global_policy().name


def needs_loss_scaling():
    """True under 'mixed_float16' (float16 gradients can underflow)."""
    return current_precision() == 'mixed_float16'


def wrap_optimizer(optimizer, policy=None):
    """Wrap in a dynamic ``LossScaleOptimizer`` under fp16; else unchanged.

    Already wrapped optimizers are returned as they are.

    Example::

        opt = wrap_optimizer(gau_keras.optimizers.AdamW(1e-4))
    """
    if not isinstance(optimizer, tf.keras.optimizers.Optimizer):
        raise TypeError(
            'wrap_optimizer needs a tf.keras optimizer (tf-keras, Keras 2), '
            'got %r' % (optimizer,))
    policy = policy or current_precision()
    lso = tf.keras.mixed_precision.LossScaleOptimizer
    if policy != 'mixed_float16' or isinstance(optimizer, lso):
        return optimizer
    return lso(optimizer, dynamic=True)


def unwrap_optimizer(optimizer):
    """The inner optimizer of a ``LossScaleOptimizer`` (or the optimizer)."""
    inner = getattr(optimizer, 'inner_optimizer', None)
    return optimizer if inner is None else inner
