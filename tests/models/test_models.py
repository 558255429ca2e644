"""GAU-α model, builder and the acceptance check against numpy.

ACCEPTANCE: a checkpoint in the public release's layout (exactly the
release's variable names) loads through ``build_transformer_model`` and the
model matches the plain-numpy forward pass of the whole GAU-α to 1e-4 on the
real tokens of a padded batch, for the encoder (+ tied MLM) and the LM.
"""
import gau_keras  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
from conftest import TINY_GAU, padded_batch, write_json
from gau_keras import build_transformer_model, keras, register_model
from gau_keras.release_checkpoints import write_checkpoint
from gau_keras.layers import custom_objects
from gau_keras.configs import load_config
from gau_keras.models import FLASH, FLASH_Quad, GAU_alpha

V = TINY_GAU['vocab_size']
D = TINY_GAU['hidden_size']
E = TINY_GAU['intermediate_size']
S = TINY_GAU['attention_key_size']
L = TINY_GAU['num_hidden_layers']


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """(config path, checkpoint prefix, weights) in the release layout."""
    folder = tmp_path_factory.mktemp('release')
    weights = ref.random_release_weights(np.random.default_rng(7), V, D, E,
                                         S, L)
    ckpt = write_checkpoint(str(folder / 'bert_model.ckpt'), weights)
    cfg = write_json(folder / 'bert_config.json', TINY_GAU)
    return cfg, ckpt, weights


@pytest.fixture(scope='module')
def mlm_model(release):
    cfg, ckpt, _ = release
    return build_transformer_model(cfg, ckpt, model='gau_alpha',
                                   with_mlm='linear')


@pytest.fixture(scope='module')
def encoder(release):
    cfg, ckpt, _ = release
    return build_transformer_model(cfg, ckpt, model='gau_alpha',
                                   return_keras_model=False)


@pytest.fixture(scope='module')
def lm_model(release):
    cfg, ckpt, _ = release
    return build_transformer_model(cfg, ckpt, model='gau_alpha',
                                   application='lm', with_mlm='linear')


def batch(seed=0, lengths=(40, 21, 5, 1), n=40, segments=True):
    return padded_batch(np.random.default_rng(seed), lengths, n, V, segments)


# ------------------------------------------------------------- acceptance


def test_release_checkpoint_has_exactly_the_release_names(release):
    _, ckpt, weights = release
    names = dict(tf.train.list_variables(ckpt))
    want = {'bert/embeddings/word_embeddings': [V, D],
            'bert/embeddings/token_type_embeddings': [2, D]}
    for i in range(L):
        prefix = 'GAU_alpha/encoder/layer_%d/gau/' % i
        want[prefix + 'i_dense/kernel'] = [D, 2 * E + S]
        want[prefix + 'q_scaleoffset/gamma'] = [S]
        want[prefix + 'k_scaleoffset/gamma'] = [S]
        want[prefix + 'o_dense/kernel'] = [E, D]
    assert names == want


def test_acceptance_encoder_mlm_matches_numpy(release, mlm_model):
    _, _, weights = release
    tokens, segs = batch()
    got = mlm_model.predict([tokens, segs], verbose=0)
    assert got.shape == (4, 40, V) and got.dtype == np.float32
    want = ref.gau_alpha(tokens, segs, weights, L, E, S, with_mlm='linear')
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)


def test_acceptance_encoder_hidden_states_match_numpy(release, encoder):
    _, _, weights = release
    tokens, segs = batch(seed=1)
    got = encoder.model.predict([tokens, segs], verbose=0)
    want = ref.gau_alpha(tokens, segs, weights, L, E, S)
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)
    # each hidden state is RMS-normalised
    np.testing.assert_allclose(np.mean(got[real] ** 2, -1), 1.0, rtol=1e-4)


def test_acceptance_lm_matches_numpy_causal(release, lm_model):
    _, _, weights = release
    tokens, segs = batch(seed=2)
    got = lm_model.predict([tokens, segs], verbose=0)
    want = ref.gau_alpha(tokens, segs, weights, L, E, S, application='lm',
                         with_mlm='linear')
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)


def test_unilm_matches_numpy(release):
    cfg, ckpt, weights = release
    model = build_transformer_model(cfg, ckpt, model='gau_alpha',
                                    application='unilm', with_mlm='linear')
    tokens, segs = batch(seed=3)
    got = model.predict([tokens, segs], verbose=0)
    want = ref.gau_alpha(tokens, segs, weights, L, E, S, application='unilm',
                         with_mlm='linear')
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)


# ------------------------------------------------ padding and causality


def test_model_padding_invariance(mlm_model):
    tokens, segs = batch(seed=4, lengths=(12, 3, 7, 1), n=12)
    padded = mlm_model.predict([tokens, segs], verbose=0)
    for r, length in enumerate((12, 3, 7, 1)):
        alone = mlm_model.predict([tokens[r:r + 1, :length],
                                   segs[r:r + 1, :length]], verbose=0)[0]
        np.testing.assert_allclose(padded[r, :length], alone, atol=2e-5,
                                   rtol=1e-5)


def test_model_padding_length_does_not_matter(mlm_model):
    tokens, segs = batch(seed=5, lengths=(4, 6), n=6)
    wide = np.zeros((2, 40), np.int32)
    wide[:, :6] = tokens
    wseg = np.zeros((2, 40), np.int32)
    wseg[:, :6] = segs
    a = mlm_model.predict([tokens, segs], verbose=0)
    b = mlm_model.predict([wide, wseg], verbose=0)
    real = tokens != 0
    np.testing.assert_allclose(b[:, :6][real], a[real], atol=2e-5)


def test_lm_no_leak(lm_model):
    tokens, segs = batch(seed=6, lengths=(10, 10), n=10, segments=False)
    y = lm_model.predict([tokens, segs], verbose=0)
    changed = tokens.copy()
    changed[:, 5:] = (changed[:, 5:] % (V - 1)) + 1   # still non-padding
    assert np.all(changed[:, 5:] != tokens[:, 5:])
    y2 = lm_model.predict([changed, segs], verbose=0)
    np.testing.assert_allclose(y2[:, :5], y[:, :5], atol=1e-5)
    assert np.abs(y2[:, 5:] - y[:, 5:]).max() > 1e-3


def test_encoder_does_see_the_future(mlm_model):
    """Sanity check of the no-leak test: the encoder is bidirectional."""
    tokens, segs = batch(seed=6, lengths=(10, 10), n=10, segments=False)
    changed = tokens.copy()
    changed[:, 5:] = (changed[:, 5:] % (V - 1)) + 1
    y = mlm_model.predict([tokens, segs], verbose=0)
    y2 = mlm_model.predict([changed, segs], verbose=0)
    assert np.abs(y2[:, :5] - y[:, :5]).max() > 1e-4


# ------------------------------------------------------------ save / load


def test_checkpoint_round_trip(release, encoder, tmp_path):
    cfg, _, weights = release
    path = str(tmp_path / 'out' / 'model.ckpt')
    encoder.save_weights_as_checkpoint(path)
    saved = dict(tf.train.list_variables(path))
    assert set(saved) == set(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(tf.train.load_variable(path, name),
                                      value)
    again = build_transformer_model(cfg, path, model='gau_alpha')
    tokens, segs = batch(seed=7)
    np.testing.assert_array_equal(
        again.predict([tokens, segs], verbose=0),
        encoder.model.predict([tokens, segs], verbose=0))


@pytest.mark.parametrize('fmt', ['h5', 'keras', pytest.param(
    'savedmodel', marks=pytest.mark.slow)])
def test_keras_save_load_model(encoder, tmp_path, fmt):
    """model.save + keras.models.load_model(custom_objects=...) round trip.

    The layers' initializer is the registered RoFormerV2Initializer (a bound
    method, as in bert4keras, would serialise as {'class_name': 'method'}
    and make h5 / .keras loading fail).
    """
    model = encoder.model
    path = str(tmp_path / {'h5': 'model.h5', 'keras': 'model.keras',
                           'savedmodel': 'model_dir'}[fmt])
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects=custom_objects(),
                                     compile=False)
    assert isinstance(loaded.get_layer('Transformer-0-GatedAttentionUnit'),
                      custom_objects()['GatedAttentionUnit'])
    tokens, segs = batch(seed=8)
    np.testing.assert_allclose(loaded.predict([tokens, segs], verbose=0),
                               model.predict([tokens, segs], verbose=0),
                               atol=1e-6)


# ----------------------------------------------------------------- builder


B4K_TINY = {'vocab_size': 30, 'hidden_size': 8, 'num_hidden_layers': 1,
            'num_attention_heads': 2, 'intermediate_size': 16,
            'hidden_act': 'gelu', 'max_position_embeddings': 16,
            'type_vocab_size': 2, 'embedding_size': 8}


@pytest.mark.parametrize('name', ['bert', 'roberta', 'albert', 'nezha',
                                  'roformer', 'roformer_v2', 'gpt', 't5',
                                  'BERT', 'gau_alpha', 'GAU_alpha'])
def test_builder_accepts_bert4keras_names(config_writer, name):
    cfg = config_writer(B4K_TINY if 'gau' not in name.lower() else TINY_GAU)
    model = build_transformer_model(cfg, model=name)
    assert isinstance(model, keras.Model)
    if name.startswith('t5'):
        return
    tokens = np.array([[1, 2, 3, 0]], np.int32)
    out = model.predict([tokens, np.zeros_like(tokens)], verbose=0)
    assert out.shape[:2] == (1, 4) and np.all(np.isfinite(out))


def test_builder_accepts_a_class(tiny_config_path):
    t = build_transformer_model(tiny_config_path, model=GAU_alpha,
                                return_keras_model=False)
    assert isinstance(t, GAU_alpha)


def test_register_model(tiny_config_path):
    class MyGAU(GAU_alpha):
        normalization = 'squared_relu'

    register_model('my_gau', MyGAU)
    t = build_transformer_model(tiny_config_path, model='my_gau',
                                return_keras_model=False)
    assert type(t) is MyGAU
    layer = t.layers['Transformer-0-GatedAttentionUnit']
    assert layer.normalization == 'squared_relu'
    with pytest.raises(TypeError, match='Transformer'):
        register_model('bad', dict)


def test_unknown_model_name(tiny_config_path):
    with pytest.raises(ValueError, match="unknown model 'gau_beta'.*"
                       "gau_alpha"):
        build_transformer_model(tiny_config_path, model='gau_beta')


def test_bad_application(tiny_config_path):
    with pytest.raises(ValueError, match="application.*encoder.*'seq2seq'"):
        build_transformer_model(tiny_config_path, model='gau_alpha',
                                application='seq2seq')


def test_unknown_normalization_and_rope_layout(tiny_config_path):
    with pytest.raises(ValueError, match='normalization.*softmax_plus'):
        build_transformer_model(tiny_config_path, model='gau_alpha',
                                normalization='relu2')
    with pytest.raises(ValueError, match='rope_layout.*interleaved'):
        build_transformer_model(tiny_config_path, model='gau_alpha',
                                rope_layout='neox')


@pytest.mark.slow
def test_half_rope_layout_and_squared_relu_match_numpy(tiny_config_path,
                                                       release):
    """Options reach the layers: a model built with rope_layout='half'
    differs from the interleaved one and squared_relu matches numpy."""
    _, ckpt, weights = release
    model = build_transformer_model(tiny_config_path, ckpt, model='gau_alpha',
                                    normalization='squared_relu')
    tokens, segs = batch(seed=9)
    got = model.predict([tokens, segs], verbose=0)
    want = ref.gau_alpha(tokens, segs, weights, L, E, S,
                         normalization='squared_relu')
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)
    half = build_transformer_model(tiny_config_path, ckpt, model='gau_alpha',
                                   normalization='squared_relu',
                                   rope_layout='half')
    assert np.abs(half.predict([tokens, segs], verbose=0) - got).max() > 1e-3


def test_shipped_configs_build():
    model = build_transformer_model('gau_alpha_tiny', model='gau_alpha',
                                    with_mlm=True)
    out = model.predict([np.array([[1, 2, 3]]), np.zeros((1, 3))],
                        verbose=0)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


# --------------------------------------------------------- mixed precision



@pytest.mark.parametrize('name,tol', [('mixed_bfloat16', 0.06),
                                      ('mixed_float16', 0.01)])
def test_model_without_mlm_outputs_float32(release, policy, name, tol):
    cfg, ckpt, weights = release
    policy(name)
    model = build_transformer_model(cfg, ckpt, model='gau_alpha')
    tokens, segs = batch(seed=11)
    got = model.predict([tokens, segs], verbose=0)
    assert got.dtype == np.float32
    want = ref.gau_alpha(tokens, segs, weights, L, E, S)
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=tol)


# ------------------------------------------------------------ other options


def test_custom_position_ids_match_numpy(release):
    cfg, ckpt, weights = release
    model = build_transformer_model(cfg, ckpt, model='gau_alpha',
                                    custom_position_ids=True)
    assert len(model.inputs) == 3
    tokens, segs = batch(seed=12)
    pos = np.tile(np.arange(40) + 5, (4, 1)).astype(np.int32)
    pos[1] = np.arange(40)[::-1]
    got = model.predict([tokens, segs, pos], verbose=0)
    want = ref.gau_alpha(tokens, segs, weights, L, E, S, position_ids=pos)
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)


def test_without_segment_embeddings(release):
    cfg, ckpt, weights = release
    model = build_transformer_model(cfg, ckpt, model='gau_alpha',
                                    segment_vocab_size=0, with_mlm='linear')
    assert len(model.inputs) == 1
    tokens, _ = batch(seed=13)
    no_seg = dict(weights)
    no_seg['bert/embeddings/token_type_embeddings'] = np.zeros((2, D))
    got = model.predict(tokens, verbose=0)
    want = ref.gau_alpha(tokens, np.zeros_like(tokens), no_seg, L, E, S,
                         with_mlm='linear')
    real = tokens != 0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_embedding_size_differs_from_hidden(tiny_config_path, tmp_path):
    t = build_transformer_model(tiny_config_path, model='gau_alpha',
                                embedding_size=8, with_mlm='linear',
                                return_keras_model=False)
    names = [layer.name for layer in t.model.layers]
    assert 'Embedding-Mapping' in names and 'Output-Mapping' in names
    tokens, segs = batch(seed=14)
    out = t.model.predict([tokens, segs], verbose=0)
    assert out.shape == (4, 40, V)
    path = t.save_weights_as_checkpoint(str(tmp_path / 'e.ckpt'))
    saved = dict(tf.train.list_variables(path))
    assert saved['bert/encoder/embedding_hidden_mapping_in/kernel'] == [8, D]
    again = build_transformer_model(tiny_config_path, path,
                                    model='gau_alpha', embedding_size=8,
                                    with_mlm='linear')
    np.testing.assert_array_equal(again.predict([tokens, segs], verbose=0),
                                  out)


def test_encoder_only_models_reject_lm(config_writer):
    cfg = config_writer(B4K_TINY)
    with pytest.raises(ValueError, match='"t5" model can not be used as '
                       '"lm"'):
        build_transformer_model(cfg, model='t5', application='lm')


def test_attention_dropout_only_in_training(release):
    cfg, ckpt, _ = release
    model = build_transformer_model(cfg, ckpt, model='gau_alpha',
                                    dropout_rate=0.0,
                                    attention_dropout_rate=0.5)
    tokens, segs = batch(seed=15)
    a = model([tokens, segs], training=False).numpy()
    b = model([tokens, segs], training=False).numpy()
    np.testing.assert_array_equal(a, b)
    c = model([tokens, segs], training=True).numpy()
    assert np.abs(c - a).max() > 1e-3


@pytest.mark.parametrize('application', ['encoder', 'lm'])
def test_all_padding_row_is_finite_and_harmless(mlm_model, lm_model,
                                                application):
    model = mlm_model if application == 'encoder' else lm_model
    tokens, segs = batch(seed=16, lengths=(6, 0, 4), n=8)
    out = model.predict([tokens, segs], verbose=0)
    assert np.all(np.isfinite(out))
    alone = model.predict([tokens[:1], segs[:1]], verbose=0)
    np.testing.assert_allclose(out[0], alone[0], atol=1e-5)


@pytest.mark.parametrize('application', ['unilm', 'lm'])
def test_long_sequence_masks_exact_under_bfloat16(release, policy,
                                                  application):
    """Under mixed_bfloat16 the UniLM mask's cumsum of segment ids runs in
    bfloat16 (the Lambda autocasts the float32 'Input-Segment'), which is
    exact only up to 256: with > 256 target tokens, ties appear and queries
    see future tokens.  The mask must equal the exact one, and changing
    future tokens must leave earlier outputs bit-identical."""
    cfg, ckpt, _ = release
    policy('mixed_bfloat16')
    t = build_transformer_model(cfg, ckpt, model='gau_alpha',
                                application=application,
                                return_keras_model=False)
    n = 400
    rng = np.random.default_rng(17)
    tokens = rng.integers(1, V, (1, n)).astype(np.int32)
    segs = np.zeros((1, n), np.int32)
    segs[0, 40:] = 1
    if application == 'unilm':
        mask_model = keras.Model(t.model.inputs,
                                 t.layers['Attention-UniLM-Mask'].output)
        got = mask_model.predict([tokens, segs], verbose=0)
        want = ref.unilm_mask(segs)
        assert np.sum(got != want) == 0, (
            '%d wrong mask entries, %d future leaks'
            % (np.sum(got != want), np.sum(got & ~want)))
    y = t.model.predict([tokens, segs], verbose=0)
    changed = tokens.copy()
    changed[0, 300:] = (changed[0, 300:] % (V - 1)) + 1
    y2 = t.model.predict([changed, segs], verbose=0)
    np.testing.assert_array_equal(y2[0, :300], y[0, :300])



# ------------------------------------------- one skeleton, data per model


def roformer_v2_std(fan, layers):
    """RoFormerV2's std: 1.13684723/√fan · L^(-1/3) (1.13684723 undoes the
    ±2σ truncation, so the drawn values have std 1/√fan · L^(-1/3))."""
    return 1.13684723 / np.sqrt(fan) * layers ** (-1.0 / 3)


@pytest.mark.parametrize('cls,preset', [(GAU_alpha, 'gau_alpha_base'),
                                        (FLASH_Quad, 'flash_quad_base'),
                                        (FLASH, 'flash_base')])
def test_initializer_depth_counts_residual_layers(cls, preset):
    """FLASH(-Quad) base: 12 blocks of 2 GAUs = 24 residual layers, the same
    depth as GAU-α base's 24, so the same std (not 12^(-1/3)-scaled)."""
    t = cls(**load_config(preset))
    init = t.initializer
    assert init.num_hidden_layers == 24
    shape = [768, 2 * 1536 + 128]
    np.testing.assert_allclose(init.stddev(shape), roformer_v2_std(768, 24),
                               rtol=1e-12)
    assert abs(init.stddev(shape) / roformer_v2_std(768, 12) - 1) > 0.2


@pytest.mark.parametrize('model,blocks', [('flash_quad', 3), ('flash', 3),
                                          ('gau_alpha', 6)])
def test_drawn_kernels_have_the_residual_depth_std(model, blocks):
    """Empirical std of a built i_dense kernel = 1/√d · (6 residual
    layers)^(-1/3), whether 3 blocks of 2 units or 6 blocks of 1."""
    t = build_transformer_model('%s_tiny' % model, model=model,
                                num_hidden_layers=blocks,
                                return_keras_model=False)
    layer = t.layers[t.layer_name(1, 0)]
    kernel = layer.trainable_weights[0].numpy()     # i_dense/kernel
    d = kernel.shape[0]
    want = 1.0 / np.sqrt(d) * 6 ** (-1.0 / 3)
    assert abs(kernel.std() / want - 1) < 0.05, (kernel.std(), want)


def test_layer_names_and_checkpoint_names_come_from_the_class():
    assert GAU_alpha.layer_name(3) == 'Transformer-3-GatedAttentionUnit'
    assert FLASH_Quad.layer_name(3, 1) == 'Transformer-3-GatedAttentionUnit-1'
    assert FLASH.layer_name(0, 1) == 'Transformer-0-MixedChunkAttention-1'
    assert GAU_alpha.checkpoint_prefix(2) == 'GAU_alpha/encoder/layer_2/gau/'
    assert FLASH_Quad.checkpoint_prefix(2, 1) == (
        'FLASH_Quad/encoder/layer_2/gau_1/')
    assert FLASH.checkpoint_prefix(0, 0) == 'FLASH/encoder/layer_0/mca_0/'


@pytest.mark.parametrize('model', ['gau_alpha', 'flash_quad', 'flash'])
def test_variable_mapping_names_every_weight_once(model):
    """The mapping covers every trainable weight of the model, names each
    checkpoint variable once, and lists the units' weights in layer order
    (shapes: i_dense [d, ...], o_dense [e, d], gammas [s] or [4, s])."""
    t = build_transformer_model('%s_tiny' % model, model=model,
                                return_keras_model=False)
    mapping = t.variable_mapping()
    names = [n for layer in mapping if layer in t.layers
             for n in mapping[layer]]
    assert len(names) == len(set(names))
    mapped = sum(len(t.layers[layer].trainable_weights) for layer in mapping
                 if layer in t.layers)
    assert mapped == len(t.model.trainable_weights)
    units = [layer for layer in mapping if 'Transformer-' in layer]
    assert len(units) == t.num_hidden_layers * t.units_per_block
    # the tiny presets: d=64, e=128, s=32; the layer's weight order must
    # match the checkpoint names' order
    shapes = {'i_dense/kernel': (64, 2 * 128 + 32),
              'o_dense/kernel': (128, 64),
              'q_scaleoffset/gamma': (32,), 'k_scaleoffset/gamma': (32,),
              'qk_scaleoffset/gamma': (4, 32)}
    for layer in units:
        weights = t.layers[layer].trainable_weights
        assert len(weights) == len(mapping[layer])
        for w, name in zip(weights, mapping[layer]):
            short = '/'.join(name.split('/')[-2:])
            assert tuple(w.shape) == shapes[short], (layer, w.name, name)


@pytest.mark.slow
def test_flash_local_normalizer_reaches_the_layers():
    for value in ('visible', 'chunk'):
        t = build_transformer_model('flash_tiny', model='flash',
                                    local_normalizer=value,
                                    return_keras_model=False)
        for i in range(2):
            for j in range(2):
                assert t.layers[FLASH.layer_name(i, j)].local_normalizer == (
                    value)
    t = build_transformer_model('flash_tiny', model='flash',
                                return_keras_model=False)
    assert t.layers[FLASH.layer_name(0, 0)].local_normalizer == 'visible'
    with pytest.raises(gau_keras.configs.ConfigError,
                       match="local_normalizer.*'1/c'"):
        build_transformer_model('flash_tiny', model='flash',
                                local_normalizer='1/c')


def test_register_model_is_one_line(tiny_config_path):
    class Deep(FLASH_Quad):
        units_per_block = 3

    register_model('flash_quad_3', Deep)
    t = build_transformer_model(tiny_config_path, model='flash_quad_3',
                                return_keras_model=False)
    assert Deep.layer_name(1, 2) in t.layers
    assert t.initializer.num_hidden_layers == 3 * L


# ------------------------------------------------------------- bad ids


def test_float_token_ids_are_rejected(mlm_model):
    tokens, segs = batch(seed=20, lengths=(5, 3), n=5)
    ok = mlm_model.predict([tokens.astype('float32'), segs], verbose=0)
    np.testing.assert_array_equal(
        ok, mlm_model.predict([tokens, segs], verbose=0))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='layer Embedding-Token: .*whole numbers'):
        mlm_model.predict([tokens + 0.5, segs], verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='layer Embedding-Segment: .*whole numbers'):
        mlm_model([tokens, segs + 0.25])


def test_one_dimensional_ids_are_a_clear_error(mlm_model):
    ids = np.array([2, 3, 4])
    with pytest.raises(ValueError, match=r"'Embedding-Token'.*\[batch, "
                       r"length\].*\(3,\)"):
        mlm_model([ids, np.zeros_like(ids)])
    with pytest.raises(ValueError, match=r"'Embedding-Token'.*\[batch, "
                       r"length\]"):
        mlm_model.predict([ids, np.zeros_like(ids)], verbose=0)
