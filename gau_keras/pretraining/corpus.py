"""The pretraining corpus: documents → word-grouped chunks → packed
sequences → padded batches, streamed.

The data path, each step a pure function of its inputs so a killed run
resumes on exactly the batch it would have trained next:

1. ``iter_documents(paths)``: documents from text files (one a line) or JSON
   lines (a text field), any number of files, streamed line by line; each
   comes with its position ``(epoch, file, byte offset)``.
2. ``DocumentEncoder``: the tokenizer's tokens, grouped into jieba words,
   cut into chunks of at most ``maxlen - 2`` tokens at word boundaries.
3. ``pack``: chunks packed into ``[CLS] doc1 [SEP] doc2 [SEP] …`` up to
   ``maxlen`` tokens; every token keeps the index of its word (-1 for
   [CLS]/[SEP]).
4. ``whole_word_mask`` (MLM) or ``lm_targets`` (causal LM), see
   :mod:`gau_keras.pretraining.masking`: sequence number ``i`` is masked
   with ``numpy.random.default_rng([seed, i])``.
5. ``PretrainingData.batches``: padded global batches ``((token_ids,
   segment_ids), (labels, weights, real))`` where ``weights`` sum to the
   batch size, so the Trainer's mean over the batch is the mean over chosen
   positions.

``data_index.jsonl`` in the workdir records where every ``index_every``-th
batch starts in the corpus, so a resume seeks there instead of re-reading.
The index is keyed on the corpus's content (``corpus_fingerprint``: each
file's size and first and last blocks), so a moved corpus keeps it and a
changed one rebuilds it (said).

Data problems raise :class:`CorpusError` naming the file and line: text
that is not UTF-8, a malformed JSON line, a JSON text field that is not a
string.  A document longer than ``PIECE_CHARS`` is tokenized in pieces cut
at sentence ends (linear time, whatever the line's length).

Example::

    from gau_keras.pretraining import PretrainingData
    data = PretrainingData(['corpus.txt'], 'vocab.txt', maxlen=128,
                           batch_size=32)
    x, (labels, weights, real) = next(iter(data.batches(0)))
"""
import collections
import glob
import hashlib
import json
import os
import queue
import threading

import numpy as np
import tensorflow as tf

from gau_keras.pretraining.masking import (MASK_RATE, OBJECTIVES,
                                           lm_targets, whole_word_mask)
from gau_keras.tokenizers import load_tokenizer


def expand_paths(patterns):
    """Files named by paths / glob patterns / folders (sorted, each once).

    Example::

        expand_paths(['data/*.txt', 'more.jsonl'])
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(p for p in glob.glob(os.path.join(pattern, '*'))
                           if os.path.isfile(p))
        else:
            found = sorted(glob.glob(pattern))
        if not found:
            raise FileNotFoundError('corpus %r matches no file' % pattern)
        files.extend(p for p in found if p not in files)
    return files


#: Documents are tokenized in pieces of at most this many characters (cut
#: after a sentence end or space in the piece's second half when there is
#: one): bert4keras's ``rematch`` is quadratic in the text length.
PIECE_CHARS = 4096
BREAKS = '\n。！？；!?;.…，, '
#: Bytes read at each end of a file for its fingerprint.
FINGERPRINT_BLOCK = 1 << 16


class CorpusError(ValueError):
    """A corpus line that cannot be used: the message names file and line
    (``path``, ``line``, ``offset`` = the line's byte offset)."""

    def __init__(self, message, path, offset):
        self.path, self.offset = path, offset
        self.line = line_number(path, offset)
        super().__init__('%s:%d (byte %d): %s' % (path, self.line, offset,
                                                  message))


def line_number(path, offset, block=1 << 20):
    """1-based number of the line starting at byte ``offset`` of ``path``."""
    count, done = 1, 0
    with open(path, 'rb') as f:
        while done < offset:
            data = f.read(min(block, offset - done))
            if not data:
                break
            count += data.count(b'\n')
            done += len(data)
    return count


def is_json_lines(path):
    """JSON lines for ``*.json`` / ``*.jsonl``; else one document a line."""
    return path.endswith(('.json', '.jsonl'))


def document_text(line, path, offset, text_field):
    """The text of one raw corpus line ('' for a blank line); CorpusError
    for bytes that are not UTF-8, malformed JSON, a missing or non-string
    text field."""
    try:
        line = line.decode('utf-8').strip()
    except UnicodeDecodeError as e:
        raise CorpusError(
            'not UTF-8 text (byte 0x%02x at byte %d of the line: %s); the '
            'corpus must be UTF-8: convert it, e.g. iconv -f GBK -t UTF-8'
            % (line[e.start], e.start, e.reason), path, offset) from None
    if line.startswith('\ufeff'):
        line = line[1:].strip()
    if not line or not is_json_lines(path):
        return line
    try:
        item = json.loads(line)
    except ValueError as e:
        raise CorpusError('malformed JSON line (%s)' % e, path,
                          offset) from None
    if not isinstance(item, dict) or text_field not in item:
        raise CorpusError('JSON line has no field %r (name the field with '
                          'text_field / --text_field)' % text_field, path,
                          offset)
    text = item[text_field]
    if not isinstance(text, str):
        raise CorpusError('field %r is %s, not text' % (
            text_field, json.dumps(text, ensure_ascii=False)[:80]), path,
            offset)
    return text.strip()


def iter_documents(paths, start=(0, 0, 0), text_field='text', epochs=None):
    """Yields ``((epoch, file_index, byte_offset), text)`` forever (or for
    ``epochs``), cycling through ``paths`` from position ``start``; never
    holds more than one line in memory.

    Example::

        for (epoch, f, offset), text in iter_documents(['a.txt']): ...
    """
    epoch, first_file, first_offset = start
    any_text = False
    while epochs is None or epoch < epochs:
        for index in range(first_file, len(paths)):
            path = paths[index]
            with open(path, 'rb') as f:
                offset = first_offset if index == first_file else 0
                f.seek(offset)
                for line in iter(f.readline, b''):
                    text = document_text(line, path, offset, text_field)
                    if text:
                        any_text = True
                        yield (epoch, index, offset), text
                    offset += len(line)
        if not any_text and first_file == 0 and first_offset == 0:
            raise ValueError('the corpus %s holds no text' % (paths,))
        epoch, first_file, first_offset = epoch + 1, 0, 0


class DocumentEncoder(object):
    """Text → chunks ``[(token_ids, word_ids)]`` of at most ``maxlen - 2``
    tokens, cut at word boundaries (a word longer than that is split).

    The tokens are the tokenizer's on the whole text (as fine-tuning sees
    them); a word is a jieba word, aligned by character offsets
    (``Tokenizer.rematch``), widened to whole word pieces: a '##'
    continuation joins the word of the token before it.

    Example::

        enc = DocumentEncoder(tokenizer, maxlen=128)
        chunks = enc('今天天气很好')   # [([ids...], [0, 0, 1, 1, 2, 3])]
    """

    def __init__(self, tokenizer, maxlen):
        import jieba
        jieba.setLogLevel(60)
        jieba.initialize()
        self._cut = jieba.lcut
        self.tokenizer = tokenizer
        self.capacity = int(maxlen) - 2
        if self.capacity < 1:
            raise ValueError('maxlen must be >= 3, got %r' % maxlen)

    def words(self, text):
        """(token ids, word index of each token) of ``text``, tokenized in
        pieces of at most ``PIECE_CHARS`` characters (``split_text``)."""
        ids, word_ids = [], []
        for piece in split_text(text):
            piece_ids, piece_words = self.piece_words(piece)
            first = word_ids[-1] + 1 if word_ids else 0
            ids += piece_ids
            word_ids += [first + w for w in piece_words]
        return ids, word_ids

    def piece_words(self, text):
        """``words`` of one piece of text."""
        tokens = self.tokenizer.tokenize(text)[1:-1]
        if not tokens:
            return [], []
        spans = self.tokenizer.rematch(text, tokens)
        word_of_char, w = np.zeros(len(text), np.int64), 0
        for word in self._cut(text):
            word_of_char[w:w + len(word)] = w
            w += len(word)
        word_ids, previous = [], None
        for token, span in zip(tokens, spans):
            jieba_word = word_of_char[span[0]] if span else previous
            if not word_ids:
                word_ids.append(0)
            elif token.startswith('##') or jieba_word == previous:
                word_ids.append(word_ids[-1])
            else:
                word_ids.append(word_ids[-1] + 1)
            previous = jieba_word
        return self.tokenizer.tokens_to_ids(tokens), word_ids

    def __call__(self, text):
        return list(self.iter_chunks(text))

    def iter_chunks(self, text):
        """The chunks of ``text`` one by one, tokenizing a piece of it
        (``split_text``) at a time: the first chunks of a huge document
        come after one piece's work, not the whole document's."""
        ids, word_ids, next_word = [], [], 0
        for piece in split_text(text):
            piece_ids, piece_words = self.piece_words(piece)
            ids += piece_ids
            word_ids += [next_word + w for w in piece_words]
            next_word = word_ids[-1] + 1 if word_ids else 0
            while len(ids) > self.capacity:
                yield self._take(ids, word_ids)
        while ids:
            yield self._take(ids, word_ids)

    def _take(self, ids, word_ids):
        """Remove the next chunk from the front of ``ids`` / ``word_ids``
        and return it: at most ``capacity`` tokens, ending at a word
        boundary when the word after it starts inside the window."""
        n = len(ids)
        end = min(self.capacity, n)
        if end < n and word_ids[end] == word_ids[end - 1]:
            cut = end - 1          # back to the start of that word
            while cut > 0 and word_ids[cut - 1] == word_ids[end]:
                cut -= 1
            end = cut if cut > 0 else end
        first = word_ids[0]
        chunk = (ids[:end], [w - first for w in word_ids[:end]])
        del ids[:end], word_ids[:end]
        return chunk


def split_text(text, size=PIECE_CHARS):
    """``text`` in pieces of at most ``size`` characters, each cut after
    the last of ``BREAKS`` in its second half (else at ``size``).

    >>> split_text('ab。cd。ef', 4)
    ['ab。', 'cd。', 'ef']
    """
    pieces, start = [], 0
    while len(text) - start > size:
        half = start + size // 2
        window = text[half:start + size]
        cut = max(window.rfind(c) for c in BREAKS)
        end = half + cut + 1 if cut >= 0 else start + size
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def iter_chunks(paths, encoder, start=(0, 0, 0, 0), text_field='text',
                epochs=None):
    """Yields ``(state, (token_ids, word_ids))`` with state ``(epoch, file,
    offset, chunk)``: restarting at a state reproduces what follows."""
    epoch, index, offset, first_chunk = start
    for pos, text in iter_documents(paths, (epoch, index, offset),
                                    text_field, epochs):
        chunks = getattr(encoder, 'iter_chunks', encoder)(text)
        skip = first_chunk if pos == (epoch, index, offset) else 0
        for c, chunk in enumerate(chunks):
            if c >= skip:
                yield pos + (c,), chunk


Sequence = collections.namedtuple('Sequence', 'state token_ids word_ids')


def pack(chunks, maxlen, cls_id, sep_id):
    """Packs ``(state, (ids, word_ids))`` chunks into sequences ``[CLS] a
    [SEP] b [SEP] …`` of at most ``maxlen`` tokens; ``word_ids`` are unique
    within a sequence, -1 on [CLS]/[SEP].  Each ``Sequence.state`` is its
    first chunk's state.

    Example::

        for seq in pack(iter_chunks(paths, enc), 128, 2, 3): ...
    """
    state, tokens, words, next_word = None, [], [], 0
    for chunk_state, (ids, word_ids) in chunks:
        if tokens and len(tokens) + len(ids) + 1 > maxlen:
            yield Sequence(state, tokens, words)
            tokens = []
        if not tokens:
            state, tokens, words, next_word = chunk_state, [cls_id], [-1], 0
        tokens = tokens + list(ids) + [sep_id]
        words = words + [next_word + w for w in word_ids] + [-1]
        next_word += (max(word_ids) + 1) if word_ids else 0
    if tokens:
        yield Sequence(state, tokens, words)


def pad_batch(rows, pad_id=0):
    """(inputs, labels, chosen) rows → padded arrays
    ``((token_ids, segment_ids), (labels, weights, real))``;
    ``weights = chosen · B / Σchosen`` so the batch mean of
    ``Σ_t weights·loss_t`` is the mean loss over the chosen positions."""
    size = len(rows)
    length = max(len(r[0]) for r in rows)
    ids = np.full((size, length), pad_id, np.int32)
    labels = np.zeros((size, length), np.int32)
    chosen = np.zeros((size, length), np.float32)
    real = np.zeros((size, length), np.float32)
    for i, (inputs, lab, ch) in enumerate(rows):
        n = len(inputs)
        ids[i, :n], labels[i, :n], chosen[i, :n], real[i, :n] = \
            inputs, lab, ch, 1.0
    weights = chosen * (size / max(chosen.sum(), 1.0))
    return (ids, np.zeros_like(ids)), (labels, weights.astype(np.float32),
                                       real)


def file_fingerprint(path, block=FINGERPRINT_BLOCK):
    """SHA-1 (hex) of a file's size and its first and last ``block`` bytes:
    the same wherever the file is moved, another when it is appended to,
    cut or rewritten at either end; read in constant time."""
    size = os.path.getsize(path)
    digest = hashlib.sha1(str(size).encode())
    with open(path, 'rb') as f:
        digest.update(f.read(block))
        f.seek(max(size - block, 0))
        digest.update(f.read(block))
    return digest.hexdigest()


def corpus_fingerprint(paths):
    """The ``file_fingerprint`` of each corpus file, in order (the order
    shapes the batch stream too)."""
    return [file_fingerprint(p) for p in paths]


def corpus_signature(paths, maxlen, batch_size, vocab_size, objective):
    """A digest of what fixes the batch stream: the files' contents in
    order (``corpus_fingerprint``, not their paths) and the settings."""
    parts = [maxlen, batch_size, vocab_size, objective]
    parts += corpus_fingerprint(paths)
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


class PretrainingData(object):
    """The batch stream of a pretraining run, a pure function of the batch
    number (``batches(position)`` starts at any position).

    Arguments: ``paths`` (files / globs / folders), ``vocab`` (vocab.txt),
    ``maxlen``, ``batch_size`` (global), ``objective`` 'mlm' or 'lm',
    ``seed``, ``text_field`` for JSON lines, ``index_path`` (where to record
    batch positions; None: no index), ``index_every``.

    Example::

        data = PretrainingData('corpus/*.txt', 'vocab.txt', 128, 32)
        dataset = data.dataset(position=0)       # tf.data, prefetching
    """

    def __init__(self, paths, vocab, maxlen=512, batch_size=32,
                 objective='mlm', seed=0, text_field='text',
                 index_path=None, index_every=100, mask_rate=MASK_RATE,
                 epochs=None):
        if objective not in OBJECTIVES:
            raise ValueError('objective must be one of %s, got %r'
                             % (OBJECTIVES, objective))
        self.paths = expand_paths(paths)
        self.tokenizer = load_tokenizer(vocab) if isinstance(vocab, str) \
            else vocab
        self.maxlen, self.batch_size = int(maxlen), int(batch_size)
        self.objective, self.seed = objective, int(seed)
        self.text_field, self.mask_rate = text_field, float(mask_rate)
        self.epochs = epochs
        self.encoder = DocumentEncoder(self.tokenizer, self.maxlen)
        tok = self.tokenizer
        self.vocab_size = tok._vocab_size
        self.special_ids = sorted({tok._token_pad_id, tok._token_unk_id,
                                   tok._token_start_id, tok._token_end_id,
                                   tok._token_mask_id})
        self.random_ids = np.setdiff1d(np.arange(self.vocab_size),
                                       self.special_ids).astype(np.int32)
        self.signature = corpus_signature(self.paths, self.maxlen,
                                          self.batch_size, self.vocab_size,
                                          objective)
        self.index_path, self.index_every = index_path, int(index_every)
        self._lock = threading.Lock()
        self._said_rebuild = False
        self._error = None      # the data error behind a tf.data failure

    # -- sequences -----------------------------------------------------------

    def sequences(self, start=(0, 0, 0, 0)):
        """Packed sequences from chunk state ``start``."""
        tok = self.tokenizer
        return pack(iter_chunks(self.paths, self.encoder, start,
                                self.text_field, self.epochs),
                    self.maxlen, tok._token_start_id, tok._token_end_id)

    def example(self, sequence, number):
        """(inputs, labels, chosen) of packed sequence number ``number``."""
        if self.objective == 'lm':
            return lm_targets(sequence.token_ids)
        rng = np.random.default_rng([self.seed, int(number)])
        return whole_word_mask(sequence.token_ids, sequence.word_ids, rng,
                               self.tokenizer._token_mask_id,
                               self.random_ids, self.mask_rate)

    # -- data index ----------------------------------------------------------

    def read_index(self):
        """{batch number: chunk state} recorded for this corpus/settings.

        Entries of another corpus content or settings are ignored; when
        the file holds only such entries the index is rebuilt, said once.
        """
        found, others = {}, 0
        if not self.index_path or not os.path.exists(self.index_path):
            return found
        with open(self.index_path, encoding='utf-8') as f:
            for line in f:
                try:
                    item = json.loads(line)
                    if item['signature'] == self.signature:
                        found[int(item['batch'])] = tuple(item['state'])
                    else:
                        others += 1
                except (ValueError, KeyError, TypeError):
                    continue        # a line cut by a kill
        if others and not found and not self._said_rebuild:
            self._said_rebuild = True
            print('data index %s: its %d entries are for another corpus '
                  'content or batch settings (signature %s differs): '
                  'rebuilding it, reading the corpus from its start'
                  % (self.index_path, others, self.signature))
        return found

    def _record(self, batch, state, known):
        if not self.index_path or batch % self.index_every or batch in known:
            return
        known[batch] = state
        with self._lock, open(self.index_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps({'batch': batch, 'state': list(state),
                                'signature': self.signature}) + '\n')

    def start_for(self, position):
        """(batch number, chunk state) to start reading from for
        ``position``: the nearest recorded batch at or before it."""
        known = self.read_index()
        best = max((b for b in known if b <= position), default=None)
        if best is None:
            return 0, (0, 0, 0, 0), known
        return best, known[best], known

    # -- batches -------------------------------------------------------------

    def batches(self, position=0):
        """Global batches number ``position``, ``position + 1``, … (numpy).
        """
        batch, state, known = self.start_for(int(position))
        rows, first = [], None
        for sequence in self.sequences(state):
            if first is None:
                first = sequence.state
            if batch >= position:
                number = batch * self.batch_size + len(rows)
                rows.append(self.example(sequence, number))
            else:
                rows.append(None)
            if len(rows) == self.batch_size:
                self._record(batch, first, known)
                if batch >= position:
                    yield pad_batch(rows, self.tokenizer._token_pad_id)
                batch, rows, first = batch + 1, [], None

    def output_signature(self):
        ids = tf.TensorSpec((self.batch_size, None), tf.int32)
        value = tf.TensorSpec((self.batch_size, None), tf.float32)
        return (ids, ids), (ids, value, value)

    def dataset(self, position=0, prefetch=8):
        """``tf.data`` of the batches from ``position``: the generator
        (jieba, packing, masking) runs in tf.data's background thread while
        the model trains."""
        ds = tf.data.Dataset.from_generator(
            lambda: self._kept_errors(self.batches(position)),
            output_signature=self.output_signature())
        return ds.prefetch(prefetch)

    def _kept_errors(self, batches):
        """``batches``, keeping the data error that stops them (tf.data
        reports it wrapped in an InvalidArgumentError)."""
        try:
            yield from batches
        except Exception as e:
            self._error = e
            raise

    def checked(self, dataset):
        """Iterate ``dataset`` (a ``self.dataset``); a data error inside
        tf.data is raised as itself (e.g. CorpusError naming file and
        line), not as TensorFlow's IteratorGetNext error."""
        try:
            yield from dataset
        except tf.errors.OpError:
            if self._error is not None:
                raise self._error from None
            raise

    def dataset_fn(self, prefetch=8):
        """For ``Trainer``: ``position → iterable of batches`` (data errors
        raised as themselves, see ``checked``)."""
        return lambda position: self.checked(self.dataset(position,
                                                          prefetch))


def threaded(iterable, size=8):
    """A prefetching iterator: ``iterable`` runs in a thread, ``size`` ahead.
    Example::

        for batch in threaded(data.batches(0)): ...
    """
    q, done = queue.Queue(size), object()

    def run():
        try:
            for item in iterable:
                q.put(item)
        except BaseException as e:     # handed to the consumer
            q.put(e)
            return
        q.put(done)
    threading.Thread(target=run, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def fixed_batches(data, count, position=0):
    """``count`` batches from ``position`` as a list (a fixed eval set)."""
    out = []
    for batch in data.batches(position):
        out.append(batch)
        if len(out) == count:
            break
    return out
