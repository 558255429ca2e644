"""One way to make a gau_keras class a Keras custom object.

Keras finds a class by the name stored in a saved model: the bare
``__name__`` (how bert4keras and these layers save, looked up in
``keras.utils.get_custom_objects()``) or ``'package>Name'`` (how
``keras.utils.register_keras_serializable`` saves).  ``register`` does
either or both, and remembers every bare-name class so that
``custom_objects()`` can hand them to ``keras.models.load_model``.

Example::

    from gau_keras.registry import PACKAGE, custom_objects, register

    @register                                   # saved as 'MyLayer'
    class MyLayer(keras.layers.Layer):
        ...

    @register(package=PACKAGE, plain_name=False)    # 'gau_keras>MyOpt'
    class MyOpt(keras.optimizers.Optimizer):
        ...

    keras.models.load_model(path, custom_objects=custom_objects())
"""
import tensorflow as tf

keras = tf.keras

#: The package name of ``'package>Name'`` registrations.
PACKAGE = 'gau_keras'

_PLAIN = {}


def register(cls=None, *, package=None, plain_name=True):
    """Registers ``cls`` for Keras (de)serialisation and returns it.

    ``plain_name``: under ``cls.__name__`` in Keras's custom objects and in
    ``custom_objects()``.  ``package``: also under ``'package>Name'``
    (``keras.utils.register_keras_serializable``), which is then the name
    Keras writes when saving.  Use as ``@register``, ``@register(...)`` or
    ``register(cls, ...)``.
    """
    def apply(cls):
        if package is not None:
            keras.utils.register_keras_serializable(package=package)(cls)
        if plain_name:
            keras.utils.get_custom_objects()[cls.__name__] = cls
            _PLAIN[cls.__name__] = cls
        return cls
    return apply if cls is None else apply(cls)


def custom_objects():
    """Every class registered under its bare name, by name (a new dict).

    Holds the classes of every gau_keras module imported so far;
    ``import gau_keras`` imports the layers, FLASH and the output layers.
    """
    return dict(_PLAIN)


__all__ = ['PACKAGE', 'register', 'custom_objects']
