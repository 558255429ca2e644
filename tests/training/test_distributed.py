"""Every multi-device check, in one module whose subprocesses start
together so that their TensorFlow imports overlap:

- the Trainer (tests/_train_worker.py: GAU-α, LAMB, accumulation 2) on one
  device, under MirroredStrategy over 2 logical CPUs, and as 2 multi-worker
  processes on 127.0.0.1;
- Keras ``model.fit`` under MirroredStrategy (tests/_mirrored_worker.py) of
  the bert4keras-style classifier, each GAU model once and each precision
  once, and of the composed bert4keras optimizer.
"""
import json
import os
import socket
import subprocess
import sys

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest

from conftest import TESTS
from run_files import assert_same_weights, losses_of, worker_weights

pytestmark = pytest.mark.slow

TRAIN_WORKER = [sys.executable, os.path.join(TESTS, '_train_worker.py')]
FIT_WORKER = [sys.executable, os.path.join(TESTS, '_mirrored_worker.py')]
DIST_ARGS = ['--model', 'gau_alpha', '--optimizer', 'lamb',
             '--grad_accum_steps', '2', '--steps', '4', '--save_every', '2']
#: Each GAU model once and each precision once.
FIT_CASES = ['classifier:gau_alpha:float32',
             'classifier:flash_quad:mixed_bfloat16',
             'classifier:flash:mixed_float16', 'optimizer']


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(cmd, env=None):
    return subprocess.Popen(cmd, env=dict(os.environ, **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def train(args, out, env=None):
    return start(TRAIN_WORKER + args + ['--workdir', str(out) + '.run',
                                        '--out', str(out) + '.npz'], env)


def finish(proc, timeout=900):
    """(return code, stdout, stderr); the timeout is a hang guard only."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def log(runs, name):
    """stdout of run ``name``, which must have succeeded."""
    code, out, err = runs[1][name]
    assert code == 0, err[-3000:]
    return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """(folder, {run: (return code, stdout, stderr)}) of every run, started
    together."""
    d = tmp_path_factory.mktemp('dist')
    cluster = {'worker': ['127.0.0.1:%d' % p for p in free_ports(2)]}
    procs = {'fit': start(FIT_WORKER + FIT_CASES,
                          env={'TF_CPP_MIN_LOG_LEVEL': '3'}),
             'single': train(DIST_ARGS, d / 'single'),
             'mirrored': train(DIST_ARGS + ['--strategy', 'mirrored',
                                            '--cpus', '2'], d / 'mirrored')}
    for i in range(2):
        tf_config = json.dumps({'cluster': cluster,
                                'task': {'type': 'worker', 'index': i}})
        procs['worker%d' % i] = train(
            DIST_ARGS + ['--strategy', 'multi_worker'], d / ('mw%d' % i),
            env={'TF_CONFIG': tf_config})
    return d, {name: finish(p) for name, p in procs.items()}


def test_mirrored_equals_single_device(runs):
    d, single = runs[0], losses_of(log(runs, 'single'))
    np.testing.assert_allclose(losses_of(log(runs, 'mirrored')), single,
                               rtol=1e-5)
    assert_same_weights(worker_weights(str(d / 'mirrored') + '.npz'),
                        worker_weights(str(d / 'single') + '.npz'))
    assert len(single) == 4


def test_multi_worker_equals_single_device(runs):
    d, single = runs[0], losses_of(log(runs, 'single'))
    for i in range(2):
        np.testing.assert_allclose(losses_of(log(runs, 'worker%d' % i)),
                                   single, rtol=1e-5)
    assert_same_weights(worker_weights(str(d / 'mw0') + '.npz'),
                        worker_weights(str(d / 'single') + '.npz'))
    assert not os.path.exists(str(d / 'mw1') + '.npz')   # chief writes only
    assert os.path.exists(str(d / 'mw0.run') + '/ckpt/checkpoint')


def test_mirrored_strategy_equals_single_device(runs):
    """model.fit of the classifier: the same loss and weights on one device
    and on 2 replicas (float32 to 1e-5, mixed precision to 2e-2)."""
    lines = [l for l in log(runs, 'fit').splitlines()
             if l.startswith('case ')]
    assert [l.split()[1] for l in lines] == FIT_CASES[:3], lines
    for line in lines:
        fields = line.split()
        precision = fields[1].split(':')[2]
        single, mirrored, diff = (float(fields[5]), float(fields[6]),
                                  float(fields[8]))
        assert fields[3] == '2'
        tol = 1e-5 if precision == 'float32' else 2e-2
        assert abs(single - mirrored) <= tol * max(1.0, abs(single)), line
        assert diff <= tol, line


def test_composed_class_under_mirrored_strategy_equals_single_device(runs):
    """The composed optimizer (accumulation, piecewise lr, lookahead, EMA)
    updates the same under MirroredStrategy as on one device."""
    out = log(runs, 'fit')
    lines = [l for l in out.splitlines() if l.startswith('RESULT')]
    assert lines, out[-3000:]
    out = json.loads(lines[0][len('RESULT'):])
    assert out['default_iterations'] == out['mirrored_iterations'] == 4
    for a, b in zip(out['default'], out['mirrored']):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(np.array(out['init'][0]) -
                  np.array(out['default'][0])).max() > 1e-3
