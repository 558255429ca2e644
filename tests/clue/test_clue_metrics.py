"""CLUE metrics against hand-computed values."""
import itertools

import numpy as np
import pytest

from gau_keras.clue import metrics


def test_accuracy():
    assert metrics.accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    with pytest.raises(ValueError):
        metrics.accuracy([1], [1, 0])


def test_cmrc2018_segmentation_chinese_chars_and_words():
    assert metrics.mixed_segmentation('北京 University，1898年') == [
        '北', '京', 'university', '，', '1898', '年']
    # as in CLUE's script, a removed punctuation mark does not end the
    # current non-Chinese run, so 'University，1898' becomes one word
    assert metrics.mixed_segmentation('北京 University，1898年', True) == [
        '北', '京', 'university1898', '年']


def test_cmrc2018_f1_hand_computed():
    # prediction 北京 vs reference 北京大学: lcs 2, P = 2/2, R = 2/4
    assert metrics.cmrc2018_f1(['北京大学'], '北京') == pytest.approx(
        2 * 1 * 0.5 / 1.5)
    # max over references: 北京 exactly matches the second one
    assert metrics.cmrc2018_f1(['北京大学', '北京'], '北京') == 1.0
    # the common run must be contiguous: 大学 / 北京 are 2 each, not 4
    # P = 2/5 (北京的大学), R = 2/4 → F1 = 2PR/(P+R) = 4/9
    assert metrics.cmrc2018_f1(['北京大学'], '北京的大学') == pytest.approx(
        4 / 9)
    # punctuation is stripped before segmenting: 《战国三杰》 = 战国三杰
    assert metrics.cmrc2018_f1(['《战国三杰》'], '战国三杰') == 1.0
    assert metrics.cmrc2018_f1(['上海'], '北京') == 0.0
    assert metrics.cmrc2018_f1(['上海'], '') == 0.0


def test_cmrc2018_em_strips_punctuation_and_case():
    assert metrics.cmrc2018_em(['《战国三杰》'], '战国三杰') == 1
    assert metrics.cmrc2018_em(['GAU-α'], 'gauα') == 1
    assert metrics.cmrc2018_em(['1898年'], '1898') == 0
    assert metrics.cmrc2018_em(['1898年', '1898'], '1898') == 1


def test_cmrc2018_scores_average_over_all_questions():
    refs = {'q1': ['北京大学'], 'q2': ['1898年', '1898'], 'q3': ['上海']}
    preds = {'q1': '北京', 'q2': '1898'}          # q3 unanswered: scores 0
    s = metrics.cmrc2018_scores(refs, preds)
    f1 = (2 / 3 + 1 + 0) / 3
    em = (0 + 1 + 0) / 3
    assert s == pytest.approx({'em': em, 'f1': f1, 'average': (em + f1) / 2,
                               'total': 3, 'skip': 1})


def test_entity_prf_micro():
    true = [[(0, 1, 'PER'), (3, 5, 'LOC')], [(2, 3, 'ORG')]]
    pred = [[(0, 1, 'PER'), (3, 5, 'ORG')], [(2, 3, 'ORG'), (6, 7, 'PER')]]
    # TP = 2 (PER 0-1, ORG 2-3), 4 predicted, 3 true
    s = metrics.entity_prf(true, pred)
    assert s == pytest.approx({'precision': 0.5, 'recall': 2 / 3,
                               'f1': 4 / 7})
    assert metrics.entity_prf([[]], [[]])['f1'] == 1.0
    assert metrics.entity_prf([[(0, 1, 'PER')]], [[]])['f1'] == 0.0


def test_assign_blanks_is_the_best_one_to_one_assignment():
    assert metrics.assign_blanks([[5, 4], [5, 1]]) == [1, 0]
    rng = np.random.default_rng(0)
    for n, m in [(1, 4), (2, 3), (3, 3), (3, 6), (4, 5)]:
        s = rng.normal(size=(n, m))
        best = max(itertools.permutations(range(m), n),
                   key=lambda p: sum(s[i, j] for i, j in enumerate(p)))
        got = metrics.assign_blanks(s)
        assert len(set(got)) == n
        assert sum(s[i, j] for i, j in enumerate(got)) == pytest.approx(
            sum(s[i, j] for i, j in enumerate(best)))


def test_assign_by_group_keeps_groups_apart():
    scores = np.array([[3., 0.], [2., 0.], [1., 0.]])
    # group 0 holds rows 0 and 2 (jointly), group 1 row 1 alone
    assert metrics.assign_by_group([0, 1, 0], scores) == [0, 0, 1]
