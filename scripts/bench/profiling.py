"""Op-level times from TensorFlow's profiler (for the benchmark tools).

Example::

    import sys; sys.path.insert(0, 'scripts')
    from bench import profiling
    by_type, by_name = profiling.profile(lambda: step(x).numpy(),
                                         'runs/prof', steps=2)
    profiling.profile_top(lambda: step(x).numpy(), 'runs/prof', top=12)
"""
import glob
import os
import re
from collections import defaultdict


def latest_xplane(logdir):
    """The newest ``*.xplane.pb`` under ``logdir``."""
    paths = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'),
                      recursive=True)
    if not paths:
        raise FileNotFoundError('no *.xplane.pb under %s (did the profiler '
                                'run?)' % logdir)
    return max(paths, key=os.path.getmtime)


def op_times(path, count):
    """Durations of the TensorFlow op events (named 'op_name:OpType') of the
    host plane of an XSpace file, in ms per step: ({op type: ms},
    {op name, layers summed: ms}).  oneDNN kernels ('_MklMatMul') count
    under their op."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    with open(path, 'rb') as f:
        space.ParseFromString(f.read())
    by_type, by_name = defaultdict(float), defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith('/host:CPU'):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, '')
                if ':' not in name or '::' in name or name.startswith(
                        ('__inference', 'EagerLocalExecute')):
                    continue
                op_name, op_type = name.rsplit(':', 1)
                op_type = op_type.replace('_Mkl', '').replace('Native', '')
                ms = event.duration_ps / 1e9 / count
                by_type[op_type] += ms
                by_name[re.sub(r'model(_\d+)?/|Transformer-\d+-', '',
                               op_name)] += ms
    return by_type, by_name


def profile(fn, logdir, steps=1):
    """Op times of ``steps`` calls of ``fn`` under TensorFlow's profiler
    (``op_times``; earlier profiles in ``logdir`` are removed first):
    ({op type: ms per step}, {op name: ms per step})."""
    import tensorflow as tf
    for old in glob.glob(os.path.join(logdir, '**', '*.xplane.pb'),
                         recursive=True):
        os.remove(old)
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        fn()
    tf.profiler.experimental.stop()
    return op_times(latest_xplane(logdir), steps)


def profile_top(fn, logdir, steps=1, top=12):
    """The ``top`` op types and op names of ``profile``, slowest first:
    {'by_type': [[op, ms], …], 'by_name': […]}."""
    by_type, by_name = profile(fn, logdir, steps)
    return {key: sorted(([k, v] for k, v in d.items()),
                        key=lambda kv: -kv[1])[:top]
            for key, d in (('by_type', by_type), ('by_name', by_name))}
