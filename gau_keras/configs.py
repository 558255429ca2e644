"""Model configs: bert4keras-style JSON files, read and checked.

Example::

    from gau_keras.configs import load_config
    config = load_config('configs/gau_alpha_base.json', dropout_rate=0.0)
"""
import json
import os

#: Keys every Transformer needs (bert4keras's Transformer arguments).
REQUIRED_KEYS = ('vocab_size', 'hidden_size', 'num_hidden_layers',
                 'num_attention_heads', 'intermediate_size', 'hidden_act')

_POSITIVE_INTS = REQUIRED_KEYS[:-1] + (
    'attention_key_size', 'chunk_size', 'embedding_size', 'max_position')
_RATES = ('dropout_rate', 'attention_dropout_rate')


class ConfigError(ValueError):
    """A config file (or keyword) that cannot build a model."""


def read_json(path):
    """Reads a JSON object; errors name the file, line and column."""
    if not os.path.isfile(path):
        raise ConfigError('config file %s does not exist' % path)
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError('config file %s, line %d, column %d: invalid JSON '
                          '(%s)' % (path, e.lineno, e.colno, e.msg)) from None
    if not isinstance(config, dict):
        raise ConfigError('config file %s must hold a JSON object, not %s'
                          % (path, type(config).__name__))
    return config


def fill_defaults(config):
    """bert4keras's aliases: max_position, dropout_rate, segment_vocab_size."""
    config = dict(config)
    config.setdefault('max_position',
                      config.get('max_position_embeddings', 512))
    config.setdefault('dropout_rate', config.get('hidden_dropout_prob'))
    config.setdefault('attention_dropout_rate',
                      config.get('attention_probs_dropout_prob'))
    config.setdefault('segment_vocab_size', config.get('type_vocab_size', 2))
    return config


def validate_config(config, source='config', required=REQUIRED_KEYS):
    """Raises ConfigError naming ``source`` and the key that is wrong."""
    for key in required:
        if key not in config or config[key] is None:
            raise ConfigError('%s: missing key %r' % (source, key))
    for key in _POSITIVE_INTS:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError('%s: key %r must be a positive integer, got %r'
                              % (source, key, value))
    segments = config.get('segment_vocab_size')
    if segments is not None and (isinstance(segments, bool) or
                                 not isinstance(segments, int) or segments < 0):
        raise ConfigError('%s: key %r must be an integer >= 0, got %r'
                          % (source, 'segment_vocab_size', segments))
    for key in _RATES:
        value = config.get(key)
        if value is not None and not (isinstance(value, (int, float)) and
                                      0 <= value < 1):
            raise ConfigError('%s: key %r must be a rate in [0, 1), got %r'
                              % (source, key, value))
    if not isinstance(config['hidden_act'], (str, list)):
        raise ConfigError('%s: key %r must be an activation name, got %r'
                          % (source, 'hidden_act', config['hidden_act']))
    return config


def load_config(config_path=None, **overrides):
    """The config of ``config_path`` updated with ``overrides``, checked."""
    config = read_json(config_path) if config_path is not None else {}
    config.update(overrides)
    config = fill_defaults(config)
    source = ('config file %s' % config_path if config_path is not None
              else 'config (keyword arguments)')
    return validate_config(config, source)
