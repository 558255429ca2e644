"""Precision / XLA toggles on the tiny GAU-α (and FLASH) models."""

import gau_keras
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import precision, training

from conftest import config_path

CONFIGS = {m: config_path('%s_tiny' % m) for m in ('gau_alpha', 'flash')}


@pytest.fixture(autouse=True)
def restore_policy():
    before = tf.keras.mixed_precision.global_policy().name
    yield
    tf.keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize('name,policy', [
    ('fp32', 'float32'), ('fp16', 'mixed_float16'), ('bf16', 'mixed_bfloat16'),
    ('BF16', 'mixed_bfloat16'), ('mixed_float16', 'mixed_float16')])
def test_set_precision_sets_the_keras_policy(name, policy):
    assert gau_keras.set_precision(name) == policy
    assert tf.keras.mixed_precision.global_policy().name == policy
    layer = tf.keras.layers.Dense(2)
    layer.build((None, 3))
    assert layer.kernel.dtype == tf.float32          # variables stay fp32
    assert layer.compute_dtype == policy.replace('mixed_', '')


def test_bad_precision_is_named():
    with pytest.raises(ValueError, match="'fp8'"):
        gau_keras.set_precision('fp8')


def test_wrap_optimizer_only_under_fp16():
    lso = tf.keras.mixed_precision.LossScaleOptimizer
    for name, wrapped in (('fp16', True), ('bf16', False), ('fp32', False)):
        precision.set_precision(name)
        opt = precision.wrap_optimizer(tf.keras.optimizers.Adam())
        assert isinstance(opt, lso) == wrapped
        assert precision.wrap_optimizer(opt) is opt
    with pytest.raises(TypeError, match='optimizer'):
        precision.wrap_optimizer('adam')


def test_scale_loss_and_unscale_gradients_use_the_loss_scale():
    """A fixed loss scale of 8 multiplies the loss and divides the
    gradients by 8; a plain optimizer leaves both as they are."""
    lso = tf.keras.mixed_precision.LossScaleOptimizer(
        tf.keras.optimizers.SGD(), dynamic=False, initial_scale=8.0)
    loss, grads = tf.constant(1.5), [tf.constant([2.0, -4.0])]
    assert float(precision.scale_loss(lso, loss)) == 12.0
    np.testing.assert_array_equal(
        precision.unscale_gradients(lso, grads)[0].numpy(), [0.25, -0.5])
    plain = tf.keras.optimizers.SGD()
    assert precision.scale_loss(plain, loss) is loss
    assert precision.unscale_gradients(plain, grads) is grads


def build(model, **kwargs):
    """The tiny model with a linear head (no skip: a missing model or config
    is an error)."""
    return gau_keras.build_transformer_model(
        CONFIGS[model], model=model, with_mlm='linear', **kwargs)


def tokens(batch=4, length=24, vocab=2000):
    rs = np.random.RandomState(3)
    t = rs.randint(1, vocab, (batch, length)).astype('int32')
    return [t, np.zeros_like(t)], t


def fixed_batches(batch):
    def dataset_fn(position):
        while True:
            yield batch
    return dataset_fn


LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                     reduction='none')


def train_steps(model, optimizer, batch, steps, workdir, jit_compile=False):
    losses = []
    training.Trainer(model, LOSS, optimizer, fixed_batches(batch), steps,
                     str(workdir), save_every=steps, jit_compile=jit_compile,
                     verbose=0,
                     callbacks=[lambda s, l: losses.append(l)]).train()
    return losses


@pytest.mark.parametrize('model,name', [
    ('gau_alpha', 'bf16'),
    pytest.param('gau_alpha', 'fp16', marks=pytest.mark.slow),
    pytest.param('flash', 'fp16', marks=pytest.mark.slow),
    pytest.param('flash', 'bf16', marks=pytest.mark.slow)])
def test_mixed_precision_step_lowers_loss(model, name, tmp_path):
    precision.set_precision(name)
    net = build(model)
    batch = tokens()
    logits = net(batch[0])
    assert logits.dtype == tf.float32                 # outputs in float32
    compute = {l.compute_dtype for l in net.layers if l.weights}
    assert name.replace('fp', 'float').replace('bf', 'bfloat') in compute
    first = float(tf.reduce_mean(LOSS(batch[1], logits)))
    losses = train_steps(net, gau_keras.optimizers.AdamW(3e-3), batch, 3,
                         tmp_path)
    after = float(tf.reduce_mean(LOSS(batch[1], net(batch[0]))))
    assert np.all(np.isfinite(losses)) and np.isfinite(after)
    assert all(np.isfinite(w.numpy()).all() for w in net.weights)
    assert after < first - 0.01, (first, losses, after)



# ------------------------------------------- warnings on non-native devices


@pytest.fixture
def device(monkeypatch):
    """``device(flags, gpus, low_speedup)`` fakes /proc/cpuinfo's flags, the
    GPUs and the matmul probe: the low precision runs ``low_speedup`` times
    as fast as float32 (by default 2.0 where the flags promise native
    support, else 0.5: a device that behaves as its flags say)."""
    def fake(flags=(), gpus=(), low_speedup=None):
        monkeypatch.setattr(precision, 'cpu_flags', lambda: frozenset(flags))
        monkeypatch.setattr(precision, 'gpu_compute_capabilities',
                            lambda: list(gpus))

        def probe(low, refresh=False):
            policy = {'bfloat16': 'mixed_bfloat16',
                      'float16': 'mixed_float16'}[low]
            speedup = low_speedup or (
                0.5 if precision.native_support_problem(policy) else 2.0)
            return {'float32': 0.01, low: 0.01 / speedup}
        monkeypatch.setattr(precision, 'probe_speeds', probe)
    return fake


def precision_warnings(name):
    import warnings
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        gau_keras.set_precision(name)
    return [str(w.message) for w in record
            if issubclass(w.category, precision.PrecisionWarning)]


def test_cpu_flags_reads_the_flags_line(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\n'
                    'processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n')
    assert precision.cpu_flags(str(path)) == {'fpu', 'avx2', 'avx512_bf16'}
    path.write_text('processor\t: 0\nFeatures\t: fp asimd bf16\n')
    assert 'bf16' in precision.cpu_flags(str(path))
    assert precision.cpu_flags(str(tmp_path / 'missing')) == frozenset()


def test_bf16_on_a_cpu_without_bf16_warns(device):
    device(flags={'avx2', 'avx512f'})
    (msg,) = precision_warnings('bf16')
    assert "set_precision('bf16')" in msg
    assert 'avx512_bf16' in msg and '0.54x' in msg
    assert precision.current_precision() == 'mixed_bfloat16'  # still set


@pytest.mark.parametrize('flag', ['avx512_bf16', 'amx_bf16', 'bf16'])
def test_bf16_on_a_cpu_with_bf16_is_silent(device, flag):
    device(flags={'avx2', flag})
    assert precision_warnings('bf16') == []


def test_fp16_on_a_cpu_warns(device):
    device(flags={'avx2', 'avx512_bf16', 'amx_bf16'})
    (msg,) = precision_warnings('fp16')
    assert "set_precision('fp16')" in msg and 'GPU' in msg
    assert precision_warnings('fp32') == []


@pytest.mark.parametrize('name,caps,warns', [
    ('bf16', [(8, 0)], False), ('bf16', [(8, 6), (9, 0)], False),
    ('bf16', [(7, 5)], True), ('fp16', [(7, 0)], False),
    ('fp16', [(6, 1)], True), ('fp32', [(6, 1)], False)])
def test_gpu_capability_decides(device, name, caps, warns):
    device(flags=(), gpus=caps)      # a GPU is there: the CPU does not count
    got = precision_warnings(name)
    assert bool(got) == warns, got
    if warns and name == 'bf16':
        assert 'Ampere' in got[0] and '7.5' in got[0]


def test_warning_can_be_turned_off(device):
    device(flags={'avx2'})
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert precision.set_precision('bf16', warn=False) == 'mixed_bfloat16'


def test_cpu_flags_summary_names_every_speed_flag():
    from gau_keras import precision
    assert precision.cpu_flags_summary({'avx2', 'amx_bf16', 'sse4_2'}) == (
        'avx2=yes avx512f=no avx512_bf16=no amx_bf16=yes amx_tile=no')


# ------------------------------------------- 'auto': precision by measurement


def test_a_slow_measurement_warns_even_with_native_flags(device):
    device(flags={'avx2', 'avx512_bf16'}, low_speedup=0.61)
    (msg,) = precision_warnings('bf16')
    assert 'bfloat16' in msg and '0.61x the speed' in msg
    assert 'no native' not in msg             # the flags claim support


def test_a_fast_measurement_is_silent_without_native_flags(device):
    device(flags={'avx2'}, low_speedup=1.5)
    assert precision_warnings('bf16') == []


@pytest.fixture
def probe_cache(tmp_path, monkeypatch):
    """A fresh probe cache folder and a stubbed matmul timer: ``timer``
    maps dtype → seconds; ``calls`` lists the dtypes measured."""
    monkeypatch.setenv(precision.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(precision, 'probe_device', lambda: 'CPU')
    state = {'timer': {'float32': 0.010, 'bfloat16': 0.004}, 'calls': []}

    def measure(dtype, device=None, repeats=5, number=3):
        state['calls'].append(dtype)
        return state['timer'][dtype]
    monkeypatch.setattr(precision, 'measure_matmul_seconds', measure)
    return state


@pytest.mark.parametrize('bf16_seconds,choice', [
    (0.004, 'mixed_bfloat16'), (0.0095, 'float32'), (0.02, 'float32')])
def test_auto_follows_the_probe(probe_cache, bf16_seconds, choice):
    probe_cache['timer']['bfloat16'] = bf16_seconds
    assert precision.set_precision('auto') == choice
    assert precision.current_precision() == choice


def test_auto_picks_fp16_on_a_gpu(probe_cache, monkeypatch):
    monkeypatch.setattr(precision, 'probe_device', lambda: 'GPU')
    probe_cache['timer']['float16'] = 0.002
    assert precision.auto_precision() == 'fp16'


def test_the_probe_is_cached_per_machine(probe_cache, monkeypatch):
    import json
    assert precision.auto_precision() == 'bf16'
    assert sorted(probe_cache['calls']) == ['bfloat16', 'float32']
    probe_cache['timer']['bfloat16'] = 1.0   # would flip the choice...
    assert precision.auto_precision() == 'bf16'
    assert precision.set_precision('bf16') == 'mixed_bfloat16'
    assert len(probe_cache['calls']) == 2    # ...but nothing is re-measured
    with open(precision.probe_cache_path()) as f:
        (entry,) = json.load(f).values()
    assert entry == {'float32': 0.010, 'bfloat16': 0.004}
    monkeypatch.setattr(precision, 'cpu_flags', lambda: frozenset({'x'}))
    assert precision.auto_precision() == 'fp32'   # another machine key
    assert len(probe_cache['calls']) == 4
    assert precision.auto_precision(refresh=True) == 'fp32'
    assert len(probe_cache['calls']) == 6


def test_the_warning_uses_the_same_probe(probe_cache):
    probe_cache['timer']['bfloat16'] = 0.02
    (msg,) = precision_warnings('bf16')
    assert '20.00 ms in bfloat16' in msg and '10.00 ms in float32' in msg
    assert '0.50x the speed' in msg
    probe_cache['timer']['bfloat16'] = 0.001    # cached: still slow
    assert len(precision_warnings('bf16')) == 1
    assert precision_warnings('fp32') == []


def test_auto_falls_back_to_fp32_when_the_probe_fails(probe_cache):
    del probe_cache['timer']['bfloat16']       # measuring bf16 raises
    with pytest.warns(precision.PrecisionWarning, match='probe failed'):
        assert precision.set_precision('auto') == 'float32'


def test_measure_matmul_seconds_is_a_time():
    seconds = precision.measure_matmul_seconds('float32', 'CPU', repeats=1,
                                               number=1)
    assert 0 < seconds < 10
