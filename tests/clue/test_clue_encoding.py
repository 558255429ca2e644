"""CLUE examples → model inputs (bert4keras Tokenizer on a char vocab),
cmrc2018 windowing, NER spans; scripts/build_vocab.py."""
import os

import numpy as np
import pytest

from gau_keras import clue, corpora
from gau_keras.clue import encoding
from gau_keras.clue.readers import SpanExample, TextExample, NerExample

from conftest import ROOT, load_script

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'clue')


def build_vocab_script():
    return load_script('build_vocab')


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
    """Char vocab of all eleven fixture folders (test texts included) and
    of the texts the tests below make up."""
    texts = ['第一个答案就在这里。ω-Force Studio 的故事', '四个字的成语']
    for name in clue.task_names():
        task = clue.get_task(name, os.path.join(FIXTURES, name), False)
        items = task.load('train') + task.load('dev')
        items += [e for _, s, _ in task.test_sets() for e in s]
        texts += [t for e in items for t in encoding.example_texts(e)]
    path = tmp_path_factory.mktemp('vocab') / 'vocab.txt'
    corpora.save_vocab(corpora.build_tokenizer_vocab(texts), str(path))
    return encoding.load_tokenizer(str(path))


def unk_count(tokenizer, ids):
    return int(np.sum(np.asarray(ids) == tokenizer._token_unk_id))


def test_build_vocab_script_from_a_task_folder_and_files(tmp_path):
    script = build_vocab_script()
    out = script.main(['--out', str(tmp_path / 'v.txt'), '--task',
                       'cluewsc2020', '--data_dir',
                       os.path.join(FIXTURES, 'wsc')])
    vocab = open(out, encoding='utf-8').read().split('\n')[:-1]
    assert vocab[:5] == ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    assert len(vocab) == len(set(vocab))
    tok = encoding.load_tokenizer(out)
    for e in clue.get_task('wsc', os.path.join(FIXTURES, 'wsc'),
                           False).load('train'):
        assert unk_count(tok, tok.encode(e.text_a)[0]) == 0
    # test texts are left out unless asked for: 桌 only occurs in test.json
    assert '桌' not in vocab
    text = tmp_path / 'corpus.txt'
    text.write_text('GAU-α模型\n第二行\n', encoding='utf-8')
    out = script.main(['--out', str(tmp_path / 'v2.txt'), str(text),
                       os.path.join(FIXTURES, 'chid', 'dev_answer.json')])
    vocab = open(out, encoding='utf-8').read().split('\n')[:-1]
    assert set(vocab[5:]) == {'g', '##a', '##u', '-', 'α', '模', '型', '第',
                              '二', '行'}   # answer file: no string values


def test_all_fixture_texts_tokenize_without_unk(tokenizer):
    for name in ('tnews', 'csl', 'cluener'):
        task = clue.get_task(name, os.path.join(FIXTURES, name), False)
        for e in task.load('train'):
            for text in encoding.example_texts(e):
                assert unk_count(tokenizer, tokenizer.encode(text)[0]) == 0


def test_classification_is_truncated_to_maxlen(tokenizer):
    e = TextExample(0, '老人捡到钱包苦等失主三小时', '故宫博物院')
    ids, segs = encoding.encode_text(tokenizer, e, maxlen=10)
    assert len(ids) == len(segs) == 10
    sep = tokenizer._token_end_id
    assert ids[0] == tokenizer._token_start_id and ids[-1] == sep
    assert segs == [0] * (len(ids) - segs.count(1)) + [1] * segs.count(1)
    assert ids.count(sep) == 2
    ids, _ = encoding.encode_text(tokenizer, TextExample(0, '老人'), 128)
    assert len(ids) == 4


def test_c3_choices_are_padded_and_masked(tokenizer):
    e = clue.get_task('c3', os.path.join(FIXTURES, 'c3'), False).load(
        'train')[1]
    ids, segs, valid = encoding.encode_choices(tokenizer, e, maxlen=16)
    assert valid == [True, True, False, False]
    assert all(len(i) <= 16 and len(i) == len(s) for i, s in zip(ids, segs))
    # the choice text sits at the end of each real sequence
    assert tokenizer.decode(ids[1]).endswith('下雨')


def test_chid_puts_the_blank_as_four_masks(tokenizer):
    e = clue.get_task('chid', os.path.join(FIXTURES, 'chid'), False).load(
        'train')[1]
    ids, segs = encoding.encode_chid(tokenizer, e, maxlen=20)
    mask = tokenizer._token_mask_id
    assert len(ids) == 10
    for cand, i in zip(e.candidates, ids):
        assert len(i) <= 20 and i.count(mask) == 4
        assert tokenizer.decode(i[1:5]) == cand
    tokens = tokenizer.ids_to_tokens(ids[0])
    m = tokens.index('[MASK]')
    # just left of the blank: the end of the left text (却), right: ，
    assert (tokens[m - 1], tokens[m + 4]) == ('却', '，')


def long_span_example():
    context = ('前言' * 60 + '第一个答案就在这里。' + 'ω-Force Studio 的故事'
               + '后记' * 20)
    answer = 'ω-Force Studio'
    return SpanExample('q1', '答案在哪里', context,
                       [(answer, context.index(answer))]), answer


def test_cmrc2018_windowing_recovers_an_answer_past_maxlen(tokenizer):
    e, answer = long_span_example()
    maxlen, stride = 48, 20
    windows = encoding.span_windows(tokenizer, e, maxlen, stride)
    assert len(windows) > 3
    assert all(len(w.token_ids) <= maxlen for w in windows)
    labelled = [w for w in windows if w.start > 0]
    assert labelled, 'the answer must lie wholly inside some window'
    # the answer starts far past maxlen in the whole context
    assert labelled[0].first + labelled[0].start - labelled[0].offset > \
        maxlen
    for w in labelled:    # the labelled tokens spell the answer
        assert encoding.span_text(w, e.context, w.start, w.end) == answer
    # a model that points at the labelled span of one window (and weakly
    # at a decoy in the first window) yields the answer, cut from the
    # original context (upper case and the space kept)
    pick = labelled[-1]
    starts, ends = [], []
    for w in windows:
        st, en = np.zeros(len(w.token_ids)), np.zeros(len(w.token_ids))
        if w is pick:
            st[w.start], en[w.end] = 5.0, 5.0
        if w is windows[0]:
            st[w.offset], en[w.offset + 1] = 3.0, 3.0
        starts.append(st)
        ends.append(en)
    assert encoding.best_spans([e], windows, starts, ends) == {'q1': answer}


def test_cmrc2018_short_context_is_one_window(tokenizer):
    task = clue.get_task('cmrc2018', os.path.join(FIXTURES, 'cmrc2018'),
                         False)
    e = task.load('dev')[1]
    (w,) = encoding.span_windows(tokenizer, e, maxlen=128, stride=32)
    assert encoding.span_text(w, e.context, w.start, w.end) == '京师大学堂'


def test_ner_spans_round_trip_through_tokens(tokenizer):
    task = clue.get_task('cluener', os.path.join(FIXTURES, 'cluener'),
                         False)
    labels = task.labels
    for e in task.load('train'):
        ids, segs, spans, mapping = encoding.encode_ner(tokenizer, e, 64,
                                                        labels)
        assert len(spans) == len(e.entities)
        y = encoding.ner_targets([spans], len(labels), len(ids))[0]
        assert encoding.decode_entities(y - 0.5, mapping, labels) == \
            e.entities
    # truncation drops the entities past maxlen
    e = NerExample(0, '浙商银行企业信贷部叶老桂博士', [(0, 3, 'company'),
                                               (9, 11, 'name')])
    _, _, spans, _ = encoding.encode_ner(tokenizer, e, 8, labels)
    assert spans == [(labels.index('company'), 1, 4)]
