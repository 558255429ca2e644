"""bert4keras's ``Tokenizer`` (BERT vocab.txt) as TensorFlow ops, so a
SavedModel can take raw text and still see the token ids fine-tuning saw.

The steps are bert4keras's, in graph ops:

1. per character: (``do_lower_case``) lower-case, NFD, drop combining
   marks (Mn); spaces (``\\t\\n\\r``, Zs, and U+2028/2029, which Python's
   ``str.split`` splits on) become ' '; controls and format characters
   (Cc, Cf) and U+FFFD are dropped;
2. split at spaces, and around punctuation (ASCII symbols and Unicode P*)
   and CJK ideographs (bert4keras's ranges), each kept as its own word;
3. a word longer than 200 characters is one [UNK]; other words go through
   tensorflow-text's ``WordpieceTokenizer`` (the word-piece stage of
   ``tensorflow_text.BertTokenizer``: greedy longest match, '##'
   continuations, a word with an unknown piece → one [UNK]);
4. truncation to ``maxlen`` as ``Tokenizer.encode``: the longer of the two
   texts loses its last token first (the first text on ties).

``tensorflow_text.BertTokenizer`` itself is not used whole: its
``lower_case=True`` folds full-width forms (``，`` → ``,``) and its split
treats only ASCII whitespace as space, so its ids differ from
bert4keras's on most Chinese texts.  Character offsets of every token in
the original text come along (for entity spans), computed as bert4keras's
``rematch`` does.

Example::

    tok = GraphTokenizer(tokenizer._token_dict, do_lower_case=True,
                         maxlen=128)
    ids, segs = tok.encode(tf.constant(['今天天气很好']))   # int32 [b, n]
"""
import tensorflow as tf
import tensorflow_text as tf_text

WORD_MAXLEN = 200                      # bert4keras Tokenizer's word_maxlen
MAX_BYTES_PER_WORD = 4 * WORD_MAXLEN   # every word up to 200 chars is tried
PUNCTUATION = r'\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}\p{P}'
CJK = (r'\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}'
       r'\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}'
       r'\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}')
ALONE = '[' + PUNCTUATION + CJK + ']'
SPACE = r'[\t\n\r\p{Zs}\x{2028}\x{2029}]'
DROPPED = r'[\p{Cc}\p{Cf}\x{FFFD}]'


class GraphTokenizer(tf.Module):
    """Token ids (and char offsets) of a batch of strings, in TF ops.

    ``token_dict`` maps token → id (bert4keras ``Tokenizer._token_dict``);
    it must hold [UNK], [CLS] and [SEP].  Ids are int32.
    """

    def __init__(self, token_dict, do_lower_case=True, maxlen=512,
                 name=None):
        super().__init__(name=name)
        keys = list(token_dict)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.string),
                tf.constant([token_dict[k] for k in keys], tf.int64)), -1)
        self.unk = int(token_dict['[UNK]'])
        self.cls = int(token_dict['[CLS]'])
        self.sep = int(token_dict['[SEP]'])
        self.do_lower_case = bool(do_lower_case)
        self.maxlen = int(maxlen)
        self.wordpiece = tf_text.WordpieceTokenizer(
            self.table, max_bytes_per_word=MAX_BYTES_PER_WORD,
            token_out_type=tf.string, unknown_token='[UNK]')

    # ---- text → pieces -----------------------------------------------------
    def normalized_chars(self, texts):
        """Ragged [b, chars] of each original character's normalized form
        (possibly empty or several characters)."""
        chars = tf.strings.unicode_split(texts, 'UTF-8')
        flat = chars.flat_values
        if self.do_lower_case:
            flat = tf.strings.lower(flat, encoding='utf-8')
            flat = tf_text.normalize_utf8(flat, 'NFD')
            flat = tf.strings.regex_replace(flat, r'\p{Mn}', '')
        flat = tf.strings.regex_replace(flat, SPACE, ' ')
        flat = tf.strings.regex_replace(flat, DROPPED, '')
        return chars.with_flat_values(flat)

    def pieces(self, texts):
        """(ids, first char, last char): ragged [b, tokens] int32; the char
        indices are into the original strings (inclusive)."""
        chars = self.normalized_chars(texts)
        normalized = tf.strings.reduce_join(chars, axis=-1)
        words, begin, _ = tf_text.regex_split_with_offsets(
            normalized, ' |' + ALONE, ALONE)
        too_long = tf.strings.length(words.flat_values,
                                     unit='UTF8_CHAR') > WORD_MAXLEN
        flat_words = tf.where(too_long, '[UNK]', words.flat_values)
        tokens, p_begin, p_end = self.wordpiece.tokenize_with_offsets(
            flat_words)
        word_of_piece = tokens.value_rowids()
        word_bytes = tf.cast(tf.strings.length(words.flat_values), tf.int64)
        p_begin = tf.where(tf.gather(too_long, word_of_piece),
                           tf.zeros_like(p_begin.flat_values),
                           p_begin.flat_values)
        p_end = tf.where(tf.gather(too_long, word_of_piece),
                         tf.gather(word_bytes, word_of_piece),
                         p_end.flat_values)
        start = tf.gather(begin.flat_values, word_of_piece) + p_begin
        end = tf.gather(begin.flat_values, word_of_piece) + p_end
        row_of_word = words.value_rowids()
        row = tf.gather(row_of_word, word_of_piece)
        first, last = self._char_indices(chars, row, start, end)
        ids = tf.cast(self.table.lookup(tokens.flat_values), tf.int32)
        ids = tf.where(ids < 0, self.unk, ids)
        splits = tf.RaggedTensor.from_value_rowids(
            ids, row, nrows=tf.shape(texts, out_type=tf.int64)[0])
        return (splits, splits.with_flat_values(first),
                splits.with_flat_values(last))

    @staticmethod
    def _char_indices(chars, row, start, end):
        """Original char index of byte ``start`` and of byte ``end - 1`` of
        each piece (bytes of the row's normalized text)."""
        nbytes = tf.strings.length(chars.flat_values)
        owner = tf.repeat(tf.range(tf.size(nbytes, out_type=tf.int64)),
                          tf.cast(nbytes, tf.int64))
        row_bytes = tf.reduce_sum(tf.RaggedTensor.from_row_splits(
            tf.cast(nbytes, tf.int64), chars.row_splits), axis=1)
        row_byte_start = tf.concat(
            [tf.zeros([1], tf.int64), tf.cumsum(row_bytes)], 0)
        row_char_start = chars.row_splits
        base = tf.gather(row_byte_start, row)
        first = tf.gather(owner, base + start) - tf.gather(row_char_start,
                                                           row)
        last = tf.gather(owner, base + end - 1) - tf.gather(row_char_start,
                                                            row)
        return tf.cast(first, tf.int32), tf.cast(last, tf.int32)

    # ---- pieces → model inputs ---------------------------------------------
    def encode(self, texts, texts_b=None):
        """(token_ids, segment_ids) int32 [b, n] (0-padded) as
        ``Tokenizer.encode(text, text_b, maxlen=maxlen)``."""
        a, _, _ = self.pieces(texts)
        if texts_b is None:
            a = _keep(a, tf.minimum(a.row_lengths(), self.maxlen - 2))
            return self._assemble(a, None)
        b, _, _ = self.pieces(texts_b)
        keep_a, keep_b = truncated_lengths(
            a.row_lengths() + 2, b.row_lengths() + 2, self.maxlen + 1)
        return self._assemble(_keep(a, keep_a - 2), _keep(b, keep_b - 2))

    def encode_with_offsets(self, texts):
        """(token_ids, segment_ids, first char, last char) [b, n] int32 of
        single texts; the char indices are -1 at [CLS], [SEP] and padding."""
        ids, first, last = self.pieces(texts)
        keep = tf.minimum(ids.row_lengths(), self.maxlen - 2)
        ids, first, last = (_keep(x, keep) for x in (ids, first, last))
        token_ids, segs = self._assemble(ids, None)
        none = _column(ids, -1)
        first = tf.concat([none, first, none], 1).to_tensor(-1)
        last = tf.concat([none, last, none], 1).to_tensor(-1)
        return token_ids, segs, first, last

    def _assemble(self, a, b):
        parts = [_column(a, self.cls), a, _column(a, self.sep)]
        segs = [tf.zeros_like(x) for x in parts]
        if b is not None:
            parts += [b, _column(b, self.sep)]
            segs += [tf.ones_like(b), _column(b, 1)]
        return (tf.concat(parts, 1).to_tensor(0),
                tf.concat(segs, 1).to_tensor(0))


def _column(ragged, value):
    """A ragged [b, 1] of ``value`` (one item per row, empty rows too)."""
    rows = ragged.nrows()
    return tf.RaggedTensor.from_row_lengths(
        tf.fill([rows], tf.constant(value, ragged.dtype)),
        tf.ones([rows], rows.dtype))


def _keep(ragged, lengths):
    """The first ``lengths[i]`` items of each row."""
    positions = tf.ragged.range(ragged.row_lengths())
    return tf.ragged.boolean_mask(
        ragged, positions < tf.cast(lengths, positions.dtype)[:, None])


def truncated_lengths(len_a, len_b, total):
    """Lengths after bert4keras's ``truncate_sequences(total, -2, a, b)``:
    while too long, the longer sequence (the first on ties) loses a token.
    Works on numbers and tensors alike."""
    half_up = (total + 1) // 2
    over = len_a + len_b > total
    cut_b = _minimum(len_b, _maximum(total - len_a, half_up))
    new_b = _where(over, cut_b, len_b)
    new_a = _where(over, total - new_b, len_a)
    return new_a, new_b


def _minimum(x, y):
    return tf.minimum(x, y) if tf.is_tensor(x) else min(x, y)


def _maximum(x, y):
    return tf.maximum(x, y) if tf.is_tensor(x) else max(x, y)


def _where(c, x, y):
    return tf.where(c, x, y) if tf.is_tensor(c) else (x if c else y)
