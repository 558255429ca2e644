"""Models and the bert4keras-compatible builder.

``GAU_alpha``, ``FLASH_Quad`` and ``FLASH`` are one skeleton (RoFormerV2's:
token + segment embeddings → RMS norm → blocks → optional tied MLM head)
whose blocks hold ``units_per_block`` residual attention units, each
``unit → Dropout → Add → RMS norm`` (post-norm, no biases).  What differs is
data: class attributes name the attention layer, the units per block, the
layer names and the checkpoint names, and one ``variable_mapping`` reads them.

Every model name the builder knows is one row of ``MODELS``; add one with
``register_model('my_gau', MyGAU)``.

Example::

    import gau_keras
    model = gau_keras.build_transformer_model(
        'gau_alpha_base', 'chinese_GAU-alpha-char_L-24_H-768/'
        'bert_model.ckpt', model='gau_alpha', with_mlm='linear')
"""
import inspect
import warnings

import tensorflow as tf
from bert4keras import layers as b4k_layers
from bert4keras import models as b4k
from bert4keras.layers import Add, Dropout

from gau_keras import release_checkpoints as checkpoints
from gau_keras.backend import keras
from gau_keras.configs import (ConfigError, PresetModelWarning,
                               config_source, load_config, preset_of,
                               resolve_config_path, warn_unknown_keys)
from gau_keras.flash import (MixedChunkAttention, check_chunk_size,
                             check_local_normalizer)
from gau_keras.layers import (Embedding, FirstToken, FreshTruncatedNormal,
                              GatedAttentionUnit, LayerNormalization,
                              MultiHeadAttention, RoFormerV2Initializer,
                              UniLMMask)

#: The applications of ``build_transformer_model``.
APPLICATIONS = ('encoder', 'lm', 'unilm')


class GAUTransformer(b4k.RoFormerV2):
    """RoFormerV2 skeleton whose blocks are residual attention units.

    A subclass is data: set the class attributes below (see ``GAU_alpha``,
    ``FLASH_Quad``, ``FLASH``).  Weights load / save through
    ``gau_keras.release_checkpoints`` (name-checked, shape-checked,
    TF2-eager safe).
    """
    #: The normalisation of the attention layers ('softmax_plus' for GAU-α).
    normalization = 'softmax_plus'
    #: The Keras layer class of each residual unit.
    unit_layer = GatedAttentionUnit
    #: Residual attention units per block (``num_hidden_layers`` blocks).
    units_per_block = 1
    #: Keras layer name of unit j of block ``index`` (str.format fields).
    layer_format = 'Transformer-{index}-GatedAttentionUnit'
    #: Checkpoint scope, and the unit's checkpoint name ('gau', or 'gau_{j}'
    #: when a block holds several units).
    scope, unit = 'GAU_alpha', 'gau'
    #: Checkpoint names of a unit's weights, in the layer's weight order.
    weight_names = ('i_dense/kernel', 'o_dense/kernel', 'q_scaleoffset/gamma',
                    'k_scaleoffset/gamma')

    def __init__(self, rope_layout='interleaved', normalization=None,
                 **kwargs):
        if kwargs.get('with_nsp'):
            raise ConfigError(
                'with_nsp: %s models have no next-sentence head (the GAU-α '
                'release has none); use with_pool and a Dense layer'
                % type(self).__name__)
        super(GAUTransformer, self).__init__(**kwargs)
        self.rope_layout = rope_layout
        if normalization is not None:
            self.normalization = normalization

    @classmethod
    def layer_name(cls, index, j=0):
        """Keras name of unit ``j`` of block ``index``.

        Example::

            FLASH.layer_name(3, 1)   # 'Transformer-3-MixedChunkAttention-1'
        """
        return cls.layer_format.format(index=index, j=j)

    @classmethod
    def checkpoint_prefix(cls, index, j=0):
        """Checkpoint name prefix of unit ``j`` of block ``index``.

        Example::

            GAU_alpha.checkpoint_prefix(0)   # 'GAU_alpha/encoder/layer_0/gau/'
        """
        unit = cls.unit if cls.units_per_block == 1 else '%s_%d' % (cls.unit,
                                                                     j)
        return '%s/encoder/layer_%d/%s/' % (cls.scope, index, unit)

    @property
    def residual_layers(self):
        """Residual attention layers in the stack: blocks × units per block."""
        return self.num_hidden_layers * self.units_per_block

    @property
    def initializer(self):
        """RoFormerV2's truncated normal, order 3, over the residual layers.

        std = 1.13684723/√fan · L^(-1/3) with L = ``residual_layers`` (24 for
        GAU-α base and for FLASH base's 12 blocks of 2 units).
        """
        return RoFormerV2Initializer(self.residual_layers, order=3)

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

    def unit_options(self):
        """Extra keyword arguments of ``unit_layer`` (FLASH: chunking)."""
        return {}

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

    def apply_main_layers(self, inputs, index):
        """Block ``index``: ``units_per_block`` residual units in a row."""
        x = inputs
        for j in range(self.units_per_block):
            x = self.gau_block(x, self.layer_name(index, j),
                               layer=self.unit_layer,
                               arguments=self.attention_arguments(index),
                               **self.unit_options())
        return x

    def apply_final_layers(self, inputs):
        """Outputs as bert4keras's BERT orders them: the sequence alone, or
        the pooler (``with_pool``) and / or the tied MLM head (``with_mlm``):
        one of them alone, or [pooler, MLM].  Float32 under mixed precision.
        """
        outputs = []
        if self.with_pool:
            outputs.append(self.apply_pooler(inputs))
        if self.with_mlm:
            outputs.append(self.apply_mlm(inputs))
        if not outputs:
            return self.apply_sequence_output(inputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def apply_sequence_output(self, x):
        """The last block's output, float32 under mixed precision."""
        if tf.as_dtype(x.dtype) != tf.float32:
            x = self.apply(inputs=x, layer=keras.layers.Activation,
                           activation='linear', dtype='float32',
                           name='Output-Float32')
        return x

    def apply_pooler(self, x):
        """bert4keras's pooler: first token → Dense(hidden_size) with
        activation tanh (``with_pool=True``) or ``with_pool`` (e.g.
        'linear'); checkpoint names ``bert/pooler/dense/{kernel,bias}``."""
        x = self.apply(inputs=x, layer=FirstToken, name='Pooler')
        activation = 'tanh' if self.with_pool is True else self.with_pool
        return self.apply(inputs=x, layer=keras.layers.Dense,
                          units=self.hidden_size, activation=activation,
                          kernel_initializer=self.initializer,
                          dtype='float32', name='Pooler-Dense')

    def apply_mlm(self, x):
        """The MLM head tied to the token embeddings (float32 output)."""
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

    def variable_mapping(self):
        """Keras layer name → checkpoint names, from the class attributes."""
        mapping = {
            'Embedding-Token': ['bert/embeddings/word_embeddings'],
            'Embedding-Segment': ['bert/embeddings/token_type_embeddings'],
            'Embedding-Mapping': [
                'bert/encoder/embedding_hidden_mapping_in/kernel'],
            'Output-Mapping': ['cls/predictions/transform/dense/kernel'],
            'Pooler-Dense': ['bert/pooler/dense/kernel',
                             'bert/pooler/dense/bias'],
        }
        for i in range(self.num_hidden_layers):
            for j in range(self.units_per_block):
                prefix = self.checkpoint_prefix(i, j)
                mapping[self.layer_name(i, j)] = [
                    prefix + name for name in self.weight_names]
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
    softmax_plus.  Loads the public chinese_GAU-alpha-char_L-24_H-768.

    Example::

        model = build_transformer_model('gau_alpha_tiny', model='gau_alpha')
    """


class FLASH_Quad(GAUTransformer):
    """FLASH-Quad (arXiv 2202.10447): two GAUs per block, relu² attention.

    Each of the ``num_hidden_layers`` blocks holds two residual GAUs, with
    e = ``intermediate_size`` (2d in the shipped configs).  Quadratic in the
    sequence length; the LM application is causal, UniLM uses its prefix mask.

    Example::

        model = build_transformer_model('flash_quad_tiny', model='flash_quad',
                                        with_mlm='linear')
    """
    normalization = 'squared_relu'
    units_per_block = 2
    layer_format = 'Transformer-{index}-GatedAttentionUnit-{j}'
    scope, unit = 'FLASH_Quad', 'gau'


class FLASH(GAUTransformer):
    """FLASH: FLASH-Quad with mixed-chunk attention, linear in length.

    Two ``MixedChunkAttention`` layers per block with chunks of
    ``chunk_size`` tokens (config key "chunk_size", default 256); config key
    "local_normalizer" is 'visible' (divide the local relu² by the keys each
    query sees; default) or 'chunk' (the paper's 1/c).  The LM application
    passes ``causal=True`` to the layers (no n×n mask is built); UniLM is
    refused, since a prefix mask does not chunk.  Cached decoding:
    ``gau_keras.decoding.FlashDecoder``.

    Example::

        model = build_transformer_model('flash_base', model='flash',
                                        application='lm')
    """
    normalization = 'squared_relu'
    unit_layer = MixedChunkAttention
    units_per_block = 2
    layer_format = 'Transformer-{index}-MixedChunkAttention-{j}'
    scope, unit = 'FLASH', 'mca'
    weight_names = ('i_dense/kernel', 'o_dense/kernel', 'qk_scaleoffset/gamma')

    def __init__(self, chunk_size=256, local_normalizer='visible', **kwargs):
        if isinstance(self, b4k.UniLM_Mask):
            raise ConfigError(
                'model "flash" cannot be used as "unilm" application: a UniLM '
                'prefix mask does not split into chunks; use "encoder", "lm", '
                'or model="flash_quad" for unilm')
        super(FLASH, self).__init__(**kwargs)
        try:
            self.chunk_size = check_chunk_size(chunk_size, 'FLASH config')
            self.local_normalizer = check_local_normalizer(
                local_normalizer, 'FLASH config')
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def attention_arguments(self, index):
        """Only position ids: causality is the layers' ``causal`` option."""
        return self.position_arguments()

    def unit_options(self):
        return {'chunk_size': self.chunk_size,
                'local_normalizer': self.local_normalizer}


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

    def apply(self, inputs=None, layer=None, arguments=None, **kwargs):
        """bert4keras's ``apply`` with gau_keras's MultiHeadAttention (one
        attention-dropout layer, so the model trains in a ``tf.function``
        that retraces)."""
        if layer is b4k_layers.MultiHeadAttention:
            if self.residual_attention_scores:
                kwargs['return_attention_scores'] = True
            layer = MultiHeadAttention
        return super(Bert4kerasCompat, self).apply(inputs, layer, arguments,
                                                   **kwargs)


def bert4keras_model(class_name):
    """bert4keras's model class ``class_name`` with ``Bert4kerasCompat``."""
    cls = getattr(b4k, class_name)
    return type(cls.__name__, (Bert4kerasCompat, cls), {})


#: Every model name of the builder → (class, config keys the name implies).
#: bert4keras's names first (the same classes and T5 versions as its
#: builder), then gau_keras's.  ``register_model`` adds rows.
MODELS = {}


def register_model(name, cls, **implied_config):
    """Makes ``build_transformer_model(..., model=name)`` build ``cls``.

    ``cls`` must be a bert4keras ``Transformer`` subclass; ``implied_config``
    are config keys the name sets (e.g. ``version='t5.1.1'``).  One line::

        register_model('my_gau', MyGAU)
    """
    if not (isinstance(cls, type) and issubclass(cls, b4k.Transformer)):
        raise TypeError('register_model(%r): %r is not a bert4keras '
                        'Transformer subclass' % (name, cls))
    MODELS[name.lower()] = (cls, dict(implied_config))
    return cls


for _name, _cls, _implied in (
        # name, bert4keras class, config keys the name implies
        ('bert', 'BERT', {}), ('roberta', 'BERT', {}),
        ('albert', 'ALBERT', {}), ('albert_unshared', 'ALBERT_Unshared', {}),
        ('nezha', 'NEZHA', {}), ('roformer', 'RoFormer', {}),
        ('roformer_v2', 'RoFormerV2', {}), ('electra', 'ELECTRA', {}),
        ('gpt', 'GPT', {}), ('gpt2', 'GPT2', {}), ('gpt2_ml', 'GPT2_ML', {}),
        ('t5', 'T5', {}), ('t5_encoder', 'T5_Encoder', {}),
        ('t5_decoder', 'T5_Decoder', {}),
        ('t5.1.0', 'T5', {}), ('t5.1.0_encoder', 'T5_Encoder', {}),
        ('t5.1.0_decoder', 'T5_Decoder', {}),
        ('t5.1.1', 'T5', {'version': 't5.1.1'}),
        ('t5.1.1_encoder', 'T5_Encoder', {'version': 't5.1.1'}),
        ('t5.1.1_decoder', 'T5_Decoder', {'version': 't5.1.1'}),
        ('mt5.1.1', 'T5', {'version': 'mt5.1.1'}),
        ('mt5.1.1_encoder', 'T5_Encoder', {'version': 'mt5.1.1'}),
        ('mt5.1.1_decoder', 'T5_Decoder', {'version': 'mt5.1.1'})):
    register_model(_name, bert4keras_model(_cls), **_implied)
register_model('gau_alpha', GAU_alpha)
register_model('flash_quad', FLASH_Quad)
register_model('flash', FLASH)

#: Models that only exist as encoders (bert4keras's rule).
ENCODER_ONLY = ('electra', 't5')


def model_class(model):
    """The Transformer class for a registered name (or a class itself)."""
    if isinstance(model, type):
        return model
    try:
        return MODELS[model.lower()][0]
    except (KeyError, AttributeError):
        raise ValueError('unknown model %r; registered: %s'
                         % (model, ', '.join(sorted(MODELS)))) from None


def accepted_keys(cls):
    """Config keys that ``cls`` (or its ``build``) reads: the named
    parameters of every ``__init__`` and ``build`` along its MRO."""
    keys = set()
    for klass in inspect.getmro(cls):
        for method in ('__init__', 'build'):
            fn = klass.__dict__.get(method)
            if fn is None:
                continue
            for p in inspect.signature(fn).parameters.values():
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    keys.add(p.name)
    keys.discard('self')
    return keys


def check_with_mlm(with_mlm):
    """``with_mlm`` is a bool or an activation name ('softmax', 'linear')."""
    if with_mlm is None or isinstance(with_mlm, bool):
        return with_mlm
    try:
        keras.activations.get(with_mlm)
    except (ValueError, TypeError):
        raise ConfigError(
            'with_mlm=%r: must be True/False or the activation of the MLM '
            "head ('softmax' for probabilities, 'linear' for logits, or "
            'another Keras activation name)' % (with_mlm,)) from None
    return with_mlm


def choose_model(config_path, model):
    """The model to build: ``model`` if given, else the preset's model when
    ``config_path`` names a preset, else 'bert' (bert4keras's default).

    A ``model`` that is not the preset's (nor a subclass of its class) is
    built as asked, with a ``PresetModelWarning`` naming both.  Example:
    ``choose_model('flash_tiny', None)`` → 'flash'.
    """
    row = preset_of(config_path) if config_path is not None else None
    if model is None:
        return row.model if row is not None else 'bert'
    if row is not None and not _same_model(model, row.model):
        warnings.warn(
            'config %r is the preset of model %r, but model=%r is built; '
            'pass model=%r for the preset\'s model, or leave model out'
            % (config_path, row.model, _model_name(model), row.model),
            PresetModelWarning, stacklevel=3)
    return model


def _model_name(model):
    return model.__name__ if isinstance(model, type) else model


def _same_model(model, preset_model):
    if isinstance(model, type):
        return issubclass(model, model_class(preset_model))
    return str(model).lower() == preset_model


def build_transformer_model(config_path=None, checkpoint_path=None,
                            model=None, application='encoder',
                            return_keras_model=True, **kwargs):
    """bert4keras's builder, extended with gau_alpha / flash_quad / flash.

    ``config_path`` is a JSON file or the name of a preset
    (``gau_keras.configs.PRESETS``).  ``model`` is a registered name or a
    Transformer class; left out, it is the preset's model for a preset name
    and bert4keras's 'bert' for a file (``choose_model``).  Reads and checks
    the config (``kwargs`` override it; keys the model does not read are
    warned about), builds the model for ``application`` ('encoder', 'lm' or
    'unilm') and loads ``checkpoint_path`` if given.  Returns the Keras
    model, or the Transformer object when ``return_keras_model=False``.

    Example::

        model = build_transformer_model('gau_alpha_tiny', with_mlm='linear')
        flash = build_transformer_model('my_config.json', model='flash')
    """
    model = choose_model(config_path, model)
    if config_path is not None:
        config_path = resolve_config_path(config_path)
    configs = load_config(config_path, **kwargs)
    MODEL = model_class(model)
    name = model.lower() if isinstance(model, str) else None
    if name is not None:
        configs.update(MODELS[name][1])
    check_with_mlm(configs.get('with_mlm'))
    application = str(application).lower()
    if application not in APPLICATIONS:
        raise ConfigError('application must be one of %s, got %r'
                          % (APPLICATIONS, application))
    if application != 'encoder' and name in ENCODER_ONLY:
        raise ConfigError('"%s" model can not be used as "%s" application'
                          % (name, application))
    if application == 'lm':
        MODEL = b4k.extend_with_language_model(MODEL)
    elif application == 'unilm':
        MODEL = extend_with_unified_language_model(MODEL)
    warn_unknown_keys(configs, accepted_keys(MODEL),
                      config_source(config_path), name or MODEL.__name__)
    transformer = MODEL(**configs)
    transformer.build(**configs)
    if checkpoint_path is not None:
        transformer.load_weights_from_checkpoint(checkpoint_path)
    return transformer.model if return_keras_model else transformer


__all__ = ['GAUTransformer', 'GAU_alpha', 'FLASH_Quad', 'FLASH', 'MODELS',
           'build_transformer_model', 'choose_model', 'register_model',
           'model_class', 'block_output', 'block_output_name']

# A block's output by index, whatever the model names its layers
# (layer_names imports this module inside its functions: no cycle).
from gau_keras.layer_names import (block_output,  # noqa: E402
                                   block_output_name)


# Every other public name of bert4keras.models (its model classes, e.g.
# BERT, Transformer, T5, and the layers it star-imports), so that
# `from bert4keras.models import X` ports as `from gau_keras.models import X`
# (gau_keras.bert4keras_names: what is left out and why).
from gau_keras import backend as _backend  # noqa: E402
from gau_keras import layers as _layers  # noqa: E402
from gau_keras.bert4keras_names import reexport as _reexport  # noqa: E402
_reexport(globals(), 'models', sources=[_layers, _backend])
