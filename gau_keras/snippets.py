"""bert4keras's snippets, working on tf-keras 2.21 under every precision.

Port a script by changing its import line only::

    from bert4keras.snippets import sequence_padding, DataGenerator
    # becomes
    from gau_keras.snippets import sequence_padding, DataGenerator

Everything that works unchanged is bert4keras's own object (re-exported by
name).  Replaced, under the same names and signatures:

- ``AutoRegressiveDecoder.last_token(model)``: bert4keras's builds a Lambda
  layer under the global policy, so under ``mixed_float16`` /
  ``mixed_bfloat16`` the probabilities come back rounded to 16 bits; this one
  returns the float32 outputs exactly, predicts through one ``tf.function``
  (no ``Model.predict`` set-up per token), and for a causal FLASH model
  (``model='flash', application='lm'``) decodes with
  ``gau_keras.decoding.FlashDecoder``'s cache: each step feeds only the new
  token, whichever beams ``beam_search`` / ``random_sample`` keep.
- ``DataGenerator.forfit`` / ``fortest``: tf-keras 2.21 splits a *list* of
  inputs yielded with y = None (``yield [token_ids, segment_ids], None``,
  bert4keras's idiom for ``Loss``-layer models) into x and y; these yield
  the inputs as a tuple, which it keeps whole.
- ``strQ2B``: bert4keras's calls Python 2's ``unichr`` (NameError).
- ``WebServing``: bert4keras's calls ``tf.get_default_graph`` (TF1) and
  needs bottle; this one (``gau_keras.serving.http.WebServing``) has the
  same ``route`` / ``start`` / ``arguments`` API and answers on the
  standard library's threaded HTTP server.
- ``uniout``: ``from gau_keras.snippets import uniout`` works (a no-op on
  Python 3, as bert4keras's import hook).

Example (UniLM generation, as bert4keras's examples)::

    class AutoTitle(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype='probas')
        def predict(self, inputs, output_ids, states):
            token_ids, segment_ids = inputs
            token_ids = np.concatenate([token_ids, output_ids], 1)
            segment_ids = np.concatenate(
                [segment_ids, np.ones_like(output_ids)], 1)
            return self.last_token(model).predict([token_ids, segment_ids])
"""
import numpy as np
import tensorflow as tf
from bert4keras import snippets as _b4k

# bert4keras's own pieces that work unchanged on this stack.
to_array = _b4k.to_array
is_string = _b4k.is_string
string_matching = _b4k.string_matching
convert_to_unicode = _b4k.convert_to_unicode
convert_to_str = _b4k.convert_to_str
lowercase_and_normalize = _b4k.lowercase_and_normalize
open = _b4k.open  # noqa: A001  (bert4keras's name, shadowing on purpose)
parallel_apply_generator = _b4k.parallel_apply_generator
parallel_apply = _b4k.parallel_apply
sequence_padding = _b4k.sequence_padding
truncate_sequences = _b4k.truncate_sequences
text_segmentate = _b4k.text_segmentate
is_one_of = _b4k.is_one_of
ViterbiDecoder = _b4k.ViterbiDecoder
softmax = _b4k.softmax
insert_arguments = _b4k.insert_arguments
delete_arguments = _b4k.delete_arguments
longest_common_substring = _b4k.longest_common_substring
longest_common_subsequence = _b4k.longest_common_subsequence
orthogonally_resize = _b4k.orthogonally_resize

# bert4keras's WebServing needs TF1's graph and session and bottle; this one
# runs on the standard library's threaded HTTP server with the same API.
from gau_keras.serving.http import WebServing  # noqa: E402

#: ``from bert4keras.snippets import uniout`` is a no-op on Python 3.
uniout = None


def strQ2B(ustring):
    """Full-width characters → half-width (U+3000 → space, U+FF01–FF5E →
    U+0021–007E), as bert4keras's ``strQ2B``.

    Example: ``strQ2B('ＡＢＣ，１２３')`` → 'ABC,123'.
    """
    out = []
    for ch in ustring:
        code = ord(ch)
        if code == 0x3000:
            code = 0x20
        elif 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        out.append(chr(code))
    return ''.join(out)


def fit_batch(batch):
    """A generator item as tf-keras's ``fit`` reads it as bert4keras meant.

    ``([token_ids, segment_ids], None)`` (the bert4keras idiom for models
    whose loss is a ``Loss`` layer) reaches tf-keras 2.21's
    ``pack_x_y_sample_weight``, whose ``isinstance(x, tuple or list)`` is
    ``isinstance(x, tuple)``: the list is then split into x = token_ids,
    y = segment_ids ("expects 2 input(s), but it received 1").  A tuple of
    inputs is kept whole, so lists of inputs become tuples.

    Integer and boolean targets become float32 (``K.floatx()``) arrays:
    Keras 2.3.1 fed targets through placeholders of the output's dtype, so
    bert4keras losses do float arithmetic on them (e.g. the GlobalPointer
    loss's ``y_true[..., 0] * K.cast(shape[2], K.floatx())``), which fails
    on tf-keras's int64 ("Input 'y' of 'Mul' Op has type float32 that does
    not match type int64").

    Example: ``fit_batch(([a, b], None))`` → ``((a, b), None)``;
    ``fit_batch((x, np.array([[1], [0]])))`` → ``(x, float32 labels)``.
    """
    if not (isinstance(batch, tuple) and len(batch) >= 2):
        return batch
    x, y = batch[0], float_targets(batch[1])
    if y is None and isinstance(x, list):
        x = tuple(x)
    return (x, y) + tuple(batch[2:])


def float_targets(y):
    """Integer / boolean numpy targets (or lists, tuples, dicts of them) as
    ``K.floatx()`` arrays, as Keras 2.3.1 gave them to losses; anything
    else unchanged.  Example: ``float_targets(np.array([1, 0]))`` →
    ``array([1., 0.], dtype=float32)``.
    """
    if isinstance(y, np.ndarray) and y.dtype.kind in 'biu':
        return y.astype(tf.keras.backend.floatx())
    if isinstance(y, (list, tuple)):
        return type(y)(float_targets(t) for t in y)
    if isinstance(y, dict):
        return {k: float_targets(t) for k, t in y.items()}
    return y


class DataGenerator(_b4k.DataGenerator):
    """bert4keras's ``DataGenerator`` (subclass it, write ``__iter__``)
    whose ``forfit`` / ``fortest`` items tf-keras 2.21 reads correctly when
    y is None (see ``fit_batch``).

    Example::

        class data_generator(DataGenerator):
            def __iter__(self, random=False):
                for is_end, d in self.sample(random):
                    ...
                    yield [batch_token_ids, batch_segment_ids], None
        model.fit(data_generator(data, 32).forfit(), steps_per_epoch=...)
    """

    def forfit(self, random=True):
        while True:
            for d in self.__iter__(random):
                yield fit_batch(d)

    def fortest(self, random=False):
        while True:
            for d in self.__iter__(random):
                x = d[0]
                yield (tuple(x),) if isinstance(x, list) else x


def _as_inputs(inputs):
    """Model inputs as a list of int32 arrays (a single array → [array])."""
    if isinstance(inputs, (list, tuple)):
        return [np.asarray(x) for x in inputs]
    return [np.asarray(inputs)]


class LastTokenPredictor(object):
    """The float32 outputs of ``model`` at the last position, via one
    ``tf.function`` (``predict(inputs)`` → [b, ...] per output).

    Example: ``LastTokenPredictor(model).predict([token_ids, segment_ids])``.
    """

    def __init__(self, model):
        self.model = model
        self._forward = tf.function(self._last, reduce_retracing=True)

    def _last(self, inputs):
        outputs = self.model(inputs, training=False)
        if isinstance(outputs, (list, tuple)):
            return [tf.cast(o[:, -1], tf.float32) for o in outputs]
        return tf.cast(outputs[:, -1], tf.float32)

    def predict(self, inputs, **kwargs):
        """``kwargs`` (``verbose``, ``batch_size``) are accepted and ignored."""
        xs = [tf.constant(x) for x in _as_inputs(inputs)]
        out = self._forward(xs if len(xs) > 1 else xs[0])
        if isinstance(out, (list, tuple)):
            return [o.numpy() for o in out]
        return out.numpy()

    __call__ = predict


class FlashCachePredictor(object):
    """Last-token outputs of a causal FLASH model from the decoding cache.

    Called with the whole sequences each step, as ``AutoRegressiveDecoder``
    scripts do, it finds each row's prefix (all tokens but the last) among
    the rows of the previous call, gathers their ``FlashDecoder`` states and
    feeds only the last token: beams reordered or dropped by
    ``beam_search`` / ``random_sample`` cost nothing extra.  Anything else
    (first call, new inputs) restarts the cache and feeds the sequences.
    Outputs equal the full forward pass at the last position.

    Example: ``FlashCachePredictor(lm).predict([token_ids, segment_ids])``.
    """

    def __init__(self, model, jit_compile=False):
        from gau_keras.decoding import FlashDecoder
        self.model = model
        self.decoder = FlashDecoder(model, jit_compile=jit_compile)
        self.rows = {}      # (tokens, segments) of each cached row → index
        self.length = None  # tokens fed to every cached row
        self.fed_tokens = 0  # how many tokens were fed (for tests / stats)

    def _split(self, inputs):
        xs = _as_inputs(inputs)
        tokens = xs[0].astype('int32')
        segments = (xs[1].astype('int32') if len(xs) > 1
                    else np.zeros_like(tokens))
        if tokens.ndim != 2 or segments.shape != tokens.shape:
            raise ValueError(
                'FlashCachePredictor.predict: token ids must be [batch, '
                'length] with segment ids of the same shape; got %s and %s'
                % (tokens.shape, segments.shape))
        return tokens, segments

    @staticmethod
    def _key(tokens, segments):
        return tokens.tobytes() + b'|' + segments.tobytes()

    def _previous_rows(self, tokens, segments):
        """Indices of the cached rows that are these rows' prefixes, or None."""
        if self.length is None or tokens.shape[1] != self.length + 1:
            return None
        index = []
        for t, s in zip(tokens[:, :-1], segments[:, :-1]):
            i = self.rows.get(self._key(t, s))
            if i is None:
                return None
            index.append(i)
        return index

    def predict(self, inputs, **kwargs):
        """``kwargs`` (``verbose``, ``batch_size``) are accepted and ignored."""
        tokens, segments = self._split(inputs)
        index = self._previous_rows(tokens, segments)
        decoder = self.decoder
        if index is None:                       # (re)start: feed everything
            decoder.reset(tokens.shape[0])
            for t in range(tokens.shape[1]):
                out = decoder.step(tokens[:, t:t + 1], segments[:, t:t + 1])
            self.fed_tokens += tokens.size
        else:                                   # follow the kept beams
            decoder.states = tf.nest.map_structure(
                lambda s: tf.gather(s, index), decoder.states)
            out = decoder.step(tokens[:, -1:], segments[:, -1:])
            self.fed_tokens += tokens.shape[0]
        self.length = tokens.shape[1]
        self.rows = {self._key(t, s): i
                     for i, (t, s) in enumerate(zip(tokens, segments))}
        return np.asarray(out, dtype='float32')

    __call__ = predict


def is_causal_flash(model):
    """True if ``model`` (Keras model) has causal MixedChunkAttention layers."""
    from gau_keras.flash import MixedChunkAttention
    layers = [l for l in model.layers if isinstance(l, MixedChunkAttention)]
    return bool(layers) and all(l.causal for l in layers)


class AutoRegressiveDecoder(_b4k.AutoRegressiveDecoder):
    """bert4keras's ``AutoRegressiveDecoder`` (beam search, random sample)
    whose ``last_token`` keeps float32 outputs and uses FLASH's cache.

    ``use_flash_cache = False`` (class or instance attribute) turns the
    FLASH cache off.  Example: see the module docstring.
    """
    use_flash_cache = True

    def last_token(self, model):
        """A predictor of ``model``'s outputs at the last position.

        Its ``predict(inputs)`` returns float32 arrays [b, ...]; for a causal
        FLASH model it is a ``FlashCachePredictor``.
        """
        if model not in self.models:
            if self.use_flash_cache and is_causal_flash(model):
                self.models[model] = FlashCachePredictor(model)
            else:
                self.models[model] = LastTokenPredictor(model)
        return self.models[model]


__all__ = [
    'to_array', 'is_string', 'strQ2B', 'string_matching',
    'convert_to_unicode', 'convert_to_str', 'lowercase_and_normalize',
    'open', 'parallel_apply_generator', 'parallel_apply', 'sequence_padding',
    'truncate_sequences', 'text_segmentate', 'is_one_of', 'DataGenerator',
    'ViterbiDecoder', 'softmax', 'AutoRegressiveDecoder', 'insert_arguments',
    'delete_arguments', 'longest_common_substring',
    'longest_common_subsequence', 'orthogonally_resize', 'WebServing',
    'uniout', 'fit_batch', 'float_targets', 'LastTokenPredictor', 'FlashCachePredictor', 'is_causal_flash',
]


# Every other public name of bert4keras.snippets, so that
# `from bert4keras.snippets import X` ports as `from gau_keras.snippets import X`
# (gau_keras.bert4keras_names: what is left out and why).
from gau_keras.bert4keras_names import reexport as _reexport  # noqa: E402
_reexport(globals(), 'snippets')
