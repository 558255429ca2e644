"""Training-step time per CLUE task (synthetic full-length examples), to
plan runs::

    python scripts/bench/clue_steps.py [--config gau_alpha_tiny]
        [--maxlen 128] [--batch_size 32] [--repeats 3]
        [--fixtures tests/fixtures/clue] [TASK ...]

Each repeat runs every task once (odd repeats in reverse order, so a load
change hits all tasks alike), 12 Trainer steps each; the first 4 steps
(tracing) are not timed.  Prints seconds per step (median and range over
repeats) and the implied time of one epoch over 10,000 examples (cmrc2018:
questions, each ``rows`` windows).  Prints the CPU flags too.  The task
definitions (labels) come from the fixture folders of ``--fixtures``.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

if __package__ in (None, ''):      # run as a script: import bench.*
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))

import numpy as np  # noqa: E402

import gau_keras  # noqa: E402
from gau_keras import clue, corpora, training  # noqa: E402
from gau_keras.clue import encoding, heads, pipeline  # noqa: E402
from gau_keras.clue.readers import (ChidExample, ChoiceExample,  # noqa: E402
                                    NerExample, SpanExample, TextExample)

from bench import harness  # noqa: E402

#: The checkout's CLUE fixtures: one small folder per task.
FIXTURES = os.path.join(harness.CHECKOUT, 'tests', 'fixtures', 'clue')
CHARS = list('的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会')
PAIR_TASKS = ('afqmc', 'cmnli', 'ocnli', 'csl')


def synthetic_examples(task, n, maxlen, seed=0):
    """``n`` examples of ``task``'s kind whose texts fill ``maxlen``."""
    rng = np.random.RandomState(seed)

    def text(k):
        return ''.join(rng.choice(CHARS, max(1, k)))
    m = maxlen
    if task.name in PAIR_TASKS:
        return [TextExample(i, text(m // 2), text(m // 2), i % 2)
                for i in range(n)]
    if task.head == 'classification':
        return [TextExample(i, text(m), None, i % 2) for i in range(n)]
    if task.name == 'c3':
        return [ChoiceExample(i, text(m), text(10), [text(5)] * 4, 1)
                for i in range(n)]
    if task.name == 'chid':
        return [ChidExample('#%d#' % i, text(m // 2), text(m // 2),
                            [text(4) for _ in range(10)], 3, i)
                for i in range(n)]
    if task.head == 'span':
        out = []
        for i in range(n):
            c = text(m)
            out.append(SpanExample('q%d' % i, text(10), c, [(c[50:55], 50)]))
        return out
    return [NerExample(i, text(m), [(3, 5, task.labels[0])])
            for i in range(n)]


def step_seconds(task, config, maxlen, batch_size, steps=12):
    """(median seconds per training step, model rows per example)."""
    examples = synthetic_examples(task, batch_size * 4, maxlen)
    folder = tempfile.mkdtemp(prefix='clue_bench_')
    try:
        vocab = corpora.save_vocab(corpora.build_tokenizer_vocab(
            [t for e in examples for t in encoding.example_texts(e)]),
            os.path.join(folder, 'vocab.txt'))
        tokenizer = encoding.load_tokenizer(vocab)
        feats = pipeline.encode_examples(task, examples, tokenizer, maxlen)
        encoder = gau_keras.build_transformer_model(
            config, model='gau_alpha', vocab_size=tokenizer._vocab_size)
        model = heads.build_head(task, encoder)
        clock = harness.StepClock()
        training.Trainer(
            model, heads.head_loss(task.head),
            gau_keras.optimizers.build_optimizer('adamw', 1e-3),
            pipeline.dataset_fn(task, feats, batch_size, 0), steps,
            os.path.join(folder, 'run'), save_every=10 ** 6, verbose=0,
            callbacks=[clock]).train()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return (statistics.median(clock.intervals(skip=3)),
            len(feats) / len(examples))


def main(argv=None):
    """Entry point: ``main(['tnews', '--repeats', '1'])``."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('tasks', nargs='*', default=clue.task_names())
    p.add_argument('--config', default='gau_alpha_tiny')
    p.add_argument('--maxlen', type=int, default=128)
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--fixtures', default=FIXTURES,
                   help='folder with one task folder per CLUE task (the '
                   "task definitions; default: the checkout's)")
    args = p.parse_args(argv)
    print('CPU flags: %s; load average %s' % (harness.cpu_flags_string(),
                                              os.getloadavg()))
    times, rows = {t: [] for t in args.tasks}, {}
    for r in range(args.repeats):
        for name in (args.tasks if r % 2 == 0 else args.tasks[::-1]):
            task = clue.get_task(name, os.path.join(args.fixtures, name),
                                  False)
            sec, rows[name] = step_seconds(task, args.config, args.maxlen,
                                           args.batch_size)
            times[name].append(sec)
    print('| task | s/step median (min-max) | rows/example | '
          'epoch of 10k examples, s |')
    for name in args.tasks:
        t = times[name]
        epoch = 10000 * rows[name] / args.batch_size * statistics.median(t)
        print('| %s | %.3f (%.3f-%.3f) | %.1f | %.0f |' % (
            name, statistics.median(t), min(t), max(t), rows[name], epoch))


if __name__ == '__main__':
    main()
