"""scripts/export.py --format saved_model: the SavedModel, loaded in a fresh
process that imports only TensorFlow and tensorflow-text, answers as
gau_keras.clue.load_predictor does on the same run folder."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gau_keras import clue
from conftest import load_script
from test_predict import LONG, random_run

TEXTS = ['今天天气很好，股市大涨！', '', 'ＡＢＣ全角，半角ABC abc 123',
         'Café 😀👍🏻 𠮷野家\u3000空格\u200b', LONG]

#: run in a fresh interpreter: prints the signature outputs as JSON
FRESH = r'''
import json, sys
import tensorflow as tf, tensorflow_text  # noqa: F401
path, inputs = sys.argv[1], json.loads(sys.stdin.read())
loaded = tf.saved_model.load(path)
out = {}
for name, feed in inputs.items():
    fn = loaded.signatures[name]
    args = {k: tf.constant(v, tf.int32 if name == 'ids' else tf.string)
            for k, v in feed.items()}
    out[name] = {k: v.numpy().tolist() for k, v in fn(**args).items()}
    out[name + '_inputs'] = sorted(fn.structured_input_signature[1])
leaked = [m for m in sys.modules
          if m.split('.')[0] in ('gau_keras', 'bert4keras')]
print(json.dumps({'outputs': out, 'leaked': leaked}, default=lambda b:
                 b.decode('utf-8')))
'''


def export_script():
    return load_script('export')


def fresh_process(path, inputs):
    env = {k: v for k, v in os.environ.items()
           if k != 'TF_USE_LEGACY_KERAS'}       # as a serving host has it
    done = subprocess.run(
        [sys.executable, '-c', FRESH, str(path)], input=json.dumps(inputs),
        capture_output=True, text=True, timeout=600,
        env=dict(env, TF_CPP_MIN_LOG_LEVEL='2'), cwd=str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().split('\n')[-1])
    assert result['leaked'] == []
    return result['outputs']


def padded_ids(predictor, texts, texts_b=None):
    rows = [predictor.tokenizer.encode(
        t, None if texts_b is None else texts_b[i],
        maxlen=predictor.maxlen) for i, t in enumerate(texts)]
    n = max(len(i) for i, _ in rows)
    return ([i + [0] * (n - len(i)) for i, _ in rows],
            [s + [0] * (n - len(s)) for _, s in rows])


@pytest.mark.slow
@pytest.mark.parametrize('name', ['tnews', 'afqmc'])
def test_saved_model_in_a_fresh_process_equals_the_predictor(
        name, tmp_path):
    run = random_run(name, tmp_path / 'run')
    out = tmp_path / 'export' / '1'
    export_script().main([run, '--format', 'saved_model', '--out',
                          str(out)])
    predictor = clue.load_predictor(run)
    pair = name == 'afqmc'
    texts_b = TEXTS[::-1] if pair else None
    feed = {'text': TEXTS}
    if pair:
        feed['text_b'] = texts_b
    ids, segs = padded_ids(predictor, TEXTS, texts_b)
    got = fresh_process(out, {'serving_default': feed,
                              'ids': {'token_ids': ids,
                                      'segment_ids': segs}})
    want = predictor.predict(list(zip(TEXTS, texts_b)) if pair else TEXTS)
    serve = got['serving_default']
    assert got['serving_default_inputs'] == sorted(feed)
    assert serve['label'] == [w['label'] for w in want]
    assert serve['label_id'] == [w['label_id'] for w in want]
    np.testing.assert_allclose(
        serve['probabilities'],
        [[w['probabilities'][l] for l in predictor.labels] for w in want],
        atol=1e-5)
    logits = predictor.model([np.array(ids), np.array(segs)],
                             training=False).numpy()
    np.testing.assert_allclose(got['ids']['logits'], logits, atol=1e-5)
    assert os.path.isfile(os.path.join(str(out), 'assets.extra',
                                       'vocab.txt'))


@pytest.mark.slow
def test_cluener_saved_model_entities_equal_the_predictor(tmp_path):
    run = random_run('cluener', tmp_path / 'run')
    out = tmp_path / 'export'
    export_script().main([run, '--format', 'saved_model', '--out',
                          str(out)])
    texts = TEXTS + ['浙江杭州阿里巴巴', '北京']
    got = fresh_process(out, {'serving_default': {'text': texts}})
    serve = got['serving_default']
    want = clue.load_predictor(run).predict(texts)
    assert serve['entity_count'] == [len(w['entities']) for w in want]
    assert sum(serve['entity_count']) > 10
    for i, w in enumerate(want):
        n = serve['entity_count'][i]
        rows = list(zip(serve['entity_start'][i], serve['entity_end'][i],
                        serve['entity_type'][i], serve['entity_text'][i]))
        assert rows[:n] == [(e['start'], e['end'], e['type'], e['text'])
                            for e in w['entities']]
        assert set(rows[n:]) <= {(-1, -1, '', '')}


def test_export_of_an_unservable_task_says_why(tmp_path):
    run = random_run('cmrc2018', tmp_path / 'run')
    with pytest.raises(ValueError, match="'cmrc2018'.*load_predictor"):
        export_script().main([run, '--format', 'saved_model', '--out',
                              str(tmp_path / 'export')])
    assert not (tmp_path / 'export').exists()


@pytest.mark.slow
def test_in_process_saved_model_signatures(tmp_path):
    """Quick check of the signatures' names, dtypes and shapes."""
    from gau_keras.serving import saved_model
    run = random_run('tnews', tmp_path / 'run')
    out = saved_model.export_saved_model(run, str(tmp_path / 'e'))
    loaded = tf.saved_model.load(out)
    serve = loaded.signatures['serving_default']
    spec = serve.structured_input_signature[1]
    assert list(spec) == ['text'] and spec['text'].dtype == tf.string
    outputs = serve.structured_outputs
    assert outputs['label'].dtype == tf.string
    assert outputs['label_id'].dtype == tf.int32
    assert outputs['probabilities'].dtype == tf.float32
    assert outputs['probabilities'].shape.as_list() == [None, 4]
    ids = loaded.signatures['ids'].structured_input_signature[1]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in ids.items()} == {
        'token_ids': (tf.int32, [None, None]),
        'segment_ids': (tf.int32, [None, None])}
    result = serve(text=tf.constant(['好', LONG]))
    want = clue.load_predictor(run).predict(['好', LONG])
    assert [x.decode() for x in result['label'].numpy()] == \
        [w['label'] for w in want]
