"""Plain text and char vocabs for bert4keras's ``Tokenizer``.

Example::

    from gau_keras.datasets import text
    vocab = text.build_tokenizer_vocab(['今天天气很好', 'GAU-α模型'])
    text.save_vocab(vocab, '/tmp/vocab.txt')
"""
import collections
import os

from gau_keras.files import atomic_write
from gau_keras.tokenizers import SPECIAL_TOKENS


def read_lines(path, limit=None):
    """Non-empty stripped lines of a UTF-8 file (at most ``limit``)."""
    out = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(line)
                if limit is not None and len(out) >= limit:
                    break
    return out


def build_char_vocab(texts, max_size=None, min_count=1):
    """Special tokens, then characters by falling frequency (ties: by char)."""
    counts = collections.Counter(ch for text in texts for ch in text
                                 if not ch.isspace())
    chars = sorted((c for c in counts if counts[c] >= min_count),
                   key=lambda c: (-counts[c], c))
    vocab = list(SPECIAL_TOKENS) + [c for c in chars
                                    if c not in SPECIAL_TOKENS]
    return vocab[:max_size] if max_size else vocab


def save_vocab(vocab, path):
    """Writes one token a line (bert4keras / BERT vocab.txt format)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_write(path) as f:
        f.write('\n'.join(vocab) + '\n')
    return path


def _tokenizer_units(text, lower=True):
    """The units a char vocab needs for bert4keras's Tokenizer on ``text``:
    CJK chars and punctuation alone; in runs of other chars (Latin words,
    digits) the first char alone and the rest as '##' + char."""
    from bert4keras.snippets import lowercase_and_normalize
    from bert4keras.tokenizers import Tokenizer
    if lower:
        text = lowercase_and_normalize(text)
    units, in_word = [], False
    for ch in text:
        if ch.isspace() or Tokenizer._is_control(ch) or ord(ch) in (0,
                                                                    0xfffd):
            in_word = False
        elif Tokenizer._is_punctuation(ch) or Tokenizer._is_cjk_character(ch):
            units.append(ch)
            in_word = False
        else:
            units.append('##' + ch if in_word else ch)
            in_word = True
    return units


def build_tokenizer_vocab(texts, max_size=None, min_count=1, lower=True):
    """A char vocab that bert4keras's ``Tokenizer(vocab, do_lower_case=
    lower)`` tokenizes ``texts`` with, [UNK]-free: special tokens first, then
    chars and '##'-continuations by falling frequency (ties: by token).

    Example::

        vocab = build_tokenizer_vocab(['GAU-α模型'])
        # ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '##a', '##u',
        #  '-', 'g', 'α', '型', '模']
    """
    counts = collections.Counter(u for text in texts
                                 for u in _tokenizer_units(text, lower))
    units = sorted((u for u in counts if counts[u] >= min_count
                    and u not in SPECIAL_TOKENS),
                   key=lambda u: (-counts[u], u))
    vocab = list(SPECIAL_TOKENS) + units
    return vocab[:max_size] if max_size else vocab


def without_overlap(texts, held_out, ngram=16):
    """``texts`` without those sharing a character ``ngram``-gram with any
    of ``held_out`` (a text shorter than ``ngram`` is its own gram), so that
    no evaluation text is also trained on, however the two sides split it
    into lines.  Returns (kept texts, number removed).  Example::

        train, removed = without_overlap(sentences, ner_dev_texts)
    """
    def grams(text):
        text = text.strip()
        if len(text) <= ngram:
            return {text} if text else set()
        return {text[i:i + ngram] for i in range(len(text) - ngram + 1)}
    banned = set()
    for text in held_out:
        banned |= grams(text)
    kept = [t for t in texts if banned.isdisjoint(grams(t))]
    return kept, len(texts) - len(kept)
