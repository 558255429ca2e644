"""Optimizers for TF 2.21 / tf-keras, with bert4keras 0.11.5's optimizer API.

bert4keras's optimizers subclass the ``OptimizerV2`` API (``_set_hyper``,
``_resource_apply_dense``), which tf-keras 2.21 keeps only under
``tf.keras.optimizers.legacy``, so they fail on its
``tf.keras.optimizers.Optimizer``.  This module gives the same names,
arguments and update rules on ``tf.keras.optimizers.Optimizer``:

* ``Adam`` (``bias_correction``), ``AdaFactor`` (= ``AdaFactorV1`` =
  ``AdaFactorV2``), ``Lion``;
* ``extend_with_weight_decay``, ``extend_with_layer_adaptation``,
  ``extend_with_piecewise_linear_lr``, ``extend_with_gradient_accumulation``,
  ``extend_with_lookahead``, ``extend_with_lazy_optimization``,
  ``extend_with_exponential_moving_average`` (``apply_ema_weights`` /
  ``reset_old_weights``), ``extend_with_parameter_wise_lr``, each also under
  its ``*_v2`` name; ``extend_with_X(Base, name='MyOpt')`` returns a class
  registered under that name in Keras's custom objects.

Every extension works like bert4keras's: the base computes a new value of a
variable, the extension rewrites it (``new ← f(old, new)``), inner extension
first.  On top of them:

* ``AdamW``: weight decay (``weight_decay=``) that never decays rank ≤ 1
  variables (biases, norms) nor names matching ``exclude_from_weight_decay``;
* ``LAMB``: ``AdamW`` + layer adaptation (same exclusions);
* ``PiecewiseLinearSchedule``: ``lr_schedule={step: multiplier}``;
* ``build_optimizer('adam' | 'adamw' | 'lamb' | 'adafactor', ...)``.

All work with ``model.compile``, ``LossScaleOptimizer`` (fp16),
``jit_compile=True`` and ``tf.distribute`` strategies.  Example::

    from gau_keras.optimizers import Adam, extend_with_piecewise_linear_lr
    AdamLR = extend_with_piecewise_linear_lr(Adam, name='AdamLR')
    model.compile(optimizer=AdamLR(1e-4, lr_schedule={1000: 1}), loss=...)
"""
import re

import numpy as np
import tensorflow as tf

from gau_keras.registry import PACKAGE, register

keras = tf.keras
Schedule = keras.optimizers.schedules.LearningRateSchedule

# Classes register as 'gau_keras>Name'.  Only the classes that
# ``extend_with_*(..., name=...)`` makes also take their bare name, as
# bert4keras's do; the base classes do not, so tf-keras's own 'Adam' keeps
# its name.


# --------------------------------------------------------------------------
# Learning-rate schedules
# --------------------------------------------------------------------------

def check_schedule(schedule):
    """Validated, sorted ``[(step, multiplier), ...]`` of a bert4keras schedule.

    A missing step 0 gets multiplier 0 (warm up from zero), as in bert4keras.
    """
    if not isinstance(schedule, dict) or not schedule:
        raise ValueError('lr_schedule must be a non-empty dict {step: '
                         'multiplier}, got %r' % (schedule,))
    points = {}
    for step, mult in schedule.items():
        try:
            key, value = int(step), float(mult)
        except (TypeError, ValueError):
            raise ValueError('lr_schedule entry %r: %r is not an integer step '
                             'with a number as multiplier' % (step, mult))
        if key < 0 or key != float(step) or key in points:
            raise ValueError('lr_schedule step %r must be a distinct integer '
                             '>= 0' % (step,))
        points[key] = value
    points = sorted(points.items())
    if points[0][0] != 0:
        points = [(0, 0.0)] + points
    return points


def piecewise_linear(step, schedule):
    """Multiplier at ``step``: linear between the points, constant after.

    ``{1000: 1, 2000: 0.1}`` rises from 0 to 1 over steps 0…1000, falls to 0.1
    at step 2000 and stays there.  Example::

        piecewise_linear(500, {1000: 1})   # -> 0.5 (float32 tensor)
    """
    points = check_schedule(schedule)
    t = tf.cast(step, tf.float32)
    x = tf.constant(points[-1][1], tf.float32)
    for (t0, x0), (t1, x1) in reversed(list(zip(points, points[1:]))):
        line = x0 + (x1 - x0) * (t - t0) / float(t1 - t0)
        x = tf.where(t < t1, line, x)
    return x


@register(package=PACKAGE, plain_name=False)
class PiecewiseLinearSchedule(Schedule):
    """lr(step) = learning_rate(step) × piecewise_linear(step, schedule).

    ``learning_rate`` is a number or another schedule.  ``step`` is the
    optimizer's ``iterations`` before the update, so the first update uses
    step 0, as bert4keras's ``extend_with_piecewise_linear_lr``.  Example::

        lr = PiecewiseLinearSchedule(1e-4, {1000: 1, 5000: 0.1})
        opt = tf.keras.optimizers.Adam(lr)
    """

    def __init__(self, learning_rate, schedule):
        if isinstance(learning_rate, dict):
            learning_rate = keras.optimizers.schedules.deserialize(
                learning_rate)
        if not isinstance(learning_rate, Schedule):
            learning_rate = float(learning_rate)
        self.learning_rate = learning_rate
        self.schedule = dict(check_schedule(schedule))

    def __call__(self, step):
        lr = self.learning_rate
        if isinstance(lr, Schedule):
            lr = tf.cast(lr(step), tf.float32)
        return lr * piecewise_linear(step, self.schedule)

    def get_config(self):
        lr = self.learning_rate
        if isinstance(lr, Schedule):
            lr = keras.optimizers.schedules.serialize(lr)
        return {'learning_rate': lr,
                'schedule': {str(k): v for k, v in self.schedule.items()}}


@register(package=PACKAGE, plain_name=False)
class RelativeStepSchedule(Schedule):
    """AdaFactor's learning rate when ``learning_rate=None``.

    lr(step) = scale · min(1/√(step + 1), 0.01); bert4keras uses scale 1 with
    ``multiply_by_parameter_scale`` and 0.05 without.  Example::

        RelativeStepSchedule()(99)   # -> 0.01
    """

    def __init__(self, scale=1.0):
        self.scale = float(scale)

    def __call__(self, step):
        t = tf.cast(step, tf.float32) + 1.0
        return self.scale * tf.minimum(tf.math.rsqrt(t), 0.01)

    def get_config(self):
        return {'scale': self.scale}


def _scheduled(learning_rate, lr_schedule):
    if lr_schedule is None:
        return learning_rate
    if not isinstance(learning_rate, (int, float)):
        raise ValueError('lr_schedule needs a number as learning_rate, got %r'
                         % (learning_rate,))
    return PiecewiseLinearSchedule(learning_rate, lr_schedule)


# --------------------------------------------------------------------------
# Formulas and helpers
# --------------------------------------------------------------------------

def string_matching(name, patterns):
    """True if any regex of ``patterns`` is found in ``name`` (bert4keras)."""
    return any(re.search(p, name) for p in patterns)


def _patterns(value, what):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return [str(p) for p in value]
    except TypeError:
        raise ValueError('%s must be a list of name patterns, got %r'
                         % (what, value)) from None


def root_mean_square(x):
    """rms(x) = √(mean(x²)) over all elements."""
    return tf.sqrt(tf.reduce_mean(tf.square(x)))


def _dense(gradient, dtype):
    if isinstance(gradient, tf.IndexedSlices):
        gradient = tf.convert_to_tensor(gradient)
    return tf.cast(gradient, dtype)


def decoupled_weight_decay(old, new, lr, rate):
    """new' = new − lr·rate·old (decay of the value before the update)."""
    return new - lr * rate * old


def trust_ratio(old, new, lr):
    """LAMB: r = ‖w‖ / ‖(new − w)/max(lr, ε)‖, or 1 if a norm is 0.

    The rescaled update is w + r·(new − w) (You et al., 2019).
    """
    lr = tf.maximum(lr, keras.backend.epsilon())
    w_norm, u_norm = tf.norm(old), tf.norm((new - old) / lr)
    return tf.where((w_norm > 0) & (u_norm > 0),
                    w_norm / tf.maximum(u_norm, 1e-30), tf.ones_like(w_norm))


def adam_step(m, v, t, beta_1, beta_2, epsilon, bias_correction=True):
    """bert4keras's Adam direction (the update is −lr times it).

    With bias correction m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ), else m̂ = m, v̂ = v;
    direction = m̂ / (√v̂ + ε).
    """
    if bias_correction:
        m = m / (1.0 - tf.pow(beta_1, t))
        v = v / (1.0 - tf.pow(beta_2, t))
    return m / (tf.sqrt(v) + epsilon)


def factored_shape(shape, min_dim_size_to_factor):
    """AdaFactor: ``(shape1, axis1, shape2, axis2)`` or None (not factored).

    axis1 is the largest dimension, axis2 the second largest (numpy's
    ``argpartition``, as bert4keras); not factored below rank 2 or when the
    second largest is < ``min_dim_size_to_factor``.
    """
    if len(shape) < 2:
        return None
    shape = np.array(shape)
    indices = shape.argpartition(-2)
    if shape[indices[-2]] < min_dim_size_to_factor:
        return None
    shape1, shape2 = np.array(shape), np.array(shape)
    shape1[indices[-1]] = 1
    shape2[indices[-2]] = 1
    return shape1, int(indices[-1]), shape2, int(indices[-2])


def completed_updates(optimizer):
    """Number of updates made before the current one (an int64 tensor).

    ``iterations`` counts ``apply_gradients`` calls; under gradient
    accumulation an update takes ``grad_accum_steps`` of them, so this is
    ``micro_steps // grad_accum_steps`` there.  Adam's bias correction,
    AdaFactor's β2, Lookahead's period and the EMA's bias correction count
    updates.  Example::

        t = completed_updates(opt) + 1
    """
    k = getattr(optimizer, 'grad_accum_steps', None)
    micro = getattr(optimizer, 'micro_steps', None)
    if k and micro is not None:
        return micro // k
    return optimizer.iterations


def _update_then(parent, gradient, variable, transform):
    """Base update of ``variable``, then ``variable ← transform(old, new)``.

    ``parent`` is ``super()`` of the calling extension, so extensions compose
    like bert4keras's ``K.update`` hooks: the inner one rewrites first.
    """
    if getattr(variable, '_unique_id', None) is None:
        return None
    old = tf.identity(variable)
    parent._update_step(gradient, variable)
    variable.assign(transform(old, tf.identity(variable)))
    return None


def _extension(make):
    """Decorator: ``extend_with_X(BaseOptimizer, name=None)`` as bert4keras.

    The new class is named ``name`` (default ``X + base name``) and
    registered in Keras's custom objects under that name.
    """
    def extend(BaseOptimizer, name=None):
        if not (isinstance(BaseOptimizer, type) and
                issubclass(BaseOptimizer, keras.optimizers.Optimizer)):
            raise TypeError(
                '%s needs an optimizer class derived from tf.keras.optimizers.'
                'Optimizer (e.g. gau_keras.optimizers.Adam; not a legacy '
                'optimizer, not an instance), got %r'
                % (make.__name__, BaseOptimizer))
        cls = make(BaseOptimizer)
        cls.__name__ = cls.__qualname__ = name or (
            cls.__name__ + BaseOptimizer.__name__)
        return register(cls, package=PACKAGE)
    extend.__name__, extend.__doc__ = make.__name__, make.__doc__
    return extend


#: bert4keras's decorator name (registers the class made by an extension).
export_to_custom_objects = _extension


# --------------------------------------------------------------------------
# Base optimizers: Adam, AdaFactor, Lion
# --------------------------------------------------------------------------

class _SlotOptimizer(keras.optimizers.Optimizer):
    """New-style tf-keras optimizer with named per-variable slots."""

    def __init__(self, name, **kwargs):
        kwargs.setdefault('weight_decay', None)
        super().__init__(name=name, **kwargs)
        self._slots = self._no_dependency({})

    def _slot_names(self, variable):
        """``{slot name: shape or None (= variable's shape)}``."""
        raise NotImplementedError

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, '_built', False):
            return
        self._built = True
        for var in var_list:
            index = self._index_dict[self._var_key(var)]
            for slot, shape in self._slot_names(var).items():
                self._slots[slot, index] = self.add_variable_from_reference(
                    var, slot, shape=shape)

    def slot(self, variable, name):
        """The optimizer variable ``name`` ('m', 'v', ...) of ``variable``."""
        return self._slots[name, self._index_dict[self._var_key(variable)]]

    def _lr(self, dtype):
        return tf.cast(self.learning_rate, dtype)

    def _step(self, dtype):
        return tf.cast(completed_updates(self) + 1, dtype)

    def _lr_config(self):
        return self._serialize_hyperparameter(self._learning_rate)


@register(package=PACKAGE, plain_name=False)
class Adam(_SlotOptimizer):
    """bert4keras's Adam (``bias_correction`` may be turned off).

    Update (t = number of this update, 1, 2, …)::

        m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
        w ← w − lr · m̂ / (√v̂ + ε)     (m̂, v̂ bias-corrected or not)

    Note ε is added to √v̂, not to √v as in tf-keras's Adam.  Example::

        opt = Adam(1e-4, bias_correction=False)
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-6, bias_correction=True, **kwargs):
        super().__init__(kwargs.pop('name', None) or 'Adam', **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = float(epsilon or keras.backend.epsilon())
        self.bias_correction = bool(bias_correction)

    def _slot_names(self, variable):
        return {'m': None, 'v': None}

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        g = _dense(gradient, dtype)
        m, v = self.slot(variable, 'm'), self.slot(variable, 'v')
        m.assign(self.beta_1 * m + (1 - self.beta_1) * g)
        v.assign(self.beta_2 * v + (1 - self.beta_2) * tf.square(g))
        step = adam_step(m, v, self._step(dtype), self.beta_1, self.beta_2,
                         self.epsilon, self.bias_correction)
        variable.assign_sub(self._lr(dtype) * step)

    def get_config(self):
        config = super().get_config()
        config.update(learning_rate=self._lr_config(), beta_1=self.beta_1,
                      beta_2=self.beta_2, epsilon=self.epsilon,
                      bias_correction=self.bias_correction)
        return config


@register(package=PACKAGE, plain_name=False)
class Lion(_SlotOptimizer):
    """Lion (Chen et al., 2023), as bert4keras's ``Lion``.

    Update::

        w ← w − lr · sign(β1·m + (1−β1)·g) ;  m ← β2·m + (1−β2)·g

    Example::

        opt = Lion(3e-4)
    """

    def __init__(self, learning_rate=3e-4, beta_1=0.95, beta_2=0.98,
                 **kwargs):
        super().__init__(kwargs.pop('name', None) or 'Lion', **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)

    def _slot_names(self, variable):
        return {'m': None}

    def update_step(self, gradient, variable):
        g = _dense(gradient, variable.dtype)
        m = self.slot(variable, 'm')
        u = tf.sign(self.beta_1 * m + (1 - self.beta_1) * g)
        variable.assign_sub(self._lr(variable.dtype) * u)
        m.assign(self.beta_2 * m + (1 - self.beta_2) * g)

    def get_config(self):
        config = super().get_config()
        config.update(learning_rate=self._lr_config(), beta_1=self.beta_1,
                      beta_2=self.beta_2)
        return config


@register(package=PACKAGE, plain_name=False)
class AdaFactor(_SlotOptimizer):
    """AdaFactor (Shazeer & Stern, 2018) as bert4keras defines it.

    With t = number of this update (1, 2, …), β2 = ``beta2`` or 1 − t^−0.8,
    and
    g² = g² + ε1::

        v ← β2·v + (1−β2)·g²           (or factored: row/col means vr, vc,
                                        v = vr·vc / mean(vr))
        u = g / √(v + ε1) ;  u ← u / max(1, rms(u)/clipping_threshold)
        u ← m ← β1·m + (1−β1)·u        (only if β1 > 0)
        u ← u · max(rms(w), ε2)        (multiply_by_parameter_scale, unless
                                        the name matches an exclusion)
        w ← w − lr·u

    ``learning_rate=None`` gives lr = min(1/√(iterations + 1), 0.01) (× 0.05
    without parameter scale).  bert4keras's ``AdaFactorV1`` (Keras) and
    ``AdaFactorV2`` (tf.keras) are the same update; both names are this
    class.  Example::

        opt = AdaFactor(5e-4, beta1=0.9, min_dim_size_to_factor=10**6)
    """

    def __init__(self, learning_rate=1e-3, beta1=0.0, beta2=None,
                 epsilon1=1e-30, epsilon2=1e-3,
                 multiply_by_parameter_scale=True, clipping_threshold=1.0,
                 min_dim_size_to_factor=128, exclude_from_parameter_scale=None,
                 **kwargs):
        super().__init__(kwargs.pop('name', None) or 'AdaFactor', **kwargs)
        self.relative_step = learning_rate is None
        if self.relative_step:
            learning_rate = RelativeStepSchedule(
                1.0 if multiply_by_parameter_scale else 0.05)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta1 = float(beta1)
        self._beta2 = None if beta2 is None else float(beta2)
        self.epsilon1, self.epsilon2 = float(epsilon1), float(epsilon2)
        self.multiply_by_parameter_scale = bool(multiply_by_parameter_scale)
        self.clipping_threshold = clipping_threshold
        self.min_dim_size_to_factor = int(min_dim_size_to_factor)
        self.exclude_from_parameter_scale = _patterns(
            exclude_from_parameter_scale, 'exclude_from_parameter_scale')

    def beta2(self, dtype=tf.float32):
        """β2 of this update: ``beta2`` or 1 − t^−0.8 (t = update number)."""
        if self._beta2 is not None:
            return tf.constant(self._beta2, dtype)
        return 1.0 - tf.pow(self._step(dtype), -0.8)

    def factored_shape(self, shape):
        return factored_shape(shape, self.min_dim_size_to_factor)

    def _slot_names(self, variable):
        slots = {'m': None} if self.beta1 > 0 else {}
        factored = self.factored_shape(variable.shape.as_list())
        if factored is None:
            slots['v'] = None
        else:
            slots['vr'] = tuple(int(n) for n in factored[0])
            slots['vc'] = tuple(int(n) for n in factored[2])
        return slots

    def _do_parameter_scale(self, variable):
        return self.multiply_by_parameter_scale and not string_matching(
            variable.name, self.exclude_from_parameter_scale)

    def _second_moment(self, g2, variable, beta2):
        factored = self.factored_shape(variable.shape.as_list())
        if factored is None:
            v = self.slot(variable, 'v')
            v.assign(beta2 * v + (1.0 - beta2) * g2)
            return v.read_value()
        _, axis1, _, axis2 = factored
        vr, vc = self.slot(variable, 'vr'), self.slot(variable, 'vc')
        vr.assign(beta2 * vr + (1.0 - beta2) *
                  tf.reduce_mean(g2, axis=axis1, keepdims=True))
        vc.assign(beta2 * vc + (1.0 - beta2) *
                  tf.reduce_mean(g2, axis=axis2, keepdims=True))
        return vr * vc / tf.reduce_mean(vr, axis=axis2, keepdims=True)

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        g = _dense(gradient, dtype)
        v = self._second_moment(tf.square(g) + self.epsilon1, variable,
                                self.beta2(dtype))
        u = g / tf.sqrt(v + self.epsilon1)
        if self.clipping_threshold is not None:
            u = u / tf.maximum(
                1.0, root_mean_square(u) / self.clipping_threshold)
        if self.beta1 > 0.0:
            m = self.slot(variable, 'm')
            m.assign(self.beta1 * m + (1.0 - self.beta1) * u)
            u = m.read_value()
        if self._do_parameter_scale(variable):
            u = u * tf.maximum(root_mean_square(variable), self.epsilon2)
        variable.assign_sub(self._lr(dtype) * u)

    def get_config(self):
        config = super().get_config()
        config.update(
            learning_rate=None if self.relative_step else self._lr_config(),
            beta1=self.beta1, beta2=self._beta2, epsilon1=self.epsilon1,
            epsilon2=self.epsilon2,
            multiply_by_parameter_scale=self.multiply_by_parameter_scale,
            clipping_threshold=self.clipping_threshold,
            min_dim_size_to_factor=self.min_dim_size_to_factor,
            exclude_from_parameter_scale=self.exclude_from_parameter_scale)
        return config


# bert4keras's other names for the same classes.
AdaFactorBase = AdaFactorV1 = AdaFactorV2 = AdaFactor
LionV2 = Lion


# --------------------------------------------------------------------------
# Extensions (bert4keras's extend_with_*)
# --------------------------------------------------------------------------

@_extension
def extend_with_weight_decay(BaseOptimizer):
    """New class with decoupled weight decay (bert4keras).

    After the base update, w_new ← w_new − lr·weight_decay_rate·w_old for
    every variable whose name matches none of ``exclude_from_weight_decay``
    (regexes; biases are decayed unless excluded).  Arguments
    ``weight_decay_rate=0.01``, ``exclude_from_weight_decay=[]``.
    Example::

        AdamWD = extend_with_weight_decay(Adam, name='AdamWD')
        opt = AdamWD(1e-3, weight_decay_rate=0.01,
                     exclude_from_weight_decay=['Norm', 'bias'])
    """

    class WeightDecay(BaseOptimizer):
        def __init__(self, *args, weight_decay_rate=0.01,
                     exclude_from_weight_decay=(), **kwargs):
            super().__init__(*args, **kwargs)
            self.weight_decay_rate = float(weight_decay_rate)
            self.weight_decay_exclusions = _patterns(
                exclude_from_weight_decay, 'exclude_from_weight_decay')

        def _do_weight_decay(self, variable):
            return self.weight_decay_rate != 0 and not string_matching(
                variable.name, self.weight_decay_exclusions)

        def _update_step(self, gradient, variable):
            if not self._do_weight_decay(variable):
                return super()._update_step(gradient, variable)
            lr = tf.cast(self.learning_rate, variable.dtype)
            return _update_then(
                super(), gradient, variable,
                lambda old, new: decoupled_weight_decay(
                    old, new, lr, self.weight_decay_rate))

        def get_config(self):
            config = super().get_config()
            config.update(weight_decay_rate=self.weight_decay_rate,
                          exclude_from_weight_decay=list(
                              self.weight_decay_exclusions))
            return config

    return WeightDecay


@_extension
def extend_with_layer_adaptation(BaseOptimizer):
    """New class with LAMB's layer adaptation (bert4keras).

    The base's update new − w of each variable is rescaled by
    ``trust_ratio`` ‖w‖ / ‖(new − w)/lr‖, except for names matching
    ``exclude_from_layer_adaptation`` (default ``[]``).  Example::

        LAMB = extend_with_layer_adaptation(
            extend_with_weight_decay(Adam), name='LAMB')
    """

    class LayerAdaptation(BaseOptimizer):
        def __init__(self, *args, exclude_from_layer_adaptation=(),
                     **kwargs):
            super().__init__(*args, **kwargs)
            self.layer_adaptation_exclusions = _patterns(
                exclude_from_layer_adaptation, 'exclude_from_layer_adaptation')

        def _do_layer_adaptation(self, variable):
            return not string_matching(variable.name,
                                       self.layer_adaptation_exclusions)

        def _update_step(self, gradient, variable):
            if not self._do_layer_adaptation(variable):
                return super()._update_step(gradient, variable)
            lr = tf.cast(self.learning_rate, variable.dtype)

            def adapt(old, new):
                return old + (new - old) * trust_ratio(old, new, lr)
            return _update_then(super(), gradient, variable, adapt)

        def get_config(self):
            config = super().get_config()
            config['exclude_from_layer_adaptation'] = list(
                self.layer_adaptation_exclusions)
            return config

    return LayerAdaptation


@_extension
def extend_with_piecewise_linear_lr(BaseOptimizer):
    """New class whose learning rate follows ``lr_schedule`` (bert4keras).

    ``lr_schedule={1000: 1, 2000: 0.1}``: the learning rate rises linearly
    from 0 to 100 % over updates 0…1000, falls to 10 % at 2000, then stays
    (default ``{0: 1}``: constant).  The base's learning rate (a number, a
    schedule, or AdaFactor's ``None``) is wrapped in a
    ``PiecewiseLinearSchedule``.  Example::

        AdamLR = extend_with_piecewise_linear_lr(Adam, name='AdamLR')
        opt = AdamLR(1e-4, lr_schedule={1000: 1, 10000: 0.1})
    """

    class PiecewiseLinearLR(BaseOptimizer):
        def __init__(self, *args, lr_schedule=None, **kwargs):
            super().__init__(*args, **kwargs)
            schedule = {0: 1} if lr_schedule is None else lr_schedule
            self.lr_schedule = dict(check_schedule(schedule))
            self._base_lr_config = super().get_config().get('learning_rate')
            base = self._learning_rate
            if not isinstance(base, Schedule):
                base = float(base.numpy())
            self._learning_rate = self._build_learning_rate(
                PiecewiseLinearSchedule(base, self.lr_schedule))

        def get_config(self):
            config = super().get_config()
            config['learning_rate'] = self._base_lr_config
            config['lr_schedule'] = {str(k): v
                                     for k, v in self.lr_schedule.items()}
            return config

    return PiecewiseLinearLR


class _DecayInUpdate:
    """tf-keras's own ``weight_decay`` moved into each variable's update.

    tf-keras decays in ``apply_gradients``, once per call; under gradient
    accumulation it must happen once per real update.
    """

    def _apply_weight_decay(self, variables):
        pass  # moved into _update_step

    def _update_step(self, gradient, variable):
        if getattr(variable, '_unique_id', None) is None:
            return None
        wd = getattr(self, 'weight_decay', None)
        if wd and self._use_weight_decay(variable):
            lr = tf.cast(self.learning_rate, variable.dtype)
            return _update_then(
                super(), gradient, variable,
                lambda old, new: decoupled_weight_decay(
                    old, new, lr, tf.cast(wd, variable.dtype)))
        return super()._update_step(gradient, variable)


@_extension
def extend_with_gradient_accumulation(BaseOptimizer):
    """New class: gradients of ``grad_accum_steps`` calls make one update.

    Each ``apply_gradients`` call adds its gradients to accumulators; every
    k-th call applies their mean and clears them.  With a mean loss and a
    constant learning rate this is one step on a k-times larger batch.

    Counting: ``iterations`` counts calls (as bert4keras), so a learning-rate
    schedule counts micro-batches (like the Trainer's steps) and the update
    made at call i uses the learning rate of step i; Adam's bias correction,
    AdaFactor's β2, Lookahead and EMA count updates (``completed_updates``),
    as Keras 3's own accumulation does.  ``micro_steps`` counts accepted calls; it and
    the accumulators are optimizer variables (saved by
    ``tf.train.Checkpoint``).  Under fp16 a call with overflowing gradients
    is skipped by ``LossScaleOptimizer`` (which adds 1 to ``iterations``
    only).  Example::

        AdamAcc = extend_with_gradient_accumulation(Adam, name='AdamAcc')
        opt = AdamAcc(1e-4, grad_accum_steps=8)
    """
    bases = (BaseOptimizer,) if issubclass(BaseOptimizer, _DecayInUpdate) \
        else (_DecayInUpdate, BaseOptimizer)

    class GradientAccumulation(*bases):
        def __init__(self, *args, grad_accum_steps=2, **kwargs):
            super().__init__(*args, **kwargs)
            if not isinstance(grad_accum_steps, int) or grad_accum_steps < 1:
                raise ValueError('grad_accum_steps must be an integer >= 1, '
                                 'got %r' % (grad_accum_steps,))
            self.grad_accum_steps = grad_accum_steps

        def build(self, var_list):
            super().build(var_list)
            if getattr(self, '_accumulators', None) is not None:
                return
            self._accumulators = [self.add_variable_from_reference(v, 'accum')
                                  for v in var_list]
            self.micro_steps = self.add_variable(
                shape=(), dtype=tf.int64, name='micro_steps')

        def _internal_apply_gradients(self, grads_and_vars):
            return tf.__internal__.distribute.interim.maybe_merge_call(
                self._accumulate_fn, self._distribution_strategy,
                grads_and_vars)

        def _accumulate_fn(self, distribution, grads_and_vars):
            apply = tf.equal(
                (self.micro_steps + 1) % self.grad_accum_steps, 0)
            for grad, var in grads_and_vars:
                distribution.extended.update(
                    var, self._accumulate_one, args=(grad, apply),
                    group=False)
            self.micro_steps.assign_add(1)
            return self.iterations.assign_add(1)

        def _accumulate_one(self, var, grad, apply):
            acc = self._accumulators[self._index_dict[self._var_key(var)]]
            total = acc + _dense(grad, acc.dtype)

            def apply_fn():
                self._update_step(total / self.grad_accum_steps, var)
                acc.assign(tf.zeros_like(acc))

            def keep_fn():
                acc.assign(total)

            tf.cond(apply, apply_fn, keep_fn)

        def get_config(self):
            config = super().get_config()
            config['grad_accum_steps'] = self.grad_accum_steps
            return config

    return GradientAccumulation


@_extension
def extend_with_lookahead(BaseOptimizer):
    """New class with Lookahead (Zhang et al., 2019).

    Slow weights φ start at the weights before the first update; after every
    ``steps_per_slow_update`` (k) updates φ ← φ + α(w − φ) and w ← φ
    (α = ``slow_step_size``).  Defaults k=5, α=0.5.  Example::

        AdamLA = extend_with_lookahead(Adam, name='AdamLA')
        opt = AdamLA(1e-3, steps_per_slow_update=5, slow_step_size=0.5)
    """

    class Lookahead(BaseOptimizer):
        def __init__(self, *args, steps_per_slow_update=5, slow_step_size=0.5,
                     **kwargs):
            super().__init__(*args, **kwargs)
            if not isinstance(steps_per_slow_update, int) or \
                    steps_per_slow_update < 1:
                raise ValueError('steps_per_slow_update must be an integer '
                                 '>= 1, got %r' % (steps_per_slow_update,))
            self.steps_per_slow_update = steps_per_slow_update
            self.slow_step_size = float(slow_step_size)

        def build(self, var_list):
            super().build(var_list)
            if getattr(self, '_slow_vars', None) is not None:
                return
            self._slow_vars = [self.add_variable_from_reference(v, 'slow_var')
                               for v in var_list]

        def _update_step(self, gradient, variable):
            if getattr(variable, '_unique_id', None) is None:
                return None
            slow = self._slow_vars[self._index_dict[self._var_key(variable)]]
            k, alpha = self.steps_per_slow_update, self.slow_step_size
            done = completed_updates(self)
            first, sync = tf.equal(done, 0), tf.equal((done + 1) % k, 0)

            def look_ahead(old, new):
                phi = tf.where(first, old, slow)
                phi_new = phi + alpha * (new - phi)
                slow.assign(tf.where(sync, phi_new, phi))
                return tf.where(sync, phi_new, new)
            return _update_then(super(), gradient, variable, look_ahead)

        def get_config(self):
            config = super().get_config()
            config.update(steps_per_slow_update=self.steps_per_slow_update,
                          slow_step_size=self.slow_step_size)
            return config

    return Lookahead


@_extension
def extend_with_lazy_optimization(BaseOptimizer):
    """New class: matching variables change only in rows with a gradient.

    For names matching ``include_in_lazy_optimization`` (regexes, e.g.
    ``['Embedding']``), a row (last axis) whose gradient is all zero keeps
    its value, as bert4keras (optimizer slots still move).  Example::

        AdamLazy = extend_with_lazy_optimization(Adam, name='AdamLazy')
        opt = AdamLazy(1e-3, include_in_lazy_optimization=['Embedding'])
    """

    class LazyOptimization(BaseOptimizer):
        def __init__(self, *args, include_in_lazy_optimization=(), **kwargs):
            super().__init__(*args, **kwargs)
            self.include_in_lazy_optimization = _patterns(
                include_in_lazy_optimization, 'include_in_lazy_optimization')

        def _do_lazy_optimization(self, variable):
            return (variable.shape.rank or 0) >= 1 and string_matching(
                variable.name, self.include_in_lazy_optimization)

        def _update_step(self, gradient, variable):
            if not self._do_lazy_optimization(variable):
                return super()._update_step(gradient, variable)
            g = _dense(gradient, variable.dtype)
            rows = tf.cast(tf.reduce_any(tf.not_equal(g, 0.0), axis=-1,
                                         keepdims=True), variable.dtype)
            return _update_then(super(), gradient, variable,
                                lambda old, new: old + (new - old) * rows)

        def get_config(self):
            config = super().get_config()
            config['include_in_lazy_optimization'] = list(
                self.include_in_lazy_optimization)
            return config

    return LazyOptimization


@_extension
def extend_with_exponential_moving_average(BaseOptimizer):
    """New class keeping an EMA of the weights (bert4keras).

    After each update ema ← μ·ema + (1−μ)·w (ema starts at 0,
    μ = ``ema_momentum``, default 0.999).  ``apply_ema_weights()`` saves the
    weights and loads the averages (divided by 1 − μ^(number of updates)
    with ``bias_correction``); ``reset_old_weights()`` puts the saved weights
    back.  Example::

        AdamEMA = extend_with_exponential_moving_average(Adam, name='AdamEMA')
        opt = AdamEMA(1e-4, ema_momentum=0.999)
        ... model.fit(...) ...
        opt.apply_ema_weights(); model.evaluate(...); opt.reset_old_weights()
    """

    class ExponentialMovingAverage(BaseOptimizer):
        def __init__(self, *args, ema_momentum=0.999, **kwargs):
            super().__init__(*args, **kwargs)
            if not 0.0 <= float(ema_momentum) <= 1.0:
                raise ValueError('ema_momentum must be in [0, 1], got %r'
                                 % (ema_momentum,))
            self.ema_momentum = float(ema_momentum)
            self.old_weights = None

        def build(self, var_list):
            super().build(var_list)
            if getattr(self, 'ema_weights', None) is not None:
                return
            self.model_weights = self._no_dependency(list(var_list))
            self.ema_weights = [self.add_variable_from_reference(v, 'ema')
                                for v in var_list]

        def _update_step(self, gradient, variable):
            if getattr(variable, '_unique_id', None) is None:
                return None
            ema = self.ema_weights[self._index_dict[self._var_key(variable)]]
            mu = self.ema_momentum

            def average(old, new):
                ema.assign(mu * ema + (1.0 - mu) * new)
                return new
            return _update_then(super(), gradient, variable, average)

        def _require_built(self):
            if getattr(self, 'ema_weights', None) is None:
                raise RuntimeError('%s has no moving averages yet: train (or '
                                   'optimizer.build(variables)) first'
                                   % self.name)

        def apply_ema_weights(self, bias_correction=True):
            """Save the weights, then load their moving averages."""
            self._require_built()
            self.old_weights = self._no_dependency(
                [w.numpy() for w in self.model_weights])
            ema = [w.numpy() for w in self.ema_weights]
            if bias_correction:
                scale = 1.0 - np.power(self.ema_momentum,
                                       int(tf.convert_to_tensor(
                                           completed_updates(self))))
                ema = [w / scale for w in ema]
            for w, value in zip(self.model_weights, ema):
                w.assign(value)

        def reset_old_weights(self):
            """Load the weights saved by ``apply_ema_weights``."""
            if self.old_weights is None:
                raise RuntimeError('reset_old_weights: apply_ema_weights() '
                                   'was not called')
            for w, value in zip(self.model_weights, self.old_weights):
                w.assign(value)

        def get_config(self):
            config = super().get_config()
            config['ema_momentum'] = self.ema_momentum
            return config

    return ExponentialMovingAverage


@_extension
def extend_with_parameter_wise_lr(BaseOptimizer):
    """New class with per-variable learning-rate multipliers (bert4keras).

    ``paramwise_lr_schedule={'Embedding': 0.1, 'Transformer-0': 2}``: the
    update of every variable whose name contains a key (plain substring) is
    multiplied by its value (several matching keys multiply).  Example::

        AdamPW = extend_with_parameter_wise_lr(Adam, name='AdamPW')
        opt = AdamPW(1e-3, paramwise_lr_schedule={'Embedding': 0.1})
    """

    class ParameterWiseLR(BaseOptimizer):
        def __init__(self, *args, paramwise_lr_schedule=None, **kwargs):
            super().__init__(*args, **kwargs)
            schedule = dict(paramwise_lr_schedule or {})
            for key, value in schedule.items():
                if not isinstance(key, str) or \
                        not isinstance(value, (int, float)):
                    raise ValueError('paramwise_lr_schedule must map name '
                                     'substrings to numbers, got %r: %r'
                                     % (key, value))
            self.paramwise_lr_schedule = schedule

        def _multiplier(self, variable):
            mult = 1.0
            for key, value in self.paramwise_lr_schedule.items():
                if key in variable.name:
                    mult *= value
            return mult

        def _update_step(self, gradient, variable):
            mult = self._multiplier(variable)
            if mult == 1:
                return super()._update_step(gradient, variable)
            return _update_then(super(), gradient, variable,
                                lambda old, new: old + (new - old) * mult)

        def get_config(self):
            config = super().get_config()
            config['paramwise_lr_schedule'] = dict(self.paramwise_lr_schedule)
            return config

    return ParameterWiseLR


# bert4keras (tf.keras) exports the same functions under *_v2 names.
extend_with_weight_decay_v2 = extend_with_weight_decay
extend_with_layer_adaptation_v2 = extend_with_layer_adaptation
extend_with_piecewise_linear_lr_v2 = extend_with_piecewise_linear_lr
extend_with_gradient_accumulation_v2 = extend_with_gradient_accumulation
extend_with_lookahead_v2 = extend_with_lookahead
extend_with_lazy_optimization_v2 = extend_with_lazy_optimization
extend_with_exponential_moving_average_v2 = \
    extend_with_exponential_moving_average
extend_with_parameter_wise_lr_v2 = extend_with_parameter_wise_lr


# --------------------------------------------------------------------------
# AdamW, LAMB, AdaFactorW and build_optimizer
# --------------------------------------------------------------------------

def _decoupled(BaseOptimizer, name):
    """``BaseOptimizer`` + weight decay in the AdamW convention.

    Arguments ``weight_decay`` (default 0.01), ``exclude_from_weight_decay``
    (default ``('Norm', 'bias')``) and ``lr_schedule``; rank ≤ 1 variables
    are never decayed.  The decay is ``extend_with_weight_decay``'s.
    """
    Decayed = extend_with_weight_decay(BaseOptimizer,
                                       name='WeightDecay' + name)

    class Decoupled(Decayed):
        def __init__(self, learning_rate=1e-3, weight_decay=0.01,
                     exclude_from_weight_decay=('Norm', 'bias'),
                     lr_schedule=None, **kwargs):
            kwargs.pop('weight_decay_rate', None)
            super().__init__(_scheduled(learning_rate, lr_schedule),
                             weight_decay_rate=weight_decay,
                             exclude_from_weight_decay=exclude_from_weight_decay,
                             **kwargs)

        @property
        def exclude_names(self):
            return self.weight_decay_exclusions

        def _do_weight_decay(self, variable):
            rank = variable.shape.rank
            return (rank is None or rank > 1) and super()._do_weight_decay(
                variable)

        def get_config(self):
            config = super().get_config()
            config['weight_decay'] = config.pop('weight_decay_rate')
            return config

    Decoupled.__name__ = Decoupled.__qualname__ = name
    return register(Decoupled, package=PACKAGE, plain_name=False)


#: bert4keras Adam + decoupled weight decay that skips biases and norms.
#: ``AdamW(1e-4, weight_decay=0.01, lr_schedule={1000: 1})``.
AdamW = _decoupled(Adam, 'AdamW')
AdamW.__doc__ = """Adam + decoupled weight decay that skips biases and norms.

    Variables of rank ≤ 1 (biases, LayerNorm/ScaleOffset gains) are never
    decayed; neither is any variable whose name matches (``re.search``) one of
    ``exclude_from_weight_decay``.  ``lr_schedule`` as bert4keras.

    Update (t = update number, ε added to √v̂ as bert4keras)::

        m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
        w ← w − lr·(m̂/(√v̂ + ε) + wd·w)       (wd·w unless excluded)

    Example::

        opt = AdamW(1e-4, weight_decay=0.01, lr_schedule={1000: 1})
    """

#: AdaFactor + the same weight decay (``build_optimizer('adafactor')``).
AdaFactorW = _decoupled(AdaFactor, 'AdaFactorW')


def _with_vector_rule(BaseOptimizer, name):
    """Layer adaptation that skips rank ≤ 1 variables and, by default, the
    weight-decay exclusions."""
    Adapted = extend_with_layer_adaptation(BaseOptimizer,
                                           name='LayerAdaptation' + name)

    class Lamb(Adapted):
        def __init__(self, *args, exclude_from_layer_adaptation=None,
                     **kwargs):
            super().__init__(*args, exclude_from_layer_adaptation=(),
                             **kwargs)
            if exclude_from_layer_adaptation is None:
                exclude_from_layer_adaptation = self.weight_decay_exclusions
            self.layer_adaptation_exclusions = _patterns(
                exclude_from_layer_adaptation, 'exclude_from_layer_adaptation')

        def _do_layer_adaptation(self, variable):
            rank = variable.shape.rank
            return (rank is None or rank > 1) and \
                super()._do_layer_adaptation(variable)

    Lamb.__name__ = Lamb.__qualname__ = name
    return register(Lamb, package=PACKAGE, plain_name=False)


#: AdamW with LAMB's layer adaptation (You et al., 2019); GAU-α's release
#: trains with ``LAMB(..., bias_correction=False)``.
LAMB = _with_vector_rule(AdamW, 'LAMB')

OPTIMIZERS = {'adam': AdamW, 'adamw': AdamW, 'lamb': LAMB,
              'adafactor': AdaFactorW}


def build_optimizer(name='adamw', learning_rate=1e-3, weight_decay=0.01,
                    lr_schedule=None, grad_accum_steps=1, **kwargs):
    """One of 'adam' (= adamw with weight_decay 0), 'adamw', 'lamb',
    'adafactor' (AdaFactor + the same decoupled weight decay; pass
    ``weight_decay=0`` for plain bert4keras AdaFactor, ``beta1=0.9`` etc.
    through ``kwargs``).

    ``grad_accum_steps`` > 1 adds gradient accumulation.  Create it inside
    ``strategy.scope()`` when training with a strategy.  Example::

        opt = build_optimizer('adamw', 2e-5, lr_schedule={100: 1, 1000: 0})
        opt = build_optimizer('adafactor', 5e-4, weight_decay=0, beta1=0.9,
                              grad_accum_steps=4)
    """
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError('optimizer name must be one of %s, got %r'
                         % (sorted(OPTIMIZERS), name))
    cls = OPTIMIZERS[key]
    if key == 'adam':
        weight_decay = 0.0
    if grad_accum_steps != 1:
        cls = extend_with_gradient_accumulation(
            cls, name='GradientAccumulation' + cls.__name__)
        kwargs['grad_accum_steps'] = grad_accum_steps
    return cls(learning_rate, weight_decay=weight_decay,
               lr_schedule=lr_schedule, **kwargs)


# Every other public name of bert4keras.optimizers, so that
# `from bert4keras.optimizers import X` ports as `from gau_keras.optimizers import X`
# (gau_keras.bert4keras_names: what is left out and why).
from gau_keras.bert4keras_names import reexport as _reexport  # noqa: E402
_reexport(globals(), 'optimizers')
