"""gau_keras: GAU-α and FLASH (gated attention units) for Keras 2 / bert4keras.

Importing this package selects tf.keras = tf-keras (Keras 2), which bert4keras
needs, by setting ``TF_KERAS=1`` and ``TF_USE_LEGACY_KERAS=1`` before
TensorFlow is imported.  Import it before anything touches ``tf.keras``.

Example::

    import gau_keras
    model = gau_keras.build_transformer_model(
        'configs/gau_alpha_tiny.json', model='gau_alpha')
"""
import os as _os

for _var in ('TF_KERAS', 'TF_USE_LEGACY_KERAS'):
    _value = _os.environ.setdefault(_var, '1')
    if _value.strip().lower() not in ('1', 'true', 'yes', 'on'):
        raise ImportError(
            'gau_keras needs Keras 2 through tf-keras, but the environment '
            'variable %s=%r asks otherwise; unset it or set it to 1.'
            % (_var, _value))

from gau_keras import backend  # noqa: E402  (checks the Keras version)
from gau_keras.backend import keras, K  # noqa: E402,F401

__version__ = '0.1.0'


def __getattr__(name):
    # Lazy access to the heavier modules keeps `import gau_keras` cheap and
    # avoids import cycles between models, checkpoints and the builder.
    lazy = {
        'build_transformer_model': 'gau_keras.models',
        'register_model': 'gau_keras.models',
        'load_config': 'gau_keras.configs',
        'set_precision': 'gau_keras.precision',
    }
    if name in lazy:
        import importlib
        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError("module 'gau_keras' has no attribute %r" % name)
