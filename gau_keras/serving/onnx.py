"""ONNX export of a token-id model (tf2onnx), and an onnxruntime session.

The exported graph takes int32 ``token_ids`` [batch, length] (and
``segment_ids`` when the model has a second input) with free batch and
length, and returns float32 outputs (cast from the compute dtype under
mixed precision).  Opset 17 (``DEFAULT_OPSET``): onnxruntime 1.14+ runs it.

Example::

    from gau_keras.serving.onnx import export_onnx, onnx_session
    export_onnx(model, 'model.onnx')
    session = onnx_session('model.onnx')
    (probs,) = session.run(None, {'token_ids': ids, 'segment_ids': segs})

From a fine-tuning run folder: ``export_run_onnx('runs/tnews',
'tnews.onnx')`` (the model ``gau_keras.clue.load_predictor`` rebuilds).
"""
import logging

import tensorflow as tf

from gau_keras.files import atomic_write

#: The ONNX opset written by default.
DEFAULT_OPSET = 17
#: Input names of the exported graph, in the Keras model's input order.
INPUT_NAMES = ('token_ids', 'segment_ids')


def token_id_function(model, output_names=None):
    """``model`` as a ``tf.function`` over int32 token / segment ids.

    Returns (function, input_signature); the function returns a dict
    {output name: float32 tensor}.  ``output_names`` defaults to 'output'
    (one output) or 'output_0', 'output_1', ... (several).

    Example: ``f, sig = token_id_function(model); f(ids, segs)['output']``.
    """
    count = len(model.inputs)
    if count not in (1, 2):
        raise ValueError('a token-id model has 1 or 2 inputs (token ids, '
                         'segment ids); this one has %d' % count)
    dtypes = [i.dtype for i in model.inputs]
    signature = [tf.TensorSpec([None, None], tf.int32, name=name)
                 for name in INPUT_NAMES[:count]]
    outputs = model.outputs
    if output_names is None:
        output_names = (['output'] if len(outputs) == 1 else
                        ['output_%d' % i for i in range(len(outputs))])
    if len(output_names) != len(outputs):
        raise ValueError('%d output names for %d outputs'
                         % (len(output_names), len(outputs)))

    def forward(*ids):
        xs = [tf.cast(x, dtype) for x, dtype in zip(ids, dtypes)]
        ys = model(xs if count > 1 else xs[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return {name: tf.cast(y, tf.float32)
                for name, y in zip(output_names, ys)}

    return tf.function(forward, input_signature=signature), signature


def export_onnx(model, path, opset=DEFAULT_OPSET, output_names=None):
    """Write ``model`` (a Keras token-id model) as an ONNX file; returns
    ``path``.  The file is written atomically.

    Example::

        model = gau_keras.build_transformer_model(config, model='flash')
        export_onnx(model, 'flash.onnx')
    """
    import tf2onnx
    logging.getLogger('tf2onnx').setLevel(logging.WARNING)
    function, signature = token_id_function(model, output_names)
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=signature, opset=int(opset))
    with atomic_write(path, 'wb') as f:
        f.write(proto.SerializeToString())
    return path


#: Output name of the exported run model per task head (as the ``ids``
#: signature of the SavedModel export).
RUN_OUTPUTS = {'classification': 'logits', 'global_pointer': 'scores'}


def export_run_onnx(run, path, opset=DEFAULT_OPSET):
    """The fine-tuned model of a run folder (or a ``Predictor``) as ONNX:
    int32 token ids in; ``logits`` (classification) or ``scores``
    (cluener) out.  Returns ``path``.

    Example: ``export_run_onnx('runs/tnews', 'tnews.onnx')``.
    """
    from gau_keras.clue.predict import Predictor, load_predictor
    predictor = run if isinstance(run, Predictor) else load_predictor(run)
    head = predictor.task.head
    if head not in RUN_OUTPUTS:
        raise ValueError('task %r (head %r) is not exported to ONNX: '
                         'classification tasks and cluener are'
                         % (predictor.task.name, head))
    return export_onnx(predictor.model, path, opset, [RUN_OUTPUTS[head]])


def onnx_session(path, threads=None):
    """An onnxruntime CPU session for ``path`` (``threads``: intra-op).

    Example: ``onnx_session('model.onnx').run(None, feeds)``.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])
