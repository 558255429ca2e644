"""bert4keras 0.11.5's optimizer API vs numpy transcriptions of its rules.

Each case builds a class the bert4keras way (``extend_with_X(Base)``), runs a
few steps on a small problem and compares every variable with a plain-numpy
transcription of bert4keras's update (its tf.keras ``*_v2`` versions): the
base computes a new value, each extension rewrites it, inner one first.
"""
import inspect
import re

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import optimizers as gk

LR = 0.03
SHAPES = {'dense/kernel': (4, 6), 'dense/bias': (6,), 'Norm/gamma': (5,),
          'Embedding-Token/embeddings': (7, 3), 'cube': (2, 5, 3)}


# --------------------------------------------------------------- the problem

def problem():
    """Initial values and coefficients of a quadratic loss per variable.

    grad = mask_s · (a·(w − t) + c); the embedding's mask keeps only some
    rows at step s (exactly-zero rows, as an Embedding's gradient).
    """
    rs = np.random.RandomState(0)
    init = {k: rs.randn(*s).astype('float32') for k, s in SHAPES.items()}
    coef = {k: (rs.rand(*s).astype('float32') + 0.5,
                rs.randn(*s).astype('float32'),
                0.1 * rs.randn(*s).astype('float32'))
            for k, s in SHAPES.items()}
    return init, coef


def row_mask(name, step):
    mask = np.ones(SHAPES[name], 'float32')
    if name.startswith('Embedding'):
        mask[:] = 0
        mask[[step % 7, (3 * step + 1) % 7]] = 1
    return mask


def numpy_grad(name, w, coef, step):
    a, t, c = coef[name]
    return row_mask(name, step) * (a * (w - t) + c)


def run_tf(optimizer, steps, init=None, coef=None):
    """``steps`` eager apply_gradients calls; returns (values, variables)."""
    if init is None:
        init, coef = problem()
    variables = {k: tf.Variable(v, name=k) for k, v in init.items()}
    for step in range(steps):
        with tf.GradientTape() as tape:
            loss = 0.0
            for k, v in variables.items():
                a, t, c = coef[k]
                loss += tf.reduce_sum(row_mask(k, step) * (
                    0.5 * a * tf.square(v - t) + c * v))
        names = list(variables)
        grads = tape.gradient(loss, [variables[k] for k in names])
        optimizer.apply_gradients(zip(grads, [variables[k] for k in names]))
    return {k: v.numpy() for k, v in variables.items()}, variables


# ---------------------------------------------- numpy: bert4keras's rules

def np_rms(x):
    return np.sqrt(np.mean(np.square(x)))


class NumpyAdam:
    """bert4keras Adam: m̂/(√v̂ + ε), bias correction optional."""

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                 bias_correction=True):
        self.b1, self.b2, self.eps, self.bc = (beta_1, beta_2, epsilon,
                                               bias_correction)
        self.m, self.v = {}, {}

    def __call__(self, name, w, g, t, lr):
        m = self.b1 * self.m.get(name, 0) + (1 - self.b1) * g
        v = self.b2 * self.v.get(name, 0) + (1 - self.b2) * g * g
        self.m[name], self.v[name] = m, v
        if self.bc:
            m, v = m / (1 - self.b1 ** t), v / (1 - self.b2 ** t)
        return w - lr * m / (np.sqrt(v) + self.eps)


class NumpyLion:
    def __init__(self, beta_1=0.95, beta_2=0.98):
        self.b1, self.b2, self.m = beta_1, beta_2, {}

    def __call__(self, name, w, g, t, lr):
        m = self.m.get(name, 0)
        new = w - lr * np.sign(self.b1 * m + (1 - self.b1) * g)
        self.m[name] = self.b2 * m + (1 - self.b2) * g
        return new


class NumpyAdaFactor:
    """bert4keras AdaFactorV2._resource_apply_dense, line by line."""

    def __init__(self, beta1=0.0, beta2=None, epsilon1=1e-30, epsilon2=1e-3,
                 multiply_by_parameter_scale=True, clipping_threshold=1.0,
                 min_dim_size_to_factor=128, exclude_from_parameter_scale=()):
        self.__dict__.update(locals())
        self.state = {}

    def axes(self, shape):
        """(largest axis, second largest) or None; no ties in SHAPES."""
        if len(shape) < 2:
            return None
        order = np.argsort(shape)
        if shape[order[-2]] < self.min_dim_size_to_factor:
            return None
        return order[-1], order[-2]

    def __call__(self, name, w, g, t, lr):
        s = self.state.setdefault(name, {})
        beta2 = 1 - t ** -0.8 if self.beta2 is None else self.beta2
        g2 = g * g + self.epsilon1
        axes = self.axes(w.shape)
        if axes is None:
            v = s['v'] = beta2 * s.get('v', 0) + (1 - beta2) * g2
        else:
            a1, a2 = axes
            vr = s['vr'] = beta2 * s.get('vr', 0) + (1 - beta2) * g2.mean(
                axis=a1, keepdims=True)
            vc = s['vc'] = beta2 * s.get('vc', 0) + (1 - beta2) * g2.mean(
                axis=a2, keepdims=True)
            v = vr * vc / vr.mean(axis=a2, keepdims=True)
        u = g / np.sqrt(v + self.epsilon1)
        if self.clipping_threshold is not None:
            u = u / max(1.0, np_rms(u) / self.clipping_threshold)
        if self.beta1 > 0:
            u = s['m'] = self.beta1 * s.get('m', 0) + (1 - self.beta1) * u
        if self.multiply_by_parameter_scale and not any(
                re.search(p, name) for p in self.exclude_from_parameter_scale):
            u = u * max(np_rms(w), self.epsilon2)
        if lr is None:
            lr = min(1 / np.sqrt(t), 0.01) * (
                1 if self.multiply_by_parameter_scale else 0.05)
        return w - lr * u


def np_weight_decay(rate, exclude):
    def f(name, old, new, g, lr, i):
        if any(re.search(p, name) for p in exclude):
            return new
        return new - lr * rate * old
    return f


def np_layer_adaptation(exclude):
    def f(name, old, new, g, lr, i):
        if any(re.search(p, name) for p in exclude):
            return new
        dx = new - old
        w_norm = np.linalg.norm(old)
        g_norm = np.linalg.norm(dx / max(lr, 1e-7))
        ratio = w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
        return old + dx * ratio
    return f


def np_paramwise(schedule):
    def f(name, old, new, g, lr, i):
        mult = np.prod([v for k, v in schedule.items() if k in name])
        return old + (new - old) * mult
    return f


def np_lazy(include):
    def f(name, old, new, g, lr, i):
        if not any(re.search(p, name) for p in include):
            return new
        rows = np.any(g != 0, axis=-1, keepdims=True)
        return old + (new - old) * rows
    return f


def np_lookahead(k, alpha):
    """Zhang et al.: φ₀ = w₀; every k-th update φ += α(w − φ), w = φ."""
    slow = {}

    def f(name, old, new, g, lr, i):
        phi = old if i == 0 else slow[name]
        if (i + 1) % k == 0:
            phi = phi + alpha * (new - phi)
            new = phi
        slow[name] = phi
        return new
    return f


def np_ema(mu, ema):
    def f(name, old, new, g, lr, i):
        ema[name] = mu * ema.get(name, 0) + (1 - mu) * new
        return new
    return f


def run_numpy(base, transforms, steps, lr=LR, schedule=None, init=None,
              coef=None):
    """Base update, then each transform (inner first), for every variable.

    lr at update i is lr·piecewise(i) (bert4keras counts from 0); the
    variable name seen by patterns is the tf name ``k:0``.
    """
    if init is None:
        init, coef = problem()
    w = {k: v.astype('float64') for k, v in init.items()}
    for i in range(steps):
        lr_i = None if lr is None else lr * (
            1.0 if schedule is None else hand_piecewise(i, schedule))
        grads = {k: numpy_grad(k, w[k], coef, i) for k in w}
        for k in w:
            name = k + ':0'
            new = base(name, w[k], grads[k], i + 1, lr_i)
            for f in transforms:
                new = f(name, w[k], new, grads[k], lr_i, i)
            w[k] = new
    return w


def hand_piecewise(t, schedule):
    """bert4keras's piecewise_linear, by hand (0 at step 0 if not given)."""
    points = sorted(schedule.items())
    if points[0][0] != 0:
        points = [(0, 0.0)] + points
    for (t0, x0), (t1, x1) in zip(points, points[1:]):
        if t < t1:
            return x0 + (x1 - x0) * (t - t0) / (t1 - t0)
    return points[-1][1]


def assert_close(got, want, atol=2e-5):
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=atol, rtol=1e-4,
                                   err_msg=k)


# -------------------------------------------------------------- base rules

@pytest.mark.parametrize('bias_correction', [True, False])
def test_adam_matches_numpy(bias_correction):
    opt = gk.Adam(LR, beta_1=0.8, beta_2=0.9, epsilon=1e-3,
                  bias_correction=bias_correction)
    got, _ = run_tf(opt, 4)
    want = run_numpy(NumpyAdam(0.8, 0.9, 1e-3, bias_correction), [], 4)
    assert_close(got, want)
    other = run_numpy(NumpyAdam(0.8, 0.9, 1e-3, not bias_correction), [], 4)
    assert max(np.abs(other[k] - want[k]).max() for k in want) > 1e-3


def test_adam_epsilon_is_added_to_corrected_root():
    """bert4keras: m̂/(√v̂ + ε); tf-keras: m̂/(√v + ε)·√(1−β2ᵗ)… differ."""
    opt = gk.Adam(LR, epsilon=0.05)
    got, _ = run_tf(opt, 2)
    want = run_numpy(NumpyAdam(epsilon=0.05), [], 2)
    assert_close(got, want)
    ref, _ = run_tf(tf.keras.optimizers.Adam(LR, epsilon=0.05), 2)
    assert max(np.abs(ref[k] - want[k]).max() for k in want) > 1e-3


def test_lion_matches_numpy():
    got, _ = run_tf(gk.Lion(LR, beta_1=0.9, beta_2=0.99), 4)
    assert_close(got, run_numpy(NumpyLion(0.9, 0.99), [], 4))


ADAFACTOR_CASES = {
    'relative_step_factored': dict(learning_rate=None,
                                   min_dim_size_to_factor=3),
    'momentum_fixed_beta2': dict(learning_rate=0.02, beta1=0.9, beta2=0.95,
                                 clipping_threshold=None,
                                 min_dim_size_to_factor=3),
    'no_scale_relative_step': dict(learning_rate=None, beta1=0.5,
                                   multiply_by_parameter_scale=False,
                                   min_dim_size_to_factor=3),
    'clip_exclude_unfactored': dict(learning_rate=0.05, clipping_threshold=0.3,
                                    exclude_from_parameter_scale=['bias'],
                                    epsilon2=0.5),
}


@pytest.mark.parametrize('case', sorted(ADAFACTOR_CASES))
def test_adafactor_matches_numpy(case):
    kwargs = dict(ADAFACTOR_CASES[case])
    lr = kwargs.pop('learning_rate')
    got, _ = run_tf(gk.AdaFactor(lr, **kwargs), 4)
    want = run_numpy(NumpyAdaFactor(**kwargs), [], 4, lr=lr)
    assert_close(got, want)


def test_piecewise_lr_over_relative_step_adafactor():
    """bert4keras: AdaFactor's min(1/√t, 0.01) times the schedule."""
    cls = gk.extend_with_piecewise_linear_lr(gk.AdaFactor, name='B4K_AFLR')
    got, _ = run_tf(cls(None, lr_schedule={2: 1}, min_dim_size_to_factor=3),
                    4)
    adafactor = NumpyAdaFactor(min_dim_size_to_factor=3)

    def base(name, w, g, t, lr):
        lr = min(1 / np.sqrt(t), 0.01) * hand_piecewise(t - 1, {2: 1})
        return adafactor(name, w, g, t, lr)
    assert_close(got, run_numpy(base, [], 4, lr=None))


def test_adafactor_factors_the_two_largest_axes():
    opt = gk.AdaFactor(min_dim_size_to_factor=3)
    _, variables = run_tf(opt, 1)
    vr = opt.slot(variables['cube'], 'vr')
    vc = opt.slot(variables['cube'], 'vc')
    assert vr.shape == (2, 1, 3) and vc.shape == (2, 5, 1)
    assert opt.slot(variables['dense/kernel'], 'vr').shape == (4, 1)
    assert opt.slot(variables['dense/bias'], 'v').shape == (6,)
    # below min_dim_size_to_factor: full second moment
    opt = gk.AdaFactor(min_dim_size_to_factor=5)
    _, variables = run_tf(opt, 1)
    assert opt.slot(variables['dense/kernel'], 'v').shape == (4, 6)
    assert gk.AdaFactorV1 is gk.AdaFactorV2 is gk.AdaFactor


# -------------------------------------------------------------- extensions

def wd(base):
    return gk.extend_with_weight_decay(base)


def la(base):
    return gk.extend_with_layer_adaptation(base)


EXTENSION_CASES = {
    # name: (class maker, kwargs, numpy transforms, lr schedule)
    'weight_decay': (
        wd, dict(weight_decay_rate=0.3, exclude_from_weight_decay=['Norm']),
        [np_weight_decay(0.3, ['Norm'])], None),
    'layer_adaptation': (
        la, dict(exclude_from_layer_adaptation=['bias']),
        [np_layer_adaptation(['bias'])], None),
    'lamb_gau_alpha': (
        lambda b: la(wd(b)),
        dict(weight_decay_rate=0.1, exclude_from_weight_decay=['Norm',
                                                                'bias'],
             exclude_from_layer_adaptation=['Norm', 'bias'],
             bias_correction=False),
        [np_weight_decay(0.1, ['Norm', 'bias']),
         np_layer_adaptation(['Norm', 'bias'])], None),
    'decay_outside_adaptation': (
        lambda b: wd(la(b)), dict(weight_decay_rate=0.1),
        [np_layer_adaptation([]), np_weight_decay(0.1, [])], None),
    'piecewise_linear_lr': (
        gk.extend_with_piecewise_linear_lr,
        dict(lr_schedule={2: 1.0, 3: 0.2}), [], {2: 1.0, 3: 0.2}),
    'piecewise_lr_with_decay': (
        lambda b: gk.extend_with_piecewise_linear_lr(wd(b)),
        dict(lr_schedule={1: 1.0, 3: 0.5}, weight_decay_rate=0.2),
        [np_weight_decay(0.2, [])], {1: 1.0, 3: 0.5}),
    'parameter_wise_lr': (
        gk.extend_with_parameter_wise_lr,
        dict(paramwise_lr_schedule={'dense': 2.0, 'kernel': 0.25,
                                    'Norm': 0.1}),
        [np_paramwise({'dense': 2.0, 'kernel': 0.25, 'Norm': 0.1})], None),
    'lazy_optimization': (
        gk.extend_with_lazy_optimization,
        dict(include_in_lazy_optimization=['Embedding']),
        [np_lazy(['Embedding'])], None),
    'lookahead': (
        gk.extend_with_lookahead,
        dict(steps_per_slow_update=2, slow_step_size=0.3),
        [np_lookahead(2, 0.3)], None),
}


@pytest.mark.parametrize('base', ['adam', 'adafactor'])
@pytest.mark.parametrize('case', sorted(EXTENSION_CASES))
def test_extension_matches_numpy(case, base):
    make, kwargs, transforms, schedule = EXTENSION_CASES[case]
    kwargs = dict(kwargs)
    if base == 'adam':
        bc = kwargs.pop('bias_correction', True)
        cls, np_base = gk.Adam, NumpyAdam(bias_correction=bc)
        kwargs['bias_correction'] = bc
    else:
        kwargs.pop('bias_correction', None)
        cls = gk.AdaFactor
        np_base = NumpyAdaFactor(beta1=0.9, min_dim_size_to_factor=3)
        kwargs.update(beta1=0.9, min_dim_size_to_factor=3)
    got, _ = run_tf(make(cls)(LR, **kwargs), 5)
    want = run_numpy(np_base, transforms, 5, schedule=schedule)
    assert_close(got, want)
    # the extension matters on this problem
    plain = run_numpy(NumpyAdam() if base == 'adam' else NumpyAdaFactor(
        beta1=0.9, min_dim_size_to_factor=3), [], 5)
    assert max(np.abs(plain[k] - want[k]).max() for k in want) > 1e-3


def test_weight_decay_decays_biases_unless_excluded():
    """bert4keras decays every variable not excluded by name (no rank rule),
    unlike AdamW."""
    v = tf.Variable(np.ones(3, 'float32'), name='bias')
    opt = gk.extend_with_weight_decay(gk.Adam)(0.1, weight_decay_rate=0.5)
    opt.apply_gradients([(tf.zeros(3), v)])
    np.testing.assert_allclose(v.numpy(), 0.95)
    v2 = tf.Variable(np.ones(3, 'float32'), name='bias')
    gk.AdamW(0.1, weight_decay=0.5).apply_gradients([(tf.zeros(3), v2)])
    np.testing.assert_allclose(v2.numpy(), 1.0)


def test_lazy_rows_keep_their_values_others_move():
    opt = gk.extend_with_lazy_optimization(gk.Adam)(
        LR, include_in_lazy_optimization=['Embedding'])
    init, _ = problem()
    got, _ = run_tf(opt, 2)
    emb = 'Embedding-Token/embeddings'
    touched = {0, 1, 4}     # rows with a gradient at steps 0 and 1
    for row in range(7):
        moved = np.abs(got[emb][row] - init[emb][row]).max() > 1e-6
        assert moved == (row in touched), row


def test_ema_weights_apply_and_reset():
    mu, steps = 0.6, 4
    cls = gk.extend_with_exponential_moving_average(gk.Adam, name='AdamEMA')
    opt = cls(LR, ema_momentum=mu)
    got, variables = run_tf(opt, steps)
    ema = {}
    want = run_numpy(NumpyAdam(), [np_ema(mu, ema)], steps)
    assert_close(got, want)
    opt.apply_ema_weights()
    scale = 1 - mu ** steps
    for k, v in variables.items():
        np.testing.assert_allclose(v.numpy(), ema[k + ':0'] / scale,
                                   atol=2e-5, err_msg=k)
    opt.reset_old_weights()
    for k, v in variables.items():
        np.testing.assert_array_equal(v.numpy(), got[k])
    opt.apply_ema_weights(bias_correction=False)
    for k, v in variables.items():
        np.testing.assert_allclose(v.numpy(), ema[k + ':0'], atol=2e-5)
    assert tf.keras.utils.get_custom_objects()['AdamEMA'] is cls


def test_lookahead_first_update_keeps_the_weights():
    """φ₀ = w₀ (paper); bert4keras's zero-initialised slow weights would
    make the first update w ← α·w."""
    opt = gk.extend_with_lookahead(gk.Adam)(
        0.0, steps_per_slow_update=1, slow_step_size=0.5)
    init, _ = problem()
    got, _ = run_tf(opt, 1)
    assert_close(got, init, atol=0)


# ---------------------------------------------------- accumulation + api

def test_accumulation_with_schedule_matches_numpy_mean():
    """k calls = one bert4keras update on the mean gradient; as bert4keras,
    the schedule counts calls (the update at call i uses step i), while
    bias correction counts updates."""
    k, updates, schedule = 3, 3, {4: 1.0, 7: 0.5}
    cls = gk.extend_with_piecewise_linear_lr(
        gk.extend_with_gradient_accumulation(gk.Adam))
    opt = cls(LR, lr_schedule=schedule, grad_accum_steps=k)
    init, coef = problem()
    variables = {n: tf.Variable(v, name=n) for n, v in init.items()}
    w = {n: v.astype('float64') for n, v in init.items()}
    np_adam, rs = NumpyAdam(), np.random.RandomState(5)
    for i in range(updates):
        scales = rs.rand(k) + 0.5           # micro-batch gradients differ
        for s in scales:
            grads = [tf.constant(s * numpy_grad(n, w[n], coef, 1), tf.float32)
                     for n in variables]
            opt.apply_gradients(zip(grads, variables.values()))
        lr = LR * hand_piecewise((i + 1) * k - 1, schedule)
        for n in w:
            g = scales.mean() * numpy_grad(n, w[n], coef, 1)
            w[n] = np_adam(n, w[n], g, i + 1, lr)
        assert_close({n: v.numpy() for n, v in variables.items()}, w)
    assert int(opt.iterations) == int(opt.micro_steps) == updates * k
    assert int(gk.completed_updates(opt)) == updates


def test_every_bert4keras_name_exists():
    # importing bert4keras.optimizers puts its (broken) Adam into Keras's
    # global custom objects under 'Adam': undo that for the other tests
    registry = tf.keras.utils.get_custom_objects()
    saved = dict(registry)
    try:
        import bert4keras.optimizers as b4k
    finally:
        registry.clear()
        registry.update(saved)
    names = [n for n in dir(b4k) if n.startswith('extend_with_')] + [
        'Adam', 'AdaFactor', 'AdaFactorV1', 'AdaFactorV2', 'AdaFactorBase',
        'Lion', 'LionV2', 'export_to_custom_objects']
    missing = [n for n in names if not hasattr(gk, n)]
    assert not missing
    for cls, b4k_cls in ((gk.Adam, b4k.Adam), (gk.AdaFactor, b4k.AdaFactorBase),
                         (gk.Lion, b4k.LionV2)):
        ours = inspect.signature(cls.__init__).parameters
        theirs = inspect.signature(b4k_cls.__init__).parameters
        for name, p in theirs.items():
            assert name in ours, (cls, name)
            assert ours[name].default == p.default, (cls, name)


def all_classes():
    """(class, kwargs) of every public optimizer and extension."""
    ext = {
        'extend_with_weight_decay': dict(weight_decay_rate=0.1,
                                         exclude_from_weight_decay=['Norm']),
        'extend_with_layer_adaptation': dict(
            exclude_from_layer_adaptation=['bias']),
        'extend_with_piecewise_linear_lr': dict(lr_schedule={2: 1, 4: 0.5}),
        'extend_with_gradient_accumulation': dict(grad_accum_steps=2),
        'extend_with_lookahead': dict(steps_per_slow_update=2,
                                      slow_step_size=0.4),
        'extend_with_lazy_optimization': dict(
            include_in_lazy_optimization=['Embedding']),
        'extend_with_exponential_moving_average': dict(ema_momentum=0.9),
        'extend_with_parameter_wise_lr': dict(
            paramwise_lr_schedule={'dense': 0.5}),
    }
    cases = [(gk.Adam, dict(learning_rate=LR, bias_correction=False)),
             (gk.Lion, dict(learning_rate=LR)),
             (gk.AdaFactor, dict(learning_rate=None, beta1=0.9,
                                 min_dim_size_to_factor=3)),
             (gk.AdamW, dict(learning_rate=LR, lr_schedule={2: 1})),
             (gk.LAMB, dict(learning_rate=LR, weight_decay=0.2)),
             (gk.AdaFactorW, dict(learning_rate=LR, weight_decay=0.2))]
    for name, kwargs in ext.items():
        cases.append((getattr(gk, name)(gk.Adam, name='B4K_' + name),
                      dict(kwargs, learning_rate=LR)))
    cases.append((gk.extend_with_piecewise_linear_lr(
        gk.AdaFactor, name='B4K_PiecewiseAdaFactor'),
                  dict(learning_rate=None, lr_schedule={2: 1})))
    return cases


@pytest.mark.parametrize('cls,kwargs', all_classes(),
                         ids=lambda x: getattr(x, '__name__', ''))
def test_config_round_trip(cls, kwargs):
    opt = cls(**kwargs)
    config = opt.get_config()
    again = cls.from_config(dict(config))
    assert again.get_config() == config
    # through Keras's registry, by class name
    restored = tf.keras.optimizers.deserialize(
        tf.keras.optimizers.serialize(opt))
    assert type(restored) is cls
    got, _ = run_tf(again, 4)
    want, _ = run_tf(restored, 4)
    ref, _ = run_tf(cls(**kwargs), 4)
    assert_close(got, ref, atol=0)
    assert_close(want, ref, atol=0)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match='extend_with_lookahead'):
        gk.extend_with_lookahead('Adam')
    with pytest.raises(TypeError, match='legacy'):
        gk.extend_with_weight_decay(tf.keras.optimizers.legacy.Adam)
    with pytest.raises(ValueError, match='steps_per_slow_update'):
        gk.extend_with_lookahead(gk.Adam)(steps_per_slow_update=0)
    with pytest.raises(ValueError, match='ema_momentum'):
        gk.extend_with_exponential_moving_average(gk.Adam)(ema_momentum=2)
    with pytest.raises(ValueError, match='paramwise_lr_schedule'):
        gk.extend_with_parameter_wise_lr(gk.Adam)(
            paramwise_lr_schedule={'a': 'x'})
    with pytest.raises(ValueError, match='lr_schedule'):
        gk.extend_with_piecewise_linear_lr(gk.Adam)(lr_schedule={-1: 1})
    with pytest.raises(RuntimeError, match='apply_ema_weights'):
        gk.extend_with_exponential_moving_average(gk.Adam)().\
            reset_old_weights()


# ------------------------------------- checkpoint, compile/fit, Trainer

def test_checkpoint_holds_accumulators_mid_accumulation(tmp_path):
    """4 calls with k=3: one update done, one gradient pending; a restored
    optimizer continues exactly (atol 0)."""
    cls = gk.extend_with_gradient_accumulation(gk.Adam)
    init, coef = problem()

    def fresh():
        opt = cls(LR, grad_accum_steps=3)
        return opt, {k: tf.Variable(v, name=k) for k, v in init.items()}

    def calls(opt, variables, n, start):
        for step in range(start, start + n):
            grads = [tf.constant(numpy_grad(k, v.numpy(), coef, step))
                     for k, v in variables.items()]
            opt.apply_gradients(zip(grads, variables.values()))

    opt, variables = fresh()
    calls(opt, variables, 4, 0)
    path = tf.train.Checkpoint(opt=opt, v=variables).save(
        str(tmp_path / 'ckpt'))
    key = 'opt/%s/.ATTRIBUTES/VARIABLE_VALUE'
    pending = 0.0
    for acc in opt._accumulators:   # saved once, as opt/_variables/<i>
        i = [j for j, v in enumerate(opt.variables) if v is acc][0]
        saved = tf.train.load_variable(path, key % ('_variables/%d' % i))
        np.testing.assert_array_equal(saved, acc.numpy())
        pending = max(pending, np.abs(saved).max())
    assert pending > 0
    assert tf.train.load_variable(path, key % 'micro_steps') == 4
    for built_first in (True, False):
        opt2, variables2 = fresh()
        if built_first:
            opt2.build(list(variables2.values()))
        tf.train.Checkpoint(opt=opt2, v=variables2).restore(path)
        calls(opt2, variables2, 2, 4)
        if built_first:
            calls(opt, variables, 2, 4)
        assert int(opt2.iterations) == int(opt2.micro_steps) == 6
        for k in init:
            np.testing.assert_array_equal(variables2[k].numpy(),
                                          variables[k].numpy(), err_msg=k)


def linear_data(n=16, seed=3):
    rs = np.random.RandomState(seed)
    x = rs.randn(n, 5).astype('float32')
    y = (x @ rs.randn(5, 3)).astype('float32')
    return x, y


def linear_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((5,))
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))


@pytest.mark.slow
@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'bf16'])
def test_compile_fit_with_composed_classes(precision):
    AdamLRG = gk.extend_with_piecewise_linear_lr(
        gk.extend_with_gradient_accumulation(
            gk.extend_with_exponential_moving_average(gk.Adam)),
        name='AdamLRG')
    AdaFactorG = gk.extend_with_gradient_accumulation(gk.AdaFactor,
                                                      name='AdaFactorG')
    x, y = linear_data()
    for opt in (AdamLRG(0.05, lr_schedule={2: 1}, grad_accum_steps=2,
                        ema_momentum=0.5),
                AdaFactorG(0.05, beta1=0.9, grad_accum_steps=2)):
        gau_keras.set_precision(precision)
        try:
            model = linear_model()
            model.compile(optimizer=opt, loss='mse')
            history = model.fit(x, y, batch_size=4, epochs=4, verbose=0)
        finally:
            gau_keras.set_precision('fp32')
        losses = history.history['loss']
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
        # 16 calls; under fp16 an overflowing call is skipped (and counted
        # in iterations only, as tf-keras does); 2 accepted calls = 1 update
        skipped = 16 - int(opt.micro_steps)
        assert skipped == 0 if precision == 'fp32' else 0 <= skipped <= 3
        assert int(opt.iterations) == 16
        assert int(gk.completed_updates(opt)) == int(opt.micro_steps) // 2
    opt = AdamLRG(0.05, lr_schedule={2: 1}, grad_accum_steps=2,
                  ema_momentum=0.5)
    model = linear_model()
    model.compile(optimizer=opt, loss='mse')
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    opt.apply_ema_weights()
    assert any(np.abs(a - b).max() > 1e-4
               for a, b in zip(model.get_weights(), before))
    opt.reset_old_weights()
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_trainer_with_composed_class_matches_numpy(tmp_path):
    """Trainer + extend_with_piecewise_linear_lr(
    extend_with_gradient_accumulation(Adam)) = numpy Adam on the mean
    gradient of k batches, schedule in calls (= Trainer steps)."""
    from gau_keras import training
    k, updates, schedule = 2, 3, {2: 1.0, 4: 0.5}
    cls = gk.extend_with_piecewise_linear_lr(
        gk.extend_with_gradient_accumulation(gk.Adam))
    x, y = linear_data(24)
    batches = [(x[i * 4:(i + 1) * 4], y[i * 4:(i + 1) * 4])
               for i in range(k * updates)]
    model = linear_model()
    w0, b0 = [v.astype('float64') for v in model.get_weights()]
    opt = cls(LR, lr_schedule=schedule, grad_accum_steps=k)

    def loss(y_true, y_pred):
        return tf.reduce_mean(tf.square(y_pred - y_true), axis=-1)

    training.Trainer(model, loss, opt, lambda pos: iter(batches[pos:]),
                     k * updates, str(tmp_path), save_every=100,
                     verbose=0).train()
    w, b, adam = {'w': w0, 'b': b0}, None, NumpyAdam()
    for i in range(updates):
        grads = []
        for xb, yb in batches[i * k:(i + 1) * k]:
            r = xb @ w['w'] + w['b'] - yb
            grads.append((2 * xb.T @ r / r.size, 2 * r.sum(0) / r.size))
        lr = LR * hand_piecewise((i + 1) * k - 1, schedule)
        for j, name in enumerate(['w', 'b']):
            g = np.mean([gr[j] for gr in grads], axis=0)
            w[name] = adam(name, w[name], g, i + 1, lr)
    got_w, got_b = model.get_weights()
    np.testing.assert_allclose(got_w, w['w'], atol=2e-5)
    np.testing.assert_allclose(got_b, w['b'], atol=2e-5)
    assert int(opt.iterations) == k * updates


def test_build_optimizer_adafactor_and_training_flag():
    import argparse
    import os
    import sys
    from conftest import ROOT
    scripts = os.path.join(ROOT, 'scripts')
    sys.path.insert(0, scripts)
    import flags        # scripts/flags.py
    parser = flags.add_training_args(argparse.ArgumentParser())
    args = parser.parse_args(['--optimizer', 'adafactor', '--weight_decay',
                              '0', '--grad_accum_steps', '2',
                              '--learning_rate', '0.01'])
    opt = flags.optimizer_from_args(args)
    assert isinstance(opt, gk.AdaFactorW) and opt.grad_accum_steps == 2
    # weight_decay=0: plain bert4keras AdaFactor
    got, _ = run_tf(gk.build_optimizer('adafactor', 0.01, weight_decay=0,
                                       beta1=0.9, min_dim_size_to_factor=3), 3)
    want = run_numpy(NumpyAdaFactor(beta1=0.9, min_dim_size_to_factor=3), [],
                     3, lr=0.01)
    assert_close(got, want)
