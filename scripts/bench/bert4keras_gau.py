"""bert4keras's OWN GAU-α stack: the reference gau_keras is compared with.

This module is not gau_keras: it builds GAU-α from bert4keras's classes
only, so the benchmark tools time and check gau_keras against the
implementation users have today.  bert4keras 0.11.5 has no GAU-α model
class; the GAU-α release builds it from RoFormerV2 with its stock
``GatedAttentionUnit``, and ``StockGAUAlpha`` does the same.  Used by
``scripts/bench_gau.py``, ``scripts/bench_load.py`` and the 'stock_gau'
rows of ``bench.suite``.  Example::

    import sys; sys.path.insert(0, 'scripts')
    from bench.bert4keras_gau import StockGAUAlpha, copy_stock_weights
    from bert4keras.models import build_transformer_model as b4k_build
    from gau_keras.configs import preset_path
    ref = b4k_build(preset_path('gau_alpha_base'), model=StockGAUAlpha)
    ours = gau_keras.build_transformer_model(
        'gau_alpha_base', model='gau_alpha', return_keras_model=False)
    copy_stock_weights(ref, ours)   # same weights → same outputs

fp32 only: the stock layer raises a TypeError under mixed precision.
"""
import gau_keras  # noqa: F401  (Keras 2 before bert4keras / TensorFlow)
from bert4keras import models as b4k_models
from bert4keras.layers import Add, Dropout
from bert4keras.layers import GatedAttentionUnit as StockGAU
from bert4keras.layers import LayerNormalization as StockNorm


class StockGAUAlpha(b4k_models.RoFormerV2):
    """GAU-α from bert4keras's own classes (the timing reference).

    Blocks: stock ``GatedAttentionUnit`` (softmax_plus, rotary position
    bias) → Dropout → Add → parameter-free RMS norm; RoFormerV2's
    initializer with order 3; loads checkpoints with the release's names.
    """

    def initializer(self, shape, dtype=None, order=3, gain=1.0):
        return super(StockGAUAlpha, self).initializer(shape, dtype, order,
                                                      gain)

    def apply_main_layers(self, inputs, index):
        name = 'Transformer-%d-GatedAttentionUnit' % index
        y = self.apply(
            inputs=[inputs, self.compute_position_bias(inputs)],
            layer=StockGAU, arguments={'p_bias': 'rotary'},
            units=self.intermediate_size, key_size=self.attention_key_size,
            activation=self.hidden_act, use_bias=False,
            normalization='softmax_plus',
            attention_dropout=self.attention_dropout_rate,
            kernel_initializer=self.initializer, name=name)
        y = self.apply(inputs=y, layer=Dropout, rate=self.dropout_rate,
                       name=name + '-Dropout')
        y = self.apply(inputs=[inputs, y], layer=Add, name=name + '-Add')
        return self.apply(inputs=y, layer=StockNorm, zero_mean=False,
                          scale=False, offset=False, name=name + '-Norm')

    def variable_mapping(self):
        """The GAU-α release's TF1 names (the stock layer on tf-keras holds
        [i_dense, q, k, o_dense])."""
        mapping = {'Embedding-Token': ['bert/embeddings/word_embeddings'],
                   'Embedding-Segment': [
                       'bert/embeddings/token_type_embeddings']}
        for i in range(self.num_hidden_layers):
            p = 'GAU_alpha/encoder/layer_%d/gau/' % i
            mapping['Transformer-%d-GatedAttentionUnit' % i] = [
                p + 'i_dense/kernel', p + 'q_scaleoffset/gamma',
                p + 'k_scaleoffset/gamma', p + 'o_dense/kernel']
        return mapping


def copy_stock_weights(ref, ours_t):
    """Reference (stock) Keras model's weights → the gau_keras Transformer
    ``ours_t``, by layer name (the GAU's four weights reordered: the stock
    layer on tf-keras holds [i, q, k, o], ours [i, o, q, k])."""
    for layer in ours_t.model.layers:
        try:
            theirs = ref.get_layer(layer.name)
        except ValueError:
            continue
        if hasattr(layer, 'checkpoint_weights'):
            i, qg, kg, o = theirs.weights
            for w, v in zip(layer.checkpoint_weights(), [i, o, qg, kg]):
                w.assign(v)
        else:
            for w, v in zip(layer.weights, theirs.weights):
                w.assign(v)
