"""Throughput of pretraining: the input pipeline alone against training.

Example::

    data = PretrainingData('corpus.txt', 'vocab.txt', 128, 32)
    pipeline_rate(data, 10)                                # tokens/s
    training_rate('gau_alpha_tiny', 'gau_alpha', data, 10)  # (tokens/s, steps)
    benchmark('runs/bench', seconds=20)   # both, tiny and base, printed
"""
import os
import tempfile
import time

from gau_keras import precision
from gau_keras import training
from gau_keras.pretraining.corpus import PretrainingData
from gau_keras.pretraining.masking import MASK_RATE
from gau_keras.pretraining.model import (PretrainingStats,
                                         build_pretraining_model,
                                         release_optimizer, training_view)
from gau_keras.pretraining.run import (check_settings, prepare_corpus,
                                       pretrain_defaults)


class _Enough(Exception):
    """Ends a timed benchmark run."""


def pipeline_rate(data, seconds):
    """Real tokens/s of ``data.batches`` alone (jieba, packing, masking)."""
    tokens, t0 = 0.0, time.time()
    for _, (_, _, real) in data.batches(0):
        tokens += float(real.sum())
        if time.time() - t0 > seconds:
            break
    return tokens / (time.time() - t0)


def training_rate(config, model_name, data, seconds, objective='mlm',
                  jit_compile=False):
    """Real tokens/s of LAMB training steps on ``data`` (after 2 warm-up
    steps), fed by the prefetching tf.data pipeline; returns (tokens/s,
    steps measured)."""
    with tempfile.TemporaryDirectory() as tmp:
        transformer = build_pretraining_model(config, model_name, objective,
                                              data.vocab_size)
        model, head = training_view(transformer, objective, jit_compile)
        stats = PretrainingStats()
        times = []

        def clock(step, loss):
            times.append((time.time(), stats.take()[2]))
            if times[-1][0] - times[min(2, len(times) - 1)][0] > seconds:
                raise _Enough()
        trainer = training.Trainer(
            model, stats.loss_fn(head), release_optimizer(),
            data.dataset_fn(), 10 ** 6, tmp, save_every=10 ** 6,
            verbose=0, jit_compile=jit_compile, callbacks=[clock])
        try:
            trainer.train()
        except _Enough:
            pass
    t_start = times[2][0]
    tokens = sum(n for _, n in times[3:])
    return tokens / max(times[-1][0] - t_start, 1e-9), len(times) - 3


def benchmark(output_dir, *, corpus=None, text_field='text', vocab=None,
              model='gau_alpha', objective='mlm', maxlen=128,
              batch_size=None, mask_rate=MASK_RATE, seconds=20.0, seed=42,
              xla=False):
    """Prints pipeline tokens/s and training tokens/s for the tiny and the
    base config of ``model`` on the run's corpus (``pretrain``'s corpus,
    vocab and batch defaults), alternating, twice; returns the rows
    ``(config, repeat, pipeline, training, steps)``.  Example::

        rows = benchmark('runs/bench', seconds=5)
    """
    batch_size = pretrain_defaults(corpus, batch_size=batch_size)[
        'batch_size']
    check_settings(objective, maxlen, mask_rate, 'chosen')
    os.makedirs(output_dir, exist_ok=True)
    paths, _, vocab = prepare_corpus(output_dir, corpus, vocab)
    training.set_seed(seed, False)
    print('CPU flags: %s; %d CPUs, load average %.1f before the run'
          % (precision.cpu_flags_summary(), os.cpu_count(),
             os.getloadavg()[0]))
    rows = []
    for size in ('tiny', 'base'):
        config = '%s_%s' % (model, size)
        data = PretrainingData(paths, vocab, maxlen, batch_size, objective,
                               seed=seed, text_field=text_field,
                               mask_rate=mask_rate)
        for repeat in range(2):
            pipe = pipeline_rate(data, seconds)
            train, steps = training_rate(config, model, data, seconds,
                                         objective, bool(xla))
            rows.append((config, repeat, pipe, train, steps))
            print('%-16s repeat %d: pipeline %8.0f tokens/s | training '
                  '%8.0f tokens/s (%d steps, batch %d x maxlen %d) | '
                  'pipeline/training %.1fx' % (config, repeat, pipe, train,
                                               steps, batch_size, maxlen,
                                               pipe / train),
                  flush=True)
    return rows
