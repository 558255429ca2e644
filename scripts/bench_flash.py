"""Training-step time of FLASH vs FLASH-Quad as the sequence grows.

Equal parameters (same d, e, s, depth; FLASH has 2·s more scale weights per
layer) and equal tokens per batch (batch = tokens / n), so a cost linear in n
gives a flat time per token.  Prints a markdown table.  Not a test.

Usage::

    .venv/bin/python scripts/bench_flash.py            # d=256, 1 block
    .venv/bin/python scripts/bench_flash.py --lengths 512 1024 --steps 2
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gau_keras  # noqa: E402,F401  (before tensorflow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gau_keras import build_transformer_model  # noqa: E402
from gau_keras.backend import keras  # noqa: E402
from bench import harness  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--lengths', type=int, nargs='+',
                   default=[512, 1024, 2048, 4096, 8192])
    p.add_argument('--tokens', type=int, default=8192,
                   help='tokens per batch (batch = tokens / n)')
    p.add_argument('--hidden', type=int, default=256, help='d (e = 2d)')
    p.add_argument('--key-size', type=int, default=128, help='s')
    p.add_argument('--blocks', type=int, default=1,
                   help='blocks (2 attention layers each)')
    p.add_argument('--chunk', type=int, default=256, help='FLASH chunk c')
    p.add_argument('--vocab', type=int, default=1000)
    p.add_argument('--local-normalizer', default=None,
                   choices=['visible', 'chunk'],
                   help="FLASH's local divisor (default: the model's)")
    p.add_argument('--steps', type=int, default=5,
                   help='timed steps after one warm-up step (best is kept:'
                        ' the least disturbed by other processes)')
    return p.parse_args()


def build(model, args):
    """The encoder with a linear MLM head, compiled with Adam."""
    extra = {}
    if args.local_normalizer and model == 'flash':
        extra['local_normalizer'] = args.local_normalizer
    m = build_transformer_model(
        model=model, vocab_size=args.vocab, hidden_size=args.hidden,
        intermediate_size=2 * args.hidden, attention_key_size=args.key_size,
        num_attention_heads=1, num_hidden_layers=args.blocks,
        hidden_act='swish', type_vocab_size=0, chunk_size=args.chunk,
        with_mlm='linear', **extra)
    m.compile(optimizer=keras.optimizers.Adam(1e-4),
              loss=keras.losses.SparseCategoricalCrossentropy(
                  from_logits=True))
    return m


def batch_for(n, args):
    """tokens/n random sequences of length n (ids = targets)."""
    batch = max(args.tokens // n, 1)
    return np.random.RandomState(0).randint(1, args.vocab, (batch, n))


def step_time(model, ids):
    """Seconds of one training step."""
    t = harness.time_calls(lambda: model.train_on_batch(ids, ids))
    if not np.isfinite(t.result):
        raise RuntimeError('non-finite loss %r at n=%d'
                           % (t.result, ids.shape[1]))
    return t.wall[0]


def measure(args):
    """Best step time per (model, n).  Each (model, n) gets a model of its
    own (same sizes), so no Keras train function is retraced for several
    shapes; rounds go over every n and model, so that a busy moment of the
    machine spoils single steps, not whole rows."""
    models = {(name, n): build(name, args) for name in ('flash_quad', 'flash')
              for n in args.lengths}
    for (name, n), model in models.items():          # warm-up: one trace
        step_time(model, batch_for(n, args))
    best = {}
    for _ in range(args.steps):
        for (name, n), model in models.items():
            t = step_time(model, batch_for(n, args))
            best[name, n] = min(best.get((name, n), t), t)
    return best, models


def main():
    args = parse_args()
    print('d=%d e=%d s=%d c=%d blocks=%d (2 layers each) vocab=%d, '
          '%d tokens per batch, best of %d steps, %d CPUs'
          % (args.hidden, 2 * args.hidden, args.key_size, args.chunk,
             args.blocks, args.vocab, args.tokens, args.steps,
             tf.config.threading.get_intra_op_parallelism_threads() or
             os.cpu_count()))
    print('CPU flags: %s' % harness.cpu_flags_string())
    print('load average before: %.2f' % os.getloadavg()[0])
    best, models = measure(args)
    n0 = args.lengths[0]
    print('parameters: ' + ', '.join('%s %d' % (k, models[k, n0].count_params())
                                     for k in ('flash_quad', 'flash')))
    rows = [(n, max(args.tokens // n, 1), best['flash_quad', n],
             best['flash', n]) for n in args.lengths]
    print('load average after: %.2f' % os.getloadavg()[0])
    per_token = {n: t / args.tokens for n, _, _, t in rows}
    base = per_token.get(1024, per_token[rows[0][0]])
    print('\n| n | batch | flash_quad ms/step | flash ms/step | speedup | '
          'flash µs/token | ratio vs n=1024 |')
    print('|---|---|---|---|---|---|---|')
    for n, batch, t_quad, t_flash in rows:
        print('| %d | %d | %.0f | %.0f | %.2f× | %.1f | %.2f |'
              % (n, batch, 1e3 * t_quad, 1e3 * t_flash, t_quad / t_flash,
                 1e6 * per_token[n], per_token[n] / base))


if __name__ == '__main__':
    main()
