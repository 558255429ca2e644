"""Config files: shipped configs, defaults, and clear errors."""
import json
import os

import gau_keras  # noqa: F401
import pytest

from conftest import TINY_GAU
from gau_keras import build_transformer_model, load_config
from gau_keras.configs import ConfigError

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'configs')


@pytest.mark.parametrize('size,hidden,layers', [('tiny', 64, 2),
                                                ('small', 384, 6),
                                                ('base', 768, 24)])
def test_shipped_configs(size, hidden, layers):
    config = load_config(os.path.join(CONFIGS, 'gau_alpha_%s.json' % size))
    assert config['hidden_size'] == hidden
    assert config['num_hidden_layers'] == layers
    assert config['num_attention_heads'] == 1
    assert config['hidden_act'] == 'swish'
    assert config['intermediate_size'] == 2 * hidden


def test_base_config_is_the_release():
    """chinese_GAU-alpha-char_L-24_H-768: d=768, e=1536, s=128, 12000 chars."""
    config = load_config(os.path.join(CONFIGS, 'gau_alpha_base.json'))
    assert (config['vocab_size'], config['hidden_size'],
            config['intermediate_size'], config['attention_key_size'],
            config['num_hidden_layers'], config['segment_vocab_size']) == (
                12000, 768, 1536, 128, 24, 2)


def test_defaults_and_overrides(config_writer):
    path = config_writer(TINY_GAU)
    config = load_config(path, dropout_rate=0.0)
    assert config['dropout_rate'] == 0.0
    assert config['attention_dropout_rate'] == 0.1   # from *_prob alias
    assert config['max_position'] == 512
    assert config['segment_vocab_size'] == 2
    config = load_config(None, **TINY_GAU)
    assert config['vocab_size'] == TINY_GAU['vocab_size']


def test_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize('key', ['vocab_size', 'hidden_size',
                                 'num_hidden_layers', 'intermediate_size',
                                 'hidden_act'])
def test_missing_key_names_file_and_key(config_writer, key):
    config = {k: v for k, v in TINY_GAU.items() if k != key}
    path = config_writer(config, 'broken_config.json')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert path in str(info.value)
    assert repr(key) in str(info.value)
    # the builder raises the same error before building anything
    with pytest.raises(ConfigError, match='broken_config.json'):
        build_transformer_model(path, model='gau_alpha')


def test_malformed_json_names_file_and_line(tmp_path):
    text = json.dumps(TINY_GAU, indent=2).splitlines()
    text[4] = text[4].rstrip(',')     # drop a comma on line 5
    path = tmp_path / 'bad.json'
    path.write_text('\n'.join(text))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    msg = str(info.value)
    assert str(path) in msg
    assert 'line 6' in msg   # the parser notices at the next key


def test_json_not_an_object(config_writer):
    path = config_writer([1, 2, 3])
    with pytest.raises(ConfigError, match='JSON object'):
        load_config(path)


def test_missing_file(tmp_path):
    path = str(tmp_path / 'nope.json')
    with pytest.raises(ConfigError, match='nope.json.*does not exist'):
        load_config(path)


@pytest.mark.parametrize('key,value', [
    ('hidden_size', '64'), ('hidden_size', 64.0), ('hidden_size', 0),
    ('num_hidden_layers', -1), ('vocab_size', True),
    ('attention_key_size', 'big'), ('intermediate_size', None),
    ('hidden_act', 5), ('hidden_dropout_prob', 1.5),
    ('attention_probs_dropout_prob', 'x'), ('type_vocab_size', -1),
])
def test_wrong_types(config_writer, key, value):
    config = dict(TINY_GAU)
    config[key] = value
    path = config_writer(config)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert path in msg
    # the message names the key (aliases name the bert4keras key)
    aliases = {'hidden_dropout_prob': 'dropout_rate',
               'attention_probs_dropout_prob': 'attention_dropout_rate',
               'type_vocab_size': 'segment_vocab_size'}
    assert repr(aliases.get(key, key)) in msg


def test_wrong_type_in_keyword_override():
    with pytest.raises(ConfigError, match="keyword.*'num_hidden_layers'"):
        load_config(None, **dict(TINY_GAU, num_hidden_layers='2'))
