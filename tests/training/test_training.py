"""Trainer, strategies and resumable runs.

The kill-and-resume run is a subprocess of tests/_train_worker.py (slow);
the same worker's mirrored and multi-worker runs are in
tests/training/test_distributed.py.
"""
import argparse
import re
import os
import signal
import subprocess
import sys

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import optimizers, training

from conftest import ROOT, TESTS
from run_files import assert_same_weights, losses_of, worker_weights

sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import flags  # noqa: E402  (scripts/flags.py: the scripts' shared flags)

WORKER = [sys.executable, os.path.join(TESTS, '_train_worker.py')]
RESUME_ARGS = ['--model', 'gau_alpha', '--dropout', '0.3', '--optimizer', 'adamw',
               '--grad_accum_steps', '2', '--steps', '12', '--save_every',
               '3']


def launch(args, out, env=None, **kwargs):
    cmd = WORKER + args + ['--workdir', str(out) + '.run', '--out',
                           str(out) + '.npz']
    return subprocess.Popen(cmd, env=dict(os.environ, **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def finish(proc, timeout=150):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(tmp_path):
    whole = launch(RESUME_ARGS, tmp_path / 'whole')
    killed = launch(RESUME_ARGS + ['--sleep', '0.3'], tmp_path / 'resumed')
    seen = []
    for line in killed.stdout:
        seen.append(line)
        if line.startswith('step 7 '):
            killed.send_signal(signal.SIGKILL)
            break
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL, ''.join(seen)
    ckpt = tf.train.latest_checkpoint(str(tmp_path / 'resumed.run/ckpt'))
    assert ckpt is not None, ''.join(seen)
    saved = int(ckpt.rsplit('-', 1)[1])       # 6 unless the kill was late
    assert saved in (6, 9), ckpt
    resumed = finish(launch(RESUME_ARGS, tmp_path / 'resumed'))
    steps = [int(line.split()[1]) for line in resumed.splitlines()
             if line.startswith('step ')]
    assert steps == list(range(saved + 1, 13))   # none lost or repeated
    whole_log = finish(whole)
    np.testing.assert_allclose(losses_of(resumed),
                               losses_of(whole_log)[saved:], rtol=1e-6)
    assert_same_weights(worker_weights(str(tmp_path / 'resumed') + '.npz'),
                        worker_weights(str(tmp_path / 'whole') + '.npz'),
                        atol=0)


# ----------------------------------------------------------- in-process

def mlp(seed=0):
    rs = np.random.RandomState(seed)
    x = tf.keras.Input((4,))
    h = tf.keras.layers.Dense(8, activation='tanh')(x)
    model = tf.keras.Model(x, tf.keras.layers.Dense(3)(h))
    model.set_weights([rs.randn(*w.shape).astype('float32') * 0.5
                       for w in model.weights])
    return model


def batches(position):
    while True:
        rs = np.random.RandomState(position)
        x = rs.randn(6, 4).astype('float32')
        yield x, (x[:, 0] > 0).astype('int32') + (x[:, 1] > 0)
        position += 1


LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                     reduction='none')


def test_restart_in_process_and_logs(tmp_path):
    whole = mlp()
    training.Trainer(whole, LOSS, optimizers.AdamW(0.05), batches, 6,
                     str(tmp_path / 'a'), save_every=2, verbose=0).train()
    first = mlp()
    training.Trainer(first, LOSS, optimizers.AdamW(0.05), batches, 3,
                     str(tmp_path / 'b'), save_every=2, verbose=0).train()
    again = mlp()
    trainer = training.Trainer(again, LOSS, optimizers.AdamW(0.05), batches,
                               6, str(tmp_path / 'b'), save_every=2,
                               log_every=1, verbose=0)
    assert trainer.restore() == 3
    trainer.train()
    assert_same_weights(again.get_weights(), whole.get_weights(), atol=1e-6)
    assert int(trainer.optimizer.iterations) == 6
    tags = set()
    for path in tf.io.gfile.glob(str(tmp_path / 'b' / 'logs' / '*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update((v.tag, event.step) for v in event.summary.value)
    assert ('loss', 6) in tags and ('learning_rate', 4) in tags


def test_mean_loss_matches_numpy(tmp_path):
    """The step's loss is the mean of the per-example losses (any rank)."""
    model = mlp()
    x, y = next(batches(0))
    logits = model(x).numpy()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -logp[np.arange(len(y)), y].mean()
    got = []
    training.Trainer(model, LOSS, tf.keras.optimizers.SGD(0.0), batches, 1,
                     str(tmp_path), verbose=0,
                     callbacks=[lambda s, l: got.append(l)]).train()
    assert got[0] == pytest.approx(want, rel=1e-5)


def test_bad_inputs_are_named(tmp_path):
    model, opt, w = mlp(), optimizers.AdamW(), str(tmp_path)
    cases = [((None, LOSS, opt, batches, 2, w), 'model'),
             ((model, None, opt, batches, 2, w), 'loss'),
             ((model, LOSS, 'adam', batches, 2, w), 'optimizer'),
             ((model, LOSS, opt, 3, 2, w), 'dataset_fn'),
             ((model, LOSS, opt, batches, 0, w), 'total_steps'),
             ((model, LOSS, opt, batches, 2.5, w), 'total_steps'),
             ((model, LOSS, opt, batches, 2, None), 'workdir')]
    for args, culprit in cases:
        with pytest.raises(ValueError, match=culprit):
            training.Trainer(*args)
    with pytest.raises(ValueError, match='save_every'):
        training.Trainer(model, LOSS, opt, batches, 2, w, save_every=0)
    with pytest.raises(ValueError, match='ran out of batches at step 1'):
        training.train(model, LOSS, opt, lambda p: [next(batches(p))], 3,
                       str(tmp_path / 'short'), verbose=0)


def test_strategy_errors(monkeypatch):
    with pytest.raises(ValueError, match="'nccl'"):
        training.get_strategy('nccl')
    monkeypatch.delenv('TF_CONFIG', raising=False)
    with pytest.raises(ValueError, match='TF_CONFIG'):
        training.get_strategy('multi_worker')
    monkeypatch.delenv('TPU_NAME', raising=False)
    with pytest.raises(RuntimeError, match='no TPU'):
        training.get_strategy('tpu')
    assert training.is_chief(training.get_strategy('default'))


def test_args_helpers(monkeypatch):
    parser = flags.add_training_args(argparse.ArgumentParser())
    args = parser.parse_args(['--mixed_precision', 'bf16', '--xla',
                              '--lr_schedule', '{"10": 1, "20": 0.5}',
                              '--grad_accum_steps', '2'])
    assert args.lr_schedule == {10: 1.0, 20: 0.5} and args.xla
    called = []     # keep the process-global switches off for other tests
    monkeypatch.setattr(tf.config.experimental, 'enable_op_determinism',
                        lambda: called.append('determinism'))
    monkeypatch.setattr(tf.keras.backend.experimental,
                        'enable_tf_random_generator',
                        lambda: called.append('generator'))
    try:
        setup = flags.setup_from_args(args)
        assert called == ['generator']       # no --deterministic given
        assert setup.jit_compile and setup.precision == 'mixed_bfloat16'
        assert tf.keras.mixed_precision.global_policy().name == \
            'mixed_bfloat16'
    finally:
        tf.keras.mixed_precision.set_global_policy('float32')
    opt = flags.optimizer_from_args(args)
    assert opt.grad_accum_steps == 2
    schedule = opt._learning_rate       # tf-keras keeps the schedule here
    assert isinstance(schedule, optimizers.PiecewiseLinearSchedule)
    assert float(schedule(15)) == pytest.approx(
        args.learning_rate * 0.75)
    with pytest.raises(SystemExit):
        parser.parse_args(['--mixed_precision', 'fp8'])
    with pytest.raises(SystemExit):
        parser.parse_args(['--lr_schedule', '{"-1": 1}'])
    with pytest.raises(ValueError, match='add_training_args'):
        flags.setup_from_args(argparse.Namespace())


# ------------------------------------------- never save non-finite

def flagged_batches(flag_at, rows=6):
    """``batches`` whose batch number ``flag_at`` has label 9 in row 0."""
    def dataset_fn(position):
        for x, y in batches(position):
            if position == flag_at:
                y = y.copy()
                y[0] = 9
            yield x, y
            position += 1
    return dataset_fn


def ce(y, p):
    return tf.keras.losses.sparse_categorical_crossentropy(
        tf.minimum(y, 2), p, from_logits=True)


@tf.custom_gradient
def nan_gradient_where(p, flag):
    """Identity forward; the gradient of rows where ``flag`` is NaN."""
    def grad(dy):
        return dy * tf.where(flag, np.nan, 1.0)[:, None], None
    return tf.identity(p), grad


def nan_gradient_loss(y, p):
    """Finite loss, NaN gradient where y == 9."""
    return ce(y, nan_gradient_where(p, tf.equal(y, 9)))


def inf_loss(y, p):
    return ce(y, p) + tf.where(tf.equal(y, 9), np.inf, 0.0)


def checkpoint_steps(workdir):
    return sorted(training.checkpoint_number(p) for p in
                  training.find_checkpoints(os.path.join(workdir, 'ckpt')))


def all_finite(prefix):
    reader = tf.train.load_checkpoint(prefix)
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.isfinite(reader.get_tensor(name)).all(), (prefix, name)


@pytest.mark.parametrize('loss, what', [(nan_gradient_loss, 'gradient'),
                                        (inf_loss, 'inf')])
def test_non_finite_step_is_never_saved(tmp_path, loss, what):
    """Batch 2 (step 3) gives a NaN gradient with a finite loss, or a +inf
    loss: the run stops naming step 3 and ckpt-3 is never written."""
    w = str(tmp_path)
    with pytest.raises(FloatingPointError, match='step 3.*%s' % what):
        training.Trainer(mlp(), loss, optimizers.AdamW(0.05),
                         flagged_batches(2), 6, w, save_every=1,
                         verbose=0).train()
    assert checkpoint_steps(w) == [1, 2]
    for prefix in training.find_checkpoints(os.path.join(w, 'ckpt')):
        all_finite(prefix)


def test_overflowing_weights_are_never_saved(tmp_path):
    """Finite loss and gradient (loss ×1e6), but lr 1e38 overflows the
    weights to ±inf at step 1: nothing is saved."""
    w = str(tmp_path)
    with pytest.raises(FloatingPointError, match='step 1: non-finite'):
        training.Trainer(mlp(), lambda y, p: 1e6 * LOSS(y, p),
                         tf.keras.optimizers.SGD(1e38),
                         batches, 3, w, save_every=1, verbose=0).train()
    assert checkpoint_steps(w) == []


def test_fp16_loss_scale_skips_do_not_stop(tmp_path, policy):
    """Under fp16 the first steps overflow at loss scale 2^15 (the loss is
    ×1000): LossScaleOptimizer skips them, the Trainer carries on."""
    policy('mixed_float16')
    model = mlp()

    def big(y, p):
        return 1000.0 * LOSS(y, p)
    trainer = training.Trainer(model, big, optimizers.AdamW(0.01), batches,
                               6, str(tmp_path), save_every=2, verbose=0)
    trainer.train()
    assert trainer.skipped_steps >= 1
    assert float(trainer.optimizer.loss_scale) < 2.0 ** 15
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert checkpoint_steps(str(tmp_path)) == [2, 4, 6]


# ------------------------------------- resume from a bad workdir

def run(workdir, steps, model=None, **kwargs):
    model = model or mlp()
    trainer = training.Trainer(model, LOSS, optimizers.AdamW(0.05),
                               kwargs.pop('dataset_fn', batches), steps,
                               str(workdir), save_every=2, **kwargs)
    trainer.train()
    return model, trainer


@pytest.fixture(scope='module')
def six_steps(tmp_path_factory):
    """Weights after 6 uninterrupted steps, and that workdir (ckpt-2/4/6)."""
    d = tmp_path_factory.mktemp('six')
    model, _ = run(d / 'w', 6, verbose=0)
    return model.get_weights(), d / 'w'


def damaged_copy(six_steps, tmp_path, damage):
    import shutil
    w = tmp_path / 'w'
    shutil.copytree(str(six_steps[1]), str(w))
    damage(w / 'ckpt')
    return w


def remove_latest(ckpt):
    for path in ckpt.glob('ckpt-6.*'):
        path.unlink()


def truncate_latest(ckpt):
    data = next(ckpt.glob('ckpt-6.data-*'))
    size = data.stat().st_size
    with open(data, 'r+b') as f:
        f.truncate(size // 2)


def garble_state(ckpt):
    (ckpt / 'checkpoint').write_bytes(b'\x00\xffnot a state file {{{')


@pytest.mark.parametrize('damage, skipped, reason', [
    (remove_latest, 'ckpt-6', 'index file .*ckpt-6.index is missing'),
    (truncate_latest, 'ckpt-6', 'data file .*ckpt-6.data-00000-of-00001 '
                                'is truncated'),
    (garble_state, None, None)])
def test_resume_falls_back_to_newest_complete_checkpoint(
        six_steps, tmp_path, capsys, damage, skipped, reason):
    """A missing or truncated ckpt-6 → resume from ckpt-4, saying why; an
    unreadable state file → the checkpoint files are found anyway.  The
    run then ends with the uninterrupted weights."""
    w = damaged_copy(six_steps, tmp_path, damage)
    model, trainer = run(w, 6 if skipped else 8, verbose=1)
    out = capsys.readouterr().out
    if skipped:
        assert re.search('skipping checkpoint .*%s: its %s' % (skipped,
                                                              reason), out)
        assert 'resuming from step 4 of 6' in out
        assert_same_weights(model.get_weights(), six_steps[0], atol=0)
    else:
        assert 'resuming from step 6 of 8' in out
    assert checkpoint_steps(str(w))[-1] == (6 if skipped else 8)


def test_unusable_workdir_is_never_restarted(six_steps, tmp_path):
    def ruin(ckpt):
        for path in ckpt.glob('ckpt-*.data-*'):
            path.write_bytes(b'')
    w = damaged_copy(six_steps, tmp_path, ruin)
    with pytest.raises(training.NoUsableCheckpointError,
                       match='none restores(.|\n)*ckpt-2'):
        run(w, 6, verbose=0)
    ruin_all = tmp_path / 'only_state'
    (ruin_all / 'ckpt').mkdir(parents=True)
    (ruin_all / 'ckpt' / 'checkpoint').write_text(
        'model_checkpoint_path: "ckpt-40"\n')
    with pytest.raises(training.NoUsableCheckpointError,
                       match='none restores(.|\n)*ckpt-40.index is missing'):
        run(ruin_all, 6, verbose=0)


def test_export_into_trainer_folder_is_refused(six_steps, tmp_path):
    from conftest import TINY_GAU, write_json
    from gau_keras import checkpoints
    cfg = write_json(tmp_path / 'cfg.json', TINY_GAU)
    t = gau_keras.build_transformer_model(cfg, model='gau_alpha',
                                          return_keras_model=False)
    ckpt = six_steps[1] / 'ckpt'
    state = (ckpt / 'checkpoint').read_text()
    for target in (ckpt / 'bert_model.ckpt', ckpt):
        with pytest.raises(checkpoints.CheckpointError,
                           match='training checkpoints'):
            t.save_weights_as_checkpoint(str(target))
    assert (ckpt / 'checkpoint').read_text() == state


def test_batch_size_change_is_refused(six_steps, tmp_path):
    w = damaged_copy(six_steps, tmp_path, lambda ckpt: None)

    def smaller(position):
        for x, y in batches(position):
            yield x[:4], y[:4]
    with pytest.raises(training.CheckpointMismatchError,
                       match='batch size changed: batch 5 had 6 rows'
                             '(.|\n)*now gives it 4 rows'):
        run(w, 8, dataset_fn=smaller, verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize('second', ['mixed_bfloat16', 'mixed_float16'])
def test_precision_change_on_resume(tmp_path, policy, capsys, second):
    """fp32 workdir, bf16/fp16 run (GAU-α with dropout: mixed precision
    adds an output cast layer): resumes, says what differs."""
    from conftest import TINY_GAU, write_json
    cfg = write_json(tmp_path / 'cfg.json', dict(TINY_GAU, vocab_size=30,
                                                 num_hidden_layers=1))
    rs = np.random.RandomState(0)

    def token_batches(position):
        while True:
            t = np.random.RandomState(position).randint(1, 30, (4, 6))
            yield [t, 0 * t], t
            position += 1

    def go(steps):
        training.set_seed(3, deterministic=False)
        model = gau_keras.build_transformer_model(
            cfg, model='gau_alpha', with_mlm='linear',
            dropout_rate=0.1, attention_dropout_rate=0.1)
        training.Trainer(model, LOSS, optimizers.AdamW(1e-3), token_batches,
                         steps, str(tmp_path / 'w'), save_every=2,
                         verbose=1).train()
        return model
    del rs
    go(2)
    policy(second)
    model = go(4)
    out = capsys.readouterr().out
    assert 'written under float32, this run uses %s' % second in out
    assert 'resuming from step 2 of 4' in out
    assert all(np.isfinite(w).all() for w in model.get_weights())


# ------------------------------------------ the loss's reduction

def token_dense(seed=0, classes=3, features=4):
    rs = np.random.RandomState(seed)
    x = tf.keras.Input((None, features))
    model = tf.keras.Model(x, tf.keras.layers.Dense(classes)(x))
    model.set_weights([rs.randn(*w.shape).astype('float32')
                       for w in model.weights])
    return model


def softmax_ce_numpy(x, y, kernel, bias):
    """Cross-entropy of logits x·W + b per element, and dL/dlogits."""
    logits = x @ kernel + bias
    logits = logits - logits.max(-1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    onehot = np.eye(kernel.shape[1])[y]
    return -np.log((p * onehot).sum(-1)), p - onehot


@pytest.mark.parametrize('reduction', ['none', None, 'sum'])
@pytest.mark.parametrize('time_axis', [False, True])
def test_loss_and_gradient_match_numpy(tmp_path, reduction, time_axis):
    """The first step's loss and SGD(1) update equal the hand-computed
    mean (or sum) cross-entropy and its gradient, for rank-1 and rank-2
    losses and every Keras reduction (None = Keras's default,
    sum_over_batch_size)."""
    rs = np.random.RandomState(5)
    shape = (6, 5, 4) if time_axis else (6, 4)
    x = rs.randn(*shape).astype('float32')
    y = rs.randint(0, 3, shape[:-1])
    model = token_dense() if time_axis else mlp_linear()
    kernel, bias = [w.astype('float64') for w in model.get_weights()]
    per, dlogits = softmax_ce_numpy(x.astype('float64'), y, kernel, bias)
    scale = 1.0 if reduction == 'sum' else 1.0 / per.size
    want_loss = per.sum() * scale
    dlogits = dlogits * scale
    flat_x = x.reshape(-1, x.shape[-1])
    want_dkernel = flat_x.T @ dlogits.reshape(-1, 3)
    want_dbias = dlogits.reshape(-1, 3).sum(0)
    kwargs = {} if reduction is None else {'reduction': reduction}
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                         **kwargs)
    got = []
    training.Trainer(model, loss, tf.keras.optimizers.SGD(1.0),
                     lambda p: iter([(x, y)]), 1, str(tmp_path), verbose=0,
                     callbacks=[lambda s, l: got.append(l)]).train()
    assert got[0] == pytest.approx(want_loss, rel=1e-5)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(kernel - new_kernel, want_dkernel, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(bias - new_bias, want_dbias, rtol=1e-4,
                               atol=1e-6)


def mlp_linear(seed=0):
    rs = np.random.RandomState(seed)
    x = tf.keras.Input((4,))
    model = tf.keras.Model(x, tf.keras.layers.Dense(3)(x))
    model.set_weights([rs.randn(*w.shape).astype('float32')
                       for w in model.weights])
    return model


def test_scalar_loss_function_is_refused(tmp_path):
    with pytest.raises(ValueError, match='returned a scalar'):
        training.Trainer(mlp(), lambda y, p: tf.reduce_mean(LOSS(y, p)),
                         optimizers.AdamW(), batches, 1, str(tmp_path),
                         verbose=0).train()


# --------------------------------------- one trace for all lengths

@pytest.mark.parametrize('jit', [False, True])
def test_one_trace_serves_every_sequence_length(tmp_path, jit):
    """Batches of 4 lengths: at most 2 traces (the first length, then one
    with the length axis unknown), not one per length."""
    model = token_dense()

    def varying(position):
        while True:
            n = 3 + position % 4
            rs = np.random.RandomState(position)
            yield (rs.randn(4, n, 4).astype('float32'),
                   rs.randint(0, 3, (4, n)))
            position += 1
    trainer = training.Trainer(model, LOSS, optimizers.AdamW(0.01), varying,
                               8, str(tmp_path), verbose=0,
                               jit_compile=jit)
    trainer.train()
    assert trainer._train_step.experimental_get_tracing_count() <= 2


# ------------------------------------------------- bad arguments

def test_bad_sizes_and_learning_rates_are_refused(tmp_path):
    parser = flags.add_training_args(argparse.ArgumentParser())
    for bad in (['--batch_size', '0'], ['--batch_size', '-4'],
                ['--learning_rate', '-1e-4'], ['--learning_rate', 'nan'],
                ['--steps', '0'], ['--save_every', '-1'],
                ['--grad_accum_steps', '0'], ['--weight_decay', '-1']):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    args = parser.parse_args([])
    args.learning_rate = -1e-4
    with pytest.raises(ValueError, match='learning_rate must be a positive'):
        flags.optimizer_from_args(args)
    for opt in (optimizers.AdamW(-0.1), optimizers.build_optimizer(
            'lamb', -1e-3, lr_schedule={10: 1})):
        with pytest.raises(ValueError, match='learning rate .* >= 0, got '
                                             '-0.1|learning rate .*-0.001'):
            training.Trainer(mlp(), LOSS, opt, batches, 2, str(tmp_path))


# ------------------------- gradient accumulation resumed mid-way

def test_resume_in_the_middle_of_an_accumulation(tmp_path):
    """grad_accum_steps=2, stopped after 3 micro-steps (ckpt-3 holds one
    accumulated gradient): the resumed run restores the accumulators and
    the micro-step count, and ends with the uninterrupted weights exactly."""
    def opt():
        return optimizers.build_optimizer('adamw', 0.05, grad_accum_steps=2)
    whole = mlp()
    training.Trainer(whole, LOSS, opt(), batches, 6, str(tmp_path / 'a'),
                     save_every=3, verbose=0).train()
    first = mlp()
    t1 = training.Trainer(first, LOSS, opt(), batches, 3,
                          str(tmp_path / 'b'), save_every=3, verbose=0)
    t1.train()
    accumulated = [a.numpy() for a in t1.optimizer._accumulators]
    assert any(np.abs(a).sum() > 0 for a in accumulated)
    again = mlp()
    t2 = training.Trainer(again, LOSS, opt(), batches, 6,
                          str(tmp_path / 'b'), save_every=3, verbose=0)
    assert t2.restore() == 3
    assert int(t2.optimizer.micro_steps) == 3
    for a, b in zip(t2.optimizer._accumulators, accumulated):
        np.testing.assert_array_equal(a.numpy(), b)
    t2.train()
    assert_same_weights(again.get_weights(), whole.get_weights(), atol=0)
