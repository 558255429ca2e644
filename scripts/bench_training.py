"""Training-step throughput of GAU-α: fp32 vs bf16, XLA off vs on.

    python scripts/bench_training.py                       # tiny, small, base
    python scripts/bench_training.py --sizes base --layers 4 --steps 3

For each size (the shipped config gau_alpha_{size}), one MLM training step
(forward, backward, AdamW update, through ``gau_keras.training.Trainer``) on
``--batch`` × ``--seq_len`` tokens is timed (median of ``--steps`` steps after
``--warmup``) in four settings: precision fp32 / bf16 × XLA off / on.

Model FLOPs per step are analytic (``bench.flops.train_flops`` with the MLM
head: the usual 6·N·T rule, N = matmul parameters, T = tokens; forward 2
FLOPs per multiply-add, backward 2× the forward):

    per layer   N_l = d·(2e + s)  (i_dense → u, v, z)  +  e·d  (o_dense)
    MLM head    N_h = d·vocab      (tied token embedding used as a matmul)
    attention   2·n·s (QKᵀ) + 2·n·e (A·V) FLOPs per token per layer, forward
    FLOPs/step  = 6·T·(L·N_l + N_h) + 3·T·L·(2·n·s + 2·n·e)

(embedding look-ups, norms, RoPE, softmax and the optimizer are not counted:
they are memory-bound and small).  "MFU" is model FLOPs per second divided by
the FLOPs per second of a plain matmul in the same dtype, measured just
before and just after each setting (best of [T, d]×[d, 2e+s], the model's
largest matmul, and 2048³), so that both see the same machine load.
"""
import argparse
import os
import statistics
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gau_keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gau_keras import optimizers, precision, training  # noqa: E402
from gau_keras.configs import load_config, preset_path  # noqa: E402
from bench import flops, harness  # noqa: E402

LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                     reduction='none')


def model_flops(config, layers, batch, n):
    """Training FLOPs of one step (see the module docstring)."""
    return flops.train_flops('gau_alpha', dict(config,
                                               num_hidden_layers=layers),
                             n, batch, with_mlm=True)


def matmul_peak(rows, d, cols, dtype, repeats=5):
    """Best FLOP/s of a [rows, d] × [d, cols] matmul over ``repeats``."""
    return harness.matmul_rate((rows, d, cols), dtype, repeats).best


def step_time(config_path, overrides, batch, n, prec, xla, warmup, steps):
    """Median seconds of a Trainer step of the MLM model."""
    tf.keras.backend.clear_session()
    precision.set_precision(prec)
    model = gau_keras.build_transformer_model(
        config_path, model='gau_alpha', with_mlm='linear', **overrides)
    vocab = model.output.shape[-1]
    rs = np.random.RandomState(0)
    tokens = rs.randint(1, vocab, (batch, n)).astype('int32')
    data = ([tokens, np.zeros_like(tokens)], tokens)
    total = warmup + steps + 1
    clock = harness.StepClock()
    with tempfile.TemporaryDirectory() as workdir:
        training.Trainer(
            model, LOSS, optimizers.AdamW(1e-4),
            lambda p: iter([data] * total),
            total, workdir, save_every=10 ** 9, jit_compile=xla, verbose=0,
            callbacks=[clock]).train()
    precision.set_precision('fp32')
    return statistics.median(clock.intervals(skip=warmup))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', nargs='+', default=['tiny', 'small', 'base'])
    p.add_argument('--seq_len', type=int, default=512)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--layers', type=int, default=None,
                   help='override num_hidden_layers (faster; same widths)')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--steps', type=int, default=3)
    return p.parse_args()


def bench_size(size, args):
    """Table rows of one size: the four settings."""
    path = preset_path('gau_alpha_%s' % size)
    config = load_config(path)
    overrides = {'dropout_rate': 0.0, 'attention_dropout_rate': 0.0}
    layers = config['num_hidden_layers']
    if args.layers:
        overrides['num_hidden_layers'] = layers = args.layers
    d, e, s = (config['hidden_size'], config['intermediate_size'],
               config['attention_key_size'])
    n, tokens = args.seq_len, args.batch * args.seq_len
    step_flops = model_flops(config, layers, args.batch, n)
    rows, base_time = [], None
    for prec, xla in (('fp32', False), ('fp32', True), ('bf16', False),
                      ('bf16', True)):
        dt = 'float32' if prec == 'fp32' else 'bfloat16'

        def peak():
            return max(matmul_peak(tokens, d, 2 * e + s, dt),
                       matmul_peak(2048, 2048, 2048, dt))
        before = peak()
        t = step_time(path, overrides, args.batch, n, prec, xla,
                      args.warmup, args.steps)
        best = max(before, peak())
        base_time = base_time or t
        rows.append((size, layers, d, '%s xla=%s' % (prec, 'on' if xla
                                                     else 'off'),
                     '%.3f' % t, '%.0f' % (tokens / t),
                     '%.3f' % (step_flops / t / 1e12),
                     '%.3f' % (best / 1e12),
                     '%.0f%%' % (100 * step_flops / t / best),
                     '%.2fx' % (base_time / t)))
        print('  ' + ' | '.join(str(c) for c in rows[-1]), flush=True)
    return rows


def main():
    args = parse_args()
    print('TF %s, %d CPU threads, batch %d x n %d = %d tokens/step, load '
          'average %.1f' % (tf.__version__, os.cpu_count(), args.batch,
                            args.seq_len, args.batch * args.seq_len,
                            os.getloadavg()[0]))
    rows = [row for size in args.sizes for row in bench_size(size, args)]
    header = ('size', 'layers', 'd', 'setting', 's/step', 'tokens/s',
              'model TFLOP/s', 'matmul TFLOP/s', 'MFU', 'speed-up')
    print('\n| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(str(c) for c in row) + ' |')
    print('\nMFU = analytic model FLOPs/s / plain matmul FLOPs/s (same dtype,'
          ' best of just before and after the setting); speed-up vs fp32 '
          'xla=off of the same size.  Load average at the end: %.1f %.1f '
          '%.1f' % os.getloadavg())


if __name__ == '__main__':
    main()
