"""Trainer step time on batches of 20 padded lengths (40..59), and how often
the train step is traced.

    python scripts/bench_retrace.py [--xla] [--steps 40]

Prints s/step (mean and median over steps 3..N, i.e. after the first two
traces) and the number of traces of the train step.  To compare two copies
of gau_keras, run it with PYTHONPATH pointing at each copy in turn,
alternating.
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gau_keras  # noqa: E402,F401  (before tensorflow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gau_keras import optimizers, training  # noqa: E402
from bench import harness  # noqa: E402


def dataset_fn(position):
    """Batches of 8 random rows whose length cycles through 40..59."""
    while True:
        n = 40 + position % 20
        t = np.random.RandomState(position).randint(1, 500, (8, n))
        yield [t, 0 * t], t
        position += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--xla', action='store_true')
    p.add_argument('--steps', type=int, default=40)
    args = p.parse_args()
    print('cpu flags:', harness.cpu_flags_string(), '| gau_keras from',
          os.path.dirname(gau_keras.__file__), '| xla', args.xla)
    training.set_seed(1, deterministic=False)
    model = gau_keras.build_transformer_model(
        'gau_alpha_tiny', model='gau_alpha', with_mlm='linear',
        vocab_size=500)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(True,
                                                         reduction='none')
    clock = harness.StepClock()
    trainer = training.Trainer(model, loss, optimizers.AdamW(1e-3),
                               dataset_fn, args.steps, tempfile.mkdtemp(),
                               save_every=10 ** 6, verbose=0,
                               jit_compile=args.xla, callbacks=[clock])
    trainer.train()
    times = clock.intervals(skip=1)          # steps 3..N
    print('s/step over steps 3..%d: %.3f (median %.3f); traces: %d'
          % (args.steps, statistics.mean(times), statistics.median(times),
             trainer._train_step.experimental_get_tracing_count()))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
