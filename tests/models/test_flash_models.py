"""FLASH and FLASH-Quad models: builder, numpy references read from their
checkpoints, training, checkpoints (decoding: test_decoding.py)."""
import json
import os

import gau_keras  # noqa: F401  (must come before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import build_transformer_model
from gau_keras.backend import keras
from gau_keras.checkpoints import CheckpointError, write_checkpoint
from gau_keras.configs import ConfigError, load_config
from gau_keras.flash import MixedChunkAttention
from gau_keras.layers import GatedAttentionUnit

import flash_numpy_reference as ref_np

from conftest import config_path

MODELS = ('flash', 'flash_quad')


def config(model, size='tiny'):
    return config_path('%s_%s' % (model, size))


def build(model, application='encoder', **kwargs):
    """The tiny model as a Transformer (chunk 8 for FLASH, no dropout)."""
    kwargs.setdefault('dropout_rate', 0.0)
    kwargs.setdefault('attention_dropout_rate', 0.0)
    if model == 'flash':
        kwargs.setdefault('chunk_size', 8)
    return build_transformer_model(config(model), model=model,
                                   application=application,
                                   return_keras_model=False, **kwargs)


def run(model, ids, seg):
    """Inference outputs as numpy (an eager call: no predict tracing)."""
    return model([ids, seg], training=False).numpy()


def batch(b=2, n=21, seed=0, vocab=2000):
    rng = np.random.RandomState(seed)
    return rng.randint(1, vocab, (b, n)).astype('int32'), np.zeros(
        (b, n), 'int32')


def _shipped_flash_configs():
    from gau_keras.configs import preset_names
    return [tuple(name.rsplit('_', 1)) for name in preset_names()
            if name.rsplit('_', 1)[0] in MODELS]


def test_every_flash_model_ships_configs():
    shipped = _shipped_flash_configs()
    assert {m for m, _ in shipped} == set(MODELS)
    assert ('flash', 'tiny') in shipped and ('flash_quad', 'base') in shipped


@pytest.mark.parametrize('model,size', _shipped_flash_configs())
def test_shipped_configs(model, size):
    cfg = load_config(config(model, size))
    assert cfg['intermediate_size'] == 2 * cfg['hidden_size']   # e = 2d
    assert cfg['num_attention_heads'] == 1
    assert ('chunk_size' in cfg) == (model == 'flash')
    if size == 'base':
        assert (cfg['hidden_size'], cfg['attention_key_size']) == (768, 128)
        assert cfg.get('chunk_size', 256) == 256


@pytest.mark.parametrize('model,layer_type', [
    ('flash', MixedChunkAttention), ('flash_quad', GatedAttentionUnit)])
@pytest.mark.parametrize('application', ['encoder', 'lm'])
def test_structure_two_units_per_block(model, layer_type, application):
    t = build(model, application)
    units = [l for l in t.model.layers if isinstance(l, layer_type)]
    assert len(units) == 2 * t.num_hidden_layers
    assert all(u.units == 2 * t.hidden_size for u in units)
    assert all(u.normalization == 'squared_relu' for u in units)
    has_lm_mask = any(l.name == 'Attention-LM-Mask' for l in t.model.layers)
    if model == 'flash':
        assert all(u.chunk_size == 8 for u in units)
    assert all(u.causal == (application == 'lm') for u in units)
    assert not has_lm_mask        # causality is the layers' option


def test_flash_chunk_size_comes_from_config(tmp_path):
    cfg = json.load(open(config('flash')))
    cfg['chunk_size'] = 5
    path = tmp_path / 'c.json'
    path.write_text(json.dumps(cfg))
    t = build_transformer_model(str(path), model='flash',
                                return_keras_model=False)
    assert {l.chunk_size for l in t.model.layers
            if isinstance(l, MixedChunkAttention)} == {5}


@pytest.mark.parametrize('bad', [0, -3, 2.5, 'big'])
def test_bad_chunk_size_is_a_config_error(bad):
    with pytest.raises(ConfigError, match='chunk_size'):
        build_transformer_model(config('flash'), model='flash',
                                chunk_size=bad)


def test_flash_refuses_unilm_clearly():
    with pytest.raises(ConfigError, match='unilm'):
        build_transformer_model(config('flash'), model='flash',
                                application='unilm')


def test_flash_quad_unilm_prefix_mask():
    t = build('flash_quad', 'unilm')
    ids, seg = batch(1, 12)
    seg[:, 7:] = 1
    y = run(t.model, ids, seg)
    ids2 = ids.copy()
    ids2[:, 9:] = 5                 # change late target tokens only
    y2 = run(t.model, ids2, seg)
    np.testing.assert_allclose(y[:, :9], y2[:, :9], atol=1e-6)
    assert not np.allclose(y[:, 9:], y2[:, 9:])


@pytest.mark.parametrize('model', MODELS)
def test_lm_is_causal(model):
    t = build(model, 'lm', with_mlm='linear')
    ids, seg = batch(2, 27)
    y = run(t.model, ids, seg)
    ids2 = ids.copy()
    ids2[:, 13:] = np.random.RandomState(3).randint(1, 2000, (2, 14))
    y2 = run(t.model, ids2, seg)
    np.testing.assert_allclose(y[:, :13], y2[:, :13], atol=1e-6)
    assert not np.allclose(y[:, 13:], y2[:, 13:])


@pytest.mark.parametrize('application', ['encoder', 'lm'])
def test_flash_padding_invariance(application):
    """Right padding (a causal model cannot see it anyway: the masked
    tokens inside a sequence are checked against numpy below; left padding
    does not apply, as bert4keras's Embedding never masks token 0)."""
    t = build('flash', application)
    lengths = [19, 8, 30]
    ids, seg = batch(3, 30)
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
    y = run(t.model, ids, seg)
    for i, n in enumerate(lengths):
        alone = run(t.model, ids[i:i + 1, :n], seg[i:i + 1, :n])
        np.testing.assert_allclose(y[i, :n], alone[0], rtol=1e-5, atol=1e-5)


def randomize(t, seed=0):
    """Random weights of clearly different scales (gammas 1 ± 0.5), so a
    swapped pair of weights in the checkpoint mapping changes the output."""
    rng = np.random.RandomState(seed)
    for w in t.model.weights:
        scale = 0.5 if 'gamma' in w.name else 0.3
        base = 1.0 if 'gamma' in w.name else 0.0
        w.assign(base + scale * rng.normal(size=w.shape).astype('float32'))


def read_checkpoint(t, tmp_path):
    prefix = t.save_weights_as_checkpoint(str(tmp_path / 'model.ckpt'))
    reader = tf.train.load_checkpoint(prefix)
    return {n: reader.get_tensor(n).astype(np.float64)
            for n, _ in tf.train.list_variables(prefix)}


@pytest.mark.parametrize('model,options', [
    ('flash', {}), ('flash', {'embedding_size': 24}),
    ('flash', {'local_normalizer': 'chunk'}), ('flash_quad', {}),
    ('flash_quad', {'embedding_size': 24})])
@pytest.mark.parametrize('application', ['encoder', 'lm'])
def test_model_matches_numpy_from_its_checkpoint(model, options,
                                                 application, tmp_path):
    """The whole model (wiring, checkpoint names, Embedding-Mapping) vs
    numpy fed with the checkpoint it writes."""
    t = build(model, application, with_mlm='linear', **options)
    randomize(t)
    checkpoint = read_checkpoint(t, tmp_path)
    ids, seg = batch(2, 19, seed=8)
    ids[1, 13:] = 0              # right padding
    ids[0, [2, 9, 10]] = 0       # masked tokens inside the text
    seg[:, 10:] = 1
    causal = application == 'lm'
    if model == 'flash':
        expected = ref_np.flash_model(
            checkpoint, ids, seg, t.num_hidden_layers, 8, causal=causal,
            local_normalizer=options.get('local_normalizer', 'visible'))
    else:
        expected = ref_np.flash_quad_model(checkpoint, ids, seg,
                                           t.num_hidden_layers, causal)
    got = run(t.model, ids, seg)
    real = (ids != 0)[..., None]
    np.testing.assert_allclose(np.where(real, got, 0),
                               np.where(real, expected, 0), rtol=1e-4,
                               atol=1e-4)


def _compile(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))


@pytest.mark.slow
@pytest.mark.parametrize('model', MODELS)
@pytest.mark.parametrize('application', ['encoder', 'lm'])
def test_shipped_tiny_config_trains_saves_and_reloads(model, application,
                                                      tmp_path):
    """Acceptance: build from configs/<model>_tiny.json, train, save, load."""
    t = build_transformer_model(config(model), model=model,
                                application=application, with_mlm='linear',
                                return_keras_model=False)
    ids, seg = batch(2, 80)           # > chunk_size 64: two chunks
    before = [w.copy() for w in t.model.get_weights()]
    _compile(t.model)
    losses = [float(t.model.train_on_batch([ids, seg], ids))
              for _ in range(4)]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    changed = [not np.array_equal(a, b)
               for a, b in zip(before, t.model.get_weights())]
    assert sum(changed) >= len(changed) - 1
    prefix = str(tmp_path / 'model.ckpt')
    t.save_weights_as_checkpoint(prefix)
    fresh = build_transformer_model(config(model), prefix,
                                    model=model, application=application,
                                    with_mlm='linear')
    np.testing.assert_array_equal(
        run(fresh, ids, seg),
        run(t.model, ids, seg))


@pytest.mark.slow
@pytest.mark.parametrize('model,scope', [('flash', 'FLASH/encoder/layer_1/'
                                                   'mca_1/'),
                                         ('flash_quad', 'FLASH_Quad/encoder/'
                                                        'layer_1/gau_1/')])
def test_checkpoint_names_round_trip_and_missing_variable(model, scope,
                                                          tmp_path):
    t = build(model, 'lm')
    prefix = t.save_weights_as_checkpoint(str(tmp_path / 'a' / 'model.ckpt'))
    names = dict(tf.train.list_variables(prefix))
    assert scope + 'i_dense/kernel' in names
    assert 'bert/embeddings/word_embeddings' in names
    unit = 'mca' if model == 'flash' else 'gau'
    assert sum(unit in n for n in names) == 2 * t.num_hidden_layers * (
        3 if model == 'flash' else 4)

    fresh = build(model, 'lm')
    ids, seg = batch(2, 19)
    assert not np.allclose(run(fresh.model, ids, seg),
                           run(t.model, ids, seg))
    fresh.load_weights_from_checkpoint(prefix)
    np.testing.assert_array_equal(run(fresh.model, ids, seg),
                                  run(t.model, ids, seg))

    reader = tf.train.load_checkpoint(prefix)
    missing = scope + 'o_dense/kernel'
    partial = {n: reader.get_tensor(n) for n in names if n != missing}
    broken = write_checkpoint(str(tmp_path / 'b' / 'model.ckpt'), partial)
    with pytest.raises(CheckpointError, match=missing):
        build(model, 'lm').load_weights_from_checkpoint(broken)
