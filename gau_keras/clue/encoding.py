"""CLUE examples → model inputs with bert4keras's ``Tokenizer`` (BERT-style
vocab.txt), and model outputs → predictions.

* classification: ``[CLS] a [SEP] (b [SEP])``, the longer text truncated
  first (:func:`encode_text`);
* c3: one sequence per choice ``[CLS] context [SEP] question choice
  [SEP]``, the context truncated, choices padded to 4 with a validity mask
  (:func:`encode_choices`);
* chid: one sequence per candidate ``[CLS] idiom [SEP] left [MASK]×4 right
  [SEP]`` around the blank (:func:`encode_chid`);
* cmrc2018: ``[CLS] question [SEP] context window [SEP]``; contexts longer
  than the room left are cut into windows whose starts are ``stride`` tokens
  apart; each window carries the answer's (start, end) positions or (0, 0)
  ([CLS]) when the answer is not wholly inside it; the best span over all
  windows wins and its text is cut from the ORIGINAL context through
  ``tokenizer.rematch`` (:func:`span_windows`, :func:`best_spans`);
* cluener: token positions of each (start, end, type) entity
  (:func:`encode_ner`) and back (:func:`decode_entities`).

Example::

    tokenizer = load_tokenizer('vocab.txt')
    ids, segs = encode_text(tokenizer, example, maxlen=128)
    windows = span_windows(tokenizer, span_example, maxlen=128, stride=64)
"""
import collections

import numpy as np
from bert4keras.snippets import sequence_padding

from gau_keras.tokenizers import load_tokenizer  # noqa: F401  (re-exported)

NUM_MASKS = 4


def _pieces(tokenizer, text):
    """Tokens of ``text`` without [CLS] / [SEP]."""
    return tokenizer.tokenize(text)[1:-1]


def _check_maxlen(maxlen, least, what):
    if maxlen < least:
        raise ValueError('maxlen=%d leaves no room for %s (needs >= %d)'
                         % (maxlen, what, least))


# --------------------------------------------------------------------------
# classification and multiple choice
# --------------------------------------------------------------------------

def encode_text(tokenizer, example, maxlen):
    """(token_ids, segment_ids) of a TextExample, at most ``maxlen`` long
    (tokens of the longer text dropped from its end first)."""
    _check_maxlen(maxlen, 3 if example.text_b is None else 4, 'the text')
    return tokenizer.encode(example.text_a, example.text_b, maxlen=maxlen)


def _fit(first, second, room):
    """Drops tokens from the end of ``first`` (then ``second``) to fit."""
    first, second = list(first), list(second)
    while len(first) + len(second) > room:
        (first if first else second).pop()
    return first, second


def _pair_ids(tokenizer, first, second):
    tokens = ['[CLS]'] + first + ['[SEP]'] + second + ['[SEP]']
    ids = tokenizer.tokens_to_ids(tokens)
    return ids, [0] * (len(first) + 2) + [1] * (len(second) + 1)


def encode_choices(tokenizer, example, maxlen, num_choices=4):
    """c3: ([num_choices] token id lists, segment id lists, valid mask);
    missing choices are empty and marked invalid."""
    _check_maxlen(maxlen, 4, 'a choice')
    context = _pieces(tokenizer, example.context)
    question = _pieces(tokenizer, example.question)
    ids, segs = [], []
    for k in range(num_choices):
        choice = example.choices[k] if k < len(example.choices) else ''
        qc = question + _pieces(tokenizer, choice)
        qc = qc[-(maxlen - 3):]                # keep the choice's end
        c, qc = _fit(context, qc, maxlen - 3)
        i, s = _pair_ids(tokenizer, c, qc)
        ids.append(i)
        segs.append(s)
    valid = [k < len(example.choices) for k in range(num_choices)]
    return ids, segs, valid


def encode_chid(tokenizer, example, maxlen):
    """chid: one (token ids, segment ids) per candidate; the blank is 4
    [MASK] tokens and the text around it is cut evenly to fit."""
    left = _pieces(tokenizer, example.left)
    right = _pieces(tokenizer, example.right)
    ids, segs = [], []
    for candidate in example.candidates:
        cand = _pieces(tokenizer, candidate)
        room = maxlen - len(cand) - 3 - NUM_MASKS
        _check_maxlen(room + maxlen, maxlen, 'the idiom and its blank '
                      '(maxlen - idiom - 7 < 0)')
        n_left = min(len(left), max(room // 2, room - len(right)))
        n_right = min(len(right), room - n_left)
        text = (left[len(left) - n_left:] + ['[MASK]'] * NUM_MASKS +
                right[:n_right])
        i, s = _pair_ids(tokenizer, cand, text)
        ids.append(i)
        segs.append(s)
    return ids, segs


# --------------------------------------------------------------------------
# cmrc2018 windows
# --------------------------------------------------------------------------

Window = collections.namedtuple(
    'Window', 'uid token_ids segment_ids start end offset first mapping')
Window.__doc__ = """One cmrc2018 window: ``start``/``end`` = answer token
positions in the sequence ((0, 0) = not in this window); context token t of
the window sits at position ``offset + t`` and is token ``first + t`` of the
whole context, whose chars are ``mapping[first + t]``."""


def char_mapping(tokenizer, text):
    """(tokens, mapping): tokens of ``text`` and, per token, the indices of
    its characters in the original ``text`` (bert4keras ``rematch``)."""
    tokens = _pieces(tokenizer, text)
    return tokens, tokenizer.rematch(text, tokens)


def char_span_to_tokens(mapping, start, end):
    """Token span (first, last) covering chars [start, end) or None."""
    inside = [t for t, chars in enumerate(mapping)
              if chars and chars[0] < end and chars[-1] >= start]
    return (inside[0], inside[-1]) if inside else None


def span_windows(tokenizer, example, maxlen, stride, max_question=64):
    """Windows of a SpanExample (see :data:`Window`).  ``stride`` = tokens
    between window starts (clipped to the window size so no text is
    skipped); the question keeps at most ``max_question`` tokens, and
    fewer when ``maxlen`` would leave no room for the context."""
    question = _pieces(tokenizer, example.question)[
        :max(0, min(max_question, maxlen - 4))]
    tokens, mapping = char_mapping(tokenizer, example.context)
    room = maxlen - len(question) - 3
    _check_maxlen(room + maxlen, maxlen + 1, 'the context after the '
                  'question (maxlen - question - 3 < 1)')
    stride = max(1, min(int(stride), room))
    answer = None
    for text, start in example.answers:
        if start is not None:
            answer = char_span_to_tokens(mapping, start, start + len(text))
            if answer is not None:
                break
    out, first = [], 0
    while True:
        piece = tokens[first:first + room]
        ids, segs = _pair_ids(tokenizer, question, piece)
        offset = len(question) + 2
        s = e = 0
        if answer and first <= answer[0] and answer[1] < first + len(piece):
            s, e = answer[0] - first + offset, answer[1] - first + offset
        out.append(Window(example.uid, ids, segs, s, e, offset, first,
                          mapping))
        if first + room >= len(tokens):
            return out
        first += stride


def best_span(window, start_logits, end_logits, max_answer=64):
    """(score, s, e): best context span of one window, s ≤ e < s +
    ``max_answer``, score = start_logits[s] + end_logits[e]."""
    n = len(window.token_ids) - window.offset - 1     # context tokens
    if n <= 0:
        return -np.inf, None, None
    lo = window.offset
    st = np.asarray(start_logits, np.float64)[lo:lo + n]
    en = np.asarray(end_logits, np.float64)[lo:lo + n]
    score = st[:, None] + en[None, :]
    i, j = np.indices(score.shape)
    score[(j < i) | (j - i >= max_answer)] = -np.inf
    s, e = np.unravel_index(np.argmax(score), score.shape)
    return score[s, e], lo + s, lo + e


def span_text(window, context, s, e):
    """The answer text of sequence positions s..e cut from ``context``."""
    chars = [c for t in range(s, e + 1)
             for c in window.mapping[window.first + t - window.offset]]
    return context[chars[0]:chars[-1] + 1] if chars else ''


def best_spans(examples, windows, start_logits, end_logits, max_answer=64):
    """{uid: answer text}: per question the best span over its windows."""
    contexts = {e.uid: e.context for e in examples}
    best = {}
    for w, st, en in zip(windows, start_logits, end_logits):
        score, s, e = best_span(w, st, en, max_answer)
        if s is not None and (w.uid not in best or score > best[w.uid][0]):
            best[w.uid] = (score, span_text(w, contexts[w.uid], s, e))
    return {uid: best.get(uid, (None, ''))[1] for uid in contexts}


# --------------------------------------------------------------------------
# texts (for vocabularies)
# --------------------------------------------------------------------------

def example_texts(example):
    """Every text of an example (for building a vocabulary)."""
    fields = ('text_a', 'text_b', 'context', 'question', 'left', 'right',
              'text')
    out = [getattr(example, f) for f in fields
           if isinstance(getattr(example, f, None), str)]
    for f in ('choices', 'candidates'):
        out += list(getattr(example, f, None) or [])
    return out


# --------------------------------------------------------------------------
# cluener
# --------------------------------------------------------------------------

def encode_ner(tokenizer, example, maxlen, labels, log=None):
    """(token_ids, segment_ids, spans, mapping): spans = [(type index,
    start position, end position)] of the entities that fit in ``maxlen``;
    mapping[position] = char indices ([] for [CLS] / [SEP]).

    An entity that cannot be a span of tokens is skipped and counted in
    ``log`` (a ``readers.SkipLog``): one cut off by ``maxlen``, or one whose
    first or last character sits inside a token that also holds characters
    outside it (e.g. 'Apple' in '😀Apple', which the tokenizer keeps as one
    token)."""
    _check_maxlen(maxlen, 3, 'the text')
    tokens = tokenizer.tokenize(example.text, maxlen=maxlen)
    mapping = tokenizer.rematch(example.text, tokens)
    starts = {chars[0]: i for i, chars in enumerate(mapping) if chars}
    ends = {chars[-1]: i for i, chars in enumerate(mapping) if chars}
    covered = max((chars[-1] for chars in mapping if chars), default=-1)
    spans = []
    for start, end, kind in example.entities:
        if start in starts and end in ends and kind in labels:
            spans.append((labels.index(kind), starts[start], ends[end]))
        elif log is not None and kind in labels:
            log.add('encoding at maxlen %d' % maxlen, 'skipped: entity %s' % (
                'beyond maxlen' if end > covered else
                'not on token boundaries (inside a merged token)'))
    ids = tokenizer.tokens_to_ids(tokens)
    return ids, [0] * len(ids), spans, mapping


def ner_targets(batch_spans, num_types, length):
    """Dense 0/1 targets [batch, types, length, length] of entity spans."""
    y = np.zeros((len(batch_spans), num_types, length, length), np.float32)
    for b, spans in enumerate(batch_spans):
        for k, s, e in spans:
            y[b, k, s, e] = 1
    return y


def decode_entities(scores, mapping, labels, threshold=0.0):
    """[(start, end, type)] char spans from GlobalPointer scores [types, L,
    L] of one text: entries > threshold with start ≤ end on real tokens."""
    found = set()
    for k, s, e in zip(*np.where(np.asarray(scores) > threshold)):
        if s <= e < len(mapping) and mapping[s] and mapping[e]:
            found.add((mapping[s][0], mapping[e][-1], labels[k]))
    return sorted(found)


def pad(sequences, length=None):
    """Right-padded int array (bert4keras ``sequence_padding``)."""
    return sequence_padding(sequences, length=length)
