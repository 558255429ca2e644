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

``load_tokenizer(vocab)`` opens a BERT-style vocab.txt and checks that it
holds the special tokens every gau_keras pipeline uses.
"""
import os

from bert4keras import tokenizers as _b4k

load_vocab = _b4k.load_vocab
save_vocab = _b4k.save_vocab
TokenizerBase = _b4k.TokenizerBase
Tokenizer = _b4k.Tokenizer
SpTokenizer = _b4k.SpTokenizer

#: The special tokens of a BERT-style vocab, in the order vocab builders
#: write them (ids 0-4).
SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')


def load_tokenizer(vocab, do_lower_case=True):
    """bert4keras's ``Tokenizer`` on a BERT-style vocab.txt (one token a
    line) that holds every token of ``SPECIAL_TOKENS``.

    A missing file raises FileNotFoundError, a vocab without one of the
    special tokens ValueError naming the file and the token.  Example::

        tokenizer = load_tokenizer('vocab.txt')
        token_ids, segment_ids = tokenizer.encode('很好')
    """
    vocab = str(vocab)
    if not os.path.isfile(vocab):
        raise FileNotFoundError('vocab file %s does not exist' % vocab)
    tokenizer = Tokenizer(vocab, do_lower_case=do_lower_case)
    for token in SPECIAL_TOKENS:
        if token not in tokenizer._token_dict:
            raise ValueError('%s: vocab has no %s token' % (vocab, token))
    return tokenizer


__all__ = ['load_vocab', 'save_vocab', 'TokenizerBase', 'Tokenizer',
           'SpTokenizer', 'SPECIAL_TOKENS', 'load_tokenizer']


# Every other public name of bert4keras.tokenizers, so that
# `from bert4keras.tokenizers import X` ports as `from gau_keras.tokenizers import X`
# (gau_keras.bert4keras_names: what is left out and why).
from gau_keras.bert4keras_names import reexport as _reexport  # noqa: E402
_reexport(globals(), 'tokenizers')
