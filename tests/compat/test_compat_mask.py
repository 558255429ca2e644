"""gau_keras.compat: a layer whose compute_mask tf-keras never calls.

The truth the warning rests on is measured here: a probe layer after the
masking layer counts the positions its mask keeps.  Returning ``inputs[0]``
keeps the padding mask (tf-keras skips compute_mask); ``inputs[0] * 1``
gets the custom one.
"""
import warnings

import numpy as np
import pytest

import gau_keras
import gau_keras.compat  # noqa: F401  (installs the hook; also in gau_keras)
from gau_keras.backend import K, keras
from gau_keras.compat import MaskNotComputedWarning, install, uninstall

TOKENS = np.array([[5, 6, 7, 0]])       # padding mask: 3 positions
CUSTOM = np.array([[0., 0., 1., 1.]])   # custom mask: 2 positions


def masking_layer(fixed):
    class CustomMasking(keras.layers.Layer):
        def compute_mask(self, inputs, mask=None):
            return K.greater(inputs[1], 0.5)

        def call(self, inputs, mask=None):
            return inputs[0] * 1 if fixed else inputs[0]

        def compute_output_shape(self, input_shape):
            return input_shape[0]
    return CustomMasking(name='custom_masking')


class CountMask(keras.layers.Layer):
    """Number of positions the incoming mask keeps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return K.sum(K.cast(mask, 'float32'), axis=1, keepdims=True)

    def compute_mask(self, inputs, mask=None):
        return None


def build(layer):
    tokens = keras.layers.Input((None,))
    custom = keras.layers.Input((None,))
    x = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    x = layer([x, custom])
    return keras.models.Model([tokens, custom], CountMask()(x))


def mask_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', MaskNotComputedWarning)
        result = fn()
    return result, [w for w in caught if w.category is MaskNotComputedWarning]


def test_returned_input_keeps_its_mask_and_warns_at_build():
    model, caught = mask_warnings(lambda: build(masking_layer(False)))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "'custom_masking'" in message and 'inputs[0] * 1' in message
    assert 'tf.identity' in message
    # what the warning is about: the padding mask reaches the next layer
    kept, again = mask_warnings(
        lambda: model.predict([TOKENS, CUSTOM], verbose=0))
    assert kept[0, 0] == 3 and again == []      # warned once per layer


def test_new_tensor_gets_the_custom_mask_without_warning():
    model, caught = mask_warnings(lambda: build(masking_layer(True)))
    assert caught == []
    assert model.predict([TOKENS, CUSTOM], verbose=0)[0, 0] == 2


def test_layers_passing_their_mask_through_do_not_warn():
    class PassThrough(keras.layers.Layer):
        def compute_mask(self, inputs, mask=None):
            return mask

        def call(self, inputs, mask=None):
            return inputs

    def run():
        tokens = keras.layers.Input((None,))
        x = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
        return keras.models.Model(tokens, CountMask()(PassThrough()(x)))
    model, caught = mask_warnings(run)
    assert caught == []
    assert model.predict(TOKENS, verbose=0)[0, 0] == 3


def test_lambda_picking_an_input_does_not_warn():
    """Lambda's compute_mask hands the inputs' masks back (a list for a
    list input): nothing computed, nothing lost."""
    def run():
        tokens = keras.layers.Input((None,))
        custom = keras.layers.Input((None,))
        x = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
        x = keras.layers.Lambda(lambda t: t[0])([x, custom])
        return keras.models.Model([tokens, custom], x)
    model, caught = mask_warnings(run)
    assert caught == []
    _, caught = mask_warnings(
        lambda: model.predict([TOKENS, CUSTOM], verbose=0))
    assert caught == []


@pytest.mark.parametrize('model', ['gau_alpha', 'flash_quad', 'flash'])
def test_gau_keras_models_build_without_mask_warnings(model):
    _, caught = mask_warnings(lambda: gau_keras.build_transformer_model(
        model + '_tiny', application='unilm' if model != 'flash' else 'lm',
        with_mlm=True))
    assert caught == []


def test_uninstall_and_install_are_idempotent():
    assert uninstall() is True
    try:
        assert uninstall() is False
        _, caught = mask_warnings(lambda: build(masking_layer(False)))
        assert caught == []                     # no hook, no warning
    finally:
        assert install() is True
    assert install() is False
