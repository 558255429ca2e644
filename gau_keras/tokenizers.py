"""bert4keras's tokenizers, re-exported (they work unchanged on this stack).

Port a script by changing its import line only::

    from bert4keras.tokenizers import Tokenizer, load_vocab
    # becomes
    from gau_keras.tokenizers import Tokenizer, load_vocab

Example::

    from gau_keras import corpora
    from gau_keras.tokenizers import Tokenizer
    vocab = corpora.build_char_vocab(corpora.sentiment_texts(limit=100))
    tokenizer = Tokenizer({t: i for i, t in enumerate(vocab)})
    token_ids, segment_ids = tokenizer.encode('很好', maxlen=32)
"""
from bert4keras import tokenizers as _b4k

load_vocab = _b4k.load_vocab
save_vocab = _b4k.save_vocab
TokenizerBase = _b4k.TokenizerBase
Tokenizer = _b4k.Tokenizer
SpTokenizer = _b4k.SpTokenizer

__all__ = ['load_vocab', 'save_vocab', 'TokenizerBase', 'Tokenizer',
           'SpTokenizer']
