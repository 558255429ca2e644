"""Trainer step time on batches of padded lengths 40..59 (issue 8, item 10).

    python scripts/bench_retrace.py [--xla] [--steps 40]

To compare with an older tree, run it with PYTHONPATH pointing at each tree
in turn (e.g. a `git archive` of an older commit), alternating;
prints s/step (mean over steps 3..N, i.e. after the first two traces) and
the number of traces of the train step.
"""
import argparse
import os
import sys
import tempfile
import time

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import tensorflow as tf

from gau_keras import optimizers, precision, training

p = argparse.ArgumentParser()
p.add_argument('--xla', action='store_true')
p.add_argument('--steps', type=int, default=40)
args = p.parse_args()
print('cpu flags:', precision.cpu_flags_summary(), '| gau_keras from',
      os.path.dirname(gau_keras.__file__), '| xla', args.xla)
cfg = 'gau_alpha_tiny'  # the shipped config, by name
training.set_seed(1, deterministic=False)
model = gau_keras.build_transformer_model(cfg, model='gau_alpha',
                                          with_mlm='linear', vocab_size=500)


def dataset_fn(position):
    while True:
        n = 40 + position % 20
        t = np.random.RandomState(position).randint(1, 500, (8, n))
        yield [t, 0 * t], t
        position += 1


times = []
last = [time.perf_counter()]


def clock(step, loss):
    now = time.perf_counter()
    times.append(now - last[0])
    last[0] = now


loss = tf.keras.losses.SparseCategoricalCrossentropy(True, reduction='none')
trainer = training.Trainer(model, loss, optimizers.AdamW(1e-3), dataset_fn,
                           args.steps, tempfile.mkdtemp(), save_every=10**6,
                           verbose=0, jit_compile=args.xla,
                           callbacks=[clock])
trainer.train()
print('s/step over steps 3..%d: %.3f (median %.3f); traces: %d'
      % (args.steps, np.mean(times[2:]), np.median(times[2:]),
         trainer._train_step.experimental_get_tracing_count()))
sys.stdout.flush()
