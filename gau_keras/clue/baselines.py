"""Simple baselines to print beside a fine-tuned model on the same split: naive
Bayes for text classification (char n-grams), a dictionary of the training
entities for NER.

Multinomial naive Bayes with add-α smoothing over char 1..n-grams:
    log P(c | x) ∝ log P(c) + Σ_g count(g, x) · log((N_cg + α) / (N_c + α V))
(V = number of distinct training n-grams; unseen n-grams are ignored).

Example::

    nb = NaiveBayes(ngrams=2).fit(texts, labels)
    nb.predict(['这个手机很好用'])
    ed = EntityDictionary().fit(['我在北京'], [[(2, 3, 'LOC')]])
    ed.predict(['北京很大'])        # [[(0, 1, 'LOC')]]
    predict = fit_baseline(task)   # a loaded tnews-style or cluener task
    task.evaluate(dev, predict(dev))
"""
import collections
import math


def char_ngrams(text, n):
    """Char 1..n-grams of ``text`` (a list, repeats kept).

    >>> char_ngrams('很好', 2)
    ['很', '好', '很好']
    """
    return [text[i:i + k] for k in range(1, n + 1)
            for i in range(len(text) - k + 1)]


class NaiveBayes(object):
    """Multinomial naive Bayes on char n-grams."""

    def __init__(self, ngrams=2, alpha=1.0):
        self.ngrams, self.alpha = ngrams, alpha

    def fit(self, texts, labels):
        self.counts = collections.defaultdict(collections.Counter)
        self.prior = collections.Counter(labels)
        for text, label in zip(texts, labels):
            self.counts[label].update(char_ngrams(text, self.ngrams))
        self.vocab = set(g for c in self.counts.values() for g in c)
        self.totals = {c: sum(v.values()) for c, v in self.counts.items()}
        return self

    def log_scores(self, text):
        """{class: log P(c) + Σ log P(g | c)} of one text."""
        n = sum(self.prior.values())
        v = len(self.vocab)
        grams = [g for g in char_ngrams(text, self.ngrams) if g in self.vocab]
        out = {}
        for c in self.prior:
            denom = self.totals[c] + self.alpha * v
            out[c] = math.log(self.prior[c] / n) + sum(
                math.log((self.counts[c][g] + self.alpha) / denom)
                for g in grams)
        return out

    def predict(self, texts):
        return [max(s.items(), key=lambda kv: (kv[1], str(kv[0])))[0]
                for s in map(self.log_scores, texts)]


class EntityDictionary(object):
    """NER by memory: every entity string of the training set with its most
    frequent type; a text is tagged by greedy longest match from the left
    (a match never overlaps an earlier one).  Entities are (start, end,
    type) triples, end inclusive."""

    def fit(self, texts, entities):
        types = collections.defaultdict(collections.Counter)
        for text, found in zip(texts, entities):
            for start, end, kind in found:
                types[text[start:end + 1]][kind] += 1
        self.types = {s: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0]
                      for s, c in types.items() if s}
        self.longest = max(map(len, self.types), default=0)
        return self

    def predict(self, texts):
        out = []
        for text in texts:
            found, i = [], 0
            while i < len(text):
                for k in range(min(self.longest, len(text) - i), 0, -1):
                    kind = self.types.get(text[i:i + k])
                    if kind is not None:
                        found.append((i, i + k - 1, kind))
                        i += k
                        break
                else:
                    i += 1
            out.append(found)
        return out


def fit_baseline(task):
    """The simple method for ``task`` (a ``gau_keras.clue`` task), fitted on
    its train split, as a function of examples: the entity dictionary for
    NER (examples with ``entities``), char 1-2-gram naive Bayes on
    ``text_a`` for classification (class indices).  Score it on the same
    split with ``task.evaluate(examples, predict(examples))``."""
    train = task.load('train')
    if train and hasattr(train[0], 'entities'):
        model = EntityDictionary().fit([e.text for e in train],
                                       [e.entities for e in train])
        return lambda examples: model.predict([e.text for e in examples])
    model = NaiveBayes(2).fit([e.text_a for e in train],
                              [e.label for e in train])
    return lambda examples: model.predict([e.text_a for e in examples])
