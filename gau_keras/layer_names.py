"""The Keras layer whose output is block ``i``'s output, for every model.

bert4keras scripts take a block's output by name, e.g. CLUE-bert4keras's
``'Transformer-%s-FeedForward-Norm' % (base.num_hidden_layers - 1)``; that
name is BERT's (post-norm blocks ending in a feed-forward layer).  GAU-α's
blocks end in the RMS norm of their last gated attention unit, GPT-2's and
T5's (pre-norm) in the Add of their feed-forward layer.  ``block_output_name``
reads the name from the model class, so one line serves every model::

    base = build_transformer_model('gau_alpha_tiny', return_keras_model=False)
    last_layer = block_output_name(base, -1)   # the last block
    output = base.model.get_layer(last_layer).output

A registered model class sets the class attribute ``block_output_format``
(str.format field ``index``) when its blocks end in another layer.
"""
from bert4keras import models as b4k

#: bert4keras classes → the format of their block output layer's name,
#: most derived class first (the first ``issubclass`` match wins).
BERT4KERAS_FORMATS = (
    (b4k.GPT2, 'Transformer-{index}-FeedForward-Add'),
    (b4k.GPT2_ML, 'Transformer-{index}-FeedForward-Norm-1'),
    (b4k.ALBERT, 'Transformer-FeedForward-Norm'),   # one layer, all blocks
    (b4k.T5_Encoder, 'Encoder-Transformer-{index}-FeedForward-Add'),
    (b4k.T5_Decoder, 'Decoder-Transformer-{index}-FeedForward-Add'),
    (b4k.BERT, 'Transformer-{index}-FeedForward-Norm'),
)


def block_output_format(model):
    """The name format (field ``index``) of the layer ending each block of
    ``model``: a registered model name, a Transformer class or object.

    Example::

        block_output_format('gau_alpha')
        # 'Transformer-{index}-GatedAttentionUnit-Norm'
    """
    # imported here so that gau_keras.models can re-export this module
    from gau_keras.models import GAUTransformer, model_class
    cls = model if isinstance(model, (str, type)) else type(model)
    cls = model_class(cls)
    own = getattr(cls, 'block_output_format', None)
    if own is not None:
        return own
    if issubclass(cls, GAUTransformer):
        last = cls.layer_format.replace('{j}', str(cls.units_per_block - 1))
        return last + '-Norm'
    for base, fmt in BERT4KERAS_FORMATS:
        if issubclass(cls, base):
            return fmt
    if issubclass(cls, b4k.T5_Base):
        raise ValueError('%s has an encoder and a decoder: ask t5_encoder '
                         'or t5_decoder' % cls.__name__)
    raise ValueError('no block output name known for %s: set its class '
                     'attribute block_output_format' % cls.__name__)


def block_output_name(model, index):
    """Name of the Keras layer whose output is block ``index``'s output.

    ``model`` is a built Transformer (``return_keras_model=False``), whose
    ``num_hidden_layers`` allows a negative ``index`` (-1: the last block),
    or a registered model name / class (``index`` >= 0).

    Example::

        block_output_name('gau_alpha', 23)
        # 'Transformer-23-GatedAttentionUnit-Norm'
        block_output_name('bert', 11)   # 'Transformer-11-FeedForward-Norm'
        block_output_name(base, -1)     # base's last block
    """
    index = _check_index(model, index)
    return block_output_format(model).format(index=index)


def block_output(transformer, index=-1):
    """The Keras tensor of block ``index`` of a built Transformer.

    ALBERT's blocks share one layer, so its ``index``-th call is taken.

    Example::

        output = block_output(base, -1)    # base.model's last block
    """
    index = _check_index(transformer, index)
    layer = transformer.model.get_layer(block_output_name(transformer, index))
    if len(layer._inbound_nodes) > 1:
        return layer.get_output_at(index)
    return layer.output


def _check_index(model, index):
    if isinstance(model, (str, type)):
        if not (isinstance(index, int) and index >= 0):
            raise ValueError('block index must be an integer >= 0 for a model '
                             'name or class, got %r' % (index,))
        return index
    n = int(model.num_hidden_layers)
    if not (isinstance(index, int) and -n <= index < n):
        raise IndexError('block index %r out of range for %d blocks'
                         % (index, n))
    return index % n


__all__ = ['block_output', 'block_output_format', 'block_output_name']
