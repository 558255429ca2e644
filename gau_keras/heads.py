"""Alias of ``gau_keras.output_layers`` (and of the bert4keras names in
``gau_keras.layers``), kept for one release so that
``from gau_keras.heads import X`` keeps working.

Import the float32 output layers (``ConditionalRandomField``,
``MaximumEntropyMarkovModel``, ``GlobalPointer``, ``EfficientGlobalPointer``,
``Loss``) from ``gau_keras.output_layers``, and ``MultiHeadAttention`` and
the other bert4keras.layers names from ``gau_keras.layers``.  The CLUE task
heads are ``gau_keras.clue.heads``.
"""
from gau_keras.layers import (  # noqa: F401
    BERT4KERAS_NAMES, LSTM, Activation, Add, Average, BatchConcat, BatchSplit,
    Bidirectional, Concatenate, Concatenate1D, Conv1D, Dense, Dropout,
    FeedForward, GlobalAveragePooling1D, GlobalMaxPooling1D, Input, Lambda,
    Layer, Masking, MultiHeadAttention, Multiply, PositionEmbedding,
    RelativePositionEmbedding, RelativePositionEmbeddingT5, Reshape,
    SinusoidalPositionEmbedding)
from gau_keras.output_layers import (  # noqa: F401
    ConditionalRandomField, EfficientGlobalPointer, Float32Head,
    GlobalPointer, Loss, MaximumEntropyMarkovModel, global_pointer_scores,
    span_mask)
from gau_keras.registry import register  # noqa: F401

#: The layers that differ from bert4keras's (float32 under mixed precision;
#: one attention-dropout sublayer).
FIXED_HEADS = ('ConditionalRandomField', 'MaximumEntropyMarkovModel',
               'GlobalPointer', 'EfficientGlobalPointer', 'Loss',
               'MultiHeadAttention')
#: Names re-exported unchanged (from keras.layers or bert4keras.layers).
REEXPORTED = BERT4KERAS_NAMES

__all__ = list(FIXED_HEADS + REEXPORTED) + [
    'global_pointer_scores', 'span_mask', 'Float32Head']
