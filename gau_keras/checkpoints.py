"""TF1 name-based checkpoints (the format of the public GAU-α release).

A mapping {keras layer name: [checkpoint variable names]} pairs each layer's
weights, in the order of ``layer_weights(layer)``, with checkpoint names.
Loading reads the checkpoint once and checks every name and shape before
assigning anything; saving writes the same names with TensorFlow's SaveV2, so
save → load is exact and ``tf.train.load_variable`` reads the result.

Example::

    from gau_keras import checkpoints
    checkpoints.save_weights_as_checkpoint(transformer, 'out/bert_model.ckpt')
    checkpoints.load_weights_from_checkpoint(transformer, 'out/bert_model.ckpt')
"""
import os

import numpy as np
import tensorflow as tf

from gau_keras.backend import K


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model."""


def layer_weights(layer):
    """A layer's weights in checkpoint order."""
    if hasattr(layer, 'checkpoint_weights'):
        return layer.checkpoint_weights()
    return layer.trainable_weights


def open_checkpoint(path):
    """A CheckpointReader for ``path`` (a prefix or a folder)."""
    if isinstance(path, dict):
        return path
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise CheckpointError('no checkpoint found in folder %s' % path)
        path = latest
    try:
        return tf.train.load_checkpoint(path)
    except (tf.errors.NotFoundError, tf.errors.DataLossError,
            ValueError) as e:
        raise CheckpointError('cannot read checkpoint %s: %s'
                              % (path, str(e).splitlines()[0])) from None


def _shapes(reader):
    if isinstance(reader, dict):
        return {k: tuple(np.shape(v)) for k, v in reader.items()}
    return {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}


def read_variable(reader, name):
    """One variable's value from a reader, a dict of arrays or a path."""
    if isinstance(reader, dict):
        return np.asarray(reader[name])
    if isinstance(reader, str):
        return tf.train.load_variable(reader, name)
    return reader.get_tensor(name)


def _resolved_mapping(transformer, mapping):
    mapping = mapping or transformer.variable_mapping()
    mapping = {transformer.prefixed(k): v for k, v in mapping.items()}
    return {k: v for k, v in mapping.items() if k in transformer.layers}


def _pairs(transformer, mapping):
    """(layer name, keras weight, checkpoint name) for every mapped weight."""
    out = []
    for layer_name, names in _resolved_mapping(transformer, mapping).items():
        weights = layer_weights(transformer.layers[layer_name])
        if len(weights) != len(names):
            raise CheckpointError(
                'layer %r has %d weights but the mapping names %d: %s'
                % (layer_name, len(weights), len(names), names))
        out += [(layer_name, w, n) for w, n in zip(weights, names)]
    return out


def load_weights_from_checkpoint(transformer, checkpoint, mapping=None):
    """Loads a bert4keras ``Transformer``'s weights from a TF1 checkpoint.

    Every variable is checked first: a missing name or a shape that differs
    raises CheckpointError naming the variable, the layer and both shapes
    (unless the transformer has ignore_invalid_weights / autoresize_weights).
    """
    reader = open_checkpoint(checkpoint)
    shapes = _shapes(reader)
    source = ('the given dict of arrays' if isinstance(checkpoint, dict)
              else checkpoint)
    assignments = []
    for layer_name, weight, name in _pairs(transformer, mapping):
        w_shape = tuple(K.int_shape(weight))
        if name not in shapes:
            if transformer.ignore_invalid_weights:
                print('checkpoint has no %s (layer %s), ignored'
                      % (name, layer_name))
                continue
            raise CheckpointError(
                'checkpoint %s has no variable %r, needed by layer %r '
                '(weight %s, shape %s)' % (source, name, layer_name,
                                           weight.name, w_shape))
        value = transformer.load_variable(reader, name)
        if tuple(value.shape) != w_shape:
            if not transformer.autoresize_weights:
                raise CheckpointError(
                    'shape mismatch for checkpoint variable %r: checkpoint '
                    'has %s, layer %r (weight %s) has %s'
                    % (name, tuple(value.shape), layer_name, weight.name,
                       w_shape))
            from bert4keras.snippets import orthogonally_resize
            value = orthogonally_resize(value, w_shape)
        assignments.append((weight, value))
    K.batch_set_value(assignments)


def write_checkpoint(filename, variables):
    """Writes {name: array} as a TF1 name-based checkpoint at ``filename``."""
    if not variables:
        raise CheckpointError('nothing to save to %s' % filename)
    folder = os.path.dirname(os.path.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=filename, tensor_names=names,
        shape_and_slices=[''] * len(names),
        tensors=[tf.convert_to_tensor(variables[n]) for n in names])
    relative = os.path.relpath(os.path.abspath(filename), folder)
    with open(os.path.join(folder, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: '
                '"%s"\n' % (relative, relative))
    return filename


def export_value(transformer, name, value):
    """A weight as the checkpoint stores it: the model's own
    ``create_variable`` transform (e.g. a transpose in bert4keras's BERT and
    T5), evaluated in a throw-away graph."""
    with tf.Graph().as_default():
        _, value = transformer.create_variable(name, value)
    return np.asarray(value)


def save_weights_as_checkpoint(transformer, filename, mapping=None,
                               dtype=None):
    """Saves a bert4keras ``Transformer``'s weights under checkpoint names.

    Works in TF2 eager mode (bert4keras's own saver needs a TF1 Session).
    ``dtype`` (e.g. 'float16') converts floating-point values on the way.
    """
    pairs = _pairs(transformer, mapping)
    values = K.batch_get_value([w for _, w, _ in pairs])
    variables = {}
    for (layer_name, _, name), value in zip(pairs, values):
        if name in variables:
            raise CheckpointError('checkpoint name %r is mapped twice (layer '
                                  '%r)' % (name, layer_name))
        value = export_value(transformer, name, value)
        if dtype is not None and np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
        variables[name] = value
    return write_checkpoint(filename, variables)
