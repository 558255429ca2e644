"""CLUE task readers and submission writers on the fixture folders
(tests/fixtures/clue/<task>, official formats with their quirks)."""
import json
import os
import zipfile

import numpy as np
import pytest

from gau_keras import clue
from gau_keras.clue import metrics, submission

from conftest import FIXTURES as _FIXTURES  # noqa: E402
FIXTURES = os.path.join(_FIXTURES, 'clue')

#: test ids of each fixture test file, in file order (hand-copied).
TEST_IDS = {
    'tnews': {'test.json': [7, 2, 15], 'test1.0.json': [1, 0]},
    'iflytek': {'test.json': [3, 1, 2]},
    'afqmc': {'test.json': [10, 3, 5]},
    'cmnli': {'test.json': ['b', 'a']},
    'ocnli': {'test.json': [2, 0]},
    'wsc': {'test.json': [1, 0]},
    'csl': {'test.json': [9, 4]},
    'cmrc2018': {'test.json': ['TEST_1_QUERY_1', 'TEST_1_QUERY_0',
                               'TEST_2_QUERY_5']},
    'c3': {'test1.1.json': [12, 3, 7]},
    'chid': {'test1.1.json': ['#idiom000205#', '#idiom000201#',
                              '#idiom000203#']},
    'cluener': {'test.json': [4, 0, 1]},
}
SUBMISSION = {'tnews': 'tnews11_predict.json',
              'iflytek': 'iflytek_predict.json',
              'afqmc': 'afqmc_predict.json', 'cmnli': 'cmnli_predict.json',
              'ocnli': 'ocnli_50k_predict.json',
              'wsc': 'cluewsc11_predict.json', 'csl': 'csl_predict.json',
              'cmrc2018': 'cmrc2018_predict.json', 'c3': 'c311_predict.json',
              'chid': 'chid11_predict.json',
              'cluener': 'cluener_predict.json'}


def task(name, verbose=False):
    return clue.get_task(name, os.path.join(FIXTURES, name), verbose=verbose)


def dummy_predictions(t, items, rng):
    """One valid prediction per test item, whatever the head."""
    if t.head == 'classification':
        return [int(rng.integers(len(t.labels))) for _ in items]
    if t.name == 'c3':
        return [int(rng.integers(len(e.choices))) for e in items]
    if t.name == 'chid':
        scores = rng.normal(size=(len(items), len(items[0].candidates)))
        return metrics.assign_by_group([e.group for e in items], scores)
    if t.head == 'span':
        return [e.context[3:6] for e in items]
    return [[(0, 1, t.labels[0])] for _ in items]


def test_registry_has_the_eleven_tasks_and_the_wsc_alias():
    assert clue.task_names() == ['tnews', 'iflytek', 'afqmc', 'cmnli',
                                 'ocnli', 'wsc', 'csl', 'cmrc2018', 'c3',
                                 'chid', 'cluener']
    assert clue.canonical_name('CLUEWSC2020') == 'wsc'
    assert {n: clue.TASKS[n].head for n in ('tnews', 'c3', 'chid',
                                            'cmrc2018', 'cluener')} == {
        'tnews': 'classification', 'c3': 'multiple_choice',
        'chid': 'multiple_choice', 'cmrc2018': 'span',
        'cluener': 'global_pointer'}


@pytest.mark.parametrize('name', sorted(TEST_IDS))
def test_submission_has_one_prediction_per_test_item(name, tmp_path):
    t = task(name)
    assert t.load('train') and t.load('dev')
    sets = t.test_sets()
    assert {s[0]: [e.uid for e in s[1]] for s in sets} == TEST_IDS[name]
    assert sets[0][2] == SUBMISSION[name]
    rng = np.random.default_rng(0)
    for _, items, out_name in sets:
        preds = dummy_predictions(t, items, rng)
        path = t.write_submission(str(tmp_path / out_name), items, preds)
        predicted = submission.check_submission(path, items)
        assert len(predicted) == len(items)
    with pytest.raises(ValueError, match='exactly one per item'):
        t.write_submission(str(tmp_path / 'x.json'), sets[0][1],
                           dummy_predictions(t, sets[0][1], rng)[:-1])


def test_classification_submission_lines_are_exact(tmp_path):
    t = task('tnews')
    _, items, out_name = t.test_sets()[0]
    path = t.write_submission(str(tmp_path / out_name), items, [3, 0, 2])
    with open(path, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f]
    assert rows == [{'id': 7, 'label': '103'}, {'id': 2, 'label': '100'},
                    {'id': 15, 'label': '102'}]


def test_one_object_and_ner_submission_layouts(tmp_path):
    t = task('chid')
    _, items, name = t.test_sets()[0]
    path = t.write_submission(str(tmp_path / name), items, [8, 5, 7])
    with open(path, encoding='utf-8') as f:
        assert json.load(f) == {'#idiom000205#': 8, '#idiom000201#': 5,
                                '#idiom000203#': 7}
    t = task('cmrc2018')
    _, items, name = t.test_sets()[0]
    path = t.write_submission(str(tmp_path / name), items,
                              ['第一所', '京师大学堂', '光荣'])
    with open(path, encoding='utf-8') as f:
        assert json.load(f) == {'TEST_1_QUERY_1': '第一所',
                                'TEST_1_QUERY_0': '京师大学堂',
                                'TEST_2_QUERY_5': '光荣'}
    t = task('cluener')
    _, items, name = t.test_sets()[0]
    preds = [[(0, 1, 'address'), (11, 13, 'address')], [], [(5, 6, 'game')]]
    path = t.write_submission(str(tmp_path / name), items, preds)
    with open(path, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f]
    assert rows == [
        {'id': 4, 'label': {'address': {'四川': [[0, 1]], '丹棱县': [[11, 13]]}}},
        {'id': 0, 'label': {}},
        {'id': 1, 'label': {'game': {'辐射': [[5, 6]]}}}]


def test_c3_rejects_an_index_past_the_real_choices(tmp_path):
    t = task('c3')
    _, items, name = t.test_sets()[0]
    assert [len(e.choices) for e in items] == [2, 4, 3]
    t.write_submission(str(tmp_path / name), items, [1, 3, 2])
    with pytest.raises(ValueError, match='not a choice index'):
        t.write_submission(str(tmp_path / name), items, [2, 0, 0])


def test_optional_clue10_test_file_is_predicted_too():
    names = [(s[0], s[2]) for s in task('tnews').test_sets()]
    assert names == [('test.json', 'tnews11_predict.json'),
                     ('test1.0.json', 'tnews10_predict.json')]


def test_quirks_int_and_string_labels_idx_and_dash(capsys):
    assert [e.label for e in task('iflytek').load('train')] == [0, 1, 3, 2]
    assert [e.label for e in task('afqmc').load('train')] == [1, 0, 1, 0]
    # cmnli / ocnli: the lines labelled "-" are dropped and counted
    cmnli = task('cmnli', verbose=True)
    assert [e.label for e in cmnli.load('train')] == [1, 2, 0]
    assert "train.json: 1 x skipped: label '-'" in capsys.readouterr().out
    assert len(task('ocnli').load('train')) == 3
    assert [e.uid for e in task('wsc').load('dev')] == [0, 1]


def test_wsc_marks_both_spans_and_csl_pairs_keywords_with_abst():
    train = task('wsc').load('train')
    assert train[0].text_a == '_小明_把书借给了小红，因为[他]已经读完了'
    assert train[2].text_a == '[他]说_妈妈_做的菜最好吃'     # pronoun first
    csl = task('csl').load('dev')[0]
    assert (csl.text_a, csl.text_b) == ('锂电池；电极材料',
                                        '设计了一种新型锂电池电极材料')


def test_c3_reads_m_and_d_files_and_chid_its_answers():
    train = task('c3').load('train')
    assert [(e.uid, e.label, len(e.choices)) for e in train] == [
        ('m1-1-0', 0, 4), ('m1-2-0', 1, 2), ('d1-1-0', 0, 3),
        ('d1-1-1', 0, 4)]
    chid = task('chid').load('train')
    assert [(e.uid, e.label, e.group) for e in chid] == [
        ('#idiom000000#', 0, 0), ('#idiom000001#', 1, 0),
        ('#idiom000002#', 3, 1), ('#idiom000003#', 1, 2)]
    assert chid[1].left == '比赛一开始他就＿＿＿＿冲在最前面，后来却'


def test_cmrc2018_answer_handling(capsys):
    t = task('cmrc2018', verbose=True)
    train = t.load('train')
    out = capsys.readouterr().out
    # QUERY_1's answer is not in its context: skipped and counted;
    # QUERY_2's answer_start is wrong: moved to its text
    assert [e.uid for e in train] == ['TRAIN_1_QUERY_0', 'TRAIN_1_QUERY_2']
    assert train[1].answers == [('《战国三杰》', train[1].context.index(
        '《战国三杰》'))]
    assert '1 x skipped: answer not in its context' in out
    assert '1 x corrected: answer_start moved to its text' in out
    dev = t.load('dev')
    assert [t for t, _ in dev[0].answers] == ['1898年', '1898', '1898年']


def test_cluener_entities_and_types():
    t = task('cluener')
    assert t.labels == ['address', 'company', 'game', 'name',
                        'organization']
    dev = t.load('dev')
    assert dev[1].entities == [(1, 2, 'address'), (4, 5, 'address')]
    scores = t.evaluate(dev, [[(0, 2, 'name')], [(1, 2, 'address')]])
    # 2 of 4 true entities found, 2 predicted, all right: F1 = 4/6
    assert scores == pytest.approx({'precision': 1.0, 'recall': 0.5,
                                    'f1': 2 / 3})


def test_zip_holds_the_submission_files_at_its_root(tmp_path):
    for name in ('afqmc', 'chid'):
        t = task(name)
        _, items, out_name = t.test_sets()[0]
        t.write_submission(str(tmp_path / out_name), items,
                           dummy_predictions(t, items,
                                             np.random.default_rng(1)))
    path = submission.make_zip(str(tmp_path), ['afqmc_predict.json',
                                               'chid11_predict.json'],
                               str(tmp_path / 'clue_submit.zip'))
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ['afqmc_predict.json',
                                        'chid11_predict.json']
        assert json.loads(z.read('chid11_predict.json'))['#idiom000201#'] \
            in range(10)


def test_any_task_predicts_a_present_test10_file(tmp_path):
    import shutil
    folder = tmp_path / 'afqmc'
    shutil.copytree(os.path.join(FIXTURES, 'afqmc'), folder)
    shutil.copy(folder / 'test.json', folder / 'test1.0.json')
    sets = clue.get_task('afqmc', str(folder), False).test_sets()
    assert [(s[0], s[2]) for s in sets] == [
        ('test.json', 'afqmc_predict.json'),
        ('test1.0.json', 'afqmc10_predict.json')]


def test_register_task_adds_a_task_and_its_alias(monkeypatch):
    monkeypatch.setattr(clue.tasks, 'TASKS', dict(clue.TASKS))
    monkeypatch.setattr(clue.tasks, 'ALIASES', dict(clue.ALIASES))

    class Reviews(clue.TASKS['tnews']):
        name, aliases = 'reviews', ('review_sentiment',)

    clue.register_task(Reviews)
    t = clue.get_task('REVIEW_SENTIMENT', os.path.join(FIXTURES, 'tnews'),
                      verbose=False)
    assert isinstance(t, Reviews) and t.head == 'classification'
    assert 'reviews' in clue.tasks.task_names()
    with pytest.raises(TypeError, match='not a gau_keras.clue.Task'):
        clue.register_task(dict)
