"""gau_keras.clue.load_predictor and scripts/predict.py on run folders.

Truths: the submission files written by fine-tuning (same run, same best
weights), and the model applied to one unpadded input at a time."""
import json
import os
import re
import shutil

import numpy as np
import pytest

import conftest
from conftest import load_script
import gau_keras
from gau_keras import clue, corpora
from gau_keras.clue import encoding, heads, runs
from gau_keras.clue.readers import ClueDataError, read_json, read_json_lines
from serving_runs import TINY, spread_logits  # tests/ is on sys.path

FIXTURES = os.path.join(conftest.FIXTURES, 'clue')
ROOT = conftest.ROOT
LONG = '长' * 5000 + 'long text ' * 500          # 10,000 chars


def fixture_task(name):
    return clue.get_task(name, os.path.join(FIXTURES, name), False)


def fixture_texts():
    """Every text of every fixture task (for a char vocab)."""
    texts = []
    for name in clue.task_names():
        t = fixture_task(name)
        items = t.load('train') + t.load('dev')
        items += [e for _, s, _ in t.test_sets() for e in s]
        texts += [x for e in items for x in encoding.example_texts(e)]
    return texts


@pytest.fixture(scope='module')
def setup_files(tmp_path_factory):
    """Tiny config and one char vocab over all fixture texts."""
    folder = tmp_path_factory.mktemp('predict')
    vocab = corpora.save_vocab(corpora.build_tokenizer_vocab(
        fixture_texts()), str(folder / 'vocab.txt'))
    config = folder / 'tiny.json'
    config.write_text(json.dumps(TINY))
    return str(config), vocab


def finetuned(name, setup_files, out, **kwargs):
    """A 1-epoch fine-tuning run of a fixture task in ``out``."""
    config, vocab = setup_files
    task = fixture_task(name)
    clue.finetune(name, task.data_dir, config, vocab, str(out), epochs=1,
                  batch_size=2, maxlen=32, seed=1, **kwargs)
    return str(out)


def random_run(name, out, logit_scale=100.0, maxlen=32):
    """A run folder of fixture task ``name`` with random weights (no
    training) and a char vocab of the fixture texts; the classifier is
    spread so that different inputs get different labels."""
    config = os.path.join(str(out), 'source_config.json')
    vocab = os.path.join(str(out), 'source_vocab.txt')
    os.makedirs(str(out), exist_ok=True)
    with open(config, 'w') as f:
        json.dump(TINY, f)
    corpora.save_vocab(corpora.build_tokenizer_vocab(fixture_texts()), vocab)
    task = fixture_task(name)
    tokenizer = encoding.load_tokenizer(vocab)
    encoder = gau_keras.build_transformer_model(
        config, model='gau_alpha', vocab_size=tokenizer._vocab_size)
    model = heads.build_head(task, encoder, dropout=0.1)
    if task.head == 'classification':
        spread_logits(model, tokenizer, task, logit_scale)
    model.save_weights(os.path.join(str(out), 'best.weights.h5'))
    runs.write_run_files(str(out), task, config, vocab, model='gau_alpha',
                         maxlen=maxlen, stride=None, dropout=0.1,
                         head_size=64)
    return str(out)


# ---- predictor vs the submission files of the same run ------------------

def entity_dict(result):
    out = {}
    for e in result['entities']:
        out.setdefault(e['type'], {}).setdefault(e['text'], []).append(
            [e['start'], e['end']])
    return out


def cases(name, run):
    """(input, expected from the submission file, result → comparable)."""
    task = fixture_task(name)
    out = []
    for test_name, items, out_name in task.test_sets():
        path = os.path.join(run, out_name)
        if name not in ('c3', 'cmrc2018'):          # JSON lines files
            raw = [r for _, r in read_json_lines(
                os.path.join(task.data_dir, test_name))]
        if task.head == 'classification':
            sub = {r['id']: r['label'] for _, r in read_json_lines(path)}
            out += [(r, sub[r.get('id', r.get('idx'))],
                     lambda x: x['label']) for r in raw]
        elif name == 'cluener':
            sub = {r['id']: r['label'] for _, r in read_json_lines(path)}
            out += [(r['text'], sub[r['id']], entity_dict) for r in raw]
        elif name == 'cmrc2018':
            sub = read_json(path)
            out += [((e.context, e.question), sub[e.uid],
                     lambda x: x['answer']) for e in items]
        elif name == 'c3':
            sub = {r['id']: r['label'] for _, r in read_json_lines(path)}
            out += [({'context': e.context, 'question': e.question,
                      'choice': e.choices}, sub[e.uid],
                     lambda x: x['answer_id']) for e in items]
        elif name == 'chid':
            sub = read_json(path)
            for r in raw:
                for passage in r['content']:
                    keys = clue.tasks.BLANK.findall(passage)
                    out.append(({'content': passage,
                                 'candidates': r['candidates']},
                                {k: sub[k] for k in keys},
                                lambda x: x['answer_ids']))
    return out


@pytest.mark.slow
@pytest.mark.parametrize('name', ['tnews', 'afqmc', 'cluener', 'wsc', 'c3',
                                  'chid', 'cmrc2018'])
def test_predictor_equals_the_submission_of_its_run(name, setup_files,
                                                    tmp_path):
    run = finetuned(name, setup_files, tmp_path / name)
    predictor = clue.load_predictor(run)
    todo = cases(name, run)
    assert len(todo) >= 2
    results = predictor.predict([c[0] for c in todo], batch_size=2)
    assert [c[2](r) for c, r in zip(todo, results)] == [c[1] for c in todo]


# ---- predictor vs one input at a time ------------------------------------

@pytest.fixture(scope='module')
def tnews_run(tmp_path_factory):
    return random_run('tnews', tmp_path_factory.mktemp('run') / 'tnews')


def one_at_a_time(predictor, texts, texts_b=None):
    """Softmax of the model on each input alone (no padding, no
    batching), from bert4keras's encode."""
    out = []
    for i, text in enumerate(texts):
        ids, segs = predictor.tokenizer.encode(
            text, None if texts_b is None else texts_b[i],
            maxlen=predictor.maxlen)
        logits = predictor.model([np.array([ids]), np.array([segs])],
                                 training=False)[0].numpy()
        out.append(np.exp(logits) / np.exp(logits).sum())
    return out


def test_batched_sorted_predictions_equal_one_at_a_time(tnews_run):
    predictor = clue.load_predictor(tnews_run)
    texts = [r['sentence'] for t in ('train', 'dev', 'test') for _, r in
             read_json_lines(os.path.join(FIXTURES, 'tnews', t + '.json'))]
    texts += ['', '好', LONG, '，。！？' * 3]
    results = predictor.predict(texts, batch_size=3)
    want = one_at_a_time(predictor, texts)
    labels = [r['label'] for r in results]
    assert len(set(labels)) > 1          # the check can tell rows apart
    for r, p in zip(results, want):
        assert r['label_id'] == int(np.argmax(p))
        assert r['label'] == predictor.labels[r['label_id']]
        np.testing.assert_allclose(
            [r['probabilities'][l] for l in predictor.labels], p, atol=1e-5)
    unsorted = predictor.predict(texts, batch_size=3, by_length=False)
    assert [r['label'] for r in unsorted] == labels


def test_predictor_in_bf16_stays_close_to_float32(tnews_run):
    """load_predictor(mixed_precision=...) computes in that policy; the
    probabilities it returns are float32 and close to the float32 model's
    (the conftest guard resets the policy after the test)."""
    texts = [r['sentence'] for _, r in read_json_lines(
        os.path.join(FIXTURES, 'tnews', 'dev.json'))]
    want = clue.load_predictor(tnews_run).predict(texts)
    low = clue.load_predictor(tnews_run, mixed_precision='bf16')
    assert low.model.layers[-1].compute_dtype in ('bfloat16', 'float32')
    assert gau_keras.backend.keras.mixed_precision.global_policy().name == \
        'mixed_bfloat16'
    got = low.predict(texts)
    for r, w in zip(got, want):
        for label, p in w['probabilities'].items():
            assert isinstance(r['probabilities'][label], float)
            assert abs(r['probabilities'][label] - p) < 0.05


def test_labels_come_from_the_run_folder_alone(setup_files, tmp_path):
    data = tmp_path / 'tnews_data'
    shutil.copytree(os.path.join(FIXTURES, 'tnews'), str(data))
    with open(str(data / 'labels.json'), 'a', encoding='utf-8') as f:
        f.write(json.dumps({'label': '999', 'label_desc': 'x'}) + '\n')
    config, vocab = setup_files
    run = tmp_path / 'run'
    clue.finetune('tnews', str(data), config, vocab, str(run), epochs=1,
                  batch_size=2, maxlen=16)
    shutil.rmtree(str(data))
    record = runs.read_run(str(run))
    assert record['labels'] == ['100', '101', '102', '103', '999']
    assert record['maxlen'] == 16 and record['task'] == 'tnews'
    config_used = json.loads((run / 'config.json').read_text())
    assert config_used['vocab_size'] == len(corpora.read_lines(vocab))
    result = clue.load_predictor(str(run)).predict(['测试'])[0]
    assert sorted(result['probabilities']) == record['labels']


class Killed(Exception):
    pass


def test_a_killed_run_is_predictable_from_its_best_weights(setup_files,
                                                           tmp_path):
    config, vocab = setup_files
    run = tmp_path / 'run'

    def kill_after_first_best(step, loss):
        if (run / 'best.weights.h5').exists():
            raise Killed()
    with pytest.raises(Killed):
        clue.finetune('afqmc', os.path.join(FIXTURES, 'afqmc'), config,
                      vocab, str(run), epochs=3, batch_size=2, maxlen=32,
                      callbacks=[kill_after_first_best])
    assert not list(run.glob('*_predict.json'))      # no submission yet
    result = clue.load_predictor(str(run)).predict([('一', '二')])[0]
    assert result['label'] in ('0', '1')


@pytest.mark.slow
@pytest.mark.parametrize('name,item', [
    ('afqmc', (LONG, LONG)), ('afqmc', ('短', LONG)),
    ('cluener', LONG), ('cmrc2018', (LONG, '问题' * 100)),
    ('c3', (LONG, '问题' * 100, ['选项' * 50, 'b'])),
    ('chid', (LONG + '#idiom000001#' + LONG, ['一心一意', '三心二意']))])
def test_inputs_of_ten_thousand_chars_never_crash(name, item, tmp_path):
    predictor = clue.load_predictor(random_run(name, tmp_path))
    result, short = predictor.predict([item, item])
    assert result == short
    if name == 'cluener':
        assert all(e['end'] < 30 for e in result['entities'])  # truncated
    if name == 'cmrc2018':
        assert result['answer'] in item[0]


def test_entities_are_spans_of_the_text(tmp_path):
    predictor = clue.load_predictor(random_run('cluener', tmp_path))
    texts = ['浙江杭州阿里巴巴 Alibaba 公司', 'ＡＢＣ　全角', '']
    results = predictor.predict(texts)
    assert results[2] == {'entities': []}
    assert results[0]['entities']
    for text, r in zip(texts, results):
        for e in r['entities']:
            assert text[e['start']:e['end'] + 1] == e['text']   # inclusive
            assert e['type'] in predictor.labels


def test_inputs_of_the_wrong_shape_name_the_input(tnews_run, tmp_path):
    with pytest.raises(ClueDataError, match=r'<input>:2.*2-tuple'):
        clue.load_predictor(random_run('afqmc', tmp_path)) \
            .predict([('a', 'b'), 'only one'])
    predictor = clue.load_predictor(tnews_run)
    with pytest.raises(ClueDataError, match=r"<input>:1 field 'sentence'"):
        predictor.predict([{'text': 'wrong field'}])
    with pytest.raises(ClueDataError, match='expected a string'):
        predictor.predict([3])
    assert predictor.predict([]) == []


def test_read_run_names_what_is_missing(tnews_run, tmp_path):
    run = tmp_path / 'copy'
    shutil.copytree(tnews_run, str(run))
    assert runs.read_run(str(run))['run_dir'] == str(run)
    os.remove(str(run / 'best.weights.h5'))
    with pytest.raises(ClueDataError, match='best.weights.h5'):
        runs.read_run(str(run))
    assert runs.read_run(str(run), require_weights=False)['task'] == 'tnews'
    record = json.loads((run / 'run.json').read_text())
    del record['maxlen']
    (run / 'run.json').write_text(json.dumps(record))
    with pytest.raises(ClueDataError, match="field 'maxlen'"):
        runs.read_run(str(run), require_weights=False)
    os.remove(str(run / 'run.json'))
    with pytest.raises(ClueDataError, match='run.json is missing'):
        runs.read_run(str(run))


# ---- scripts/predict.py ----------------------------------------------------

def predict_script():
    return load_script('predict')


def test_predict_script_text_and_jsonl(tnews_run, tmp_path, capsys):
    script = predict_script()
    predictor = clue.load_predictor(tnews_run)
    rows = [{'id': 7, 'sentence': '今天股市大涨'}, {'sentence': LONG}]
    src = tmp_path / 'in.jsonl'
    src.write_text('\n'.join(json.dumps(r, ensure_ascii=False)
                             for r in rows) + '\n', encoding='utf-8')
    out = tmp_path / 'out.jsonl'
    script.main([tnews_run, '--input', str(src), '--output', str(out)])
    got = [json.loads(line) for line in out.read_text('utf-8').split('\n')
           if line]
    want = predictor.predict(rows)
    assert [g.pop('id', None) for g in got] == [7, None]
    assert got == json.loads(json.dumps(want))
    capsys.readouterr()
    script.main([tnews_run, '--text', '今天股市大涨'])
    printed = json.loads(capsys.readouterr().out.strip().split('\n')[-1])
    assert printed['label'] == want[0]['label']
    with pytest.raises(SystemExit, match='takes one text'):
        script.main([tnews_run, '--text', 'a', '--text_b', 'b'])


def test_predict_script_names_file_and_line_of_bad_input(tnews_run,
                                                         tmp_path):
    script = predict_script()
    src, out = tmp_path / 'in.jsonl', tmp_path / 'o.jsonl'
    src.write_text('{"sentence": "好"}\n\n{"text": "x"}\n', encoding='utf-8')
    with pytest.raises(SystemExit, match="%s:3 field 'sentence'"
                       % re.escape(str(src))):
        script.main([tnews_run, '--input', str(src), '--output', str(out)])
    src.write_text('{"sentence": "好"}\n{bad json\n', encoding='utf-8')
    with pytest.raises(SystemExit, match='%s:2: malformed JSON'
                       % re.escape(str(src))):
        script.main([tnews_run, '--input', str(src), '--output', str(out)])
    assert not out.exists()
