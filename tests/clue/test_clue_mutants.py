"""Edge cases of the CLUE scoring and data code and of the pretraining
masking that a plausible one-character bug would silently change: each test
pins a value computed by hand or an invariance (which window sees which
token), never the code's own output.  ``make mutate`` checks that they
catch such bugs."""
import itertools
import json

import numpy as np
import pytest

from gau_keras.clue import encoding, metrics, submission
from gau_keras.clue.readers import (ChoiceExample, ClueDataError,
                                    NerExample, SpanExample, TextExample,
                                    label_string)
from gau_keras.pretraining.masking import lm_targets, whole_word_mask

#: Ten context characters, one token each: token t is CONTEXT[t].
CONTEXT = '一二三四五六七八九十'
CHARS = CONTEXT + '问我在京工作'


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
    """Char vocab written by hand: specials, then one line per char."""
    path = tmp_path_factory.mktemp('vocab') / 'vocab.txt'
    path.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
                              + list(CHARS)) + '\n', encoding='utf-8')
    return encoding.load_tokenizer(str(path))


# --------------------------------------------------------------------------
# cmrc2018 EM / F1
# --------------------------------------------------------------------------

def test_em_strips_punctuation_and_case_of_the_prediction_too():
    assert metrics.cmrc2018_em(['战国三杰'], '《战国三杰》') == 1
    assert metrics.cmrc2018_em(['gauα'], ' GAU-α ') == 1
    assert metrics.cmrc2018_em(['战国三杰'], '战国三') == 0


def test_f1_takes_the_best_reference_in_any_order():
    # 北京 equals the first reference; 北京大学 alone would give 2/3
    assert metrics.cmrc2018_f1(['北京', '北京大学'], '北京') == 1.0
    assert metrics.cmrc2018_f1(['北京大学', '北京'], '北京') == 1.0
    # the worse reference last, then first: 2/3 (P = 1, R = 1/2) either way
    for refs in (['北京大学', '上海'], ['上海', '北京大学']):
        assert metrics.cmrc2018_f1(refs, '北京') == pytest.approx(2 / 3)


def test_f1_counts_segments_not_characters_for_words():
    # 'gau alpha' vs 'gau': lcs 1 word, P = 1/2, R = 1/1 → 2/3
    assert metrics.cmrc2018_f1(['gau'], 'GAU alpha') == pytest.approx(2 / 3)
    # P = 1/1, R = 1/2
    assert metrics.cmrc2018_f1(['gau alpha'], 'gau') == pytest.approx(2 / 3)


def test_scores_count_a_missing_prediction_as_zero():
    refs = {'a': ['北京'], 'b': ['上海'], 'c': ['广州'], 'd': ['深圳']}
    s = metrics.cmrc2018_scores(refs, {'a': '北京', 'b': '北京'})
    assert s == {'em': 0.25, 'f1': 0.25, 'average': 0.25, 'total': 4,
                 'skip': 2}


# --------------------------------------------------------------------------
# cmrc2018 windows
# --------------------------------------------------------------------------

def span_example(answer_chars):
    """Question 问 (1 token), context CONTEXT, answer = chars [a, b]."""
    a, b = answer_chars
    return SpanExample('q', '问', CONTEXT, [(CONTEXT[a:b + 1], a)])


def labels(windows):
    return [(w.first, w.start, w.end) for w in windows]


def test_answer_one_token_past_a_window_is_not_labelled(tokenizer):
    # maxlen 9 - question 1 - 3 specials = 5 context tokens a window,
    # windows start at tokens 0, 3, 6; the answer is tokens 4..5 and
    # [CLS] 问 [SEP] puts context token t of a window at 3 + t - first.
    # Token 5 is the first one past window 0 (tokens 0..4): only the
    # window starting at 3 holds the whole answer (positions 4, 5).
    windows = encoding.span_windows(tokenizer, span_example((4, 5)), 9, 3)
    assert labels(windows) == [(0, 0, 0), (3, 4, 5), (6, 0, 0)]
    sep = tokenizer._token_end_id
    for w in windows:
        assert w.token_ids[w.start] != sep and w.token_ids[w.end] != sep


def test_answer_starting_before_a_window_is_not_labelled(tokenizer):
    # tokens 2..3: window 0 holds it, window 3 starts one token too late
    windows = encoding.span_windows(tokenizer, span_example((2, 3)), 9, 3)
    assert labels(windows) == [(0, 5, 6), (3, 0, 0), (6, 0, 0)]


@pytest.mark.parametrize('answer', [(8, 9), (9, 9), (0, 0)])
def test_answers_at_either_end_of_the_context_are_labelled(tokenizer,
                                                           answer):
    e = span_example(answer)
    windows = encoding.span_windows(tokenizer, e, 9, 3)
    labelled = [w for w in windows if w.start]
    assert labelled
    for w in labelled:
        assert encoding.span_text(w, CONTEXT, w.start, w.end) == \
            CONTEXT[answer[0]:answer[1] + 1]


@pytest.mark.parametrize('length', [1, 4, 5, 6, 9, 10])
@pytest.mark.parametrize('stride', [1, 2, 3, 5, 8])
def test_windows_cover_every_context_token_once_in_order(tokenizer, length,
                                                         stride):
    e = SpanExample('q', '问', CONTEXT[:length], [])
    windows = encoding.span_windows(tokenizer, e, 9, stride)
    room, step = 5, min(stride, 5)
    # window starts 0, step, 2·step, … until one reaches the last token
    starts = list(range(0, max(length - room, 0) + step, step))
    starts = starts[:next(i for i, s in enumerate(starts)
                          if s + room >= length) + 1]
    assert [w.first for w in windows] == starts
    seen = set()
    for w in windows:
        pieces = w.token_ids[w.offset:-1]
        assert tokenizer.decode(pieces).replace(' ', '') == \
            CONTEXT[w.first:w.first + room][:length - w.first]
        assert w.token_ids[-1] == tokenizer._token_end_id
        seen.update(range(w.first, w.first + len(pieces)))
    assert seen == set(range(length))


def fake_window(n_context, offset=3):
    """A window of ``n_context`` context tokens after ``offset`` others."""
    ids = [0] * (offset + n_context + 1)
    return encoding.Window('q', ids, [0] * len(ids), 0, 0, offset, 0,
                           [[i] for i in range(n_context)])


def test_best_span_respects_max_answer():
    w = fake_window(6)                      # positions 3..8 are context
    st = np.zeros(10)
    en = np.zeros(10)
    st[3] = 5.0
    en[5], en[4] = 4.0, 1.0                 # 3..5 (3 tokens) is the best
    assert encoding.best_span(w, st, en, max_answer=3)[1:] == (3, 5)
    score, s, e = encoding.best_span(w, st, en, max_answer=2)
    assert (s, e) == (3, 4) and score == 6.0
    assert encoding.best_span(w, st, en, max_answer=1)[1:] == (3, 3)


def test_best_span_never_ends_before_it_starts_nor_leaves_the_context():
    w = fake_window(4)                      # positions 3..6 are context
    st = np.array([9., 9, 9, 0, 0, 0, 5, 9, 9, 9])
    en = np.array([9., 9, 9, 4, 0, 0, -9, 9, 9, 9])
    # the best ordered pair inside the context: start 3, end 3 (0 + 4),
    # not start 6 with the earlier end 3 (5 + 4) nor [SEP] at 7 (9 + 9)
    assert encoding.best_span(w, st, en)[1:] == (3, 3)
    assert encoding.best_span(fake_window(0), st, en)[1:] == (None, None)


# --------------------------------------------------------------------------
# cluener
# --------------------------------------------------------------------------

def test_decode_entities_threshold_is_strict():
    mapping = [[], [0], [1], [2], []]       # [CLS] 3 chars [SEP]
    zeros = np.zeros((2, 5, 5))
    assert encoding.decode_entities(zeros, mapping, ['a', 'b']) == []
    scores = zeros.copy()
    scores[1, 2, 3] = 1e-6
    assert encoding.decode_entities(scores, mapping, ['a', 'b']) == \
        [(1, 2, 'b')]
    assert encoding.decode_entities(scores, mapping, ['a', 'b'],
                                    threshold=1e-6) == []


def test_decode_entities_skips_reversed_spans_and_specials():
    mapping = [[], [0], [1], []]
    scores = np.full((1, 4, 4), -1.0)
    scores[0, 2, 1] = 1.0                   # end before start
    scores[0, 0, 1] = 1.0                   # starts on [CLS]
    scores[0, 1, 3] = 1.0                   # ends on [SEP]
    assert encoding.decode_entities(scores, mapping, ['x']) == []


def test_one_token_entities_round_trip(tokenizer):
    e = NerExample(0, '我在京工作', [(2, 2, 'address'), (3, 4, 'work')])
    kinds = ['address', 'work']
    ids, segs, spans, mapping = encoding.encode_ner(tokenizer, e, 16, kinds)
    # [CLS] 我 在 京 工 作 [SEP]: char c sits at position c + 1
    assert spans == [(0, 3, 3), (1, 4, 5)]
    y = encoding.ner_targets([spans], 2, len(ids))[0]
    assert y.sum() == 2 and y[0, 3, 3] == y[1, 4, 5] == 1
    assert encoding.decode_entities(y - 0.5, mapping, kinds) == e.entities


# --------------------------------------------------------------------------
# submissions and labels
# --------------------------------------------------------------------------

def write_rows(path, ids):
    submission.write_json_lines(path, [{'id': i, 'label': '1'} for i in ids])
    return path


def test_check_submission_refuses_extra_missing_and_repeated_ids(tmp_path):
    items = [TextExample(i, '文') for i in (7, 2, 15)]
    ok = write_rows(tmp_path / 'ok.json', [15, 7, 2])
    assert submission.check_submission(ok, items) == {15: '1', 7: '1',
                                                      2: '1'}
    for name, ids in [('extra', [7, 2, 15, 3]), ('missing', [7, 2]),
                      ('twice', [7, 2, 15, 2]), ('string', [7, 2, '15'])]:
        with pytest.raises(ClueDataError):
            submission.check_submission(write_rows(tmp_path / name, ids),
                                        items)


def test_read_submission_refuses_an_id_given_twice(tmp_path):
    path = write_rows(tmp_path / 'twice.json', [1, 2, 1])
    with pytest.raises(ClueDataError) as info:
        submission.read_submission(path)
    assert info.value.line == 3 and info.value.field == 'id'


def test_json_object_submission_round_trips(tmp_path):
    path = submission.write_json_object(tmp_path / 'chid.json',
                                        {'#idiom000001#': 3, '#b#': 0})
    assert submission.read_submission(path) == {'#idiom000001#': 3,
                                                '#b#': 0}
    assert json.loads(open(path, encoding='utf-8').read())['#b#'] == 0


def test_json_object_submission_refuses_a_key_given_twice(tmp_path):
    # chid / cmrc2018 submissions are one JSON object: a repeated key would
    # otherwise be lost silently (json.loads keeps the last value)
    path = tmp_path / 'chid11_predict.json'
    path.write_text('{"#idiom000001#": 3, "#idiom000002#": 1, '
                    '"#idiom000001#": 0}', encoding='utf-8')
    with pytest.raises(ClueDataError, match='#idiom000001#') as info:
        submission.read_submission(str(path))
    assert info.value.field == 'id'
    nested = tmp_path / 'nested.json'
    nested.write_text('{"q1": {"a": 1}, "q2": "x"}', encoding='utf-8')
    assert submission.read_submission(str(nested)) == {'q1': {'a': 1},
                                                       'q2': 'x'}


def test_boolean_labels_are_json_spelling():
    assert label_string(True) == 'true'
    assert label_string(False) == 'false'
    assert label_string(1) == '1' and label_string('0') == '0'


# --------------------------------------------------------------------------
# pretraining masking
# --------------------------------------------------------------------------

class FixedRandom(object):
    """``random(n)`` returns the given draws; ``choice`` returns 40, 41…"""

    def __init__(self, draws):
        self.draws = np.asarray(draws, np.float64)

    def random(self, n):
        assert n == len(self.draws)
        return self.draws

    def choice(self, ids, k):
        return np.arange(40, 40 + k)


def test_whole_word_mask_boundaries_on_fixed_draws():
    # rate 0.5: r < 0.4 [MASK], 0.4 <= r < 0.45 kept, 0.45 <= r < 0.5
    # random, r >= 0.5 untouched; specials (word -1) never chosen
    ids = [2, 11, 12, 13, 14, 15, 16, 17, 3]
    words = [-1, 0, 0, 1, 2, 2, 3, 4, -1]
    draws = [0.39, 0.4, 0.45, 0.5, 0.0]
    inputs, labels, chosen = whole_word_mask(
        ids, words, FixedRandom(draws), 4, [40, 41, 42], rate=0.5)
    assert list(inputs) == [2, 4, 4, 13, 40, 41, 16, 4, 3]
    assert list(labels) == [0, 11, 12, 13, 14, 15, 0, 17, 0]
    assert list(chosen) == [False, True, True, True, True, True, False,
                            True, False]


def test_whole_word_mask_without_words():
    inputs, labels, chosen = whole_word_mask(
        [2, 3], [-1, -1], FixedRandom([]), 4, [5], rate=1.0)
    assert list(inputs) == [2, 3] and not chosen.any()
    assert list(labels) == [0, 0]


def test_lm_targets_shift_by_one():
    inputs, labels, chosen = lm_targets([2, 7, 8, 3])
    assert list(inputs) == [2, 7, 8, 3]
    assert list(labels) == [7, 8, 3, 0]
    assert list(chosen) == [True, True, True, False]


# --------------------------------------------------------------------------
# metric edge cases, encoder layouts, smallest maxlen, padded scores
# --------------------------------------------------------------------------

def test_accuracy_counts_the_matches():
    # 2 of 3 right: a swapped == / != would give 1/3
    assert metrics.accuracy([1, 0, 2], [1, 1, 2]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        metrics.accuracy([], [])


def test_f1_strips_punctuation_of_the_prediction_too():
    assert metrics.cmrc2018_f1(['战国三杰'], '《战国三杰》') == 1.0


def test_entity_prf_edge_cases():
    nothing = {'precision': 1.0, 'recall': 1.0, 'f1': 1.0}
    assert metrics.entity_prf([[], []], [[], []]) == nothing
    zero = {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
    assert metrics.entity_prf([[(0, 1, 'a')]], [[]]) == zero
    assert metrics.entity_prf([[]], [[(0, 1, 'a')]]) == zero
    # one true, one predicted, different: 0, not "nothing to find"
    assert metrics.entity_prf([[(0, 1, 'a')]], [[(0, 1, 'b')]]) == zero
    with pytest.raises(ValueError):
        metrics.entity_prf([[]], [])


def test_assign_blanks_equals_brute_force_on_many_matrices():
    rng = np.random.default_rng(1)
    for trial in range(300):
        n = int(rng.integers(1, 5))
        m = int(rng.integers(n, 6))
        # small integers: many ties, as with equal candidate scores
        s = rng.integers(-3, 4, size=(n, m)).astype(float)
        if trial % 2:
            s = rng.normal(size=(n, m))
        best = max(sum(s[i, j] for i, j in enumerate(p))
                   for p in itertools.permutations(range(m), n))
        got = metrics.assign_blanks(s)
        assert len(set(got)) == n and all(0 <= j < m for j in got)
        assert sum(s[i, j] for i, j in enumerate(got)) == \
            pytest.approx(best)


def tokens_of(tokenizer, ids):
    return tokenizer.ids_to_tokens(ids)


def test_choices_layout_segments_and_truncation(tokenizer):
    e = ChoiceExample(0, '一二三', '四', ['五', '六七'])
    ids, segs, valid = encoding.encode_choices(tokenizer, e, maxlen=16)
    assert tokens_of(tokenizer, ids[0]) == ['[CLS]', '一', '二', '三',
                                            '[SEP]', '四', '五', '[SEP]']
    assert segs[0] == [0] * 5 + [1] * 3
    assert tokens_of(tokenizer, ids[2]) == ['[CLS]', '一', '二', '三',
                                            '[SEP]', '四', '[SEP]']
    assert valid == [True, True, False, False]
    # maxlen 6 leaves 3 tokens: the context loses tokens first
    ids, segs, _ = encoding.encode_choices(tokenizer, e, maxlen=6)
    assert tokens_of(tokenizer, ids[0]) == ['[CLS]', '一', '[SEP]', '四',
                                            '五', '[SEP]']
    assert tokens_of(tokenizer, ids[1]) == ['[CLS]', '[SEP]', '四', '六',
                                            '七', '[SEP]']
    assert segs[1] == [0, 0, 1, 1, 1, 1]
    # maxlen 4: only the end of question + choice fits
    ids, _, _ = encoding.encode_choices(tokenizer, e, maxlen=4)
    assert tokens_of(tokenizer, ids[1]) == ['[CLS]', '[SEP]', '七', '[SEP]']
    with pytest.raises(ValueError):
        encoding.encode_choices(tokenizer, e, maxlen=3)


def test_smallest_maxlen_each_encoder_accepts(tokenizer):
    one, two = TextExample(0, '一二'), TextExample(0, '一二', '三')
    assert len(encoding.encode_text(tokenizer, one, 3)[0]) == 3
    assert len(encoding.encode_text(tokenizer, two, 4)[0]) == 4
    for example, maxlen in [(one, 2), (two, 3)]:
        with pytest.raises(ValueError):
            encoding.encode_text(tokenizer, example, maxlen)
    ner = NerExample(0, '一二', [])
    assert len(encoding.encode_ner(tokenizer, ner, 3, [])[0]) == 3
    with pytest.raises(ValueError):
        encoding.encode_ner(tokenizer, ner, 2, [])
    # a span window needs one context token: maxlen = question + 3 + 1
    span = SpanExample('q', '问', '一二', [])
    assert [w.first for w in encoding.span_windows(tokenizer, span, 5,
                                                   1)] == [0, 1]
    with pytest.raises(ValueError):
        encoding.span_windows(tokenizer, span, 3, 1)


def test_span_windows_label_the_first_answer_found(tokenizer):
    # the first reference is not in the context (start None), the
    # second is tokens 1..2, the third tokens 6..7: the second is used
    e = SpanExample('q', '问', CONTEXT, [('零', None), ('二三', 1),
                                          ('七八', 6)])
    (w,) = encoding.span_windows(tokenizer, e, 16, 4)
    assert (w.start, w.end) == (4, 5) and w.offset == 3
    assert w.segment_ids == [0, 0, 0] + [1] * 11


def test_ner_entity_cut_by_maxlen_is_dropped(tokenizer):
    # maxlen 5 keeps 我 在 京: 京工作 starts inside but ends outside
    e = NerExample(0, '我在京工作', [(0, 1, 'a'), (2, 4, 'a')])
    ids, segs, spans, _ = encoding.encode_ner(tokenizer, e, 5, ['a'])
    assert spans == [(0, 1, 2)] and segs == [0] * 5


def test_decode_entities_ignores_padding_past_the_text():
    mapping = [[], [0], [1], []]            # one text padded to length 6
    scores = np.full((1, 6, 6), -1.0)
    scores[0, 1, 2] = 1.0
    scores[0, 2, 5] = 1.0                   # ends in the padding
    scores[0, 4, 5] = 1.0
    assert encoding.decode_entities(scores, mapping, ['x']) == [(0, 1, 'x')]


def test_best_spans_gives_an_empty_answer_to_a_question_without_windows(
        tokenizer):
    a = SpanExample('a', '问', CONTEXT, [])
    b = SpanExample('b', '问', CONTEXT, [])
    windows = encoding.span_windows(tokenizer, a, 16, 4)
    st = [np.eye(len(w.token_ids))[4] for w in windows]    # position 4
    en = [np.eye(len(w.token_ids))[5] for w in windows]    # position 5
    assert encoding.best_spans([a, b], windows, st, en) == {'a': '二三',
                                                            'b': ''}
