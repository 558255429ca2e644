"""Cached decoding of causal FLASH: MixedChunkAttention.decode_step and
gau_keras.decoding.FlashDecoder, against the full causal forward pass."""
import gau_keras  # noqa: F401  (must come before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import build_transformer_model
from gau_keras.decoding import (FlashDecoder, generate_without_cache,
                                sampler, softmax)
from gau_keras.flash import DecodeState, MixedChunkAttention

from conftest import config_path

D, E, S = 6, 10, 4


def make_layer(chunk_size=4, seed=0, **kwargs):
    """A built causal layer with random weights (biases too)."""
    layer = MixedChunkAttention(units=E, key_size=S, chunk_size=chunk_size,
                                causal=True, use_bias=True, **kwargs)
    layer(tf.zeros([1, 3, D]))
    rng = np.random.RandomState(seed)
    for w in layer.checkpoint_weights():
        w.assign(rng.normal(0, 0.5, w.shape).astype('float32'))
    return layer


def build(application='lm', **kwargs):
    """The tiny FLASH model as a Transformer (chunk 8, no dropout)."""
    kwargs.setdefault('dropout_rate', 0.0)
    kwargs.setdefault('attention_dropout_rate', 0.0)
    kwargs.setdefault('chunk_size', 8)
    return build_transformer_model(config_path('flash_tiny'), model='flash',
                                   application=application,
                                   return_keras_model=False, **kwargs)


def batch(b=2, n=21, seed=0, vocab=2000):
    rng = np.random.RandomState(seed)
    return rng.randint(1, vocab, (b, n)).astype('int32'), np.zeros(
        (b, n), 'int32')


def run(model, ids, seg):
    return model([ids, seg], training=False).numpy()


def decode_all(decoder, ids, seg):
    decoder.reset(ids.shape[0])
    return np.stack([decoder.step(ids[:, i], seg[:, i])
                     for i in range(ids.shape[1])], axis=1)


# ------------------------------------------------------------- the layer


@pytest.mark.parametrize('local_normalizer', ['visible', 'chunk'])
@pytest.mark.parametrize('normalization', ['softmax_plus', 'squared_relu',
                                           'squared_relu_n2'])
def test_decode_step_equals_full_causal_pass(normalization,
                                             local_normalizer):
    layer = make_layer(normalization=normalization,
                       local_normalizer=local_normalizer)
    x = np.random.RandomState(1).normal(size=(2, 14, D)).astype('float32')
    mask = np.ones((2, 14), bool)
    mask[1, [2, 5, 8]] = False
    full = layer(tf.constant(x), mask=tf.constant(mask)).numpy()
    state, outs = layer.initial_state(2), []
    for t in range(14):
        y, state = layer.decode_step(tf.constant(x[:, t:t + 1]), state,
                                     tf.constant(t), mask[:, t])
        outs.append(y.numpy())
    np.testing.assert_allclose(np.concatenate(outs, 1), full, rtol=1e-5,
                               atol=1e-5)


def test_decode_state_is_named():
    state = make_layer(chunk_size=4).initial_state(3)
    assert isinstance(state, DecodeState)
    assert state.k_cache.shape == (3, 4, S)
    assert state.v_cache.shape == (3, 4, E)
    assert state.kv_global.shape == (3, S, E)
    assert state.m_cache.shape == (3, 4)


def test_decode_needs_causal():
    layer = MixedChunkAttention(units=E, key_size=S, causal=False)
    with pytest.raises(ValueError, match='causal'):
        layer.initial_state(1)


# ------------------------------------------------------------ the decoder


@pytest.mark.slow
@pytest.mark.parametrize('normalization,jit', [('squared_relu', True),
                                               ('softmax_plus', False)])
def test_cached_decoding_equals_full_forward(normalization, jit):
    t = build(with_mlm='linear', normalization=normalization)
    ids, seg = batch(2, 29, seed=4)
    seg[:, 20:] = 1
    ids[1, 11] = 0                    # a padding (masked) token mid-chunk
    full = run(t.model, ids, seg)
    steps = decode_all(FlashDecoder(t, jit_compile=jit), ids, seg)
    np.testing.assert_allclose(steps, full, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cached_decoding_with_embedding_mapping():
    """embedding_size ≠ hidden_size: the decoder must apply
    Embedding-Mapping (and the head Output-Mapping) like the model."""
    t = build(with_mlm='linear', embedding_size=24)
    names = {l.name for l in t.model.layers}
    assert {'Embedding-Mapping', 'Output-Mapping'} <= names
    ids, seg = batch(2, 19, seed=2)
    full = run(t.model, ids, seg)
    steps = decode_all(FlashDecoder(t, jit_compile=False), ids, seg)
    np.testing.assert_allclose(steps, full, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cached_generation_equals_uncached_generation():
    lm = build_transformer_model(config_path('flash_tiny'), model='flash',
                                 application='lm', chunk_size=4)
    prompt = batch(2, 3, seed=5)[0]
    decoder = FlashDecoder(lm)
    cached = decoder.generate(prompt, 12)
    uncached = generate_without_cache(lm, prompt, 12)
    assert cached.shape == (2, 12)
    np.testing.assert_array_equal(cached, uncached)
    sampled = decoder.generate(prompt, 12, choose=sampler(3))
    np.testing.assert_array_equal(
        sampled, generate_without_cache(lm, prompt, 12, choose=sampler(3)))
    assert len(np.unique(sampled)) > 3       # not a constant sequence
    assert decoder.generate(prompt, 0).shape == (2, 0)


@pytest.mark.slow
def test_sampler_on_a_logits_model():
    """with_mlm='linear': generate() samples from softmax(logits), the same
    tokens as the probability model with the same weights; the sampler fed
    logits directly refuses them."""
    probs_lm = build(with_mlm=True)
    logits_lm = build(with_mlm='linear')
    logits_lm.model.set_weights(probs_lm.model.get_weights())
    prompt = batch(2, 3, seed=6)[0]
    from_probs = FlashDecoder(probs_lm, jit_compile=False)
    from_logits = FlashDecoder(logits_lm, jit_compile=False)
    assert from_logits.outputs_logits and not from_probs.outputs_logits
    want = from_probs.generate(prompt, 10, choose=sampler(1))
    np.testing.assert_array_equal(
        from_logits.generate(prompt, 10, choose=sampler(1)), want)
    np.testing.assert_array_equal(
        generate_without_cache(logits_lm, prompt, 10, choose=sampler(1)),
        want)
    from_logits.reset(2)
    logits = from_logits.step(prompt[:, 0])
    with pytest.raises(ValueError, match='from_logits=True'):
        sampler(0)(logits)
    np.testing.assert_array_equal(sampler(4, from_logits=True)(logits),
                                  sampler(4)(softmax(logits)))


@pytest.mark.slow
@pytest.mark.parametrize('jit', [True, False])
def test_out_of_range_ids_are_refused(jit):
    """Under XLA a gather clamps: id 2500 of a 2000-token vocab would give
    id 1999's output.  The decoder checks the ids first."""
    decoder = FlashDecoder(build(), jit_compile=jit)
    vocab = decoder.token.input_dim
    decoder.reset(1)
    with pytest.raises(ValueError, match='id %d .*%d' % (vocab + 500, vocab)):
        decoder.step([[vocab + 500]])
    with pytest.raises(ValueError, match='id -7'):
        decoder.step([[-7]])
    with pytest.raises(ValueError, match='segment_ids: id 2 .*segment'):
        decoder.step([[5]], [[2]])
    with pytest.raises(ValueError, match='segment_ids: id -1'):
        decoder.step([[5]], [[-1]])
    with pytest.raises(ValueError, match='integer ids.*float'):
        decoder.step([[5.7]])
    assert decoder.position == 0           # nothing was fed
    decoder.step([[vocab - 1]], [[1]])     # the last valid ids pass
    with pytest.raises(ValueError, match='id 2500'):
        decoder.generate([[3, 2500]], 2)


def test_bad_n_tokens_is_refused():
    lm = build()
    decoder = FlashDecoder(lm, jit_compile=False)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match='n_tokens'):
            decoder.generate([[3, 4]], bad)
        with pytest.raises(ValueError, match='n_tokens'):
            generate_without_cache(lm, [[3, 4]], bad)


def test_decoder_step_checks_batch_size():
    decoder = FlashDecoder(build(), jit_compile=False)
    decoder.reset(2)
    decoder.step([[3], [4]])
    with pytest.raises(ValueError, match='reset'):
        decoder.step([[3]])


def test_decoder_finds_layers_by_the_model_class_names():
    from gau_keras.models import FLASH
    decoder = FlashDecoder(build(), jit_compile=False)
    names = [layer.name for layer, _ in decoder.blocks]
    assert names[:2] == [FLASH.layer_name(0, 0), FLASH.layer_name(0, 1)]
    assert all(norm.name == name + '-Norm'
               for (_, norm), name in zip(decoder.blocks, names))


@pytest.mark.slow
def test_decoder_refuses_non_causal_and_non_flash_models():
    with pytest.raises(ValueError, match='not causal'):
        FlashDecoder(build('encoder'))
    quad = build_transformer_model(config_path('flash_quad_tiny'),
                                   model='flash_quad', application='lm')
    with pytest.raises(ValueError, match='no FLASH layers'):
        FlashDecoder(quad)
    with pytest.raises(ValueError, match='custom_position_ids'):
        FlashDecoder(build(custom_position_ids=True))
    with pytest.raises(TypeError, match='FLASH lm model'):
        FlashDecoder('flash_tiny.json')
