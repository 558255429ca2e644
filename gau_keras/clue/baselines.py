"""A naive-Bayes baseline for text classification (char n-grams), to print
beside a fine-tuned model on the same split.

Multinomial naive Bayes with add-α smoothing over char 1..n-grams:
    log P(c | x) ∝ log P(c) + Σ_g count(g, x) · log((N_cg + α) / (N_c + α V))
(V = number of distinct training n-grams; unseen n-grams are ignored).

Example::

    nb = NaiveBayes(ngrams=2).fit(texts, labels)
    nb.predict(['这个手机很好用'])
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
