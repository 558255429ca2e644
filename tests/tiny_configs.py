"""Tiny model configs shared by the tests (plain module: subprocess workers
and module-level helpers import it; tests get it as the ``tiny_config``
fixture of conftest.py).

Every tiny model is d=16, e=32, s=8 with one head, so a test builds it in
well under a second; FLASH gets a chunk of 4 tokens so that a dozen tokens
already span several chunks (the chunk-crossing paths run).

    from tiny_configs import tiny_config
    config = tiny_config('flash', num_hidden_layers=1, dropout=0.0)
    model = gau_keras.build_transformer_model(model='flash', **config)
"""
import json

#: The GAU-α tiny config: d=16, e=32, s=8, 2 layers, dropout 0.1.
TINY_GAU = {
    'vocab_size': 50, 'hidden_size': 16, 'intermediate_size': 32,
    'attention_key_size': 8, 'num_attention_heads': 1,
    'num_hidden_layers': 2, 'hidden_act': 'swish', 'type_vocab_size': 2,
    'hidden_dropout_prob': 0.1, 'attention_probs_dropout_prob': 0.1,
}

#: Keys only some models read: FLASH's chunk length.
MODEL_KEYS = {'flash': {'chunk_size': 4}}

#: The models the model-level harness runs on.
GAU_MODELS = ('gau_alpha', 'flash_quad', 'flash')

#: vocab 40, one block, no dropout: the size of the bert4keras-style tests
#: (compat decoders and classifier, output layers on models).
COMPAT_SIZE = dict(vocab_size=40, num_hidden_layers=1, dropout=0.0)


def tiny_config(model='gau_alpha', dropout=None, **overrides):
    """The tiny config of ``model`` as a new dict.

    ``dropout`` sets both dropout probabilities; any other keyword replaces
    that key (``vocab_size=40``, ``num_hidden_layers=1``).  Unknown models
    get the GAU-α config (the GAU models share their config keys).

    >>> tiny_config('flash', dropout=0.0)['chunk_size']
    4
    """
    config = dict(TINY_GAU, **MODEL_KEYS.get(model, {}))
    if dropout is not None:
        config['hidden_dropout_prob'] = dropout
        config['attention_probs_dropout_prob'] = dropout
    config.update(overrides)
    return config


def build_tiny(model, size=COMPAT_SIZE, **kwargs):
    """``build_transformer_model`` of ``tiny_config(model, **size)``; other
    keywords pass through (``application='lm'``, ``return_keras_model``).

        lm = build_tiny('flash', application='lm')
    """
    from gau_keras.models import build_transformer_model
    return build_transformer_model(model=model, **dict(
        tiny_config(model, **size), **kwargs))


def write_tiny_config(path, model='gau_alpha', **kwargs):
    """Writes ``tiny_config(model, **kwargs)`` as JSON; returns the path."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(tiny_config(model, **kwargs), f, indent=2)
    return str(path)
