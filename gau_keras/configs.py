"""Model configs: bert4keras-style JSON files, read and checked.

A config is a JSON file, or the name of a preset: a row of ``PRESETS``
naming the model it is for and its file in ``gau_keras/presets`` (package
data).  Two presets may share one file (``gau_alpha_tiny`` and
``flash_quad_tiny`` have the same sizes).

Example::

    from gau_keras.configs import load_config, preset
    config = load_config('gau_alpha_base', dropout_rate=0.0)      # a preset
    config = load_config('chinese_GAU-alpha-char_L-24_H-768/bert_config.json')
    preset('flash_tiny').model                                      # 'flash'
"""
import collections
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

#: Folder of the preset files (package data).
PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'presets')

#: A preset: the registered model it is for, its file in ``PRESETS_DIR``,
#: and a one-line description.
Preset = collections.namedtuple('Preset', ['model', 'file', 'description'])

#: Every preset by name.  Sizes: d = hidden size, e = intermediate size
#: (= 2d), s = attention key size, L = num_hidden_layers (blocks; a FLASH /
#: FLASH-Quad block holds two attention units), one head, swish.
PRESETS = {
    'gau_alpha_tiny': Preset(
        'gau_alpha', 'gau_alpha_tiny.json',
        'GAU-α for tests and examples: d=64, s=32, L=2, vocab 2000'),
    'gau_alpha_small': Preset(
        'gau_alpha', 'gau_alpha_small.json',
        'GAU-α: d=384, s=128, L=6, vocab 12000'),
    'gau_alpha_base': Preset(
        'gau_alpha', 'gau_alpha_base.json',
        'GAU-α as released (chinese_GAU-alpha-char_L-24_H-768): d=768, '
        's=128, L=24, vocab 12000'),
    'flash_quad_tiny': Preset(
        'flash_quad', 'gau_alpha_tiny.json',
        'FLASH-Quad for tests and examples: d=64, s=32, L=2 (4 GAUs), '
        'vocab 2000'),
    'flash_quad_small': Preset(
        'flash_quad', 'gau_alpha_small.json',
        'FLASH-Quad: d=384, s=128, L=6 (12 GAUs), vocab 12000'),
    'flash_quad_base': Preset(
        'flash_quad', 'flash_quad_base.json',
        'FLASH-Quad at GAU-α base size: d=768, s=128, L=12 (24 GAUs), '
        'vocab 12000'),
    'flash_tiny': Preset(
        'flash', 'flash_tiny.json',
        'FLASH for tests and examples: d=64, s=32, L=2 (4 units), '
        'chunk 64, vocab 2000'),
    'flash_small': Preset(
        'flash', 'flash_small.json',
        'FLASH: d=384, s=128, L=6 (12 units), chunk 256, vocab 12000'),
    'flash_base': Preset(
        'flash', 'flash_base.json',
        'FLASH at GAU-α base size: d=768, s=128, L=12 (24 units), chunk 256, '
        'vocab 12000'),
}

_POSITIVE_INTS = REQUIRED_KEYS[:-1] + (
    'attention_key_size', 'chunk_size', 'embedding_size', 'max_position')
_RATES = ('dropout_rate', 'attention_dropout_rate')


class ConfigError(ValueError):
    """A config file (or keyword) that cannot build a model."""


class ConfigWarning(UserWarning):
    """A config key that no part of the chosen model reads (a typo?)."""


class PresetModelWarning(ConfigWarning):
    """A preset built as another model than the one its row names."""


def preset_names():
    """Names of the presets, sorted: ['flash_base', ...]."""
    return sorted(PRESETS)


def preset(name):
    """The ``Preset`` row of ``name`` ('flash_tiny' or 'flash_tiny.json').

    Example: ``preset('flash_quad_tiny')`` →
    Preset(model='flash_quad', file='gau_alpha_tiny.json', description=...).
    """
    stem = name[:-5] if name.endswith('.json') else name
    if stem not in PRESETS:
        raise ConfigError('%r is not a preset; presets: %s'
                          % (name, ', '.join(preset_names())))
    return PRESETS[stem]


def preset_path(name):
    """Path of a preset's file: ``preset_path('gau_alpha_tiny')``."""
    return os.path.join(PRESETS_DIR, preset(name).file)


def preset_of(path):
    """The ``Preset`` that ``path`` names, or None when it names a file.

    A bare name ('flash_tiny', 'flash_tiny.json') names a preset unless a
    file of that name exists; a path with folders never does.
    """
    path = os.fspath(path)
    if os.path.exists(path) or os.path.basename(path) != path:
        return None
    stem = path[:-5] if path.endswith('.json') else path
    return PRESETS.get(stem)


def resolve_config_path(path):
    """A config file path for ``path``: the file itself, or a preset's file.

    An existing file wins over a preset of the same name.  A folder, or a
    name that is neither a file nor a preset, is a ConfigError (the latter
    lists the presets).

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
    row = preset_of(path)
    if row is not None:
        return os.path.join(PRESETS_DIR, row.file)
    stem = os.path.basename(path)
    stem = stem[:-5] if stem.endswith('.json') else stem
    raise ConfigError('config file %s does not exist, and %r is not the name '
                      'of a preset (presets: %s)'
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
    """The config of ``config_path`` (a JSON file, or a preset's name)
    updated with ``overrides``, checked.

    Example: ``load_config('flash_tiny', dropout_rate=0.0)``.
    """
    if config_path is not None:
        config_path = resolve_config_path(config_path)
    config = read_json(config_path) if config_path is not None else {}
    config.update(overrides)
    config = fill_defaults(config)
    return validate_config(config, config_source(config_path))
