"""TF1 name-based checkpoints: release layout, name mapping, clear errors."""
import os

import gau_keras  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
from conftest import TINY_GAU, write_json
from gau_keras import build_transformer_model
from gau_keras.release_checkpoints import (CheckpointError,
                                           open_checkpoint, write_checkpoint)

V = TINY_GAU['vocab_size']
D = TINY_GAU['hidden_size']
E = TINY_GAU['intermediate_size']
S = TINY_GAU['attention_key_size']
L = TINY_GAU['num_hidden_layers']
PREFIX = 'GAU_alpha/encoder/layer_%d/gau/'


@pytest.fixture(scope='module')
def weights():
    return ref.random_release_weights(np.random.default_rng(11), V, D, E, S,
                                      L)


@pytest.fixture(scope='module')
def cfg(tmp_path_factory):
    return write_json(tmp_path_factory.mktemp('cfg') / 'config.json',
                      TINY_GAU)


def test_write_checkpoint_is_readable_by_tensorflow(tmp_path, weights):
    path = write_checkpoint(str(tmp_path / 'a' / 'bert_model.ckpt'), weights)
    for name, value in weights.items():
        got = tf.train.load_variable(path, name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, value)
    # a folder works too (its 'checkpoint' file names the latest prefix)
    assert tf.train.latest_checkpoint(str(tmp_path / 'a')) == path
    reader = open_checkpoint(str(tmp_path / 'a'))
    assert set(reader.get_variable_to_shape_map()) == set(weights)


def test_write_nothing_fails(tmp_path):
    with pytest.raises(CheckpointError, match='nothing to save'):
        write_checkpoint(str(tmp_path / 'x.ckpt'), {})


def test_loader_maps_release_names_to_sublayers(tmp_path, weights, cfg):
    """By name, not position: each release variable ends up in the right
    sublayer (bert4keras's positional load puts o_dense in q_scaleoffset
    on tf-keras 2.21, see test_layers)."""
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), weights)
    t = build_transformer_model(cfg, path, model='gau_alpha',
                                return_keras_model=False)
    for i in range(L):
        gau = t.layers['Transformer-%d-GatedAttentionUnit' % i]
        p = PREFIX % i
        np.testing.assert_array_equal(gau.i_dense.kernel.numpy(),
                                      weights[p + 'i_dense/kernel'])
        np.testing.assert_array_equal(gau.o_dense.kernel.numpy(),
                                      weights[p + 'o_dense/kernel'])
        np.testing.assert_array_equal(gau.q_scaleoffset.gamma.numpy(),
                                      weights[p + 'q_scaleoffset/gamma'])
        np.testing.assert_array_equal(gau.k_scaleoffset.gamma.numpy(),
                                      weights[p + 'k_scaleoffset/gamma'])
    np.testing.assert_array_equal(
        t.layers['Embedding-Token'].embeddings.numpy(),
        weights['bert/embeddings/word_embeddings'])
    np.testing.assert_array_equal(
        t.layers['Embedding-Segment'].embeddings.numpy(),
        weights['bert/embeddings/token_type_embeddings'])


def test_missing_variable_error(tmp_path, weights, cfg):
    missing = PREFIX % 1 + 'k_scaleoffset/gamma'
    partial = {k: v for k, v in weights.items() if k != missing}
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), partial)
    with pytest.raises(CheckpointError) as info:
        build_transformer_model(cfg, path, model='gau_alpha')
    msg = str(info.value)
    assert missing in msg
    assert 'Transformer-1-GatedAttentionUnit' in msg
    assert '(%d,)' % S in msg
    assert path in msg


def test_missing_variable_ignored_when_asked(tmp_path, weights, cfg):
    missing = PREFIX % 0 + 'q_scaleoffset/gamma'
    partial = {k: v for k, v in weights.items() if k != missing}
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), partial)
    t = build_transformer_model(cfg, path, model='gau_alpha',
                                ignore_invalid_weights=True,
                                return_keras_model=False)
    gau = t.layers['Transformer-0-GatedAttentionUnit']
    np.testing.assert_array_equal(gau.k_scaleoffset.gamma.numpy(),
                                  weights[PREFIX % 0 + 'k_scaleoffset/gamma'])


def test_shape_mismatch_error(tmp_path, weights, cfg):
    bad = dict(weights)
    name = PREFIX % 0 + 'o_dense/kernel'
    bad[name] = np.zeros((E + 1, D), np.float32)
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), bad)
    with pytest.raises(CheckpointError) as info:
        build_transformer_model(cfg, path, model='gau_alpha')
    msg = str(info.value)
    assert name in msg
    assert 'Transformer-0-GatedAttentionUnit' in msg
    assert '(%d, %d)' % (E + 1, D) in msg and '(%d, %d)' % (E, D) in msg


def test_shape_mismatch_checked_before_any_assignment(tmp_path, weights,
                                                      cfg):
    """A bad checkpoint leaves the model's weights untouched."""
    t = build_transformer_model(cfg, model='gau_alpha',
                                return_keras_model=False)
    before = [w.copy() for w in t.model.get_weights()]
    bad = dict(weights)
    bad[PREFIX % 1 + 'o_dense/kernel'] = np.zeros((3, 3), np.float32)
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), bad)
    with pytest.raises(CheckpointError):
        t.load_weights_from_checkpoint(path)
    for a, b in zip(before, t.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unreadable_checkpoint(tmp_path, cfg):
    with pytest.raises(CheckpointError, match='cannot read checkpoint'):
        build_transformer_model(cfg, str(tmp_path / 'nope.ckpt'),
                                model='gau_alpha')
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(CheckpointError, match='no checkpoint found'):
        build_transformer_model(cfg, str(tmp_path / 'empty'),
                                model='gau_alpha')


def test_save_as_float16_and_reload(tmp_path, weights, cfg):
    path = write_checkpoint(str(tmp_path / 'in.ckpt'), weights)
    t = build_transformer_model(cfg, path, model='gau_alpha',
                                return_keras_model=False)
    out = t.save_weights_as_checkpoint(str(tmp_path / 'half.ckpt'),
                                       dtype='float16')
    name = PREFIX % 0 + 'i_dense/kernel'
    assert tf.train.load_variable(out, name).dtype == np.float16
    again = build_transformer_model(cfg, out, model='gau_alpha',
                                    return_keras_model=False)
    np.testing.assert_allclose(
        again.layers['Transformer-0-GatedAttentionUnit'].i_dense.kernel
        .numpy(), weights[name], atol=2e-3)


def test_keep_tokens_selects_embedding_rows(tmp_path, weights, cfg):
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), weights)
    keep = [0, 7, 3, 12]
    model = build_transformer_model(cfg, path, model='gau_alpha',
                                    keep_tokens=keep, with_mlm='linear')
    table = model.get_layer('Embedding-Token').get_weights()[0]
    np.testing.assert_array_equal(
        table, weights['bert/embeddings/word_embeddings'][keep])
    tokens = np.array([[1, 2, 3, 0]])
    got = model.predict([tokens, np.zeros_like(tokens)], verbose=0)
    full = ref.gau_alpha(np.array([[7, 3, 12, 0]]), np.zeros((1, 4), int),
                         weights, L, E, S, with_mlm='linear')[..., keep]
    np.testing.assert_allclose(got[0, :3], full[0, :3], atol=1e-4)


def test_fresh_init_follows_roformer_v2_rule(cfg):
    """Random init (training from scratch): truncated normal with std
    1/sqrt(fan) · L^(-1/3), q/k gammas ~ 1, and no two weights identical
    (an unseeded initializer instance reused by Keras 2.21 would repeat)."""
    t = build_transformer_model(cfg, model='gau_alpha',
                                return_keras_model=False)
    values = {w.name: w.numpy() for w in t.model.weights}
    items = list(values.items())
    for i, (a, va) in enumerate(items):
        for b, vb in items[i + 1:]:
            assert not (va.shape == vb.shape and np.array_equal(va, vb)), (
                a, b)
    gain = L ** (-1.0 / 3)
    for i in range(L):
        prefix = 'Transformer-%d-GatedAttentionUnit/' % i
        assert values[prefix + 'i_dense/kernel:0'].std() == pytest.approx(
            gain / np.sqrt(D), rel=0.1)
        assert values[prefix + 'o_dense/kernel:0'].std() == pytest.approx(
            gain / np.sqrt(E), rel=0.1)
        assert values[prefix + 'q_scaleoffset/gamma:0'].mean() == \
            pytest.approx(1.0, abs=0.05)
    assert np.abs(values['Embedding-Token/embeddings:0']).max() < \
        2.5 * values['Embedding-Token/embeddings:0'].std()


@pytest.mark.slow
def test_bert4keras_models_from_builder_save_checkpoints(tmp_path):
    """build_transformer_model(model='bert', return_keras_model=False)
    returns bert4keras's BERT with gau_keras's saver: bert4keras's own
    save_weights_as_checkpoint needs a TF1 session and fails in TF2 eager
    ('The Session graph is empty'); gau_keras.release_checkpoints writes the
    same names in eager mode, and the builder reloads them exactly."""
    from gau_keras import release_checkpoints as checkpoints
    cfg = write_json(tmp_path / 'bert.json', {
        'vocab_size': 30, 'hidden_size': 8, 'num_hidden_layers': 1,
        'num_attention_heads': 2, 'intermediate_size': 16,
        'hidden_act': 'gelu', 'max_position_embeddings': 16})
    t = build_transformer_model(cfg, model='bert', return_keras_model=False)
    tokens = np.array([[1, 2, 3, 0]])
    want = t.model.predict([tokens, 0 * tokens], verbose=0)
    # gau_keras's saver, called directly, handles bert4keras classes
    path = checkpoints.save_weights_as_checkpoint(
        t, str(tmp_path / 'ours' / 'bert_model.ckpt'))
    again = build_transformer_model(cfg, path, model='bert')
    np.testing.assert_array_equal(
        again.predict([tokens, 0 * tokens], verbose=0), want)
    # the bert4keras-style method on the object the builder returned
    path = str(tmp_path / 'theirs' / 'bert_model.ckpt')
    t.save_weights_as_checkpoint(path)
    again = build_transformer_model(cfg, path, model='bert')
    np.testing.assert_array_equal(
        again.predict([tokens, 0 * tokens], verbose=0), want)


def test_extra_checkpoint_variables_are_ignored(tmp_path, weights, cfg):
    """Real checkpoints also hold global_step, optimizer slots, pooler..."""
    extra = dict(weights)
    extra['global_step'] = np.array(1000, np.int64)
    extra[PREFIX % 0 + 'i_dense/kernel/adam_m'] = np.ones((D, 2 * E + S),
                                                          np.float32)
    extra['bert/pooler/dense/kernel'] = np.ones((D, D), np.float32)
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), extra)
    t = build_transformer_model(cfg, path, model='gau_alpha',
                                return_keras_model=False)
    np.testing.assert_array_equal(
        t.layers['Transformer-0-GatedAttentionUnit'].i_dense.kernel.numpy(),
        weights[PREFIX % 0 + 'i_dense/kernel'])


def test_dict_checkpoint_loads(weights, cfg):
    """A {name: array} dict is accepted wherever a checkpoint path is."""
    t = build_transformer_model(cfg, weights, model='gau_alpha',
                                return_keras_model=False)
    np.testing.assert_array_equal(
        t.layers['Transformer-1-GatedAttentionUnit'].o_dense.kernel.numpy(),
        weights[PREFIX % 1 + 'o_dense/kernel'])


def test_dict_checkpoint_missing_variable_error_is_short(weights, cfg):
    """The error names the variable and layer without dumping every array
    of the dict into the message."""
    missing = PREFIX % 1 + 'o_dense/kernel'
    partial = {k: v for k, v in weights.items() if k != missing}
    with pytest.raises(CheckpointError) as info:
        build_transformer_model(cfg, partial, model='gau_alpha')
    msg = str(info.value)
    assert missing in msg and 'Transformer-1-GatedAttentionUnit' in msg
    assert 'array(' not in msg and len(msg) < 500, msg[:300]


# ---- damaged files, keep_tokens, export folders ----------------------------

def test_truncated_checkpoint_names_the_file(tmp_path, weights, cfg):
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), weights)
    data = path + '.data-00000-of-00001'
    with open(data, 'r+b') as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(CheckpointError) as info:
        build_transformer_model(cfg, path, model='gau_alpha')
    assert data in str(info.value) and 'truncated' in str(info.value)


def test_integer_variable_is_not_cast_into_a_float_kernel(tmp_path, weights,
                                                         cfg):
    name = PREFIX % 0 + 'o_dense/kernel'
    bad = dict(weights)
    bad[name] = np.ones(weights[name].shape, np.int32)
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), bad)
    with pytest.raises(CheckpointError, match='%s.* is int32 but layer '
                       "'Transformer-0-GatedAttentionUnit'" % name):
        build_transformer_model(cfg, path, model='gau_alpha')


def test_keep_tokens_past_the_rows_is_named(tmp_path, weights, cfg):
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), weights)
    with pytest.raises(CheckpointError, match='keep_tokens id %d is past '
                       'the %d rows' % (V + 3, V)):
        build_transformer_model(cfg, path, model='gau_alpha',
                                keep_tokens=[0, 5, V + 3])
    with pytest.raises(CheckpointError, match='non-negative integer'):
        build_transformer_model(cfg, path, model='gau_alpha',
                                keep_tokens=[0, -2, 4])


@pytest.mark.slow
def test_saved_keep_tokens_model_reloads_with_the_same_keep_tokens(
        tmp_path, weights, cfg):
    """Its rows are already the kept ones: loading with the same list must
    not index them a second time (keep = [3, 0, 1, 2]: rows 3, 0, 1, 2
    re-indexed again would become 2, 3, 0, 1)."""
    path = write_checkpoint(str(tmp_path / 'bert_model.ckpt'), weights)
    keep = [3, 0, 1, 2]
    t = build_transformer_model(cfg, path, model='gau_alpha',
                                keep_tokens=keep, return_keras_model=False)
    out = t.save_weights_as_checkpoint(str(tmp_path / 'kept' / 'm.ckpt'))
    want = weights['bert/embeddings/word_embeddings'][keep]
    again = build_transformer_model(cfg, out, model='gau_alpha',
                                    keep_tokens=keep)
    np.testing.assert_array_equal(
        again.get_layer('Embedding-Token').get_weights()[0], want)
    plain = build_transformer_model(cfg, out, model='gau_alpha',
                                    vocab_size=len(keep))
    np.testing.assert_array_equal(
        plain.get_layer('Embedding-Token').get_weights()[0], want)
    with pytest.raises(CheckpointError, match='re-index'):
        build_transformer_model(cfg, out, model='gau_alpha',
                                keep_tokens=[0, 1, 3, 2])
    # a reduced table without the marker is refused, not scrambled
    reduced = dict(weights)
    reduced['bert/embeddings/word_embeddings'] = want
    bare = write_checkpoint(str(tmp_path / 'bare' / 'm.ckpt'), reduced)
    with pytest.raises(CheckpointError, match='looks already reduced'):
        build_transformer_model(cfg, bare, model='gau_alpha',
                                keep_tokens=keep)


def test_export_into_a_folder_replaces_its_checkpoint(tmp_path, weights,
                                                      cfg):
    """save_weights_as_checkpoint('X') with X a folder holding another
    checkpoint: a later load of X returns the new weights."""
    folder = tmp_path / 'X'
    write_checkpoint(str(folder / 'old.ckpt'), weights)
    t = build_transformer_model(cfg, model='gau_alpha',
                                return_keras_model=False)
    new = t.layers['Embedding-Token'].embeddings.numpy()
    out = t.save_weights_as_checkpoint(str(folder))
    assert os.path.dirname(out) == str(folder)
    again = build_transformer_model(cfg, str(folder), model='gau_alpha')
    np.testing.assert_array_equal(
        again.get_layer('Embedding-Token').get_weights()[0], new)
