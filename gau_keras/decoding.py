"""Cached (incremental) decoding for causal FLASH language models.

A causal FLASH layer only needs, to process token t: Σ K_linᵀV over the
finished chunks (and how many real tokens it sums), the same sum over the
current chunk, and the current chunk's K_quad / V.  ``FlashDecoder`` keeps
that state per layer, so a step costs O(c·e + s·e) instead of a full
forward pass over t tokens, and it gives the same outputs as the full
causal forward pass (it reuses the Keras layers and their weights).

Example::

    import gau_keras
    from gau_keras.decoding import FlashDecoder
    lm = gau_keras.build_transformer_model(
        'configs/flash_tiny.json', model='flash', application='lm')
    decoder = FlashDecoder(lm)
    tokens = decoder.generate([[101, 2769, 4263]], n_tokens=20)   # [1, 20]
"""
import numbers

import numpy as np
import tensorflow as tf

from gau_keras.backend import keras
from gau_keras.flash import MixedChunkAttention
from gau_keras.models import FLASH


class _LayerLookup(object):
    """Layers by (unprefixed) name from a Transformer or a Keras model."""

    def __init__(self, model, prefix=None):
        if isinstance(model, keras.Model):
            self.keras_model, self.layers = model, None
            self.prefix = prefix or ''
        elif hasattr(model, 'layers') and hasattr(model, 'model'):
            self.keras_model, self.layers = model.model, model.layers
            self.prefix = model.prefix if prefix is None else prefix
        else:
            raise TypeError('FlashDecoder needs a built FLASH lm model (Keras '
                            'model or bert4keras Transformer), got %r'
                            % type(model).__name__)

    def get(self, name):
        """The layer called ``name`` (after the prefix), or None."""
        name = self.prefix + name
        if self.layers is not None:
            return self.layers.get(name)
        try:
            return self.keras_model.get_layer(name)
        except ValueError:
            return None


class FlashDecoder(object):
    """Incremental greedy decoding for a causal FLASH model.

    ``model``: what ``build_transformer_model(..., model='flash',
    application='lm')`` returns (the Keras model, or the Transformer with
    ``return_keras_model=False``).  ``step`` feeds one token per sample and
    returns the model's output for it (probabilities with the default
    ``with_mlm=True``, logits with ``with_mlm='linear'``), equal to the last
    position of the full forward pass over everything fed so far.
    ``jit_compile`` compiles the step with XLA.  Token and segment ids are
    checked before each step (XLA would silently clamp an id past the
    embedding table): a negative, non-integer or too large id raises a
    ``ValueError`` naming it and the vocabulary size.

    Example::

        decoder = FlashDecoder(lm)
        decoder.reset(batch_size=1)
        for t in prompt:
            out = decoder.step([[t]])            # [1, vocab]
    """

    def __init__(self, model, prefix=None, jit_compile=True):
        look = _LayerLookup(model, prefix)
        self.keras_model = look.keras_model
        self.token = look.get('Embedding-Token')
        if self.token is None:
            raise ValueError('FlashDecoder: the model has no '
                             '"Embedding-Token" layer')
        self.segment = look.get('Embedding-Segment')
        if len(self.keras_model.inputs) > (1 if self.segment is None else 2):
            raise ValueError('FlashDecoder: models with custom_position_ids '
                             '(or extra inputs) are not supported; positions'
                             ' are 0, 1, 2, … in the order tokens are fed')
        self.embedding_norm = look.get('Embedding-Norm')
        self.embedding_mapping = look.get('Embedding-Mapping')
        self.blocks = self._blocks(look)
        self.output_mapping = look.get('Output-Mapping')
        self.output_activation = look.get('Output-MLM-Activation')
        self.outputs_logits = _outputs_logits(self.output_activation)
        self._step = tf.function(self._step_fn, jit_compile=jit_compile,
                                 reduce_retracing=True)
        self.states, self.position = None, 0

    @staticmethod
    def _blocks(look):
        """[(MixedChunkAttention, its Norm layer)] in order; checks causal.

        Layer names come from the model class (``FLASH.layer_name``)."""
        blocks, i = [], 0
        while look.get(FLASH.layer_name(i, 0)) is not None:
            for j in range(FLASH.units_per_block):
                name = FLASH.layer_name(i, j)
                layer = look.get(name)
                if not isinstance(layer, MixedChunkAttention):
                    raise ValueError('FlashDecoder: layer %s is missing or '
                                     'not a MixedChunkAttention' % name)
                if not layer.causal:
                    raise ValueError(
                        'FlashDecoder: layer %s is not causal; build the '
                        'model with application="lm"' % layer.name)
                blocks.append((layer, look.get(name + '-Norm')))
            i += 1
        if not blocks:
            raise ValueError('FlashDecoder: no FLASH layers found (is this a '
                             'model="flash" model?)')
        return blocks

    def reset(self, batch_size=1):
        """Forgets everything fed so far (new sequences of ``batch_size``).

        The state is one ``gau_keras.flash.DecodeState`` per layer."""
        self.states = tuple(layer.initial_state(batch_size)
                            for layer, _ in self.blocks)
        self.position = 0

    def _embed(self, token_ids, segment_ids):
        x = self.token(token_ids)
        if self.segment is not None:
            x = x + tf.cast(self.segment(segment_ids), x.dtype)
        x = self.embedding_norm(x)
        if self.embedding_mapping is not None:
            x = self.embedding_mapping(x)
        return x

    def _head(self, x):
        if self.output_activation is None:    # encoder-only: hidden states
            return tf.cast(x, tf.float32)
        if self.output_mapping is not None:
            x = self.output_mapping(x)
        x = self.token(x, mode='dense')
        return self.output_activation(x)

    def _step_fn(self, token_ids, segment_ids, position, states):
        x = self._embed(token_ids, segment_ids)
        token_mask = tf.not_equal(token_ids, 0)      # mask_zero, as in Keras
        new_states = []
        for (layer, norm), state in zip(self.blocks, states):
            y, state = layer.decode_step(x, state, position, token_mask)
            x = norm(x + y)
            new_states.append(state)
        return self._head(x)[:, 0], tuple(new_states)

    def step(self, token_ids, segment_ids=None):
        """Feeds one token per sample ([b, 1] ids); returns output [b, ...].

        Example: ``probs = decoder.step([[5]], [[0]])`` → [1, vocab].
        """
        token_ids = self.check_ids(token_ids, 'token_ids').reshape(-1, 1)
        if segment_ids is None:
            segment_ids = np.zeros_like(token_ids)
        segment_ids = self.check_ids(segment_ids,
                                     'segment_ids').reshape(-1, 1)
        if segment_ids.shape != token_ids.shape:
            raise ValueError('FlashDecoder.step: segment_ids has %d values '
                             'for %d token_ids' % (segment_ids.size,
                                                   token_ids.size))
        if self.states is None:
            self.reset(token_ids.shape[0])
        held = self.states[0].kv_global.shape[0]
        if held != token_ids.shape[0]:
            raise ValueError(
                'FlashDecoder.step: got %d sequences but the decoder holds %d;'
                ' call reset(batch_size=%d) to start new sequences'
                % (token_ids.shape[0], held, token_ids.shape[0]))
        out, self.states = self._step(
            tf.constant(token_ids), tf.constant(segment_ids),
            tf.constant(self.position, tf.int32), self.states)
        self.position += 1
        return out.numpy()

    def check_ids(self, ids, what='token_ids'):
        """ids as int32 numpy, or a ValueError naming the bad id.

        Token ids must lie in [0, vocab_size), segment ids in
        [0, type_vocab_size) (only 0 without segment embeddings).

        Example: ``decoder.check_ids([[2500]])`` raises on a 2000-token vocab.
        """
        table = self.token if what != 'segment_ids' else self.segment
        size = 1 if table is None else int(table.input_dim)
        return _check_ids(ids, what, size)

    def generate(self, prompt, n_tokens, segment_ids=None, choose=None):
        """Greedy continuation: ``n_tokens`` new token ids [b, n_tokens].

        ``prompt`` [b, p] token ids (p ≥ 1, equal lengths); the new tokens
        get the segment id of the prompt's last token.  ``choose`` maps the
        outputs [b, vocab] to the next ids [b] (default: argmax; see
        ``sampler`` for seeded sampling, which gets probabilities: the
        softmax of the logits of a ``with_mlm='linear'`` model).

        Example: ``decoder.generate([[101, 2769]], 16)``.
        """
        n_tokens = _check_n_tokens(n_tokens)
        choose = _chooser(choose, self.outputs_logits)
        prompt = _as_batch(prompt, 'prompt')
        segments = (np.zeros_like(prompt) if segment_ids is None
                    else _as_batch(segment_ids, 'segment_ids'))
        self.reset(prompt.shape[0])
        for t in range(prompt.shape[1]):
            out = self.step(prompt[:, t], segments[:, t])
        new = []
        for _ in range(n_tokens):
            new.append(np.asarray(choose(out), 'int32').reshape(-1))
            if len(new) < n_tokens:
                out = self.step(new[-1], segments[:, -1])
        return np.stack(new, axis=1) if new else prompt[:, :0]


def greedy(outputs):
    """The most likely next token of each sample: argmax over the vocab."""
    return np.argmax(outputs, axis=-1)


def softmax(logits):
    """Row-wise softmax of logits [b, vocab] (float64, stable)."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def sampler(seed=0, from_logits=False):
    """Seeded sampling from the model's outputs [b, vocab].

    ``from_logits=False``: the outputs must be probabilities (``with_mlm=
    True``); anything else (negative values, rows not summing to 1) raises
    a ``ValueError`` instead of sampling from a wrong distribution.
    ``from_logits=True`` applies a softmax first.  ``FlashDecoder.generate``
    and ``generate_without_cache`` apply it themselves for a logits model
    (``with_mlm='linear'``).  Two samplers with the same seed draw the same
    uniforms, so two decoders whose probabilities agree sample the same
    tokens.

    Example: ``decoder.generate(prompt, 64, choose=sampler(0))``.
    """
    rng = np.random.RandomState(seed)

    def choose(outputs):
        probs = np.asarray(outputs, np.float64)
        if from_logits:
            probs = softmax(probs)
        else:
            _check_probabilities(probs)
        cdf = np.cumsum(probs, axis=-1)
        u = rng.uniform(size=(probs.shape[0], 1)) * cdf[:, -1:]
        return np.minimum((cdf < u).sum(axis=-1), probs.shape[-1] - 1)
    choose.from_logits = from_logits
    return choose


def _check_probabilities(probs):
    sums = probs.sum(axis=-1)
    if probs.min() < 0 or not np.allclose(sums, 1.0, atol=1e-3):
        raise ValueError(
            'sampler: the outputs are not probabilities (min %.4g, row sums '
            '%.4g … %.4g); for a logits model (with_mlm="linear") use '
            'sampler(seed, from_logits=True), or FlashDecoder.generate, which'
            ' applies the softmax' % (probs.min(), sums.min(), sums.max()))


def _outputs_logits(output_activation):
    """True if the model's MLM head ends in a linear activation (logits)."""
    if output_activation is None:
        return False
    activation = getattr(output_activation, 'activation', None)
    return activation is keras.activations.linear


def _chooser(choose, outputs_logits):
    """``choose`` (default greedy); a probability sampler on a logits model
    gets the softmax of the logits."""
    choose = choose or greedy
    if outputs_logits and getattr(choose, 'from_logits', None) is False:
        return lambda logits: choose(softmax(logits))
    return choose


def _check_n_tokens(n_tokens):
    if (isinstance(n_tokens, bool) or
            not isinstance(n_tokens, numbers.Integral) or n_tokens < 0):
        raise ValueError('n_tokens must be an integer ≥ 0, got %r'
                         % (n_tokens,))
    return int(n_tokens)


def _check_ids(ids, what, size):
    """int32 ids in [0, size), or a ValueError naming the first bad one."""
    ids = np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError('%s must be integer ids, got dtype %s (e.g. %r)'
                         % (what, ids.dtype, ids.reshape(-1)[0]))
    bad = (ids < 0) | (ids >= size)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            '%s: id %d at index %s is outside [0, %d) (the %s vocabulary has'
            ' %d entries)' % (what, int(ids[index]), index, size,
                              'segment' if what == 'segment_ids' else 'token',
                              size))
    return ids.astype('int32')


def _as_batch(ids, what):
    ids = np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError('%s must be integer ids, got dtype %s'
                         % (what, ids.dtype))
    ids = ids.astype('int32')
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[1] < 1:
        raise ValueError('%s must be token ids of shape [batch, length >= 1],'
                         ' got shape %s' % (what, ids.shape))
    return ids


def generate_without_cache(model, prompt, n_tokens, segment_ids=None,
                           choose=None):
    """Greedy decoding by re-running the full forward pass for every token.

    The reference for ``FlashDecoder.generate`` (and its benchmark): works
    with any bert4keras lm model.  Returns new token ids [b, n_tokens].
    ``choose`` as in ``FlashDecoder.generate``.

    Example: ``generate_without_cache(lm, [[101, 2769]], 16)``.
    """
    n_tokens = _check_n_tokens(n_tokens)
    keras_model = model if isinstance(model, keras.Model) else model.model
    try:
        head = keras_model.get_layer('Output-MLM-Activation')
    except ValueError:
        head = None
    choose = _chooser(choose, _outputs_logits(head))
    ids = _as_batch(prompt, 'prompt')
    segments = (np.zeros_like(ids) if segment_ids is None
                else _as_batch(segment_ids, 'segment_ids'))
    forward = tf.function(lambda x: keras_model(x, training=False),
                          reduce_retracing=True)
    with_segments = len(keras_model.inputs) > 1
    p = ids.shape[1]
    for _ in range(n_tokens):
        inputs = [ids, segments] if with_segments else ids
        out = forward(inputs).numpy()[:, -1]
        nxt = np.asarray(choose(out), 'int32').reshape(-1, 1)
        ids = np.concatenate([ids, nxt], axis=1)
        segments = np.concatenate([segments, segments[:, -1:]], axis=1)
    return ids[:, p:]


__all__ = ['FlashDecoder', 'generate_without_cache', 'greedy', 'sampler',
           'softmax']
