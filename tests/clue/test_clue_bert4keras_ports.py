"""The eleven task scripts of CLUE-bert4keras, ported to gau_keras
(tests/clue_bert4keras/, docs/porting.md), each run end to end on a tiny
GAU-alpha and CLUE-format data to its submission files, which are checked
against the test files: every id once, every label valid.

The data is tests/fixtures/clue plus tests/fixtures/clue_bert4keras (the
files CLUE ships that the other fixtures leave out: test1.0.json of wsc,
c3 and chid, and cmrc2018's test.json with the FAKE_ANSWER_k placeholders
at answer_start -1 that the script reads).
"""
import json
import os
import re
import runpy
import shutil
import sys
import warnings

import numpy as np
import pytest

import gau_keras.compat  # noqa: F401  (the mask hook; also in gau_keras)
from gau_keras.backend import K
from gau_keras.compat import MaskNotComputedWarning

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
PORTS = os.path.join(HERE, 'clue_bert4keras')
FIXTURES = os.path.join(HERE, 'fixtures')

#: A tiny GAU-alpha: d=32, e=64, s=16, 2 blocks (vocab follows the
#: tokenizer in snippets.py).
TINY = {'hidden_size': 32, 'intermediate_size': 64, 'attention_key_size': 16,
        'num_attention_heads': 1, 'num_hidden_layers': 2,
        'hidden_act': 'swish', 'type_vocab_size': 2, 'vocab_size': 100,
        'hidden_dropout_prob': 0.1, 'attention_probs_dropout_prob': 0.1}

TNEWS = ['100', '101', '102', '103', '104', '106', '107', '108', '109',
         '110', '112', '113', '114', '115', '116']
NLI = ['entailment', 'neutral', 'contradiction']

#: script → {submission file: (test file, valid labels)} for the scripts
#: writing one JSON line {"id", "label"} per test item.
LINE_SUBMISSIONS = {
    'tnews': {'tnews10_predict.json': ('tnews/test1.0.json', TNEWS),
              'tnews11_predict.json': ('tnews/test.json', TNEWS)},
    'iflytek': {'iflytek_predict.json': (
        'iflytek/test.json', [str(i) for i in range(119)])},
    'afqmc': {'afqmc_predict.json': ('afqmc/test.json', ['0', '1'])},
    'cmnli': {'cmnli_predict.json': ('cmnli/test.json', NLI)},
    'ocnli': {'ocnli_50k_predict.json': ('ocnli/test.json', NLI)},
    'wsc': {'cluewsc10_predict.json': ('wsc/test1.0.json', ['true', 'false']),
            'cluewsc11_predict.json': ('wsc/test.json', ['true', 'false'])},
    'csl': {'csl_predict.json': ('csl/test.json', ['0', '1'])},
    'c3': {'c310_predict.json': ('c3/test1.0.json', ['0', '1', '2', '3']),
           'c311_predict.json': ('c3/test1.1.json', ['0', '1', '2', '3'])},
}


def json_lines(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def all_strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from all_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from all_strings(v)


def read_any(path):
    """A JSON file or a JSON-lines file."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture(scope='module')
def clue_setup(tmp_path_factory):
    """CLUE data folder, char vocab over all of it, tiny config."""
    root = tmp_path_factory.mktemp('clue_b4k')
    data = root / 'datasets'
    shutil.copytree(os.path.join(FIXTURES, 'clue'), data)
    shutil.copytree(os.path.join(FIXTURES, 'clue_bert4keras'), data,
                    dirs_exist_ok=True)
    chars = set()
    for folder, _, files in os.walk(data):
        for name in files:
            for s in all_strings(read_any(os.path.join(folder, name))):
                chars.update(c for c in s.lower() if not c.isspace())
    chars = sorted(chars)
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[unused1]']
    vocab += chars + ['##' + c for c in chars if c.isascii()]
    (root / 'vocab.txt').write_text('\n'.join(vocab) + '\n', encoding='utf-8')
    (root / 'config.json').write_text(json.dumps(TINY), encoding='utf-8')
    return {'CLUE_DATA_PATH': str(data) + os.sep,
            'GAU_CONFIG': str(root / 'config.json'),
            'GAU_VOCAB': str(root / 'vocab.txt')}


@pytest.fixture
def port_env(clue_setup, tmp_path, monkeypatch):
    """Environment of one port run: paths, cwd (weights/, results/), the
    ports folder importable, a fresh ``snippets`` and Keras session."""
    for key, value in clue_setup.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(PORTS)
    monkeypatch.delitem(sys.modules, 'snippets', raising=False)
    K.clear_session()
    yield clue_setup
    sys.modules.pop('snippets', None)
    K.clear_session()


def run_port(name):
    """Runs tests/clue_bert4keras/<name>.py as __main__ in the cwd;
    returns the mask warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', MaskNotComputedWarning)
        runpy.run_path(os.path.join(PORTS, name + '.py'),
                       run_name='__main__')
    return [w for w in caught if w.category is MaskNotComputedWarning]


def build_port(name, edit=None):
    """Runs the part of a port before its ``__main__`` block (data,
    generators, model, compile) with ``edit(source)`` applied; returns
    (namespace, mask warnings)."""
    with open(os.path.join(PORTS, name + '.py'), encoding='utf-8') as f:
        source = f.read()
    source = source[:source.index("if __name__ == '__main__':")]
    if edit is not None:
        source = edit(source)
    namespace = {'__name__': 'port_' + name}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', MaskNotComputedWarning)
        exec(compile(source, name + '.py', 'exec'), namespace)
    return namespace, [w for w in caught
                       if w.category is MaskNotComputedWarning]


def check_line_submission(path, test_file, valid):
    """One line per test item, in order, with its id and a valid label."""
    rows = json_lines(path)
    test_path = os.environ['CLUE_DATA_PATH'] + test_file
    if test_file.startswith('c3/'):     # a JSON list of [passage, questions]
        ids = [str(qa['id']) for d in read_json(test_path) for qa in d[1]]
    else:
        ids = [str(r['id']) for r in json_lines(test_path)]
    assert [r['id'] for r in rows] == ids
    assert all(set(r) == {'id', 'label'} for r in rows)
    assert all(r['label'] in valid for r in rows), rows


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(LINE_SUBMISSIONS))
def test_port_writes_a_complete_line_submission(name, port_env):
    assert run_port(name) == []
    expected = LINE_SUBMISSIONS[name]
    assert sorted(os.listdir('results')) == sorted(expected)
    for out_name, (test_file, valid) in expected.items():
        check_line_submission(os.path.join('results', out_name), test_file,
                              valid)


def idiom_keys(path):
    """The blanks of each line of a ChID file, in order."""
    return [re.findall(r'#idiom\d{6}#', ''.join(json.loads(line)['content']))
            for line in open(path, encoding='utf-8') if line.strip()]


@pytest.mark.slow
def test_chid_port_assigns_distinct_candidates_to_each_passages_blanks(
        port_env):
    assert run_port('chid') == []
    assert sorted(os.listdir('results')) == ['chid10_predict.json',
                                             'chid11_predict.json']
    for out_name, test_name in (('chid10_predict.json', 'test1.0.json'),
                                ('chid11_predict.json', 'test1.1.json')):
        predicted = read_json(os.path.join('results', out_name))
        lines = idiom_keys(port_env['CLUE_DATA_PATH'] + 'chid/' + test_name)
        assert sorted(predicted) == sorted(k for ks in lines for k in ks)
        for keys in lines:
            answers = [predicted[k] for k in keys]
            assert all(isinstance(a, int) and 0 <= a < 10 for a in answers)
            assert len(set(answers)) == len(answers)


@pytest.mark.slow
def test_cluener_port_writes_entities_found_in_their_text(port_env):
    assert run_port('cluener') == []
    rows = json_lines(os.path.join('results', 'cluener_predict.json'))
    tests = json_lines(port_env['CLUE_DATA_PATH'] + 'cluener/test.json')
    assert [r['id'] for r in rows] == [t['id'] for t in tests]
    categories = {k for split in ('train', 'dev') for t in json_lines(
        port_env['CLUE_DATA_PATH'] + 'cluener/%s.json' % split)
        for k in t['label']}
    for row, test in zip(rows, tests):
        assert row['text'] == test['text']
        assert set(row['label']) <= categories
        for entities in row['label'].values():
            for entity, spans in entities.items():
                for start, end in spans:
                    assert row['text'][start:end + 1] == entity


@pytest.mark.slow
def test_cmrc2018_port_answers_every_question_from_its_context(port_env):
    assert run_port('cmrc2018') == []
    answers = read_json(os.path.join('results', 'cmrc2018_predict.json'))
    test = read_json(port_env['CLUE_DATA_PATH'] + 'cmrc2018/test.json')
    contexts = {qa['id']: p['context'].lower() for d in test['data']
                for p in d['paragraphs'] for qa in p['qas']}
    assert all(a['answer_start'] == -1 and a['text'].startswith(
        'FAKE_ANSWER_') for d in test['data'] for p in d['paragraphs']
        for qa in p['qas'] for a in qa['answers'])
    assert sorted(answers) == sorted(contexts)
    for uid, answer in answers.items():
        assert answer and answer in contexts[uid], (uid, answer)


def question_scores(namespace):
    """GlobalPointer scores of the first dev batch of every span starting
    at a position the script's mask hides (the question and its [SEP])."""
    x, _ = next(iter(namespace['valid_generator']))
    scores = namespace['model'].predict(list(x), verbose=0)
    tokens, masks = x[0], x[2]
    hidden = (masks == 0) & (tokens != 0)
    assert hidden.any() and (masks == 1).any()
    return np.concatenate([scores[i][hidden[i]].ravel()
                           for i in range(len(tokens))])


def test_cmrc2018_port_hides_the_question_from_the_pointer(port_env):
    namespace, caught = build_port('cmrc2018')
    assert caught == []
    assert np.all(question_scores(namespace) < -1e10)


def test_cmrc2018_unfixed_custom_masking_warns_and_leaks_the_question(
        port_env):
    def unfixed(source):
        assert source.count('return inputs[0] * 1') == 1
        return source.replace('return inputs[0] * 1', 'return inputs[0]')
    namespace, caught = build_port('cmrc2018', unfixed)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert 'CustomMasking' in message and 'inputs[0] * 1' in message
    # without the fix the padding mask is kept: question spans get scores
    assert question_scores(namespace).max() > -1e10
