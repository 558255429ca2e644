"""Inference speed: TensorFlow vs onnxruntime, side by side in one process.

For each model (a tiny gau_alpha and a base-width 2-layer gau_alpha, random
weights) and each shape (batch x tokens), times the same token-id model as

* ``predict_on_batch``: Keras's per-call path;
* ``tf.function``: one traced function with an int32 [None, None] signature
  (``gau_keras.serving.onnx.token_id_function``);
* ``onnxruntime``: the tf2onnx export (``gau_keras.serving.onnx``), CPU.

and prints median latency and throughput, the largest |ONNX - TF|
difference, the CPU flags (``gau_keras.precision.cpu_flags``) and the load
average (the figures depend on what else runs on the machine).

    python scripts/bench/onnx_speed.py
    python scripts/bench/onnx_speed.py --models tiny --shapes 1x64 --steps 20
"""
import argparse
import os
import sys
import tempfile

if __package__ in (None, ''):      # run as a script: import bench.*
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))

import gau_keras  # noqa: E402,F401  (selects tf-keras before TensorFlow)
import numpy as np  # noqa: E402

from bench import harness  # noqa: E402

#: name → (preset, overrides)
MODELS = {'tiny': ('gau_alpha_tiny', {}),
          'base-2layer': ('gau_alpha_base', {'num_hidden_layers': 2})}
SHAPES = ((1, 64), (32, 128))


def build(name):
    from gau_keras.configs import preset_path
    preset, overrides = MODELS[name]
    return gau_keras.build_transformer_model(preset_path(preset),
                                             model='gau_alpha', **overrides)


def engines(model, onnx_path):
    """{engine name: f(ids, segs) → numpy output}."""
    from gau_keras.serving.onnx import (export_onnx, onnx_session,
                                        token_id_function)
    function, _ = token_id_function(model)
    export_onnx(model, onnx_path)
    session = onnx_session(onnx_path)
    return {
        'predict_on_batch': lambda i, s: model.predict_on_batch(
            [i.astype('float32'), s.astype('float32')]),
        'tf.function': lambda i, s: function(i, s)['output'].numpy(),
        'onnxruntime': lambda i, s: session.run(
            None, {'token_ids': i, 'segment_ids': s})[0],
    }


def measure(name, shapes, steps, folder):
    """Rows (model, shape, engine, median ms, seq/s, tokens/s, max diff)."""
    model = build(name)
    runs = engines(model, os.path.join(folder, '%s.onnx' % name))
    rng = np.random.default_rng(0)
    rows = []
    for batch, length in shapes:
        ids = rng.integers(1, 1000, (batch, length), dtype=np.int32)
        segs = np.zeros_like(ids)
        reference = runs['tf.function'](ids, segs)
        n = steps if batch * length <= 1024 else max(3, steps // 6)
        for engine, fn in runs.items():
            t = harness.time_calls(lambda: fn(ids, segs), steps=n, warmup=2)
            diff = float(np.abs(np.asarray(t.result, np.float32)
                                - reference).max())
            rows.append((name, '%dx%d' % (batch, length), engine,
                         1e3 * t.median, batch / t.median,
                         batch * length / t.median, diff, n))
    return rows


def versions():
    import onnx
    import onnxruntime
    import tf2onnx
    from gau_keras.serving.onnx import DEFAULT_OPSET
    return (tf2onnx.__version__, onnx.__version__, onnxruntime.__version__,
            DEFAULT_OPSET)


def format_rows(rows):
    lines = ['| model | batch x tokens | engine | median latency (ms) | '
             'sequences/s | tokens/s | max abs diff vs tf.function | calls |',
             '|---|---|---|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append('| %s | %s | %s | %.1f | %.1f | %.0f | %.1e | %d |' % r)
    return '\n'.join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--models', type=harness.choice_list(sorted(MODELS)),
                   default=list(MODELS))
    p.add_argument('--shapes', default='1x64,32x128',
                   help='comma-separated BATCHxTOKENS')
    p.add_argument('--steps', type=int, default=30,
                   help='timed calls per small point (large: steps / 6)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    shapes = [tuple(int(v) for v in s.split('x'))
              for s in args.shapes.split(',') if s]
    with open('/proc/loadavg') as f:
        load_before = f.read().strip()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            rows += measure(name, shapes, args.steps, folder)
    with open('/proc/loadavg') as f:
        load_after = f.read().strip()
    print(harness.format_machine(harness.machine_info()))
    print('tf2onnx %s, onnx %s, onnxruntime %s, opset %d' % versions())
    print('/proc/loadavg before: %s; after: %s' % (load_before, load_after))
    print(format_rows(rows))
    return rows


if __name__ == '__main__':
    main()
