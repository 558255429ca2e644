"""Mixed precision and XLA toggles.

One switch for the whole run, called before the model is built::

    import gau_keras
    gau_keras.set_precision('bf16')      # 'fp32' | 'fp16' | 'bf16' | 'auto'
    model = gau_keras.build_transformer_model(config_path, with_mlm='linear')
    optimizer = gau_keras.precision.wrap_optimizer(optimizer)  # fp16: scaling
    model.compile(optimizer, loss, jit_compile=True)           # XLA

'fp16' uses dynamic loss scaling (``LossScaleOptimizer``); 'bf16' needs none
(same exponent range as float32).  Variables stay float32 in both; the
``Trainer`` of ``gau_keras.training`` casts outputs to float32 before the
loss, so losses and reported values are float32.
"""
import hashlib
import json
import os
import platform
import time
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


# ---- measured speed: the matmul probe behind 'auto' and the warning -------

#: Environment variable naming the probe cache's folder (default
#: ~/.cache/gau_keras).
CACHE_DIR_ENV = 'GAU_KERAS_CACHE_DIR'
#: The probe multiplies [m, k] by [k, n]: a base model's dense layer on
#: 512 tokens.
PROBE_SHAPE = (512, 768, 768)
#: 'auto' takes the low precision only when its matmul needs at most this
#: fraction of float32's time: casts and float32 parts of the model eat a
#: marginal gain.
AUTO_MARGIN = 0.9
#: The low-precision dtype tried per policy.
LOW_DTYPES = {'mixed_bfloat16': 'bfloat16', 'mixed_float16': 'float16'}


def probe_cache_path():
    """The JSON file holding this machine's probe results."""
    folder = os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.path.expanduser('~'), '.cache', 'gau_keras')
    return os.path.join(folder, 'precision_probe.json')


def cpu_model(path='/proc/cpuinfo'):
    """The CPU's 'model name' (x86) or platform.processor()."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_device():
    """'GPU' when a GPU is visible (it does the arithmetic), else 'CPU'."""
    return 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'


def machine_key(device=None):
    """What the probe's result depends on: device, CPU model and flags,
    GPU models, TensorFlow version and the probe's shape."""
    device = device or probe_device()
    flags = hashlib.sha1(' '.join(sorted(cpu_flags())).encode()).hexdigest()
    gpus = ','.join('%d.%d' % tuple(c) for c in gpu_compute_capabilities())
    return '%s|%s|flags:%s|gpus:%s|tf:%s|%s' % (
        device, cpu_model(), flags[:16], gpus, tf.__version__,
        'x'.join(map(str, PROBE_SHAPE)))


def measure_matmul_seconds(dtype, device=None, repeats=5, number=3):
    """Best-of-``repeats`` seconds of one ``PROBE_SHAPE`` matmul in
    ``dtype`` ('float32', 'bfloat16', 'float16') on ``device``.

    Example: ``measure_matmul_seconds('bfloat16')`` → 0.004.
    """
    m, k, n = PROBE_SHAPE
    with tf.device('/%s:0' % (device or probe_device())):
        a = tf.cast(tf.random.stateless_normal([m, k], [1, 2]), dtype)
        b = tf.cast(tf.random.stateless_normal([k, n], [3, 4]), dtype)
        tf.matmul(a, b).numpy()                      # warm-up
        best = float('inf')
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                c = tf.matmul(a, b)
            c.numpy()
            best = min(best, (time.perf_counter() - start) / number)
    return best


def _read_cache(path):
    try:
        with open(path, encoding='utf-8') as f:
            cache = json.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def probe_speeds(low_dtype='bfloat16', refresh=False):
    """{'float32': s, low_dtype: s} seconds per probe matmul on this
    machine's device, from the cache (``probe_cache_path()``) when it has
    them for ``machine_key()``, else measured and stored.

    Example: ``probe_speeds('bfloat16')`` →
    {'float32': 0.006, 'bfloat16': 0.002}.
    """
    from gau_keras.files import write_json
    path, key = probe_cache_path(), machine_key()
    cache = _read_cache(path)
    entry = dict(cache.get(key) or {}) if not refresh else {}
    missing = [d for d in ('float32', low_dtype) if d not in entry]
    for dtype in missing:
        entry[dtype] = measure_matmul_seconds(dtype)
    if missing:
        cache[key] = entry
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_json(path, cache)
        except OSError as e:
            warnings.warn('could not cache the precision probe in %s: %s'
                          % (path, e), PrecisionWarning)
    return {'float32': entry['float32'], low_dtype: entry[low_dtype]}


def auto_precision(refresh=False):
    """'bf16' (CPU) / 'fp16' (GPU) when the probe's matmul runs in at most
    ``AUTO_MARGIN`` of float32's time, else 'fp32'.

    Example: ``auto_precision()`` → 'bf16' on a CPU with AMX.
    """
    name, low = (('fp16', 'float16') if probe_device() == 'GPU'
                 else ('bf16', 'bfloat16'))
    try:
        speeds = probe_speeds(low, refresh)
    except Exception as e:               # noqa: BLE001  (fp32 always works)
        warnings.warn('the precision probe failed (%s: %s); using fp32'
                      % (type(e).__name__, e), PrecisionWarning)
        return 'fp32'
    return name if speeds[low] <= AUTO_MARGIN * speeds['float32'] else 'fp32'


def measured_slowdown(policy):
    """A sentence when ``policy``'s dtype measured slower than float32 in
    the probe, else None."""
    low = LOW_DTYPES.get(policy)
    if low is None:
        return None
    try:
        speeds = probe_speeds(low)
    except Exception as e:               # noqa: BLE001  (flags decide then)
        problem = native_support_problem(policy)
        return problem and '%s (the probe failed: %s)' % (problem, e)
    if speeds[low] < speeds['float32']:
        return None
    m, k, n = PROBE_SHAPE
    return ('measured on this %s, a [%dx%d]x[%dx%d] matmul takes %.2f ms in '
            '%s and %.2f ms in float32 (%.2fx the speed)' % (
                probe_device(), m, k, k, n, 1e3 * speeds[low], low,
                1e3 * speeds['float32'], speeds['float32'] / speeds[low]))


def set_precision(precision='fp32', warn=True):
    """Set the global Keras dtype policy and return its name.

    'auto' takes the faster of fp32 and bf16 (fp16 on a GPU) by a short
    matmul probe, measured once per machine and cached (``probe_speeds``).
    With ``warn``, a ``PrecisionWarning`` says when the chosen low
    precision measured slower than fp32 in that probe, with the device's
    reason when known (bf16 on a CPU without avx512_bf16 / AMX or on a GPU
    older than Ampere; fp16 on a CPU or a GPU older than Volta).

    Example::

        gau_keras.set_precision('fp16')   # -> 'mixed_float16'
        gau_keras.set_precision('auto')   # -> 'mixed_bfloat16' or 'float32'
    """
    key = str(precision).strip().lower()
    if key == 'auto':
        key = auto_precision()
    if key not in PRECISIONS:
        raise ValueError(
            'precision must be one of fp32, fp16, bf16, auto (or the Keras '
            'policy names float32, mixed_float16, mixed_bfloat16), got %r'
            % (precision,))
    policy = PRECISIONS[key]
    tf.keras.mixed_precision.set_global_policy(policy)
    slow = measured_slowdown(policy) if warn else None
    if slow:
        problem = native_support_problem(policy)
        if problem and problem not in slow:
            slow = '%s; %s' % (slow, problem)
        warnings.warn('set_precision(%r): %s. It still computes correctly; '
                      'use fp32 here for speed.' % (precision, slow),
                      PrecisionWarning, stacklevel=2)
    return policy


def current_precision():
    """Name of the global policy: 'float32', 'mixed_float16', ...

    Example::

        if current_precision() == 'mixed_float16': ...
    """
    return tf.keras.mixed_precision.global_policy().name


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


def scale_loss(optimizer, loss):
    """The loss to differentiate: scaled by a ``LossScaleOptimizer`` (fp16),
    else ``loss`` itself.  Pair it with ``unscale_gradients``::

        with tf.GradientTape() as tape:
            scaled = scale_loss(optimizer, loss_fn())
        grads = unscale_gradients(optimizer, tape.gradient(scaled, variables))
    """
    if hasattr(optimizer, 'get_scaled_loss'):
        return optimizer.get_scaled_loss(loss)
    return loss


def unscale_gradients(optimizer, gradients):
    """Gradients of a ``scale_loss`` loss divided back by the loss scale
    (a list in, a list out); unchanged without a ``LossScaleOptimizer``."""
    if hasattr(optimizer, 'get_unscaled_gradients'):
        return optimizer.get_unscaled_gradients(gradients)
    return gradients
