"""ONNX export (gau_keras.serving.onnx): onnxruntime equals TensorFlow.

Tiny gau_alpha, flash_quad and flash encoders with random weights; FLASH at
lengths that are and are not multiples of its chunk size, with padded rows.
"""
import json

import numpy as np
import pytest

from conftest import ROOT, TINY_GAU, load_script, padded_batch

pytest.importorskip('tf2onnx', reason='pip install tf2onnx onnxruntime')

CHUNK = 8


def build(tmp_path, model):
    import gau_keras
    config = dict(TINY_GAU, vocab_size=60)
    if model == 'flash':
        config['chunk_size'] = CHUNK
    path = tmp_path / ('%s.json' % model)
    path.write_text(json.dumps(config))
    return gau_keras.build_transformer_model(str(path), model=model)


@pytest.mark.parametrize('model_name,lengths', [
    ('gau_alpha', [(5, 5), (13, 9)]),
    pytest.param('flash_quad', [(6, 6), (11, 4)], marks=pytest.mark.slow),
    pytest.param('flash', [(2 * CHUNK, 2 * CHUNK), (CHUNK, 3),
                           (2 * CHUNK + 3, 7), (5, 5)],
                 marks=pytest.mark.slow),
])
def test_onnxruntime_equals_tensorflow(tmp_path, model_name, lengths):
    from gau_keras.serving.onnx import (export_onnx, onnx_session,
                                        token_id_function)
    model = build(tmp_path, model_name)
    path = export_onnx(model, str(tmp_path / 'model.onnx'))
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ['token_ids',
                                                      'segment_ids']
    assert session.get_inputs()[0].type == 'tensor(int32)'
    function, _ = token_id_function(model)
    rng = np.random.default_rng(0)
    for n, real in lengths:                   # row 0 full, row 1 padded
        tokens, segments = padded_batch(rng, [n, real], n, 60, segments=True)
        want = model.predict([tokens, segments], verbose=0)
        np.testing.assert_allclose(function(tokens, segments)['output'],
                                   want, atol=1e-5)
        (got,) = session.run(None, {'token_ids': tokens,
                                    'segment_ids': segments})
        assert got.shape == want.shape == (2, n, TINY_GAU['hidden_size'])
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_names_outputs_and_refuses_other_models(tmp_path):
    from gau_keras.backend import keras
    from gau_keras.serving.onnx import export_onnx, onnx_session
    ids = keras.layers.Input((None,), dtype='int32')
    emb = keras.layers.Embedding(10, 3)(ids)
    model = keras.Model(ids, [emb, keras.layers.Dense(2)(emb)])
    path = export_onnx(model, str(tmp_path / 'two.onnx'),
                       output_names=['embedding', 'logits'])
    session = onnx_session(path)
    assert [o.name for o in session.get_outputs()] == ['embedding',
                                                       'logits']
    x = np.array([[1, 2, 3]], np.int32)
    got = session.run(None, {'token_ids': x})
    for g, w in zip(got, model.predict(x, verbose=0)):
        np.testing.assert_allclose(g, w, atol=1e-6)
    more = [keras.layers.Input((None,), dtype='int32') for _ in range(3)]
    three = keras.Model(more, keras.layers.Add()(more))
    with pytest.raises(ValueError, match='1 or 2 inputs'):
        export_onnx(three, str(tmp_path / 'x.onnx'))
    assert not (tmp_path / 'x.onnx').exists()


def test_export_script_writes_a_run_folder_as_onnx(tmp_path):
    """scripts/export.py RUN --format onnx: logits equal the run's model
    (padded batch), and their argmax is the predictor's label."""
    from gau_keras.clue import load_predictor
    from gau_keras.serving.onnx import onnx_session
    from serving_runs import random_run
    run, texts = random_run('tnews', str(tmp_path / 'tnews'))
    export = load_script('export')
    out = str(tmp_path / 'tnews.onnx')
    assert export.main([run, '--format', 'onnx', '--out', out]) == out
    session = onnx_session(out)
    assert [o.name for o in session.get_outputs()] == ['logits']
    predictor = load_predictor(run)
    encoded = [predictor.tokenizer.encode(t, maxlen=32) for t in texts]
    n = max(len(i) for i, _ in encoded)
    ids = np.array([i + [0] * (n - len(i)) for i, _ in encoded], np.int32)
    segs = np.array([s + [0] * (n - len(s)) for _, s in encoded], np.int32)
    (logits,) = session.run(None, {'token_ids': ids, 'segment_ids': segs})
    want = predictor.model.predict([ids, segs], verbose=0)
    np.testing.assert_allclose(logits, want, atol=1e-4)
    labels = [r['label_id'] for r in predictor.predict(texts)]
    assert logits.argmax(-1).tolist() == labels
    assert len(set(labels)) > 1


@pytest.mark.slow
def test_speed_script_prints_the_table(capsys):
    import os
    import sys
    scripts = os.path.join(ROOT, 'scripts')
    sys.path.insert(0, scripts)
    try:
        from bench import onnx_speed
    finally:
        sys.path.remove(scripts)
    rows = onnx_speed.main(['--models', 'tiny', '--shapes', '1x8',
                            '--steps', '1'])
    assert [r[2] for r in rows] == ['predict_on_batch', 'tf.function',
                                    'onnxruntime']
    assert all(r[3] > 0 and r[6] < 1e-4 for r in rows)
    out = capsys.readouterr().out
    assert '/proc/loadavg' in out and 'avx2=' in out
    assert '| tiny | 1x8 | onnxruntime |' in out
