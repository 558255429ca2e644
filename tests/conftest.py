"""Shared fixtures.  ``import gau_keras`` must come before TensorFlow."""
import importlib.util
import json
import os
import sys
import tempfile

# The precision probe ('auto') caches per machine; tests keep that cache in a
# folder of their own (subprocesses inherit it) instead of the home folder.
os.environ.setdefault('GAU_KERAS_CACHE_DIR',
                      tempfile.mkdtemp(prefix='gau_keras_test_cache_'))

import gau_keras  # noqa: F401  (selects tf-keras before TF is imported)
import numpy as np
import pytest
import tensorflow as tf

# Test modules live in tests/<area>/; the shared helpers (tiny_configs,
# model_harness, numpy references, subprocess workers) stay in tests/.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


#: The longest modules (35-90 s each on a quiet 2-core machine: fault
#: loops, multi-process runs, scripts and wheels run as subprocesses, the
#: model harness), longest first.  They are collected first so that
#: pytest-xdist, which hands whole files to its workers in collection order
#: (Makefile: --dist loadfile --no-loadscope-reorder), starts them early and
#: the short files even out the two workers at the end.  Only the order
#: changes: a stale entry costs time, never a test.
LONGEST_FIRST = (
    'compat/test_bert4keras_examples.py',
    'training/test_fault_injection_runs.py',
    'clue/test_clue_bert4keras_ports.py',
    'models/test_model_harness.py',
    'training/test_distributed.py',
    'pretraining/test_pretrain.py',
    'package/test_package.py',
    'compat/test_compat.py',
    'compat/test_bert4keras_dropin.py',
    'package/test_wheel.py',
    'tools/test_examples.py',
    'serving/test_export.py',
    'models/test_flash_models.py',
    'training/test_faults.py',
    'clue/test_reliability_finetune.py',
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def position(item):
        name = os.path.relpath(str(item.path), TESTS).replace(os.sep, '/')
        return rank.get(name, len(rank))
    items.sort(key=position)     # stable: each file keeps its own order


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: over ~1.5 s of CPU: subprocess runs (kill/resume, '
        'distributed, wheels, scripts, fresh interpreters), training runs, '
        'XLA compiles; make test-fast skips it')


from tiny_configs import TINY_GAU, tiny_config as _tiny_config  # noqa: E402

#: The tests/ folder (shared helpers, subprocess workers, fixtures/) and the
#: repository root (the checkout).
TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
FIXTURES = os.path.join(TESTS, 'fixtures')


def load_script(name):
    """``scripts/<name>.py`` as a module (the scripts are not a package),
    so a test can call its ``main`` or its helpers in this process."""
    spec = importlib.util.spec_from_file_location(
        name + '_script', os.path.join(ROOT, 'scripts', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _set_policy(name):
    tf.keras.mixed_precision.set_global_policy(name)


@pytest.fixture
def policy():
    """``policy('mixed_bfloat16')`` sets a global policy; float32 is always
    restored afterwards, whatever happens in the test."""
    try:
        yield _set_policy
    finally:
        _set_policy('float32')


@pytest.fixture(autouse=True)
def _float32_guard():
    """Every test starts (and ends) with the float32 policy."""
    _set_policy('float32')
    try:
        yield
    finally:
        _set_policy('float32')


def write_json(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=2)
    return str(path)


@pytest.fixture
def config_writer(tmp_path):
    """``config_writer(dict, name='config.json')`` → path of a JSON file."""
    def write(config, name='config.json'):
        return write_json(tmp_path / name, config)
    return write


@pytest.fixture
def tiny_config():
    """``tiny_config(model='gau_alpha', dropout=None, **overrides)`` → the
    model's tiny config dict (tests/tiny_configs.py)::

        config = tiny_config('flash', num_hidden_layers=1, dropout=0.0)
    """
    return _tiny_config


@pytest.fixture(scope='module')
def tiny_config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'gau_alpha_tiny.json'
    return write_json(path, TINY_GAU)


def padded_batch(rng, lengths, n, vocab_size, segments=False):
    """token ids [b, n] with rows of the given real lengths (0 = padding),
    and segment ids (second half of each row = 1 when ``segments``)."""
    tokens = np.zeros((len(lengths), n), np.int32)
    seg = np.zeros((len(lengths), n), np.int32)
    for r, length in enumerate(lengths):
        tokens[r, :length] = rng.integers(1, vocab_size, length)
        if segments:
            seg[r, length // 2:length] = 1
    return tokens, seg


# ---- shared paths ------------------------------------------------------------

def config_path(name):
    """Path of a preset's file by name: ``config_path('flash_tiny')``."""
    from gau_keras.configs import preset_path
    return preset_path(name)


# ---- the layer harness: checks every attention layer must pass ---------------


class LayerHarness(object):
    """Serialisation, save → load and mixed-precision checks for a layer.

    Used by the tests of both attention layers (``GatedAttentionUnit`` in
    test_layers.py, ``MixedChunkAttention`` in test_flash.py) through the
    ``layer_harness`` fixture.  ``make(**kwargs)`` builds a layer (under the
    current dtype policy) and ``call(layer, x)`` runs it.

    Example::

        def test_round_trip(layer_harness):
            layer_harness.config_round_trip(make, call, x)
    """

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path

    @staticmethod
    def copy_weights(source, target):
        for w, v in zip(target.checkpoint_weights(),
                        source.checkpoint_weights()):
            w.assign(v)

    def config_round_trip(self, make, call, x):
        """from_config(get_config()) is the same layer: same config, and
        with the same weights the same outputs (exactly)."""
        layer = make()
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        call(clone, x)
        self.copy_weights(layer, clone)
        np.testing.assert_array_equal(call(clone, x).numpy(),
                                      call(layer, x).numpy())
        return clone

    def save_load(self, make, x):
        """A Keras model holding the layer survives ``model.save`` →
        ``load_model`` (no custom_objects: the layer is registered) with
        the same outputs, exactly."""
        from gau_keras.backend import keras
        layer = make()
        inp = keras.layers.Input((None, x.shape[-1]))
        model = keras.Model(inp, layer(inp))
        path = str(self.tmp_path / ('%s.keras' % layer.name))
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
        return loaded

    def mixed_precision_close(self, make, call, x, policy_name, tol,
                              real=None):
        """Under ``policy_name`` the layer (same weights) computes in the low
        dtype and stays within ``tol`` × max|float32 output| of float32, on
        the rows where ``real`` (bool [b, n]) is True.  Returns the error
        relative to that scale."""
        reference = make()
        want = call(reference, x).numpy()
        _set_policy(policy_name)
        try:
            layer = make()
        finally:
            _set_policy('float32')
        call(layer, x)
        self.copy_weights(reference, layer)
        got = call(layer, x)
        assert got.dtype == tf.as_dtype(policy_name.replace('mixed_', ''))
        got = tf.cast(got, tf.float32).numpy()
        assert np.isfinite(got).all()
        if real is not None:
            got, want = got[real], want[real]
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, atol=tol * scale)
        return np.abs(got - want).max() / scale


@pytest.fixture
def layer_harness(tmp_path):
    """A ``LayerHarness`` writing into the test's tmp_path."""
    return LayerHarness(tmp_path)


@pytest.fixture
def model_harness(tmp_path):
    """``model_harness(model, application='encoder')`` → a ``ModelHarness``
    (tests/model_harness.py) writing into the test's tmp_path::

        model_harness('flash', 'lm').save_load()
    """
    from model_harness import ModelHarness

    def make(model, application='encoder'):
        return ModelHarness(model, application, tmp_path)
    return make
