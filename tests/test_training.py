"""Trainer, strategies and resumable runs.

Mirrored (2 logical CPUs), multi-worker (2 processes on 127.0.0.1) and the
kill-and-resume runs are subprocesses of tests/_train_worker.py; they start
together so that their TensorFlow imports overlap.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import optimizers, training

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = [sys.executable, os.path.join(HERE, '_train_worker.py')]
DIST_ARGS = ['--model', 'gau_alpha', '--optimizer', 'lamb',
             '--grad_accum_steps', '2', '--steps', '4', '--save_every', '2']
RESUME_ARGS = ['--model', 'gau_alpha', '--dropout', '0.3', '--optimizer', 'adamw',
               '--grad_accum_steps', '2', '--steps', '12', '--save_every',
               '3']


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


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


def weights(path):
    data = np.load(str(path) + '.npz')
    return [data['arr_%d' % i] for i in range(len(data.files))]


def assert_same_weights(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol)


@pytest.fixture(scope='module')
def distributed_runs(tmp_path_factory):
    """single, mirrored (2 CPUs) and 2-worker runs of the same training."""
    d = tmp_path_factory.mktemp('dist')
    ports = free_ports(2)
    cluster = {'worker': ['127.0.0.1:%d' % p for p in ports]}
    procs = {'single': launch(DIST_ARGS, d / 'single'),
             'mirrored': launch(DIST_ARGS + ['--strategy', 'mirrored',
                                             '--cpus', '2'], d / 'mirrored')}
    for i in range(2):
        tf_config = json.dumps({'cluster': cluster,
                                'task': {'type': 'worker', 'index': i}})
        procs['worker%d' % i] = launch(
            DIST_ARGS + ['--strategy', 'multi_worker'], d / ('mw%d' % i),
            env={'TF_CONFIG': tf_config})
    logs = {name: finish(p) for name, p in procs.items()}
    return d, logs


def losses_of(log):
    return [float(line.split()[-1]) for line in log.splitlines()
            if line.startswith('step ')]


def test_mirrored_equals_single_device(distributed_runs):
    d, logs = distributed_runs
    np.testing.assert_allclose(losses_of(logs['mirrored']),
                               losses_of(logs['single']), rtol=1e-5)
    assert_same_weights(weights(d / 'mirrored'), weights(d / 'single'))
    assert len(losses_of(logs['single'])) == 4


def test_multi_worker_equals_single_device(distributed_runs):
    d, logs = distributed_runs
    for i in range(2):
        np.testing.assert_allclose(losses_of(logs['worker%d' % i]),
                                   losses_of(logs['single']), rtol=1e-5)
    assert_same_weights(weights(d / 'mw0'), weights(d / 'single'))
    assert not os.path.exists(str(d / 'mw1') + '.npz')   # chief writes only
    assert os.path.exists(str(d / 'mw0.run') + '/ckpt/checkpoint')


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
    assert_same_weights(weights(tmp_path / 'resumed'),
                        weights(tmp_path / 'whole'), atol=0)


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
    parser = training.add_training_args(argparse.ArgumentParser())
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
        setup = training.setup_from_args(args)
        assert called == ['generator']       # no --deterministic given
        assert setup.jit_compile and setup.precision == 'mixed_bfloat16'
        assert tf.keras.mixed_precision.global_policy().name == \
            'mixed_bfloat16'
    finally:
        tf.keras.mixed_precision.set_global_policy('float32')
    opt = training.optimizer_from_args(args)
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
        training.setup_from_args(argparse.Namespace())
