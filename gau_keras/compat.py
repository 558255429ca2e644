"""Warnings for Keras 2.3 code whose meaning tf-keras changes silently.

A layer that overrides ``compute_mask`` and returns one of its inputs
unchanged (CLUE-bert4keras's cmrc2018 ``CustomMasking``: ``call`` returns
``inputs[0]``, ``compute_mask`` hides the question)::

    class CustomMasking(keras.layers.Layer):
        def compute_mask(self, inputs, mask=None):
            return K.greater(inputs[1], 0.5)
        def call(self, inputs, mask=None):
            return inputs[0]

Keras 2.3 called ``compute_mask`` for every layer.  tf-keras skips it when
every output tensor already carries a ``_keras_mask``, and a returned input
carries the mask of the layer before (here the padding mask), so the layer
below sees the padding mask and the custom one is lost, with no error.
``install()`` (run by ``import gau_keras``) hooks tf-keras's
``Layer._set_mask_metadata``: when such a layer returns one of its inputs
carrying a mask and its ``compute_mask`` gives a different mask, it warns
once per layer (``MaskNotComputedWarning``) naming the layer and the fix::

    def call(self, inputs, mask=None):
        return inputs[0] * 1        # or tf.identity(inputs[0])

The check costs nothing for layers that keep the default ``compute_mask``
or return new tensors (the common case), and runs ``compute_mask`` once per
layer otherwise, while the model is built.
"""
import warnings

import tensorflow as tf
from tf_keras.src.engine import base_layer

_ATTRIBUTE = '_gau_keras_mask_checked'


class MaskNotComputedWarning(UserWarning):
    """A layer's ``compute_mask`` is skipped by tf-keras."""


def _overrides_compute_mask(layer):
    method = type(layer).compute_mask
    return method is not base_layer.Layer.compute_mask and not getattr(
        method, '_is_default', False)


def _carried_masks(inputs, outputs, previous_mask):
    """The mask each output tensor carries into the next layer: its own
    ``_keras_mask``, or, for a returned input while the model is built (the
    placeholders carry none), that input's mask; and whether any output is
    a returned input."""
    flat_inputs = tf.nest.flatten(inputs)
    flat_masks = tf.nest.flatten(previous_mask)
    if len(flat_masks) != len(flat_inputs):
        flat_masks = [None] * len(flat_inputs)
    by_id = {id(t): m for t, m in zip(flat_inputs, flat_masks)}
    carried, returned = [], False
    for t in tf.nest.flatten(outputs):
        mask = getattr(t, '_keras_mask', None)
        if id(t) in by_id:
            returned = True
            mask = by_id[id(t)] if mask is None else mask
        carried.append(mask)
    return carried, returned


def _same_masks(old, new):
    old, new = tf.nest.flatten(old), tf.nest.flatten(new)
    return len(old) == len(new) and all(a is b for a, b in zip(old, new))


def check_mask_skipped(layer, inputs, outputs, previous_mask):
    """Warns (once per layer) if tf-keras will skip ``layer.compute_mask``
    although it gives another mask than the one the outputs carry; returns
    True when it warned.  Called from the hook; usable on its own."""
    if getattr(layer, _ATTRIBUTE, False) or not _overrides_compute_mask(layer):
        return False
    if getattr(layer, '_compute_output_and_mask_jointly', False):
        return False
    kept, returned = _carried_masks(inputs, outputs, previous_mask)
    if not returned or not kept or any(m is None for m in kept):
        return False            # tf-keras calls compute_mask itself
    object.__setattr__(layer, _ATTRIBUTE, True)
    try:
        wanted = layer.compute_mask(inputs, previous_mask)
    except Exception:           # noqa: BLE001  (a failing mask: warn anyway)
        wanted = object()
    if wanted is None or len(tf.nest.flatten(wanted)) != len(kept) or \
            _same_masks(kept, wanted):
        return False            # nothing computed, or the inputs' masks
    warnings.warn(
        'layer %r (%s) overrides compute_mask but returns one of its inputs, '
        'which already carries a mask: tf-keras keeps that mask and never '
        'calls compute_mask, so the layers after it see the wrong mask. '
        'Return a new tensor, e.g. `return inputs[0] * 1` or '
        '`return tf.identity(inputs[0])`.'
        % (layer.name, type(layer).__name__), MaskNotComputedWarning,
        stacklevel=4)
    return True


def install():
    """Hooks ``Layer._set_mask_metadata`` (idempotent); returns True if it
    installed the hook now."""
    original = base_layer.Layer._set_mask_metadata
    if getattr(original, '_gau_keras_hook', False):
        return False

    def _set_mask_metadata(self, inputs, outputs, previous_mask,
                           build_graph):
        if self._supports_masking:
            check_mask_skipped(self, inputs, outputs, previous_mask)
        return original(self, inputs, outputs, previous_mask, build_graph)

    _set_mask_metadata._gau_keras_hook = True
    _set_mask_metadata._gau_keras_original = original
    base_layer.Layer._set_mask_metadata = _set_mask_metadata
    return True


def uninstall():
    """Removes the hook (for tests); returns True if one was removed."""
    current = base_layer.Layer._set_mask_metadata
    original = getattr(current, '_gau_keras_original', None)
    if original is None:
        return False
    base_layer.Layer._set_mask_metadata = original
    return True


install()

__all__ = ['MaskNotComputedWarning', 'check_mask_skipped', 'install',
           'uninstall']
