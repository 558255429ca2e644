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
import tensorflow as tf

#: Accepted names → Keras mixed precision policy names.
PRECISIONS = {
    'fp32': 'float32', 'float32': 'float32',
    'fp16': 'mixed_float16', 'mixed_float16': 'mixed_float16',
    'bf16': 'mixed_bfloat16', 'mixed_bfloat16': 'mixed_bfloat16',
}


def set_precision(precision='fp32'):
    """Set the global Keras dtype policy and return its name.

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
