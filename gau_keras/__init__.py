"""gau_keras: GAU-α and FLASH (gated attention units) for Keras 2 / bert4keras.

Importing this package selects tf.keras = tf-keras (Keras 2), which bert4keras
needs, by setting ``TF_KERAS=1`` and ``TF_USE_LEGACY_KERAS=1`` (here, and
nowhere else) before TensorFlow resolves ``tf.keras``.  Import it before
bert4keras and before anything touches ``tf.keras``; if that is too late,
the import fails and says why and what to change.

After ``import gau_keras`` the layers (the GAU's, FLASH's and the float32
output layers) are registered Keras custom objects
(``gau_keras.layers.custom_objects()``), and ``gau_keras.layers``,
``gau_keras.models``, ... are reachable.

Example::

    import gau_keras
    model = gau_keras.build_transformer_model('gau_alpha_tiny')  # a preset
"""
import importlib as _importlib
import importlib.util as _importlib_util
import os as _os
import sys as _sys
import types as _types
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


def _is_keras_3(value):
    """True for a Keras 3 module, class or function (not tf-keras's)."""
    if isinstance(value, _types.ModuleType):
        name, where = value.__name__, getattr(value, '__file__', '') or ''
        return (name == 'keras' or name.startswith('keras.')) and \
            'tf_keras' not in where
    module = getattr(value, '__module__', None)
    return isinstance(module, str) and module.startswith('keras.')


def _keras_3_names():
    """'file: name' for every Keras 3 object bound in a module that is
    importing gau_keras (the frames of this import) or in ``__main__``."""
    spaces, frame = [], _sys._getframe(1)
    while frame is not None:
        spaces.append(frame.f_globals)
        frame = frame.f_back
    main = _sys.modules.get('__main__')
    if main is not None:
        spaces.append(vars(main))
    found, seen = [], set()
    for space in spaces:
        if id(space) in seen:
            continue
        seen.add(id(space))
        where = space.get('__file__') or space.get('__name__', '?')
        found += ['%s: %s' % (where, name) for name, value in
                  list(space.items()) if not name.startswith('__') and
                  _is_keras_3(value)]
    return found


def _forget_keras_3():
    """Lets bert4keras bind ``keras`` to tf-keras when TensorFlow already
    loaded Keras 3 (``import tensorflow`` before ``import gau_keras``).

    bert4keras sets ``sys.modules['keras'] = tf.keras`` and then runs
    ``import keras.backend`` / ``from keras.layers import *``, which would
    find Keras 3's ``keras.backend`` / ``keras.layers`` still registered;
    those public entries are dropped (Keras 3's internals, ``keras.src``,
    stay loaded for TensorFlow).  Keras 3 objects that a script already
    imported cannot be swapped: the import fails, naming them.
    """
    keras = _sys.modules.get('keras')
    if keras is None or not _is_keras_3(keras) or \
            'bert4keras.backend' in _sys.modules:
        return
    names = _keras_3_names()
    if names:
        raise ImportError(
            'Keras 3 objects were imported before gau_keras (%s): `import '
            'keras` or `from keras.layers import ...` ran first, so they '
            'are Keras 3\'s, while gau_keras and bert4keras run on Keras 2 '
            '(tf-keras); the two cannot be mixed in one model. Fix: put '
            '`import gau_keras` (or the first `from gau_keras... import` '
            'line) before any keras import; after it, `keras` is tf-keras.'
            % ', '.join(names[:5]))
    for name in [m for m in _sys.modules if m == 'keras' or (
            m.startswith('keras.') and not m.startswith('keras.src'))]:
        del _sys.modules[name]


_select_keras_2()
_check_keras(_import_tensorflow())
_forget_keras_3()

# The layers (GAU, FLASH, output layers) register as Keras custom objects
# on import.
from gau_keras import backend, configs, layers, flash  # noqa: E402,F401
from gau_keras import models, precision  # noqa: E402,F401
# Warns when a layer's compute_mask is silently skipped by tf-keras.
from gau_keras import compat  # noqa: E402,F401
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
