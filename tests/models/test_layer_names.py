"""gau_keras.layer_names: the layer that ends each block, for every model.

The truth is the built graph: in a post-norm encoder without an MLM head
the model's output is the last block's output; in a pre-norm one the last
block's output feeds the final norm; block i's output is the input of
block i + 1's first layer.
"""
import pytest

import gau_keras
from gau_keras.layer_names import (block_output, block_output_format,
                                   block_output_name)
from gau_keras.models import FLASH, FLASH_Quad, GAU_alpha

BERT_LIKE = {'vocab_size': 30, 'hidden_size': 8, 'num_hidden_layers': 2,
             'num_attention_heads': 2, 'intermediate_size': 16,
             'hidden_act': 'gelu', 'max_position_embeddings': 64,
             'type_vocab_size': 2}


def build(model, **kwargs):
    if model in ('gau_alpha', 'flash_quad', 'flash'):
        return gau_keras.build_transformer_model(
            model + '_tiny', model=model, return_keras_model=False, **kwargs)
    config = dict(BERT_LIKE, **kwargs)
    return gau_keras.build_transformer_model(
        None, model=model, return_keras_model=False, **config)


def test_names_follow_each_models_layer_format():
    assert block_output_name('gau_alpha', 23) == \
        'Transformer-23-GatedAttentionUnit-Norm'
    assert block_output_name(FLASH_Quad, 1) == \
        'Transformer-1-GatedAttentionUnit-1-Norm'
    assert block_output_name(FLASH, 0) == \
        'Transformer-0-MixedChunkAttention-1-Norm'
    assert block_output_name('bert', 11) == 'Transformer-11-FeedForward-Norm'
    assert block_output_name('roformer_v2', 3) == \
        'Transformer-3-FeedForward-Norm'
    assert block_output_name('gpt2', 0) == 'Transformer-0-FeedForward-Add'
    assert block_output_name('t5.1.1_encoder', 2) == \
        'Encoder-Transformer-2-FeedForward-Add'
    assert block_output_format(GAU_alpha) == \
        GAU_alpha.layer_name('{index}') + '-Norm'


@pytest.mark.slow
@pytest.mark.parametrize('model', ['gau_alpha', 'flash_quad', 'flash',
                                   'bert', 'roformer_v2', 'nezha'])
def test_post_norm_encoders_end_in_their_last_block_output(model):
    t = build(model)
    assert block_output_name(t, -1) == block_output_name(
        model, t.num_hidden_layers - 1)
    assert t.model.output is block_output(t, -1)
    assert t.model.get_layer(block_output_name(t, -1)).output is \
        t.model.output
    # block 0 feeds block 1
    consumers = [layer.name for layer in t.model.layers
                 for node in layer._inbound_nodes
                 if any(x is block_output(t, 0)
                        for x in node.keras_inputs)]
    assert any(name.startswith('Transformer-1-') for name in consumers)


@pytest.mark.parametrize('model, final_norm', [
    ('gpt2', 'Output-Norm'), ('t5.1.1_encoder', 'Encoder-Output-Norm')])
def test_pre_norm_blocks_feed_the_final_norm(model, final_norm):
    t = build(model)
    norm = t.model.get_layer(final_norm)
    assert norm.input is block_output(t, -1)


def test_albert_blocks_are_calls_of_one_shared_layer():
    t = build('albert', embedding_size=8)
    assert block_output_name(t, 1) == 'Transformer-FeedForward-Norm'
    assert block_output(t, 1) is t.model.output
    assert block_output(t, 0) is not block_output(t, 1)


def test_bad_index_and_ambiguous_model_are_refused():
    t = build('gau_alpha')
    with pytest.raises(IndexError, match='out of range for 2 blocks'):
        block_output_name(t, 2)
    with pytest.raises(ValueError, match='>= 0'):
        block_output_name('gau_alpha', -1)
    with pytest.raises(ValueError, match='t5_encoder or t5_decoder'):
        block_output_name('t5', 0)
