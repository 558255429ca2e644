"""Optimizers vs plain-numpy transcriptions of their published updates."""
import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import optimizers as gk

B1, B2, EPS, LR, WD = 0.9, 0.999, 1e-3, 0.05, 0.1
SCHEDULE = {2: 1.0, 4: 0.5}


# ---------------------------------------------------------------- schedule

def hand_multiplier(t):
    """{2: 1, 4: 0.5} by hand: 0→0 … 2→1, then down to 0.5 at 4, then flat."""
    return {0: 0.0, 1: 0.5, 2: 1.0, 3: 0.75, 4: 0.5, 5: 0.5, 9: 0.5}[t]


@pytest.mark.parametrize('t', [0, 1, 2, 3, 4, 5, 9])
def test_schedule_hand_values(t):
    got = float(gk.piecewise_linear(t, SCHEDULE))
    assert got == pytest.approx(hand_multiplier(t), abs=1e-7)


def test_schedule_with_explicit_start_and_bert4keras():
    schedule = {0: 0.2, 1000: 1, 2000: 0.1}
    assert float(gk.piecewise_linear(500, schedule)) == pytest.approx(0.6)
    assert float(gk.piecewise_linear(1500, schedule)) == pytest.approx(0.55)
    from bert4keras.backend import piecewise_linear as b4k_piecewise
    for sched in (schedule, {1000: 1, 2000: 0.1}, {100: 3}):
        for t in (0, 1, 99, 100, 101, 999, 1000, 1700, 2000, 10 ** 6):
            want = float(b4k_piecewise(tf.constant(t), sched))
            got = float(gk.piecewise_linear(t, sched))
            assert got == pytest.approx(want, rel=1e-6, abs=1e-7), (sched, t)


def test_schedule_is_a_learning_rate_schedule():
    lr = gk.PiecewiseLinearSchedule(2.0, {10: 1})
    assert float(lr(5)) == pytest.approx(1.0)
    assert gk.PiecewiseLinearSchedule(**lr.get_config()).schedule == \
        lr.schedule


@pytest.mark.parametrize('bad', [{}, {-1: 1.0}, {'x': 1}, {1.5: 1}, [1, 2],
                                 {1: 'a'}])
def test_bad_schedule_is_named(bad):
    with pytest.raises(ValueError, match='lr_schedule'):
        gk.check_schedule(bad)


# ------------------------------------------------------- numpy transcription

def problem():
    """Variables and a quadratic loss with gradient a·(v − t) + c."""
    rs = np.random.RandomState(0)
    shapes = {'dense/kernel': (3, 4), 'dense/bias': (4,),
              'Norm/gamma': (4,), 'excluded_matrix': (2, 3)}
    init = {k: rs.randn(*s).astype('float32') for k, s in shapes.items()}
    coef = {k: (rs.rand(*s).astype('float32') + 0.5,
                rs.randn(*s).astype('float32'),
                0.1 * rs.randn(*s).astype('float32'))
            for k, s in shapes.items()}
    return init, coef


def numpy_grad(name, w, coef):
    a, t, c = coef[name]
    return a * (w - t) + c


def tf_loss(variables, coef):
    total = 0.0
    for name, v in variables.items():
        a, t, c = coef[name]
        total += tf.reduce_sum(0.5 * a * tf.square(v - t) + c * v)
    return total


def decayed(name, w):
    """Decay skips rank-1 variables and the name-excluded matrix."""
    return w.ndim > 1 and 'excluded' not in name


def numpy_adamw(init, coef, steps, lamb=False):
    """AdamW (Loshchilov & Hutter) / LAMB (You et al.), in numpy.

    lr_t = LR·schedule(t−1); d = m̂/(√v̂+ε) + wd·w (bert4keras: ε added to
    the bias-corrected root); AdamW: w −= lr_t·d.  LAMB: w −= lr_t·(‖w‖/‖d‖)·d
    on adapted matrices.
    """
    w = {k: v.astype('float64') for k, v in init.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    for t in range(1, steps + 1):
        lr = LR * hand_multiplier(t - 1)
        for k in w:
            g = numpy_grad(k, w[k], coef)
            m[k] = B1 * m[k] + (1 - B1) * g
            v2[k] = B2 * v2[k] + (1 - B2) * g * g
            d = m[k] / (1 - B1 ** t) / (
                np.sqrt(v2[k] / (1 - B2 ** t)) + EPS)
            if decayed(k, w[k]):
                d = d + WD * w[k]
            ratio = 1.0
            if lamb and decayed(k, w[k]) and lr > 0:
                ratio = np.linalg.norm(w[k]) / np.linalg.norm(d)
            w[k] = w[k] - lr * ratio * d
    return w


def run_tf(optimizer, init, coef, steps, jit_compile=False):
    variables = {k: tf.Variable(v, name=k) for k, v in init.items()}
    var_list = list(variables.values())

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            loss = tf_loss(variables, coef)
            scaled = loss
            if hasattr(optimizer, 'get_scaled_loss'):
                scaled = optimizer.get_scaled_loss(loss)
        grads = tape.gradient(scaled, var_list)
        if hasattr(optimizer, 'get_unscaled_gradients'):
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, var_list))

    for _ in range(steps):
        step()
    return {k: v.numpy() for k, v in variables.items()}


def make(cls, **kwargs):
    return cls(LR, weight_decay=WD, beta_1=B1, beta_2=B2, epsilon=EPS,
               lr_schedule=SCHEDULE, exclude_from_weight_decay=['excluded'],
               **kwargs)


@pytest.mark.parametrize('lamb', [False, True], ids=['adamw', 'lamb'])
def test_optimizer_matches_numpy(lamb):
    init, coef = problem()
    want = numpy_adamw(init, coef, 6, lamb=lamb)
    got = run_tf(make(gk.LAMB if lamb else gk.AdamW), init, coef, 6)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, err_msg=k)
    # the problem is not degenerate: every variable moved, decay mattered
    plain = numpy_adamw(init, coef, 6, lamb=not lamb)
    assert max(np.abs(plain[k] - want[k]).max() for k in want) > 1e-3


def test_adamw_decay_exclusions():
    init = {'kernel': np.ones((2, 2), 'float32'),
            'bias': np.ones(2, 'float32'),
            'skip_me': np.ones((2, 2), 'float32')}
    variables = {k: tf.Variable(v, name=k) for k, v in init.items()}
    opt = gk.AdamW(0.1, weight_decay=0.5, exclude_from_weight_decay='skip')
    opt.apply_gradients([(tf.zeros_like(v), v) for v in variables.values()])
    np.testing.assert_allclose(variables['kernel'].numpy(), 0.95)
    np.testing.assert_allclose(variables['bias'].numpy(), 1.0)
    np.testing.assert_allclose(variables['skip_me'].numpy(), 1.0)


# ----------------------------------------------------- gradient accumulation

def regression_data():
    rs = np.random.RandomState(1)
    x = rs.randn(16, 5).astype('float32')
    y = (x @ rs.randn(5, 3)).astype('float32')
    return x, y, rs.randn(5, 3).astype('float32')


def fit_linear(optimizer, batches, w0, jit_compile=False):
    w = tf.Variable(w0, name='w')
    b = tf.Variable(np.zeros(3, 'float32'), name='b')

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(x @ w + b - y))
            scaled = optimizer.get_scaled_loss(loss) \
                if hasattr(optimizer, 'get_scaled_loss') else loss
        grads = tape.gradient(scaled, [w, b])
        if hasattr(optimizer, 'get_unscaled_gradients'):
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, [w, b]))

    for x, y in batches:
        step(x, y)
    return w.numpy(), b.numpy()


def accumulated_schedule(k):
    """{1: 1, 3: 0.5} over updates, as a schedule over calls.

    The schedule counts calls and the update made at call i uses step i;
    update u is made at call k(u+1) − 1, so step u maps to k(u+1) − 1.
    """
    return {0: 0.0, k - 1: 0.0, 2 * k - 1: 1.0, 4 * k - 1: 0.5}


def build(base, k=1):
    """Optimizer by name; 'sgd' is tf-keras SGD (not scale-invariant).

    Its lr schedule is {1: 1, 3: 0.5} in updates for every k.
    """
    schedule = {1: 1.0, 3: 0.5} if k == 1 else accumulated_schedule(k)
    if base != 'sgd':
        return gk.build_optimizer(base, 0.1, weight_decay=0.05,
                                  lr_schedule=schedule, grad_accum_steps=k)
    lr = gk.PiecewiseLinearSchedule(0.02, schedule)
    if k == 1:
        return tf.keras.optimizers.SGD(lr, momentum=0.9, weight_decay=0.05)
    cls = gk.extend_with_gradient_accumulation(tf.keras.optimizers.SGD)
    return cls(lr, momentum=0.9, weight_decay=0.05, grad_accum_steps=k)


@pytest.mark.parametrize('base', ['adamw', 'lamb', 'adafactor', 'sgd'])
@pytest.mark.parametrize('mode', ['plain', 'fp16_scaling', 'xla'])
def test_accumulation_equals_big_batch(base, mode):
    x, y, w0 = regression_data()
    k, updates = 4, 3
    big = [(x, y)] * updates
    micro = [(x[i::k], y[i::k]) for _ in range(updates) for i in range(k)]
    reference, accumulated = build(base), build(base, k)
    if mode == 'fp16_scaling':
        accumulated = tf.keras.mixed_precision.LossScaleOptimizer(accumulated)
    want = fit_linear(reference, big, w0)
    got = fit_linear(accumulated, micro, w0, jit_compile=(mode == 'xla'))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)
    inner = getattr(accumulated, 'inner_optimizer', accumulated)
    assert int(inner.iterations) == int(inner.micro_steps) == updates * k
    assert int(gk.completed_updates(inner)) == updates
    # and it is not the same as k separate small steps
    small = fit_linear(build(base), micro, w0)
    assert np.abs(small[0] - want[0]).max() > 1e-3


def numpy_linear_grads(w, b, x, y):
    """Gradient of mean((x·w + b − y)²) over all elements, by hand."""
    r = x @ w + b - y
    return 2 * x.T @ r / r.size, 2 * r.sum(0) / r.size


def numpy_update(base, state, name, w, g, t, lr):
    """One update of ``base`` in numpy, as gau_keras defines it.

    sgd: tf-keras SGD (momentum 0.9) + decoupled decay of every variable;
    adamw/lamb: bert4keras Adam + decay of matrices only (LAMB also rescales
    matrices by the trust ratio).
    """
    if base == 'sgd':
        m = state[name] = 0.9 * state.get(name, 0) - lr * g
        return w + m - lr * 0.05 * w
    m, v = state.get(name, (0, 0))
    m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g * g
    state[name] = (m, v)
    d = m / (1 - B1 ** t) / (np.sqrt(v / (1 - B2 ** t)) + 1e-6)
    if w.ndim > 1:
        d = d + 0.05 * w
        if base == 'lamb' and lr > 0:
            d = d * np.linalg.norm(w) / np.linalg.norm(d)
    return w - lr * d


@pytest.mark.parametrize('base', ['sgd', 'adamw', 'lamb'])
def test_accumulation_matches_numpy_on_the_mean_gradient(base):
    """k micro-batches = one numpy update on the MEAN of their gradients.

    SGD is not scale-invariant, so a sum instead of a mean (or a missing
    1/k) cannot pass; the schedule counts calls, bias correction updates.
    """
    x, y, w0 = regression_data()
    k, updates = 4, 4
    micro = [(x[i::k], y[i::k]) for _ in range(updates) for i in range(k)]
    opt = build(base, k)
    got = fit_linear(opt, micro, w0)
    w = {'w': w0.astype('float64'), 'b': np.zeros(3)}
    state = {}
    lr0 = 0.02 if base == 'sgd' else 0.1
    for t in range(updates):
        grads = [numpy_linear_grads(w['w'], w['b'], xb, yb)
                 for xb, yb in micro[t * k:(t + 1) * k]]
        lr = lr0 * {0: 0.0, 1: 1.0, 2: 0.75}.get(t, 0.5)   # {1: 1, 3: .5}
        for j, name in enumerate(['w', 'b']):
            g = np.mean([gr[j] for gr in grads], axis=0)
            w[name] = numpy_update(base, state, name, w[name], g, t + 1, lr)
    np.testing.assert_allclose(got[0], w['w'], atol=2e-5)
    np.testing.assert_allclose(got[1], w['b'], atol=2e-5)
    assert int(opt.iterations) == updates * k


@pytest.mark.slow
@pytest.mark.parametrize('name', ['adamw', 'lamb'])
def test_xla_and_loss_scaling_match_plain(name):
    init, coef = problem()
    plain = run_tf(make(gk.OPTIMIZERS[name]), init, coef, 4)
    scaled = run_tf(tf.keras.mixed_precision.LossScaleOptimizer(
        make(gk.OPTIMIZERS[name])), init, coef, 4, jit_compile=True)
    for k in plain:
        np.testing.assert_allclose(scaled[k], plain[k], atol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='grad_accum_steps'):
        gk.build_optimizer('adamw', grad_accum_steps=0)
    with pytest.raises(ValueError, match='optimizer name'):
        gk.build_optimizer('sgdx')
    with pytest.raises(ValueError, match='learning_rate'):
        gk.AdamW(lambda: 0.1, lr_schedule={1: 1})


@pytest.mark.slow
@pytest.mark.parametrize('name', ['adamw', 'lamb', 'adafactor'])
def test_keras_fit_with_fp16_xla_and_accumulation(name):
    """compile/fit path: fp16 (auto LossScaleOptimizer) + jit_compile."""
    gau_keras.set_precision('fp16')
    try:
        x, y, _ = regression_data()
        inputs = tf.keras.Input((5,))
        out = tf.keras.layers.Dense(3, dtype='float32')(
            tf.keras.layers.Dense(8)(inputs))
        model = tf.keras.Model(inputs, out)
        opt = gk.build_optimizer(name, 0.02, grad_accum_steps=2)
        model.compile(opt, loss='mse', jit_compile=True)
        history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    finally:
        gau_keras.set_precision('fp32')
    losses = history.history['loss']
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert isinstance(model.optimizer,
                      tf.keras.mixed_precision.LossScaleOptimizer)
    # 12 calls (= iterations); a call that overflows in fp16 is skipped (not
    # counted in micro_steps), every 2 accepted calls make an update
    skipped = 12 - int(opt.micro_steps)
    assert 0 <= skipped <= 2 and int(opt.iterations) == 12
    assert int(gk.completed_updates(opt)) == int(opt.micro_steps) // 2
