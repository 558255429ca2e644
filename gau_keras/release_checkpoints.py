"""Release checkpoints: TF1 name-based weights in the layout of the public
GAU-α release (``chinese_GAU-alpha-char_L-24_H-768/bert_model.ckpt``).

These are the files a model is published as and started from, read and
written by variable name; the Trainer's resumable training checkpoints
(``tf.train.Checkpoint``, ``gau_keras.training``) are a different format,
and a folder holding those is refused here.

A mapping {keras layer name: [checkpoint variable names]} pairs each layer's
weights, in the order of ``layer_weights(layer)``, with checkpoint names.
Loading reads the checkpoint once and checks every name, shape and dtype
before assigning anything (an unreadable or truncated file, a missing
variable, an integer variable for a float weight, a ``keep_tokens`` id past
the checkpoint's rows all raise ``CheckpointError`` naming the culprit).
Saving writes the same names with TensorFlow's SaveV2, so save → load is
exact and ``tf.train.load_variable`` reads the result.

Example::

    from gau_keras import release_checkpoints
    release_checkpoints.save_weights_as_checkpoint(
        transformer, 'out/bert_model.ckpt')
    release_checkpoints.load_weights_from_checkpoint(
        transformer, 'out/bert_model.ckpt')
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


def resolve_checkpoint(path):
    """The checkpoint prefix of ``path`` (a prefix, or a folder whose
    ``checkpoint`` state file names one).  Example::

        resolve_checkpoint('models/gau_alpha')   # -> '.../bert_model.ckpt'
    """
    path = str(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise CheckpointError('no checkpoint found in folder %s' % path)
        path = latest
    return path


def open_checkpoint(path):
    """A CheckpointReader for ``path`` (a prefix or a folder)."""
    if isinstance(path, dict):
        return path
    path = resolve_checkpoint(path)
    try:
        return tf.train.load_checkpoint(path)
    except (tf.errors.NotFoundError, tf.errors.DataLossError,
            ValueError) as e:
        raise CheckpointError('cannot read checkpoint %s: %s'
                              % (path, str(e).splitlines()[0])) from None


#: Checkpoint variable holding the ``keep_tokens`` a saved model was built
#: with (its embedding rows are already the kept ones).
KEEP_TOKENS_VARIABLE = 'gau_keras/keep_tokens'


def _data_files(path):
    """The data file(s) of checkpoint prefix ``path`` (for messages)."""
    files = sorted(tf.io.gfile.glob(str(path) + '.data-*'))
    return ', '.join(files) if files else str(path) + '.data-*'


def _dtypes(reader):
    if isinstance(reader, dict):
        return {k: np.asarray(v).dtype for k, v in reader.items()}
    return {k: v.as_numpy_dtype
            for k, v in reader.get_variable_to_dtype_map().items()}


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


def _check_token_ids(ids, what):
    """``ids`` as a list of non-negative Python ints, or CheckpointError."""
    out = []
    for i in ids:
        if isinstance(i, (bool, np.bool_)) or not isinstance(
                i, (int, np.integer)) or int(i) < 0:
            raise CheckpointError('%s must hold non-negative integer token '
                                  'ids, got %r' % (what, i))
        out.append(int(i))
    return out


def _keep_tokens_plan(transformer, reader, shapes, source, pairs):
    """How to treat ``keep_tokens`` for this checkpoint.

    Returns True when the checkpoint already holds the kept rows (it was
    saved from a model built with the same ``keep_tokens``): they are then
    loaded as they are instead of being re-indexed a second time.
    """
    keep = getattr(transformer, 'keep_tokens', None)
    if keep is None:
        return False
    keep = _check_token_ids(keep, 'keep_tokens')
    table = [n for layer, _, n in pairs
             if layer == transformer.prefixed('Embedding-Token')]
    rows = shapes[table[0]][0] if table and table[0] in shapes else None
    if KEEP_TOKENS_VARIABLE in shapes:
        saved = [int(i) for i in np.ravel(read_variable(
            reader, KEEP_TOKENS_VARIABLE))]
        if saved != keep:
            raise CheckpointError(
                'checkpoint %s was saved from a model built with keep_tokens '
                '(%d ids, its embedding rows are already the kept ones); '
                'keep_tokens=%d ids that differ would re-index them: pass '
                'keep_tokens=None (and vocab_size=%d) or the same list'
                % (source, len(saved), len(keep), len(saved)))
        return True
    if rows is not None:
        past = [i for i in keep if i >= rows]
        if past:
            raise CheckpointError(
                'keep_tokens id %d is past the %d rows of checkpoint '
                'variable %r in %s (%d ids past the end)'
                % (past[0], rows, table[0], source, len(past)))
        if rows == len(keep) and keep != list(range(rows)):
            raise CheckpointError(
                'checkpoint %s has exactly len(keep_tokens) = %d embedding '
                'rows: it looks already reduced by keep_tokens, and '
                're-indexing it would scramble the rows; pass '
                'keep_tokens=None (and vocab_size=%d)'
                % (source, rows, rows))
    return False


def _read(transformer, reader, name, source):
    """``transformer.load_variable`` with file errors as CheckpointError."""
    try:
        return transformer.load_variable(reader, name)
    except (tf.errors.OpError, IndexError, OSError) as e:
        where = source if isinstance(source, str) and source.startswith(
            'the given') else _data_files(source)
        raise CheckpointError(
            'cannot read variable %r from checkpoint %s (truncated or '
            'corrupt file?): %s' % (name, where,
                                    str(e).strip().splitlines()[0])) from None


def load_weights_from_checkpoint(transformer, checkpoint, mapping=None):
    """Loads a bert4keras ``Transformer``'s weights from a TF1 checkpoint.

    Every variable is checked first: a missing name, a shape that differs
    or an integer/bool variable for a float weight raises CheckpointError
    naming the variable, the layer and both shapes/dtypes (unless the
    transformer has ignore_invalid_weights / autoresize_weights); an
    unreadable (truncated) file raises CheckpointError naming the file.
    A checkpoint saved from a ``keep_tokens`` model loads with the same
    ``keep_tokens`` (its rows are not re-indexed twice).  Example::

        load_weights_from_checkpoint(transformer, 'gau/bert_model.ckpt')
    """
    if not isinstance(checkpoint, dict):
        checkpoint = resolve_checkpoint(checkpoint)
    reader = open_checkpoint(checkpoint)
    shapes, dtypes = _shapes(reader), _dtypes(reader)
    source = ('the given dict of arrays' if isinstance(checkpoint, dict)
              else checkpoint)
    pairs = _pairs(transformer, mapping)
    already_kept = _keep_tokens_plan(transformer, reader, shapes, source,
                                     pairs)
    assignments = []
    saved = (transformer.keep_tokens, transformer.compound_tokens)
    if already_kept:
        transformer.keep_tokens = transformer.compound_tokens = None
    try:
        for layer_name, weight, name in pairs:
            value = _checked_value(transformer, reader, shapes, dtypes,
                                   source, layer_name, weight, name)
            if value is not None:
                assignments.append((weight, value))
    finally:
        transformer.keep_tokens, transformer.compound_tokens = saved
    K.batch_set_value(assignments)


def _checked_value(transformer, reader, shapes, dtypes, source, layer_name,
                   weight, name):
    w_shape = tuple(K.int_shape(weight))
    if name not in shapes:
        if transformer.ignore_invalid_weights:
            print('checkpoint has no %s (layer %s), ignored'
                  % (name, layer_name))
            return None
        raise CheckpointError(
            'checkpoint %s has no variable %r, needed by layer %r '
            '(weight %s, shape %s)' % (source, name, layer_name,
                                       weight.name, w_shape))
    w_dtype = np.dtype(weight.dtype.as_numpy_dtype)
    c_dtype = np.dtype(dtypes[name])
    if np.issubdtype(w_dtype, np.floating) and not np.issubdtype(
            c_dtype, np.floating):
        raise CheckpointError(
            'checkpoint variable %r in %s is %s but layer %r (weight %s) is '
            '%s: refusing to cast it into a float weight'
            % (name, source, c_dtype.name, layer_name, weight.name,
               w_dtype.name))
    value = _read(transformer, reader, name, source)
    if tuple(value.shape) != w_shape:
        if not transformer.autoresize_weights:
            raise CheckpointError(
                'shape mismatch for checkpoint variable %r: checkpoint '
                'has %s, layer %r (weight %s) has %s'
                % (name, tuple(value.shape), layer_name, weight.name,
                   w_shape))
        from bert4keras.snippets import orthogonally_resize
        value = orthogonally_resize(value, w_shape)
    return value


def _is_object_based(prefix):
    """True for a TF2 ``tf.train.Checkpoint`` (e.g. a Trainer's)."""
    try:
        return '_CHECKPOINTABLE_OBJECT_GRAPH' in \
            tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError):
        return False


def _refuse_training_folder(folder):
    """CheckpointError if ``folder`` holds TF2 training checkpoints, whose
    ``checkpoint`` state file an export must not overwrite."""
    prefixes = [p[:-len('.index')]
                for p in tf.io.gfile.glob(os.path.join(folder, '*.index'))]
    state = os.path.join(folder, 'checkpoint')
    if any(_is_object_based(p) for p in prefixes):
        raise CheckpointError(
            'folder %s holds training checkpoints (tf.train.Checkpoint, '
            'e.g. a Trainer\'s workdir/ckpt): exporting there would '
            'overwrite its state file %s and break resuming; export into '
            'another folder' % (folder, state))


def write_checkpoint(filename, variables):
    """Writes {name: array} as a TF1 name-based checkpoint at ``filename``.

    ``filename`` is a prefix (``out/bert_model.ckpt``); an existing folder
    means ``folder/bert_model.ckpt``.  The folder's ``checkpoint`` state
    file then names the new checkpoint; a folder of training checkpoints
    (a Trainer's ``workdir/ckpt``) is refused.  Example::

        write_checkpoint('out/bert_model.ckpt', {'w': np.ones(3)})
    """
    if not variables:
        raise CheckpointError('nothing to save to %s' % filename)
    filename = str(filename)
    if os.path.isdir(filename):
        filename = os.path.join(filename, 'bert_model.ckpt')
    folder = os.path.dirname(os.path.abspath(filename))
    _refuse_training_folder(folder)
    os.makedirs(folder, exist_ok=True)
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=filename, tensor_names=names,
        shape_and_slices=[''] * len(names),
        tensors=[tf.convert_to_tensor(variables[n]) for n in names])
    relative = os.path.relpath(os.path.abspath(filename), folder)
    tmp = os.path.join(folder, 'checkpoint.tmp')
    with open(tmp, 'w') as f:
        f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: '
                '"%s"\n' % (relative, relative))
    os.replace(tmp, os.path.join(folder, 'checkpoint'))
    return filename


def export_value(transformer, name, value):
    """A weight as the checkpoint stores it: the model's own
    ``create_variable`` transform (e.g. a transpose in bert4keras's BERT and
    T5), evaluated in a throw-away graph."""
    with tf.Graph().as_default():
        # the initializer's random draw is discarded, but under
        # enable_op_determinism a random op needs a seed in this graph
        tf.compat.v1.set_random_seed(0)
        _, value = transformer.create_variable(name, value)
    return np.asarray(value)


def save_weights_as_checkpoint(transformer, filename, mapping=None,
                               dtype=None):
    """Saves a bert4keras ``Transformer``'s weights under checkpoint names.

    Works in TF2 eager mode (bert4keras's own saver needs a TF1 Session).
    ``dtype`` (e.g. 'float16') converts floating-point values on the way.
    A model built with ``keep_tokens`` also stores them (``gau_keras/
    keep_tokens``), so reloading with the same ``keep_tokens`` does not
    re-index its rows twice.  ``filename`` as in ``write_checkpoint``.
    Example::

        save_weights_as_checkpoint(transformer, 'out/bert_model.ckpt')
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
    keep = getattr(transformer, 'keep_tokens', None)
    if keep is not None:
        variables[KEEP_TOKENS_VARIABLE] = np.asarray(
            _check_token_ids(keep, 'keep_tokens'), np.int64)
    return write_checkpoint(filename, variables)


__all__ = ['CheckpointError', 'KEEP_TOKENS_VARIABLE', 'export_value',
           'layer_weights', 'load_weights_from_checkpoint', 'open_checkpoint',
           'read_variable', 'resolve_checkpoint', 'save_weights_as_checkpoint',
           'write_checkpoint']
