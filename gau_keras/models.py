"""Models and the bert4keras-compatible builder.

``GAU_alpha`` is RoFormerV2 with every block ``GAU → Dropout → Add → Norm``
(post-norm, parameter-free RMS norm, no biases, softmax_plus attention).

Example::

    import gau_keras
    model = gau_keras.build_transformer_model(
        'configs/gau_alpha_base.json', 'chinese_GAU-alpha-char_L-24_H-768/'
        'bert_model.ckpt', model='gau_alpha', with_mlm='linear')
"""
import tensorflow as tf
from bert4keras import models as b4k
from bert4keras.layers import Add, Dropout

from gau_keras import checkpoints
from gau_keras.backend import keras
from gau_keras.configs import ConfigError, load_config
from gau_keras.layers import (Embedding, FreshTruncatedNormal,
                              GatedAttentionUnit, LayerNormalization,
                              RoFormerV2Initializer, UniLMMask)


class GAUTransformer(b4k.RoFormerV2):
    """RoFormerV2 skeleton for gated-attention models.

    Token + segment embeddings → RMS norm → blocks → optional tied MLM head.
    Subclasses define ``apply_main_layers`` with ``gau_block`` and
    ``variable_mapping``.  Weights load / save through ``gau_keras.checkpoints``
    (name-checked, shape-checked, TF2-eager safe).
    """
    #: The normalisation of the attention layers ('softmax_plus' for GAU-α).
    normalization = 'softmax_plus'

    def __init__(self, rope_layout='interleaved', normalization=None,
                 **kwargs):
        super(GAUTransformer, self).__init__(**kwargs)
        self.rope_layout = rope_layout
        if normalization is not None:
            self.normalization = normalization

    @property
    def initializer(self):
        """RoFormerV2's truncated normal, order 3 (GAU-α), serialisable."""
        return RoFormerV2Initializer(self.num_hidden_layers, order=3)

    @property
    def causal(self):
        """True for the LM application (its mask comes from LM_Mask)."""
        return isinstance(self, b4k.LM_Mask)

    def norm(self, x, name):
        return self.apply(inputs=x, layer=LayerNormalization, zero_mean=False,
                          scale=False, offset=False, name=name)

    def apply_embeddings(self, inputs):
        """Token (+ segment) embeddings → Dropout → RMS norm (→ mapping)."""
        inputs = inputs[:]
        x = self.apply(inputs=inputs.pop(0), layer=Embedding,
                       input_dim=self.vocab_size,
                       output_dim=self.embedding_size,
                       embeddings_initializer=self.initializer,
                       mask_zero=True, name='Embedding-Token')
        if self.segment_vocab_size > 0:
            name = ('Embedding-Token' if self.shared_segment_embeddings
                    else 'Embedding-Segment')
            s = self.apply(inputs=inputs.pop(0), layer=Embedding,
                           input_dim=self.segment_vocab_size,
                           output_dim=self.embedding_size,
                           embeddings_initializer=self.initializer, name=name)
            x = self.apply(inputs=[x, s], layer=Add,
                           name='Embedding-Token-Segment')
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate,
                       name='Embedding-Dropout')
        x = self.norm(x, 'Embedding-Norm')
        if self.embedding_size != self.hidden_size:
            x = self.apply(inputs=x, layer=keras.layers.Dense,
                           units=self.hidden_size, use_bias=False,
                           kernel_initializer=self.initializer,
                           name='Embedding-Mapping')
        return x

    def position_arguments(self):
        """{'position_ids': the Input-Position tensor} with custom ids."""
        if not self.custom_position_ids:
            return {}
        return {'position_ids': self.inputs[
            2 if self.segment_vocab_size > 0 else 1]}

    def attention_arguments(self, index):
        """Call arguments of the attention layers: bias and position ids.

        The LM application needs no bias tensor: its layers get
        ``causal=True`` (no Lambda layer, so saved models reload safely).
        """
        arguments = self.position_arguments()
        bias = None if self.causal else self.compute_attention_bias(index)
        if bias is not None:
            arguments['attention_bias'] = bias
        return arguments

    def gau_block(self, x, name, layer=GatedAttentionUnit, arguments=None,
                  **layer_kwargs):
        """x → attention layer → Dropout → Add(x) → RMS norm (post-norm)."""
        options = dict(units=self.intermediate_size,
                       key_size=self.attention_key_size,
                       activation=self.hidden_act, use_bias=False,
                       normalization=self.normalization,
                       attention_dropout=self.attention_dropout_rate,
                       rope_layout=self.rope_layout, causal=self.causal,
                       kernel_initializer=self.initializer, name=name)
        options.update(layer_kwargs)
        y = self.apply(inputs=x, layer=layer, arguments=arguments, **options)
        y = self.apply(inputs=y, layer=Dropout, rate=self.dropout_rate,
                       name='%s-Dropout' % name)
        y = self.apply(inputs=[x, y], layer=Add, name='%s-Add' % name)
        return self.norm(y, '%s-Norm' % name)

    def apply_final_layers(self, inputs):
        """Optional tied MLM head; outputs are float32 under mixed precision."""
        x = inputs
        if not self.with_mlm:
            if tf.as_dtype(x.dtype) != tf.float32:
                x = self.apply(inputs=x, layer=keras.layers.Activation,
                               activation='linear', dtype='float32',
                               name='Output-Float32')
            return x
        if self.embedding_size != self.hidden_size:
            x = self.apply(inputs=x, layer=keras.layers.Dense,
                           units=self.embedding_size, use_bias=False,
                           kernel_initializer=self.initializer,
                           name='Output-Mapping')
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate,
                       name='Output-MLM-Dropout')
        x = self.apply(inputs=x, layer=Embedding, arguments={'mode': 'dense'},
                       name='Embedding-Token')
        activation = 'softmax' if self.with_mlm is True else self.with_mlm
        return self.apply(inputs=x, layer=keras.layers.Activation,
                          activation=activation, dtype='float32',
                          name='Output-MLM-Activation')

    def embedding_mapping(self):
        mapping = {
            'Embedding-Token': ['bert/embeddings/word_embeddings'],
            'Embedding-Segment': ['bert/embeddings/token_type_embeddings'],
            'Embedding-Mapping': [
                'bert/encoder/embedding_hidden_mapping_in/kernel'],
            'Output-Mapping': ['cls/predictions/transform/dense/kernel'],
        }
        return mapping

    def load_variable(self, checkpoint, name):
        value = checkpoints.read_variable(checkpoint, name)
        if name == 'bert/embeddings/word_embeddings':
            value = self.load_embeddings(value)
        return value

    def load_weights_from_checkpoint(self, checkpoint, mapping=None):
        checkpoints.load_weights_from_checkpoint(self, checkpoint, mapping)

    def save_weights_as_checkpoint(self, filename, mapping=None, dtype=None):
        return checkpoints.save_weights_as_checkpoint(self, filename, mapping,
                                                      dtype)


class GAU_alpha(GAUTransformer):
    """GAU-α (https://kexue.fm/archives/9052): one GAU per block, post-norm,
    softmax_plus.  Loads the public chinese_GAU-alpha-char_L-24_H-768."""

    def apply_main_layers(self, inputs, index):
        return self.gau_block(inputs, 'Transformer-%d-GatedAttentionUnit'
                              % index, arguments=self.attention_arguments(
                                  index))

    def variable_mapping(self):
        mapping = self.embedding_mapping()
        for i in range(self.num_hidden_layers):
            prefix = 'GAU_alpha/encoder/layer_%d/gau/' % i
            mapping['Transformer-%d-GatedAttentionUnit' % i] = [
                prefix + 'i_dense/kernel', prefix + 'o_dense/kernel',
                prefix + 'q_scaleoffset/gamma', prefix + 'k_scaleoffset/gamma']
        return mapping


class UniLM_Mask(b4k.UniLM_Mask):
    """bert4keras's UniLM mask as a ``UniLMMask`` layer (int32 cumsum, and
    no Lambda, so saved models reload in Keras's safe mode)."""

    def compute_attention_bias(self, inputs=None):
        if self.attention_bias is None:
            self.attention_bias = self.apply(
                inputs=self.inputs[1], layer=UniLMMask,
                name='Attention-UniLM-Mask')
        return self.attention_bias


def extend_with_unified_language_model(BaseModel):
    """BaseModel with the (int32) UniLM mask, as bert4keras's namesake."""

    class UnifiedLanguageModel(UniLM_Mask, BaseModel):
        def __init__(self, *args, **kwargs):
            super(UnifiedLanguageModel, self).__init__(*args, **kwargs)
            self.with_mlm = self.with_mlm or True

    return UnifiedLanguageModel


class Bert4kerasCompat(object):
    """Mixin for bert4keras's own models on tf-keras 2.21: checkpoints save
    in TF2 eager mode, and weights do not start identical."""

    @property
    def initializer(self):
        init = super(Bert4kerasCompat, self).initializer
        if isinstance(init, keras.initializers.TruncatedNormal):
            return FreshTruncatedNormal(init.stddev)
        return init

    def save_weights_as_checkpoint(self, filename, mapping=None, dtype=None):
        return checkpoints.save_weights_as_checkpoint(self, filename, mapping,
                                                      dtype)


_BERT4KERAS_MODELS = (
    'bert', 'albert', 'albert_unshared', 'roberta', 'nezha', 'roformer',
    'roformer_v2', 'electra', 'gpt', 'gpt2', 'gpt2_ml', 't5', 't5_encoder',
    't5_decoder', 't5.1.0', 't5.1.0_encoder', 't5.1.0_decoder', 't5.1.1',
    't5.1.1_encoder', 't5.1.1_decoder', 'mt5.1.1', 'mt5.1.1_encoder',
    'mt5.1.1_decoder')
_B4K_CLASSES = {
    'bert': 'BERT', 'roberta': 'BERT', 'albert': 'ALBERT',
    'albert_unshared': 'ALBERT_Unshared', 'nezha': 'NEZHA',
    'roformer': 'RoFormer', 'roformer_v2': 'RoFormerV2', 'electra': 'ELECTRA',
    'gpt': 'GPT', 'gpt2': 'GPT2', 'gpt2_ml': 'GPT2_ML', 't5': 'T5',
    'encoder': 'T5_Encoder', 'decoder': 'T5_Decoder'}

_MODELS = {}
APPLICATIONS = ('encoder', 'lm', 'unilm')


def _bert4keras_class(name):
    key = name
    if name.startswith(('t5', 'mt5')):
        key = name.rsplit('_', 1)[-1] if '_' in name else 't5'
    cls = getattr(b4k, _B4K_CLASSES[key])
    return type(cls.__name__, (Bert4kerasCompat, cls), {})


def register_model(name, cls):
    """Makes ``build_transformer_model(..., model=name)`` build ``cls``.

    ``cls`` must be a bert4keras ``Transformer`` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, b4k.Transformer)):
        raise TypeError('register_model(%r): %r is not a bert4keras '
                        'Transformer subclass' % (name, cls))
    _MODELS[name.lower()] = cls
    return cls


for _name in _BERT4KERAS_MODELS:
    register_model(_name, _bert4keras_class(_name))
register_model('gau_alpha', GAU_alpha)


def model_class(model):
    """The Transformer class for a registered name (or a class itself)."""
    if isinstance(model, type):
        return model
    try:
        return _MODELS[model.lower()]
    except (KeyError, AttributeError):
        raise ValueError('unknown model %r; registered: %s'
                         % (model, ', '.join(sorted(_MODELS)))) from None


def build_transformer_model(config_path=None, checkpoint_path=None,
                            model='bert', application='encoder',
                            return_keras_model=True, **kwargs):
    """bert4keras's builder, extended with gau_alpha / flash_quad / flash.

    Reads and checks the JSON config (``kwargs`` override it), builds the
    model for ``application`` ('encoder', 'lm' or 'unilm') and loads
    ``checkpoint_path`` if given.  Returns the Keras model, or the
    Transformer object when ``return_keras_model=False``.

    Example::

        model = build_transformer_model('configs/gau_alpha_tiny.json',
                                        model='gau_alpha', with_mlm='linear')
    """
    configs = load_config(config_path, **kwargs)
    MODEL = model_class(model)
    name = model.lower() if isinstance(model, str) else None
    if name and name.startswith(('t5.1.1', 'mt5.1.1')):
        configs['version'] = name.split('_')[0]
    application = str(application).lower()
    if application not in APPLICATIONS:
        raise ConfigError('application must be one of %s, got %r'
                          % (APPLICATIONS, application))
    if application != 'encoder' and name in ('electra', 't5'):
        raise ConfigError('"%s" model can not be used as "%s" application'
                          % (name, application))
    if application == 'lm':
        MODEL = b4k.extend_with_language_model(MODEL)
    elif application == 'unilm':
        MODEL = extend_with_unified_language_model(MODEL)
    transformer = MODEL(**configs)
    transformer.build(**configs)
    if checkpoint_path is not None:
        transformer.load_weights_from_checkpoint(checkpoint_path)
    return transformer.model if return_keras_model else transformer


__all__ = ['GAUTransformer', 'GAU_alpha', 'build_transformer_model',
           'register_model', 'model_class']


# ---- FLASH-Quad and FLASH (issue 3) -----------------------------------------

from gau_keras.flash import MixedChunkAttention, check_chunk_size  # noqa: E402


class FLASH_Quad(GAUTransformer):
    """FLASH-Quad (arXiv 2202.10447): two GAUs per block, relu² attention.

    Each of the ``num_hidden_layers`` blocks is ``gau_block`` twice (GAU →
    Dropout → Add → RMS norm), with e = ``intermediate_size`` (2d in the
    shipped configs).  Quadratic in the sequence length; the LM application
    uses the bert4keras lower-triangular mask, UniLM its prefix mask.

    Example::

        model = build_transformer_model('configs/flash_quad_tiny.json',
                                        model='flash_quad', with_mlm='linear')
    """
    normalization = 'squared_relu'
    #: Checkpoint scope and per-layer name of the attention layers.
    scope, unit = 'FLASH_Quad', 'gau'

    def layer_name(self, index, j):
        return 'Transformer-%d-GatedAttentionUnit-%d' % (index, j)

    def apply_main_layers(self, inputs, index):
        x = inputs
        for j in range(2):
            x = self.gau_block(x, self.layer_name(index, j),
                               arguments=self.attention_arguments(index))
        return x

    def unit_weight_names(self):
        return ['i_dense/kernel', 'o_dense/kernel', 'q_scaleoffset/gamma',
                'k_scaleoffset/gamma']

    def variable_mapping(self):
        mapping = self.embedding_mapping()
        for i in range(self.num_hidden_layers):
            for j in range(2):
                prefix = '%s/encoder/layer_%d/%s_%d/' % (self.scope, i,
                                                         self.unit, j)
                mapping[self.layer_name(i, j)] = [
                    prefix + name for name in self.unit_weight_names()]
        return mapping


class FLASH(FLASH_Quad):
    """FLASH: FLASH-Quad with mixed-chunk attention, linear in length.

    Two ``MixedChunkAttention`` layers per block with chunks of
    ``chunk_size`` tokens (config key "chunk_size", default 256).  The LM
    application passes ``causal=True`` to the layers (no n×n mask is built);
    UniLM is refused, since a prefix mask does not chunk.  Cached decoding:
    ``gau_keras.decoding.FlashDecoder``.

    Example::

        model = build_transformer_model('configs/flash_base.json',
                                        model='flash', application='lm')
    """
    scope, unit = 'FLASH', 'mca'

    def __init__(self, chunk_size=256, **kwargs):
        if isinstance(self, b4k.UniLM_Mask):
            raise ConfigError(
                'model "flash" cannot be used as "unilm" application: a UniLM '
                'prefix mask does not split into chunks; use "encoder", "lm", '
                'or model="flash_quad" for unilm')
        super(FLASH, self).__init__(**kwargs)
        try:
            self.chunk_size = check_chunk_size(chunk_size, 'FLASH config')
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def layer_name(self, index, j):
        return 'Transformer-%d-MixedChunkAttention-%d' % (index, j)

    def attention_arguments(self, index):
        """Only position ids: causality is the layers' ``causal`` option."""
        return self.position_arguments()

    def apply_main_layers(self, inputs, index):
        x = inputs
        for j in range(2):
            x = self.gau_block(x, self.layer_name(index, j),
                               layer=MixedChunkAttention,
                               arguments=self.attention_arguments(index),
                               chunk_size=self.chunk_size)
        return x

    def unit_weight_names(self):
        return ['i_dense/kernel', 'o_dense/kernel', 'qk_scaleoffset/gamma']


register_model('flash_quad', FLASH_Quad)
register_model('flash', FLASH)
__all__ += ['FLASH_Quad', 'FLASH']
