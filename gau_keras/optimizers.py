"""Optimizers that work on TF 2.21 / tf-keras (bert4keras's no longer do).

Built on the tf-keras optimizers (``tf.keras.optimizers.AdamW`` …); only what
tf-keras lacks is written here:

* ``PiecewiseLinearSchedule``: bert4keras's ``lr_schedule={step: multiplier}``;
* ``AdamW``: weight decay that skips biases and norms (every variable of rank
  ≤ 1) and variables whose name matches a pattern;
* ``extend_with_layer_adaptation``: LAMB's trust ratio ‖w‖ / ‖update‖;
* ``extend_with_gradient_accumulation``: k micro-batches per update.

All of them work with ``LossScaleOptimizer`` (fp16), ``jit_compile=True`` and
``tf.distribute`` strategies.  Example::

    from gau_keras.optimizers import build_optimizer
    opt = build_optimizer('lamb', 1e-3, weight_decay=0.01,
                          lr_schedule={1000: 1, 10000: 0.1},
                          grad_accum_steps=4)
"""
import tensorflow as tf

keras = tf.keras


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


@keras.utils.register_keras_serializable(package='gau_keras')
class PiecewiseLinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = learning_rate × piecewise_linear(step, schedule).

    ``step`` is the optimizer's ``iterations`` before the update, so the first
    update uses step 0, as bert4keras's ``extend_with_piecewise_linear_lr``.

    Example::

        lr = PiecewiseLinearSchedule(1e-4, {1000: 1, 5000: 0.1})
        opt = tf.keras.optimizers.Adam(lr)
    """

    def __init__(self, learning_rate, schedule):
        self.learning_rate = float(learning_rate)
        self.schedule = dict(check_schedule(schedule))

    def __call__(self, step):
        return self.learning_rate * piecewise_linear(step, self.schedule)

    def get_config(self):
        return {'learning_rate': self.learning_rate,
                'schedule': {str(k): v for k, v in self.schedule.items()}}


def _scheduled(learning_rate, lr_schedule):
    if lr_schedule is None:
        return learning_rate
    if not isinstance(learning_rate, (int, float)):
        raise ValueError('lr_schedule needs a number as learning_rate, got %r'
                         % (learning_rate,))
    return PiecewiseLinearSchedule(learning_rate, lr_schedule)


def _matches(variable, patterns):
    import re
    return any(re.search(p, variable.name) for p in patterns)


class _DecayInUpdate:
    """Decoupled weight decay applied inside each variable's update.

    w ← w − lr·wd·w, then the base update (tf-keras applies it in a separate
    pass; per variable it also runs under gradient accumulation and inside
    the per-replica update of a strategy).
    """

    def _apply_weight_decay(self, variables):
        pass  # moved into _update_step

    def _update_step(self, gradient, variable):
        if getattr(variable, '_unique_id', None) is None:
            return None
        wd = getattr(self, 'weight_decay', None)
        if wd and self._use_weight_decay(variable):
            lr = tf.cast(self.learning_rate, variable.dtype)
            variable.assign_sub(variable * tf.cast(wd, variable.dtype) * lr)
        return super()._update_step(gradient, variable)


@keras.utils.register_keras_serializable(package='gau_keras')
class AdamW(_DecayInUpdate, keras.optimizers.AdamW):
    """tf-keras AdamW whose decay skips biases, norms and named variables.

    Variables of rank ≤ 1 (biases, LayerNorm/ScaleOffset gains) are never
    decayed; neither is any variable whose name matches (``re.search``) one of
    ``exclude_from_weight_decay``.  ``lr_schedule`` as bert4keras.

    Update (t = iterations + 1, on every variable)::

        w ← w − lr·wd·w                       (unless excluded)
        m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
        w ← w − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)

    Example::

        opt = AdamW(1e-4, weight_decay=0.01, lr_schedule={1000: 1})
    """

    def __init__(self, learning_rate=1e-3, weight_decay=0.01,
                 exclude_from_weight_decay=('Norm', 'bias'),
                 lr_schedule=None, **kwargs):
        super().__init__(_scheduled(learning_rate, lr_schedule),
                         weight_decay=weight_decay, **kwargs)
        if isinstance(exclude_from_weight_decay, str):
            exclude_from_weight_decay = [exclude_from_weight_decay]
        self.exclude_names = list(exclude_from_weight_decay or [])
        self.exclude_from_weight_decay(var_names=self.exclude_names)

    def _use_weight_decay(self, variable):
        if variable.shape.rank is not None and variable.shape.rank <= 1:
            return False
        return not _matches(variable, self.exclude_names)

    def get_config(self):
        config = super().get_config()
        config['exclude_from_weight_decay'] = self.exclude_names
        return config


def extend_with_layer_adaptation(BaseOptimizer):
    """New class: each update u of a matrix is rescaled to lr·‖w‖/‖u/lr‖·u/lr.

    This is LAMB's trust ratio (You et al., 2019) applied to whatever the base
    computes (for AdamW: Adam direction + weight decay).  The ratio is 1 when
    ‖w‖ or ‖u‖ is 0; rank ≤ 1 variables and names matching
    ``exclude_from_layer_adaptation`` are not adapted (default: the weight
    decay exclusions).  Example::

        LAMB = extend_with_layer_adaptation(AdamW)
        opt = LAMB(1e-3, weight_decay=0.01)
    """

    class LayerAdaptation(BaseOptimizer):
        def __init__(self, *args, exclude_from_layer_adaptation=None,
                     **kwargs):
            super().__init__(*args, **kwargs)
            names = exclude_from_layer_adaptation
            if names is None:
                names = getattr(self, 'exclude_names', [])
            self.exclude_adaptation = [names] if isinstance(names, str) \
                else list(names)

        def _adapt(self, variable):
            rank = variable.shape.rank
            return (rank is None or rank > 1) and not _matches(
                variable, self.exclude_adaptation)

        def _update_step(self, gradient, variable):
            if not self._adapt(variable):
                return super()._update_step(gradient, variable)
            old = tf.identity(variable)
            super()._update_step(gradient, variable)
            lr = tf.maximum(tf.cast(self.learning_rate, variable.dtype), 1e-10)
            update = variable - old
            w_norm, u_norm = tf.norm(old), tf.norm(update / lr)
            ratio = tf.where((w_norm > 0) & (u_norm > 0),
                             w_norm / tf.maximum(u_norm, 1e-30), 1.0)
            variable.assign(old + update * ratio)
            return None

        def get_config(self):
            config = super().get_config()
            config['exclude_from_layer_adaptation'] = self.exclude_adaptation
            return config

    LayerAdaptation.__name__ = 'LayerAdaptation' + BaseOptimizer.__name__
    return LayerAdaptation


def extend_with_gradient_accumulation(BaseOptimizer):
    """New class: gradients of ``grad_accum_steps`` calls make one update.

    Each ``apply_gradients`` call adds its gradients to accumulators; every
    k-th call applies their mean and clears them.  With a mean loss this is
    one step on a k-times larger batch.  ``iterations`` (and so bias
    correction and the learning-rate schedule) counts real updates; the
    ``micro_steps`` variable counts calls.  Under fp16 a call with overflowing
    gradients is skipped by ``LossScaleOptimizer`` (which then adds 1 to
    ``iterations``, as tf-keras does for any optimizer).  Example::

        AdamWAcc = extend_with_gradient_accumulation(AdamW)
        opt = AdamWAcc(1e-4, grad_accum_steps=8)
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
            return self.iterations.assign_add(tf.cast(apply, tf.int64))

        def _accumulate_one(self, var, grad, apply):
            acc = self._accumulators[self._index_dict[self._var_key(var)]]
            total = acc + tf.cast(grad, acc.dtype)

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

    GradientAccumulation.__name__ = ('GradientAccumulation'
                                     + BaseOptimizer.__name__)
    return GradientAccumulation


#: AdamW with LAMB's layer adaptation.
LAMB = extend_with_layer_adaptation(AdamW)
LAMB.__name__ = 'LAMB'
keras.utils.register_keras_serializable(package='gau_keras')(LAMB)

OPTIMIZERS = {'adam': AdamW, 'adamw': AdamW, 'lamb': LAMB}


def build_optimizer(name='adamw', learning_rate=1e-3, weight_decay=0.01,
                    lr_schedule=None, grad_accum_steps=1, **kwargs):
    """One of 'adam' (= adamw with weight_decay 0), 'adamw', 'lamb'.

    ``grad_accum_steps`` > 1 adds gradient accumulation.  Create it inside
    ``strategy.scope()`` when training with a strategy.  Example::

        opt = build_optimizer('adamw', 2e-5, lr_schedule={100: 1, 1000: 0})
    """
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError('optimizer name must be one of %s, got %r'
                         % (sorted(OPTIMIZERS), name))
    cls = OPTIMIZERS[key]
    if key == 'adam':
        weight_decay = 0.0
    if grad_accum_steps != 1:
        cls = extend_with_gradient_accumulation(cls)
        kwargs['grad_accum_steps'] = grad_accum_steps
    return cls(learning_rate, weight_decay=weight_decay,
               lr_schedule=lr_schedule, **kwargs)
