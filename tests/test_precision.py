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


@pytest.mark.parametrize('model', ['gau_alpha', 'flash'])
@pytest.mark.parametrize('name', ['fp16', 'bf16'])
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


@pytest.mark.parametrize('model', ['gau_alpha', 'flash'])
def test_xla_and_eager_steps_agree(model, tmp_path):
    precision.set_precision('fp32')
    nets = [build(model, dropout_rate=0.0, attention_dropout_rate=0.0)
            for _ in range(2)]
    init = nets[0].get_weights()
    nets[1].set_weights(init)
    batch = tokens()
    results = []
    for jit, net in zip((False, True), nets):
        losses = train_steps(net, tf.keras.optimizers.SGD(0.5), batch, 2,
                             tmp_path / str(jit), jit_compile=jit)
        results.append((losses, net.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    moved = max(np.abs(a - b).max() for a, b in zip(results[0][1], init))
    assert moved > 1e-3 and results[0][0][1] < results[0][0][0]


# ------------------------------------------- warnings on non-native devices


@pytest.fixture
def device(monkeypatch):
    """``device(flags, gpus)`` fakes /proc/cpuinfo's flags and the GPUs."""
    def fake(flags=(), gpus=()):
        monkeypatch.setattr(precision, 'cpu_flags', lambda: frozenset(flags))
        monkeypatch.setattr(precision, 'gpu_compute_capabilities',
                            lambda: list(gpus))
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
