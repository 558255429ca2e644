"""CLUE metrics: accuracy, cmrc2018 EM / F1, entity micro-F1, and the
joint assignment of chid blanks.

All scores are fractions in [0, 1] (CLUE prints cmrc2018 ×100).

cmrc2018 follows CLUE's ``cmrc2018_evaluate.py`` (v5):

* text is lower-cased and stripped; Chinese characters (U+4E00–U+9FA5)
  and the punctuation of :data:`CMRC_PUNCTUATION` are single segments,
  other runs are split into words (CLUE uses ``nltk.word_tokenize``; here
  runs of letters/digits and single symbols, :func:`mixed_segmentation`);
* F1 = 2PR/(P+R) with the longest common *contiguous* run of segments
  (punctuation removed) between prediction and reference, P over the
  prediction's segments, R over the reference's; EM = equality after
  removing the punctuation; both take the max over the references and are
  averaged over all questions (a missing prediction scores 0).

Example::

    cmrc2018_f1(['北京大学'], '北京')        # 2*(1*0.5)/(1+0.5) = 0.6667
    cmrc2018_em(['北京。'], '北京')          # 1 (punctuation removed)
"""
import itertools
import re

import numpy as np

#: CLUE cmrc2018_evaluate.py's ``sp_char`` list (its '……' is two chars
#: long and therefore never matches a single character, as in CLUE).
CMRC_PUNCTUATION = ('-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
                    '，', '。', '：', '？', '！', '“', '”', '；', '’', '《',
                    '》', '……', '·', '、', '「', '」', '（', '）', '－', '～',
                    '『', '』')
_CHINESE = re.compile('[\u4e00-\u9fa5]')
_WORDS = re.compile(r"[^\W_]+(?:[.,][^\W_]+)*|[^\w\s]|_")


def accuracy(predictions, labels):
    """Fraction of ``predictions`` equal to ``labels`` (same length).

    >>> accuracy([1, 0, 2], [1, 1, 2])
    0.6666666666666666
    """
    predictions, labels = list(predictions), list(labels)
    if len(predictions) != len(labels):
        raise ValueError('%d predictions for %d labels' % (len(predictions),
                                                           len(labels)))
    if not labels:
        raise ValueError('accuracy of an empty set')
    return sum(int(p) == int(y) for p, y in zip(predictions, labels)) \
        / len(labels)


def mixed_segmentation(text, remove_punctuation=False):
    """CLUE's segmentation: Chinese chars and punctuation one by one, other
    runs split into words.

    >>> mixed_segmentation('GAU-α模型 v2.0', True)   # '-' dropped in-run
    ['gauα', '模', '型', 'v2.0']
    """
    text = str(text).lower().strip()
    out, run = [], ''
    for ch in text:
        if remove_punctuation and ch in CMRC_PUNCTUATION:
            continue
        if _CHINESE.match(ch) or ch in CMRC_PUNCTUATION:
            out += _WORDS.findall(run)
            run = ''
            out.append(ch)
        else:
            run += ch
    return out + _WORDS.findall(run)


def strip_punctuation(text):
    """Lower-cased, stripped, without CLUE's punctuation (for EM)."""
    return ''.join(ch for ch in str(text).lower().strip()
                   if ch not in CMRC_PUNCTUATION)


def longest_common_run(a, b):
    """Length of the longest common contiguous run of two sequences
    (CLUE's ``find_lcs``)."""
    best, row = 0, [0] * (len(b) + 1)
    for x in a:
        new = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                new[j + 1] = row[j] + 1
                best = max(best, new[j + 1])
        row = new
    return best


def cmrc2018_f1(references, prediction):
    """max over references of 2PR/(P+R), P = lcs/|pred|, R = lcs/|ref|."""
    pred = mixed_segmentation(prediction, True)
    scores = [0.0]
    for ref in references:
        ref = mixed_segmentation(ref, True)
        lcs = longest_common_run(ref, pred)
        if lcs:
            p, r = lcs / len(pred), lcs / len(ref)
            scores.append(2 * p * r / (p + r))
    return max(scores)


def cmrc2018_em(references, prediction):
    """1 if the prediction equals a reference without punctuation."""
    pred = strip_punctuation(prediction)
    return int(any(strip_punctuation(r) == pred for r in references))


def cmrc2018_scores(references, predictions):
    """{'em', 'f1', 'average', 'total', 'skip'} over all questions of
    ``references`` (id → reference texts); ``predictions``: id → text."""
    em = f1 = 0.0
    skip = 0
    for qid, refs in references.items():
        if qid not in predictions:
            skip += 1
            continue
        em += cmrc2018_em(refs, predictions[qid])
        f1 += cmrc2018_f1(refs, predictions[qid])
    n = len(references)
    if not n:
        raise ValueError('cmrc2018 scores of an empty set')
    return {'em': em / n, 'f1': f1 / n, 'average': (em + f1) / (2 * n),
            'total': n, 'skip': skip}


def entity_prf(true_entities, predicted_entities):
    """Micro precision / recall / F1 over (start, end, type) triples.

    Lists per example; F1 = 2·TP / (|pred| + |true|) (1 when there is no
    entity at all, neither true nor predicted).

    >>> entity_prf([[(0, 1, 'PER')]], [[(0, 1, 'PER'), (3, 4, 'LOC')]])['f1']
    0.6666666666666666
    """
    if len(true_entities) != len(predicted_entities):
        raise ValueError('%d predictions for %d examples' % (
            len(predicted_entities), len(true_entities)))
    tp = n_pred = n_true = 0
    for truth, pred in zip(true_entities, predicted_entities):
        truth = {tuple(t) for t in truth}
        pred = {tuple(p) for p in pred}
        tp += len(truth & pred)
        n_pred += len(pred)
        n_true += len(truth)
    if n_pred + n_true == 0:
        return {'precision': 1.0, 'recall': 1.0, 'f1': 1.0}
    return {'precision': tp / n_pred if n_pred else 0.0,
            'recall': tp / n_true if n_true else 0.0,
            'f1': 2 * tp / (n_pred + n_true)}


def assign_blanks(scores):
    """Candidate index per blank maximising the total score, each candidate
    used at most once (blanks ≤ candidates): the Hungarian algorithm
    (Kuhn–Munkres with potentials, O(n²m)).

    ``scores``: [blanks, candidates].  Example::

        assign_blanks([[5, 4], [5, 1]])     # → [1, 0] (total 9, not 6)
    """
    cost = -np.asarray(scores, dtype=np.float64)
    n, m = cost.shape
    if n > m:
        raise ValueError('%d blanks but only %d candidates' % (n, m))
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=int)        # owner[j] = row (1-based)
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while owner[j0] != 0:
            used[j0] = True
            i0 = owner[j0]
            delta, j1 = np.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    result = [0] * n
    for j in range(1, m + 1):
        if owner[j]:
            result[owner[j] - 1] = j - 1
    return result


def assign_by_group(groups, scores):
    """Joint assignment within each group (chid passage): ``groups`` [N]
    group ids, ``scores`` [N, candidates] → [N] candidate indices."""
    scores = np.asarray(scores)
    out = [None] * len(groups)
    order = sorted(range(len(groups)), key=lambda i: groups[i])
    for _, rows in itertools.groupby(order, key=lambda i: groups[i]):
        rows = list(rows)
        for r, c in zip(rows, assign_blanks(scores[rows])):
            out[r] = c
    return out
