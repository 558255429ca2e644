"""Ten of bert4keras 0.11.5's own examples, ported to gau_keras
(tests/bert4keras_examples/: imports, paths, sizes and ``model='gau_alpha'``
changed; docs/porting.md lists what else and why), each run as a script
for one epoch on a tiny GAU-alpha and data written here, in bert4keras's
formats; the web-serving one answers one real HTTP request on 127.0.0.1.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from conftest import ROOT  # noqa: E402  (the checkout)

PORTS = os.path.join(ROOT, 'tests', 'bert4keras_examples')

#: The text all data is cut from (and the vocabulary's characters).
TEXTS = [
    u'科学技术是第一生产力，创新是引领发展的第一动力。',
    u'北京是中国的首都，上海是中国最大的城市。',
    u'张三在北京大学读书，李四在上海工作。',
    u'今天天气很好，我们去公园散步吧。',
    u'苹果多少钱一斤？香蕉比苹果便宜。',
    u'这部电影非常好看，演员的表演很自然。',
    u'夏天来临，皮肤在强烈紫外线的照射下容易晒伤。',
    u'王五是华为公司的工程师，住在深圳。',
    u'小明喜欢踢足球，他的弟弟喜欢打篮球。',
    u'中国队在比赛中获得了冠军，球迷非常高兴。',
    u'这家酒店的服务很好，价格也不贵。',
    u'杨过是小龙女的弟子，武器是玄铁剑。',
]

#: A tiny GAU-alpha: d=32, e=64, s=16, 2 blocks.
TINY = {'hidden_size': 32, 'intermediate_size': 64, 'attention_key_size': 16,
        'num_attention_heads': 1, 'num_hidden_layers': 2,
        'hidden_act': 'swish', 'type_vocab_size': 2,
        'hidden_dropout_prob': 0.1, 'attention_probs_dropout_prob': 0.1}


def _write(path, text, encoding='utf-8'):
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w', encoding=encoding) as f:
        f.write(text)


def _json_lines(path, rows):
    _write(path, ''.join(json.dumps(r, ensure_ascii=False) + '\n'
                         for r in rows))


@pytest.fixture
def workdir(tmp_path):
    """tmp/run with vocab.txt and bert_config.json (tmp/ is the run's
    parent: task_reading_comprehension_by_mlm.py writes ../random_order)."""
    run = tmp_path / 'run'
    run.mkdir()
    chars = sorted(set(''.join(TEXTS)) | set('0123456789abcdefghij'))
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + chars
    _write(str(run / 'vocab.txt'), '\n'.join(vocab) + '\n')
    _write(str(run / 'bert_config.json'),
           json.dumps(dict(TINY, vocab_size=len(vocab))))
    return run


def run_port(name, cwd, timeout=600, **env):
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', **env)
    out = subprocess.run([sys.executable, os.path.join(PORTS, name + '.py')],
                         cwd=str(cwd), env=environ, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    return out.stdout


def _weights_saved(cwd):
    assert (cwd / 'best_model.weights.index').exists()


# -- data in each script's format -----------------------------------------

def _sentences(k=None):
    return TEXTS if k is None else [TEXTS[i % len(TEXTS)] for i in range(k)]


def _iflytek(cwd):
    for split, n in (('train', 10), ('dev', 6)):
        _json_lines(str(cwd / 'CLUEdataset' / 'iflytek' / (split + '.json')),
                    [{'sentence': t, 'label': str(i % 3), 'id': i}
                     for i, t in enumerate(_sentences(n))])


def _people_daily(cwd):
    """BIO lines: '张 B-PER' ..., blank line between sentences."""
    names = {u'张三': 'PER', u'李四': 'PER', u'王五': 'PER', u'北京': 'LOC',
             u'上海': 'LOC', u'深圳': 'LOC', u'华为公司': 'ORG'}
    blocks = []
    for text in TEXTS:
        tags = ['O'] * len(text)
        for word, kind in names.items():
            start = text.find(word)
            if start >= 0:
                tags[start] = 'B-' + kind
                for i in range(start + 1, start + len(word)):
                    tags[i] = 'I-' + kind
        blocks.append('\n'.join('%s %s' % (c, t) for c, t in zip(text, tags)))
    for split in ('train', 'dev', 'test'):
        _write(str(cwd / 'china-people-daily-ner-corpus' /
                   ('example.' + split)), '\n\n'.join(blocks))


# -- the ten scripts ------------------------------------------------------

@pytest.mark.slow
def test_task_seq2seq_autotitle(workdir):
    for i, text in enumerate(TEXTS):
        _write(str(workdir / 'THUCNews' / 'news' / ('%d.txt' % i)),
               text[:6] + '\n' + text)      # title, then the content
    out = run_port('task_seq2seq_autotitle', workdir)
    assert out.count(u'生成标题:') == 2
    _weights_saved(workdir)


@pytest.mark.slow
def test_task_language_model(workdir):
    for i in range(2):
        _write(str(workdir / u'金庸' / ('book%d' % i) / 'a.txt'),
               u'\r\n'.join(t.replace(u'，', u'。') for t in TEXTS),
               encoding='gbk')
    out = run_port('task_language_model', workdir)
    assert out.count(u'输入: ') == 3 and out.count(u'结果: ') == 3
    _weights_saved(workdir)


@pytest.mark.slow
def test_basic_masked_language_model(workdir):
    """The script loads a checkpoint and prints the MLM's argmax at the two
    masked positions: the same as this process computes from it."""
    import gau_keras
    from gau_keras.tokenizers import Tokenizer
    bert = gau_keras.build_transformer_model(
        str(workdir / 'bert_config.json'), model='gau_alpha', with_mlm=True,
        return_keras_model=False)
    bert.save_weights_as_checkpoint(str(workdir / 'bert_model.ckpt'))
    tokenizer = Tokenizer(str(workdir / 'vocab.txt'), do_lower_case=True)
    token_ids, segment_ids = tokenizer.encode(u'科学技术是第一生产力')
    token_ids[3] = token_ids[4] = tokenizer._token_dict['[MASK]']
    probas = bert.model.predict([np.array([token_ids]),
                                 np.array([segment_ids])], verbose=0)[0]
    expected = tokenizer.decode(probas[3:5].argmax(axis=1))
    out = run_port('basic_masked_language_model', workdir)
    # the script's last print is the decoded pair (possibly '' when random
    # weights pick special tokens), after Keras's progress line
    assert out.endswith('\n') and out.split('\n')[-2] == expected


@pytest.mark.slow
def test_task_reading_comprehension_by_mlm(workdir):
    def item(i):
        text = TEXTS[i % len(TEXTS)]
        answer = text[:2]
        return {'id': 'q%d' % i, 'question': u'谁' + text[2:6] + u'？',
                'passages': [{'passage': text, 'answer': answer},
                             {'passage': TEXTS[(i + 1) % len(TEXTS)],
                              'answer': ''}]}
    data = [item(i) for i in range(9)]
    _write(str(workdir / 'qa_datasets' / 'SogouQA.json'),
           json.dumps(data, ensure_ascii=False))
    _write(str(workdir / 'qa_datasets' / 'WebQA.json'),
           json.dumps(data[:3], ensure_ascii=False))
    run_port('task_reading_comprehension_by_mlm', workdir)
    _weights_saved(workdir)
    order = json.load(open(str(workdir.parent / 'random_order.json')))
    assert sorted(order) == list(range(9))
    # imported (not __main__) the script loads its weights; its decoder
    # answers every valid question
    code = ("import runpy\ng = runpy.run_path(%r, run_name='port')\n"
            "g['predict_to_file'](g['valid_data'], 'valid_predict.txt')"
            % os.path.join(PORTS, 'task_reading_comprehension_by_mlm.py'))
    out = subprocess.run([sys.executable, '-c', code], cwd=str(workdir),
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = open(str(workdir / 'valid_predict.txt'),
                 encoding='utf-8').read().splitlines()
    assert [l.split('\t')[0] for l in lines] == ['q%d' % j for i, j in
                                                  enumerate(order)
                                                  if i % 3 == 0]


@pytest.mark.slow
def test_task_sequence_labeling_ner_crf(workdir):
    _people_daily(workdir)
    out = run_port('task_sequence_labeling_ner_crf', workdir)
    assert 'valid:  f1:' in out and 'test:  f1:' in out
    _weights_saved(workdir)


@pytest.mark.slow
def test_task_sentence_similarity_lcqmc(workdir):
    rows = ['%s\t%s\t%d' % (TEXTS[i], TEXTS[(i + i % 2) % len(TEXTS)],
                            1 - i % 2) for i in range(len(TEXTS))]
    for split in ('train', 'valid', 'test'):
        _write(str(workdir / 'datasets' / 'lcqmc' /
                   ('lcqmc.%s.data' % split)), '\n'.join(rows) + '\n')
    out = run_port('task_sentence_similarity_lcqmc', workdir)
    assert 'final test acc:' in out
    _weights_saved(workdir)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_basic_simple_web_serving_simbert(workdir):
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PORT=str(port))
    server = subprocess.Popen(
        [sys.executable, os.path.join(PORTS,
                                      'basic_simple_web_serving_simbert.py')],
        cwd=str(workdir), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        query = urllib.parse.urlencode({'text': u'苹果多少钱一斤', 'n': 4,
                                        'k': 2})
        url = 'http://127.0.0.1:%d/gen_synonyms?%s' % (port, query)
        deadline, answer = time.time() + 300, None
        while answer is None:
            assert server.poll() is None, server.communicate()[1][-3000:]
            try:
                with urllib.request.urlopen(url, timeout=120) as r:
                    answer = json.loads(r.read().decode('utf-8'))
            except (ConnectionError, urllib.error.URLError):
                assert time.time() < deadline, 'server did not start'
                time.sleep(1)
    finally:
        server.terminate()
        server.communicate(timeout=60)
    assert answer['code'] == 0, answer
    assert isinstance(answer['data'], list) and len(answer['data']) <= 2
    assert all(isinstance(t, str) for t in answer['data'])


@pytest.mark.slow
def test_task_relation_extraction_gplinker(workdir):
    schemas = [{'predicate': u'工作', 'subject_type': u'人物',
                'object_type': u'机构'},
               {'predicate': u'所在城市', 'subject_type': u'人物',
                'object_type': u'地点'}]
    rows = [{'text': TEXTS[2], 'spo_list': [
                {'subject': u'张三', 'predicate': u'所在城市',
                 'object': u'北京'},
                {'subject': u'李四', 'predicate': u'所在城市',
                 'object': u'上海'}]},
            {'text': TEXTS[7], 'spo_list': [
                {'subject': u'王五', 'predicate': u'工作',
                 'object': u'华为公司'},
                {'subject': u'王五', 'predicate': u'所在城市',
                 'object': u'深圳'}]},
            {'text': TEXTS[3], 'spo_list': []}]
    _json_lines(str(workdir / 'datasets' / 'train_data.json'), rows * 2)
    _json_lines(str(workdir / 'datasets' / 'dev_data.json'), rows)
    _json_lines(str(workdir / 'datasets' / 'all_50_schemas'), schemas)
    out = run_port('task_relation_extraction_gplinker', workdir)
    assert 'best f1:' in out
    _weights_saved(workdir)
    assert (workdir / 'dev_pred.json').exists()


@pytest.mark.slow
def test_task_iflytek_adversarial_training(workdir):
    _iflytek(workdir)
    out = run_port('task_iflytek_adversarial_training', workdir)
    assert 'best_val_acc:' in out


@pytest.mark.slow
def test_task_iflytek_gradient_penalty(workdir):
    _iflytek(workdir)
    out = run_port('task_iflytek_gradient_penalty', workdir)
    assert 'best_val_acc:' in out
