"""Config files: shipped configs, defaults, and clear errors."""
import json
import os
import re
import warnings

import gau_keras  # noqa: F401
import pytest

from conftest import TINY_GAU
from gau_keras import build_transformer_model, load_config
from gau_keras.configs import (PRESETS, PRESETS_DIR, ConfigError,
                               ConfigWarning, PresetModelWarning, preset,
                               preset_names, preset_of, preset_path,
                               resolve_config_path)
from gau_keras.models import MODELS, model_class

from conftest import ROOT

#: Hidden size of each preset size (the release's base width is 768).
WIDTHS = {'tiny': 64, 'small': 384, 'base': 768}


def preset_model(name):
    """'flash_quad_tiny' -> ('flash_quad', 'tiny'): the model of its row
    and the size suffix of its name."""
    return preset(name).model, name.rsplit('_', 1)[1]


def json_files(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith('.json'))


def test_preset_table_names_every_package_data_file():
    """Every file of the folder is named by a row, every row's file exists,
    and the checkout's configs/ is that folder."""
    assert preset_names() == sorted(PRESETS) and len(PRESETS) >= 3
    assert sorted({row.file for row in PRESETS.values()}) == json_files(
        PRESETS_DIR)
    assert os.path.dirname(PRESETS_DIR) == os.path.dirname(
        os.path.abspath(gau_keras.__file__))
    assert os.path.samefile(os.path.join(ROOT, 'configs'), PRESETS_DIR)


def test_no_two_preset_files_are_identical():
    """Presets with the same sizes share one file instead of two copies."""
    texts = {}
    for name in json_files(PRESETS_DIR):
        with open(os.path.join(PRESETS_DIR, name), 'rb') as f:
            texts.setdefault(f.read(), []).append(name)
    assert all(len(names) == 1 for names in texts.values()), texts


def test_presets_sharing_a_file():
    assert preset_path('flash_quad_tiny') == preset_path('gau_alpha_tiny')
    assert preset_path('flash_quad_small') == preset_path('gau_alpha_small')
    assert preset_path('flash_quad_base') != preset_path('gau_alpha_base')
    assert preset('flash_quad_tiny').model == 'flash_quad'
    assert load_config('flash_quad_tiny') == load_config('gau_alpha_tiny')


@pytest.mark.parametrize('name', preset_names())
def test_shipped_config(name):
    """Every preset: a registered model, a known size, e = 2d, one head,
    swish, 24 residual attention layers at base size, and a description
    that gives the file's sizes."""
    model, size = preset_model(name)
    cls = model_class(model)
    config = load_config(name)
    assert config == load_config(preset_path(name))
    assert config['hidden_size'] == WIDTHS[size]
    assert config['intermediate_size'] == 2 * config['hidden_size']
    assert config['num_attention_heads'] == 1
    assert config['hidden_act'] == 'swish'
    residual = config['num_hidden_layers'] * cls.units_per_block
    if size == 'base':
        assert residual == 24
    assert ('chunk_size' in config) == (model == 'flash')
    words = preset(name).description.replace(',', ' ').split()
    for word in ('d=%d' % config['hidden_size'],
                 's=%d' % config['attention_key_size'],
                 'L=%d' % config['num_hidden_layers']):
        assert word in words, (name, word)
    assert 'vocab %d' % config['vocab_size'] in preset(name).description


@pytest.mark.slow
@pytest.mark.parametrize('name', [n for n in preset_names()
                                  if n.endswith('_tiny')])
def test_tiny_presets_build_by_name_without_warnings(name):
    model, _ = preset_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConfigWarning)
        t = build_transformer_model(name, model=model,
                                    return_keras_model=False)
        bare = build_transformer_model(name, return_keras_model=False)
    assert type(t) is type(bare) is model_class(model)
    assert t.hidden_size == load_config(name)['hidden_size']


@pytest.mark.slow
def test_explicit_model_wins_over_the_preset_and_warns():
    with pytest.warns(PresetModelWarning) as record:
        t = build_transformer_model('flash_quad_tiny', model='gau_alpha',
                                    return_keras_model=False)
    assert type(t) is model_class('gau_alpha')
    msg = str(record[0].message)
    assert "'flash_quad'" in msg and "'gau_alpha'" in msg
    assert issubclass(PresetModelWarning, ConfigWarning)
    # the preset's own model (as a name in any case, or its class): silent
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConfigWarning)
        build_transformer_model('flash_tiny', model='FLASH')
        build_transformer_model('flash_tiny', model=model_class('flash'))


@pytest.mark.slow
def test_a_file_without_model_builds_bert4keras_default(config_writer):
    """A config file is no preset, even a preset's own file: without
    ``model`` it builds bert4keras's default, 'bert'."""
    path = config_writer({k: v for k, v in TINY_GAU.items()
                          if k != 'attention_key_size'})
    with warnings.catch_warnings():
        warnings.simplefilter('error', PresetModelWarning)
        warnings.simplefilter('ignore', ConfigWarning)
        assert type(build_transformer_model(
            path, return_keras_model=False)) is model_class('bert')
        t = build_transformer_model(preset_path('flash_tiny'), model='flash',
                                    return_keras_model=False)
    assert type(t) is model_class('flash')
    assert preset_of(preset_path('flash_tiny')) is None
    assert preset_of('flash_tiny.json') is PRESETS['flash_tiny']


def test_base_config_is_the_release():
    """chinese_GAU-alpha-char_L-24_H-768: d=768, e=1536, s=128, 12000 chars."""
    config = load_config('gau_alpha_base')
    assert (config['vocab_size'], config['hidden_size'],
            config['intermediate_size'], config['attention_key_size'],
            config['num_hidden_layers'], config['segment_vocab_size']) == (
                12000, 768, 1536, 128, 24, 2)


def test_every_registered_gau_model_has_shipped_configs():
    ours = [name for name, (cls, _) in MODELS.items()
            if cls.__module__ == 'gau_keras.models' and
            hasattr(cls, 'units_per_block')]
    assert ours
    rows = {(row.model, name.rsplit('_', 1)[1])
            for name, row in PRESETS.items()}
    for model in ours:
        for size in WIDTHS:
            assert (model, size) in rows


def test_config_name_forms(tmp_path, monkeypatch):
    """A preset is reachable as 'name' or 'name.json'; a local file of that
    name wins."""
    assert resolve_config_path('flash_tiny') == resolve_config_path(
        'flash_tiny.json') == os.path.join(PRESETS_DIR, 'flash_tiny.json')
    assert resolve_config_path('flash_quad_tiny.json') == os.path.join(
        PRESETS_DIR, 'gau_alpha_tiny.json')
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'flash_tiny.json').write_text(json.dumps(TINY_GAU))
    assert load_config('flash_tiny.json')['hidden_size'] == 16
    assert load_config('flash_tiny')['hidden_size'] == 64
    assert preset_of('flash_tiny.json') is None


def test_unknown_name_lists_the_shipped_configs():
    with pytest.raises(ConfigError) as info:
        build_transformer_model('gau_alpha_bse', model='gau_alpha')
    msg = str(info.value)
    assert "'gau_alpha_bse'" in msg
    for name in preset_names():
        assert name in msg
    # a path with folders is never taken for a shipped name
    with pytest.raises(ConfigError, match='does not exist'):
        load_config(os.path.join('elsewhere', 'gau_alpha_tiny.json'))


def test_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match='%s is a folder' % re.escape(
            str(tmp_path))):
        build_transformer_model(str(tmp_path), model='gau_alpha')
    (tmp_path / 'bert_config.json').write_text(json.dumps(TINY_GAU))
    with pytest.raises(ConfigError, match='did you mean .*bert_config.json'):
        load_config(str(tmp_path))


def test_unknown_keys_warn_and_list_them(config_writer):
    path = config_writer(dict(TINY_GAU, hiden_size=99, num_layers=3))
    with pytest.warns(ConfigWarning) as record:
        build_transformer_model(path, model='gau_alpha')
    msg = str(record[0].message)
    assert "'hiden_size'" in msg and "'num_layers'" in msg
    assert path in msg and 'gau_alpha' in msg
    # a keyword typo too
    with pytest.warns(ConfigWarning, match="'dropout_rat'"):
        build_transformer_model(path, model='gau_alpha', dropout_rat=0.0)
    # chunk_size is read by flash only
    with pytest.warns(ConfigWarning, match="'chunk_size'"):
        build_transformer_model('gau_alpha_tiny', model='gau_alpha',
                                chunk_size=64)


def test_published_config_keys_do_not_warn(config_writer):
    """Keys of Google's bert_config.json that no model reads are no typo."""
    google = dict(TINY_GAU, initializer_range=0.02, directionality='bidi',
                  pooler_fc_size=16, pooler_num_attention_heads=1,
                  pooler_num_fc_layers=3, pooler_size_per_head=16,
                  pooler_type='first_token_transform',
                  max_position_embeddings=512)
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConfigWarning)
        build_transformer_model(config_writer(google), model='gau_alpha')
        build_transformer_model('flash_tiny', model='flash',
                                local_normalizer='chunk')


@pytest.mark.parametrize('value', ['foo', 3])
def test_with_mlm_is_named_in_its_error(value):
    with pytest.raises(ConfigError, match=r'with_mlm=%s' % re.escape(
            repr(value))):
        build_transformer_model('gau_alpha_tiny', model='gau_alpha',
                                with_mlm=value)


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
