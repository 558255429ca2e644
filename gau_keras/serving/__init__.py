"""Serving fine-tuned models outside Python training code.

* :mod:`gau_keras.serving.tokenization`: bert4keras's tokenizer as
  TensorFlow ops (tensorflow-text), for models that take raw text;
* :mod:`gau_keras.serving.saved_model`: a run folder → SavedModel for TF
  Serving (``serving_default`` on text, ``ids`` on token ids);
* :mod:`gau_keras.serving.onnx`: the token-id model → ONNX (tf2onnx), and
  an onnxruntime session for it;
* :mod:`gau_keras.serving.http`: ``ModelServer`` speaking TF Serving's REST
  predict API over a SavedModel or a run folder, and bert4keras's
  ``WebServing`` on the standard library;
* :mod:`gau_keras.serving.batching`: the dynamic batcher the server uses.

Example::

    from gau_keras.serving import saved_model
    saved_model.export_saved_model('runs/tnews', 'export/tnews/1')
"""
