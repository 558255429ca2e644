"""Model configs: bert4keras-style JSON files, read and checked.

A config is a JSON file, or the name of a config shipped in
``gau_keras/presets`` (``preset_names()``: 'gau_alpha_base', 'flash_tiny',
...).

Example::

    from gau_keras.configs import load_config
    config = load_config('gau_alpha_base', dropout_rate=0.0)      # shipped
    config = load_config('chinese_GAU-alpha-char_L-24_H-768/bert_config.json')
"""
import json
import os
import warnings

#: Keys every Transformer needs (bert4keras's Transformer arguments).
REQUIRED_KEYS = ('vocab_size', 'hidden_size', 'num_hidden_layers',
                 'num_attention_heads', 'intermediate_size', 'hidden_act')

#: Keys of published config files (Google BERT, Hugging Face) that no model
#: reads but that are no typo: they never cause an unknown-key warning.
IGNORED_KEYS = frozenset((
    'max_position_embeddings', 'type_vocab_size', 'hidden_dropout_prob',
    'attention_probs_dropout_prob', 'initializer_range', 'directionality',
    'pooler_fc_size', 'pooler_num_attention_heads', 'pooler_num_fc_layers',
    'pooler_size_per_head', 'pooler_type', 'layer_norm_eps', 'model_type',
    'architectures', 'torch_dtype', 'transformers_version', 'pad_token_id',
    'bos_token_id', 'eos_token_id', 'position_embedding_type', 'use_cache',
    'classifier_dropout', 'gradient_checkpointing', 'output_past',
    'vocab_type', 'version'))

#: Keys ``fill_defaults`` adds (bert4keras's aliases): never unknown.
FILLED_KEYS = frozenset(('max_position', 'dropout_rate',
                         'attention_dropout_rate', 'segment_vocab_size'))

#: Folder of the shipped configs (package data).
PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'presets')

_POSITIVE_INTS = REQUIRED_KEYS[:-1] + (
    'attention_key_size', 'chunk_size', 'embedding_size', 'max_position')
_RATES = ('dropout_rate', 'attention_dropout_rate')


class ConfigError(ValueError):
    """A config file (or keyword) that cannot build a model."""


class ConfigWarning(UserWarning):
    """A config key that no part of the chosen model reads (a typo?)."""


def preset_names():
    """Names of the shipped configs, sorted: ['flash_base', ...]."""
    return sorted(name[:-5] for name in os.listdir(PRESETS_DIR)
                  if name.endswith('.json'))


def preset_path(name):
    """Path of a shipped config: ``preset_path('gau_alpha_tiny')``."""
    stem = name[:-5] if name.endswith('.json') else name
    if stem not in preset_names():
        raise ConfigError('%r is not a shipped config; shipped: %s'
                          % (name, ', '.join(preset_names())))
    return os.path.join(PRESETS_DIR, stem + '.json')


def resolve_config_path(path):
    """A config file path for ``path``: the file itself, or a shipped config.

    An existing file wins over a shipped config of the same name.  A folder,
    or a name that is neither a file nor a shipped config, is a ConfigError
    (the latter lists the shipped configs).

    Example: ``resolve_config_path('flash_tiny')`` →
    '.../gau_keras/presets/flash_tiny.json'.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        hint = os.path.join(path, 'bert_config.json')
        raise ConfigError(
            'config path %s is a folder, not a JSON file%s'
            % (path, '; did you mean %s?' % hint if os.path.isfile(hint)
               else ''))
    if os.path.isfile(path):
        return path
    stem = os.path.basename(path)
    stem = stem[:-5] if stem.endswith('.json') else stem
    if stem == path or stem + '.json' == path:   # a bare name, no folder
        if stem in preset_names():
            return os.path.join(PRESETS_DIR, stem + '.json')
    raise ConfigError('config file %s does not exist, and %r is not the name '
                      'of a shipped config (shipped: %s)'
                      % (path, stem, ', '.join(preset_names())))


def read_json(path):
    """Reads a JSON object; errors name the file, line and column."""
    path = resolve_config_path(path)
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


def config_source(config_path):
    """How errors name a config: 'config file X' or 'config (keywords)'."""
    if config_path is None:
        return 'config (keyword arguments)'
    return 'config file %s' % config_path


def warn_unknown_keys(config, known, source='config', model=None):
    """Warns (``ConfigWarning``) about keys outside ``known``,
    ``IGNORED_KEYS`` and ``FILLED_KEYS``, listing them; returns them sorted.

    Example: ``warn_unknown_keys({'hiden_size': 8}, {'hidden_size'})``
    warns "config: unknown key 'hiden_size' ..." and returns ['hiden_size'].
    """
    unknown = sorted(k for k in config if k not in known and
                     k not in IGNORED_KEYS and k not in FILLED_KEYS)
    if unknown:
        warnings.warn(
            '%s: %s %s not read by model %s and will be ignored (a typo?)'
            % (source, 'unknown key' + ('s' if len(unknown) > 1 else ''),
               ', '.join(repr(k) for k in unknown),
               model if model is not None else '(any)'),
            ConfigWarning, stacklevel=3)
    return unknown


def load_config(config_path=None, **overrides):
    """The config of ``config_path`` (a JSON file, or a shipped config's
    name) updated with ``overrides``, checked."""
    if config_path is not None:
        config_path = resolve_config_path(config_path)
    config = read_json(config_path) if config_path is not None else {}
    config.update(overrides)
    config = fill_defaults(config)
    return validate_config(config, config_source(config_path))
