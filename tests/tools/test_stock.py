"""scripts/bench/bert4keras_gau.py (bert4keras's own GAU-α stack, the
reference) and scripts/bench/profiling.py."""
import os
import sys

import gau_keras
import numpy as np
import pytest
import tensorflow as tf
from bert4keras.models import build_transformer_model as b4k_build

from conftest import ROOT
from tiny_configs import tiny_config

sys.path.insert(0, os.path.join(ROOT, 'scripts'))
from bench import profiling  # noqa: E402
from bench.bert4keras_gau import (StockGAUAlpha,  # noqa: E402
                                  copy_stock_weights)

#: The tiny GAU-α (vocab 50, 2 layers) without dropout.
TINY = tiny_config(dropout=0.0)


def _inputs(seed, b=2, n=9):
    ids = np.random.default_rng(seed).integers(1, 50, (b, n)).astype('int32')
    ids[1, 6:] = 0  # padding in the second row
    return [ids, np.zeros_like(ids)]


@pytest.mark.slow
def test_stock_stack_and_gau_alpha_agree_with_copied_weights():
    """Two implementations (bert4keras's stock GAU, gau_keras's) of the same
    GAU-α: same weights give the same real-token outputs."""
    ref = b4k_build(None, model=StockGAUAlpha, **TINY)
    ours = gau_keras.build_transformer_model(
        None, model='gau_alpha', return_keras_model=False, **TINY)
    copy_stock_weights(ref, ours)
    x = _inputs(0)
    a, b = ref.predict(x, verbose=0), ours.model.predict(x, verbose=0)
    real = x[0] > 0
    np.testing.assert_allclose(a[real], b[real], rtol=1e-5, atol=1e-5)
    # and they are not trivially equal: other weights change the output
    ours2 = gau_keras.build_transformer_model(
        None, model='gau_alpha', return_keras_model=False, **TINY)
    assert np.abs(ours2.model.predict(x, verbose=0)[real]
                  - a[real]).max() > 1e-3


def test_op_times_reads_a_profile(tmp_path):
    w = tf.constant(np.ones((64, 64), np.float32))

    @tf.function
    def f(x):
        return tf.reduce_sum(tf.matmul(x, w))
    x = tf.ones((64, 64))
    f(x)
    tf.profiler.experimental.start(str(tmp_path))
    for _ in range(2):
        f(x).numpy()
    tf.profiler.experimental.stop()
    by_type, by_name = profiling.op_times(
        profiling.latest_xplane(str(tmp_path)), 2)
    assert 'MatMul' in by_type and by_type['MatMul'] > 0
    assert any('MatMul' in k for k in by_name)


def test_latest_xplane_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        profiling.latest_xplane(str(tmp_path))


def test_stock_stack_loads_a_release_layout_checkpoint(tmp_path):
    """gau_keras exports the release's names; bert4keras's stock stack loads
    them (its variable_mapping) and computes the same outputs."""
    from gau_keras import checkpoints
    ours = gau_keras.build_transformer_model(
        None, model='gau_alpha', return_keras_model=False, **TINY)
    prefix = checkpoints.save_weights_as_checkpoint(
        ours, str(tmp_path / 'bert_model.ckpt'))
    ref = b4k_build(None, prefix, model=StockGAUAlpha, **TINY)
    x = _inputs(1)
    real = x[0] > 0
    np.testing.assert_allclose(ref.predict(x, verbose=0)[real],
                               ours.model.predict(x, verbose=0)[real],
                               rtol=1e-5, atol=1e-5)
