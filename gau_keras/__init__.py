"""gau_keras: GAU-α and FLASH (gated attention units) for Keras 2 / bert4keras.

Importing this package selects tf.keras = tf-keras (Keras 2), which bert4keras
needs, by setting ``TF_KERAS=1`` and ``TF_USE_LEGACY_KERAS=1`` (here, and
nowhere else) before TensorFlow resolves ``tf.keras``.  Import it before
bert4keras and before anything touches ``tf.keras``; if that is too late,
the import fails and says why and what to change.

After ``import gau_keras`` the layers (including FLASH's) are registered
Keras custom objects, and ``gau_keras.layers``, ``gau_keras.models``, ... are
reachable.

Example::

    import gau_keras
    model = gau_keras.build_transformer_model('gau_alpha_tiny',
                                              model='gau_alpha')
"""
import importlib as _importlib
import importlib.util as _importlib_util
import os as _os
import sys as _sys
import warnings as _warnings

__version__ = '0.1.0'

#: TensorFlow versions gau_keras is tested with: [low, high).
TESTED_TENSORFLOW = ((2, 21), (2, 22))

_FIX = ('Fix: put `import gau_keras` before any bert4keras / tensorflow '
        'import, or start Python with the variables set: '
        '`TF_KERAS=1 TF_USE_LEGACY_KERAS=1 python script.py`.')


def _select_keras_2():
    """Sets TF_KERAS=1 and TF_USE_LEGACY_KERAS=1 unless set otherwise."""
    for var in ('TF_KERAS', 'TF_USE_LEGACY_KERAS'):
        value = _os.environ.setdefault(var, '1')
        if value.strip().lower() not in ('1', 'true', 'yes', 'on'):
            raise ImportError(
                'gau_keras needs Keras 2 through tf-keras, but the environment '
                'variable %s=%r asks otherwise; unset it or set it to 1.'
                % (var, value))


def _import_tensorflow():
    """TensorFlow, checked against the tested versions and tf-keras."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            'gau_keras needs TensorFlow %d.%d with tf-keras (%s). Install '
            "it with `pip install 'gau_keras[gpu]'` on an NVIDIA machine, or "
            "`pip install 'tensorflow==2.21.*' 'tf-keras==2.21.*'`."
            % (TESTED_TENSORFLOW[0] + (e,))) from e
    version = tuple(int(p) for p in tf.__version__.split('.')[:2])
    if not TESTED_TENSORFLOW[0] <= version < TESTED_TENSORFLOW[1]:
        message = ('gau_keras is tested with TensorFlow >=%d.%d,<%d.%d, but '
                   'TensorFlow %s is installed; install `tensorflow==2.21.*` '
                   '(or set GAU_KERAS_ALLOW_UNTESTED_TF=1 to try anyway).'
                   % (TESTED_TENSORFLOW[0] + TESTED_TENSORFLOW[1] +
                      (tf.__version__,)))
        if _os.environ.get('GAU_KERAS_ALLOW_UNTESTED_TF') != '1':
            raise ImportError(message)
        _warnings.warn(message, RuntimeWarning, stacklevel=3)
    try:
        import tf_keras
    except ImportError as e:
        raise ImportError(
            'gau_keras needs tf-keras (Keras 2) next to TensorFlow %s: '
            "`pip install 'tf-keras==%d.%d.*'` (%s)"
            % ((tf.__version__,) + version + (e,))) from e
    if tuple(int(p) for p in tf_keras.__version__.split('.')[:2]) != version:
        raise ImportError(
            'tf-keras %s does not match TensorFlow %s: '
            "`pip install 'tf-keras==%d.%d.*'`"
            % ((tf_keras.__version__, tf.__version__) + version))
    return tf


def _check_keras(tf):
    """Fails clearly if Keras 3 is already in use by tf.keras or bert4keras."""
    layer_module = tf.keras.layers.Layer.__module__
    if not layer_module.startswith('tf_keras'):
        raise ImportError(
            'Keras 3 is already in use (tf.keras.layers.Layer comes from %r): '
            'tf.keras was touched before gau_keras was imported, without '
            'TF_USE_LEGACY_KERAS=1. gau_keras needs Keras 2 (tf-keras). %s'
            % (layer_module, _FIX))
    b4k = _sys.modules.get('bert4keras.backend')
    keras = getattr(b4k, 'keras', None)
    if keras is not None:
        module = getattr(getattr(keras, 'layers', None), 'Layer', keras)
        module = getattr(module, '__module__', repr(keras))
        if not module.startswith('tf_keras'):
            raise ImportError(
                'bert4keras was imported before gau_keras without TF_KERAS=1, '
                'so it already runs on Keras 3 (its layers come from %r); '
                'gau_keras needs bert4keras on Keras 2 (tf-keras). %s'
                % (module, _FIX))


_select_keras_2()
_check_keras(_import_tensorflow())

# The layers (GAU, FLASH) register as Keras custom objects on import.
from gau_keras import backend, configs, layers, flash  # noqa: E402,F401
from gau_keras import models, precision  # noqa: E402,F401
from gau_keras.backend import keras, K  # noqa: E402,F401
from gau_keras.configs import load_config  # noqa: E402,F401
from gau_keras.models import (build_transformer_model,  # noqa: E402,F401
                              register_model)
from gau_keras.precision import set_precision  # noqa: E402,F401


def __getattr__(name):
    """Imports the other submodules on first use (``gau_keras.training``).

    An error raised while importing one propagates: an AttributeError
    inside it becomes an ImportError (Python would otherwise report it as
    "cannot import name" or "has no attribute").
    """
    if name.startswith('_') or _importlib_util.find_spec(
            'gau_keras.' + name) is None:
        raise AttributeError("module 'gau_keras' has no attribute %r" % name)
    try:
        return _importlib.import_module('gau_keras.' + name)
    except AttributeError as e:
        raise ImportError('importing gau_keras.%s failed: %s: %s'
                          % (name, type(e).__name__, e)) from e
