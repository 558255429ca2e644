"""FGM adversarial training and the gradient penalty against a hand-computed
step: a tiny model (token embedding -> mean over positions -> Dense ->
softmax) whose loss is written in numpy (float64); its gradients are taken
by central differences, the penalty's inner gradient by its closed form.
One SGD step of model.fit / the Trainer must land on the same weights, in
fp32, under mixed_float16 (loss scaling) and under a two-replica
MirroredStrategy (run in a subprocess: the logical CPUs must be set before
TensorFlow starts)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gau_keras  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
from gau_keras.backend import keras
from gau_keras.training import (Trainer, adversarial_training,
                                gradient_penalty, use_logical_cpus)

V, D, C, B, N = 7, 3, 4, 4, 5
LR, EPS = 0.5, 0.7


def _data():
    rng = np.random.RandomState(0)
    x = rng.randint(0, V, size=(B, N))
    x[0, :2] = x[0, 2]          # repeated tokens: rows of E summed
    y = rng.randint(0, C, size=(B,))
    params = [rng.randn(V, D) * 0.8, rng.randn(D, C) * 0.8, rng.randn(C) * 0.3]
    return x, y, params


# -- numpy truth -------------------------------------------------------------

def _probs(params, x):
    E, W, c = params
    h = E[x].mean(axis=1)
    z = h @ W + c
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def np_loss(params, x, y):
    p = _probs(params, x)
    return -np.log(p[np.arange(len(y)), y]).mean()


def np_penalty(params, x, y):
    """sum over token positions of ||dL/de_pos||^2 (closed form)."""
    p = _probs(params, x)
    p[np.arange(len(y)), y] -= 1.0
    de = p @ params[1].T / (len(y) * x.shape[1])       # (b, d) per position
    return x.shape[1] * np.sum(de ** 2)


def np_grad(f, params):
    grads = []
    for i, w in enumerate(params):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[i][idx] += 1e-6
            minus[i][idx] -= 1e-6
            g[idx] = (f(plus) - f(minus)) / 2e-6
        grads.append(g)
    return grads


def sgd(params, grads):
    return [w - LR * g for w, g in zip(params, grads)]


def expected(kind, replicas=1):
    x, y, params = _data()
    if kind == 'plain':
        return sgd(params, np_grad(lambda q: np_loss(q, x, y), params))
    if kind == 'fgm':
        g = np_grad(lambda q: np_loss(q, x, y), params)[0]
        delta = EPS * g / (np.sqrt((g ** 2).sum()) + 1e-8)
        moved = [params[0] + delta] + params[1:]
        out = sgd(moved, np_grad(lambda q: np_loss(q, x, y), moved))
        return [out[0] - delta] + out[1:]
    halves = np.split(np.arange(B), replicas)

    def total(q):
        gp = np.mean([np_penalty(q, x[h], y[h]) for h in halves])
        return np_loss(q, x, y) + 0.5 * EPS * gp
    return sgd(params, np_grad(total, params))


# -- the Keras side --------------------------------------------------------

def one_hot_crossentropy(y_true, y_pred):
    """bert4keras's sparse_categorical_crossentropy (twice differentiable)."""
    K = keras.backend
    y_true = K.cast(K.reshape(y_true, K.shape(y_pred)[:-1]), 'int32')
    y_true = K.one_hot(y_true, K.shape(y_pred)[-1])
    return K.categorical_crossentropy(y_true, y_pred)


def build(params):
    tokens = keras.layers.Input((None,), dtype='int32')
    e = keras.layers.Embedding(V, D, name='Embedding-Token')(tokens)
    h = keras.layers.GlobalAveragePooling1D()(e)
    z = keras.layers.Dense(C)(h)
    out = keras.layers.Activation('softmax', dtype='float32')(z)
    model = keras.models.Model(tokens, out)
    model.set_weights([w.astype('float32') for w in params])
    return model


def run_fit(kind, strategy=None):
    x, y, params = _data()
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build(params)
        loss = (one_hot_crossentropy if kind == 'gp'
                else 'sparse_categorical_crossentropy')
        model.compile(loss=loss, optimizer=keras.optimizers.SGD(LR))
    if kind == 'fgm':
        adversarial_training(model, 'Embedding-Token', epsilon=EPS)
    elif kind == 'gp':
        gradient_penalty(model, 'Embedding-Token', epsilon=EPS)
    history = model.fit(x, y[:, None], batch_size=B, epochs=1, shuffle=False,
                        verbose=0)
    return model.get_weights(), history.history['loss'][0]


def run_trainer(kind, workdir, strategy=None):
    x, y, params = _data()
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build(params)
        opt = keras.optimizers.SGD(LR)
    trainer = Trainer(model, one_hot_crossentropy, opt,
                      lambda pos: iter([(x, y[:, None])]), 1, str(workdir),
                      strategy=strategy, verbose=0)
    if kind == 'fgm':
        adversarial_training(trainer, 'Embedding-Token', epsilon=EPS)
    elif kind == 'gp':
        gradient_penalty(trainer, 'Embedding-Token', epsilon=EPS)
    trainer.train()
    return model.get_weights()


def max_error(weights, truth):
    return max(float(np.abs(w - t).max()) for w, t in zip(weights, truth))


@pytest.fixture
def fp16():
    gau_keras.set_precision('fp16', warn=False)
    try:
        yield
    finally:
        gau_keras.set_precision('fp32', warn=False)


def test_truths_differ():
    """The checks below can tell FGM and the penalty from a plain step."""
    plain = expected('plain')
    assert max_error(expected('fgm'), plain) > 0.05
    assert max_error(expected('gp'), plain) > 0.01


@pytest.mark.parametrize('kind', ['plain', 'fgm', 'gp'])
def test_fit_step_matches_hand_computation(kind):
    weights, loss = run_fit(kind)
    assert max_error(weights, expected(kind)) < 2e-5
    x, y, params = _data()
    if kind == 'fgm':       # the logged loss is the perturbed one, once
        g = np_grad(lambda q: np_loss(q, x, y), params)[0]
        moved = [params[0] + EPS * g / np.sqrt((g ** 2).sum())] + params[1:]
        assert loss == pytest.approx(np_loss(moved, x, y), rel=1e-5)
    else:
        assert loss == pytest.approx(np_loss(params, x, y), rel=1e-5)


@pytest.mark.parametrize('kind', ['fgm', 'gp'])
def test_trainer_step_matches_hand_computation(kind, tmp_path):
    assert max_error(run_trainer(kind, tmp_path), expected(kind)) < 2e-5


@pytest.mark.parametrize('kind', ['fgm', 'gp'])
def test_fp16_loss_scaling(kind, fp16, tmp_path):
    weights, _ = run_fit(kind)
    assert max_error(weights, expected(kind)) < 3e-3
    assert max_error(run_trainer(kind, tmp_path), expected(kind)) < 3e-3


def test_errors():
    x, y, params = _data()
    model = build(params)
    with pytest.raises(ValueError, match='compile'):
        adversarial_training(model)
    model.compile(loss='mse', optimizer='sgd')
    with pytest.raises(ValueError, match='Embedding-Segment'):
        gradient_penalty(model, 'Embedding-Segment')
    with pytest.raises(ValueError, match='epsilon'):
        adversarial_training(model, epsilon=-1)


@pytest.mark.slow
def test_mirrored_strategy(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    errors = json.loads(out.stdout.strip().splitlines()[-1])
    assert errors.pop('replicas') == 2
    for name, error in errors.items():
        assert error < 2e-5, (name, errors)


def _mirrored(workdir):
    use_logical_cpus(2)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    errors = {'replicas': strategy.num_replicas_in_sync}
    for kind in ('fgm', 'gp'):
        truth = expected(kind, replicas=2)
        errors['fit_' + kind] = max_error(run_fit(kind, strategy)[0], truth)
        errors['trainer_' + kind] = max_error(run_trainer(
            kind, os.path.join(workdir, kind), strategy), truth)
    print(json.dumps(errors))


if __name__ == '__main__':
    _mirrored(sys.argv[1])
