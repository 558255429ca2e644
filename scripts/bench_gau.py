"""GAU layer speed: gau_keras's GatedAttentionUnit vs bert4keras's stock one.

    python scripts/bench_gau.py                          # n=512 b=4, n=2048 b=1
    python scripts/bench_gau.py --rounds 1 --steps 2     # quick look
    python scripts/bench_gau.py --profile runs/gau_prof  # + op-level profile
    python scripts/bench_gau.py --layer                  # one layer alone

Both stacks are the same GAU-α encoder (config ``--config``, default
the shipped gau_alpha_base: H=768, e=1536, s=128; ``--layers`` GAU blocks,
default 2; dropout off; token + segment embeddings with ``mask_zero``, so
both layers get a key mask even without padding):

* reference: bert4keras 0.11.5's RoFormerV2 skeleton whose blocks are
  bert4keras's own ``GatedAttentionUnit`` (softmax_plus, RoPE from its
  ``SinusoidalPositionEmbedding``), GAU → Dropout → Add → RMS norm, as the
  GAU-α release builds it;
* gau_keras: ``build_transformer_model(cfg, model='gau_alpha')``.

Both get the same weights (the script checks that their outputs agree), and
one fp32 training step (forward, backward, tf-keras Adam update, in a
``tf.function``) is timed on ``batch × n`` tokens with no padding; the loss
is the mean squared error of the encoder output against a fixed random
target (``--mlm`` adds the tied 12000-word MLM head and a cross-entropy,
which dilutes the attention's share).  Each round times ``--steps`` steps of
each model, interleaved step by step (the order flips every step), after
``--warmup`` steps excluded; a round's ratio is median(reference) /
median(gau_keras), for wall time and for process CPU time (steadier when
other jobs share the cores); also the ratio of each model's fastest step
over all rounds (the least disturbed one).  Printed: per round, and the median and range
over rounds.  The machine is shared, so only ratios from alternating rounds
mean anything.

``--profile DIR`` also records ``--profile_steps`` steps of each model with
TensorFlow's profiler and prints, per model, the op types and the ops
(layers summed) that took the most time: the durations of the TensorFlow op
events of the step.  With ``--inter_op 1`` ops run one at a time, so the
durations add up to the step time.
"""
import argparse
import os
import statistics
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gau_keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gau_keras.configs import resolve_config_path  # noqa: E402
from bench import harness, profiling  # noqa: E402
from bench.bert4keras_gau import (StockGAUAlpha,  # noqa: E402
                                  copy_stock_weights)
from bert4keras import models as b4k  # noqa: E402
from bert4keras.layers import GatedAttentionUnit as StockGAU  # noqa: E402


def build_models(args):
    """(reference keras model, gau_keras keras model), same weights."""
    overrides = dict(num_hidden_layers=args.layers, dropout_rate=0.0,
                     attention_dropout_rate=0.0,
                     with_mlm='linear' if args.mlm else False)
    ref = b4k.build_transformer_model(args.config, model=StockGAUAlpha,
                                      **overrides)
    ours_t = gau_keras.build_transformer_model(
        args.config, model='gau_alpha', return_keras_model=False, **overrides)
    copy_stock_weights(ref, ours_t)
    return ref, ours_t.model


def make_step(model, loss_fn):
    """A tf.function training step with tf-keras Adam."""
    optimizer = tf.keras.optimizers.Adam(1e-4)

    @tf.function
    def step(inputs, target):
        with tf.GradientTape() as tape:
            loss = loss_fn(target, model(inputs, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return step


def mse(target, y):
    return tf.reduce_mean(tf.square(y - target))


def sparse_ce(target, logits):
    return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
        target, logits, from_logits=True))


def data(args, batch, n, vocab, hidden):
    rs = np.random.RandomState(0)
    tokens = rs.randint(1, vocab, (batch, n)).astype('int32')
    inputs = [tf.constant(tokens), tf.constant(np.zeros_like(tokens))]
    if args.mlm:
        return inputs, tf.constant(tokens)
    return inputs, tf.constant(rs.randn(batch, n, hidden).astype('float32'))


def timed_steps(step, inputs, target, count):
    """[(wall seconds, process CPU seconds)] of ``count`` steps."""
    t = harness.time_calls(lambda: step(inputs, target).numpy(), count)
    return list(zip(t.wall, t.cpu))


def bench_case(args, models, batch, n):
    """Alternating rounds at one size: per-round (wall ratio, CPU ratio)."""
    ref, ours = models
    vocab = ours.get_layer('Embedding-Token').input_dim
    hidden = ours.output_shape[-1]
    inputs, target = data(args, batch, n, vocab, hidden)
    agree = np.abs(ref(inputs).numpy() - ours(inputs).numpy()).max()
    loss_fn = sparse_ce if args.mlm else mse
    steps = {'reference': make_step(ref, loss_fn),
             'gau_keras': make_step(ours, loss_fn)}
    for name in steps:  # trace + warm-up, excluded
        timed_steps(steps[name], inputs, target, args.warmup)
    ratios, best = [], {name: [float('inf')] * 2 for name in steps}
    for r in range(args.rounds):
        # Steps interleaved one by one (order flipping every step), so a
        # drift of the machine's speed hits both models alike.
        times = {name: [] for name in steps}
        for i in range(args.steps):
            order = ['reference', 'gau_keras'][::1 if (r + i) % 2 == 0
                                               else -1]
            for name in order:
                times[name] += timed_steps(steps[name], inputs, target, 1)
        wall, cpu = {}, {}
        for name in steps:
            best[name] = [min(best[name][i], *(t[i] for t in times[name]))
                          for i in (0, 1)]
            wall[name] = statistics.median(t[0] for t in times[name])
            cpu[name] = statistics.median(t[1] for t in times[name])
        ratios.append((wall['reference'] / wall['gau_keras'],
                       cpu['reference'] / cpu['gau_keras']))
        print('  n=%d b=%d round %d: wall reference %.3f s, gau_keras %.3f s,'
              ' ratio %.3f | CPU %.3f s, %.3f s, ratio %.3f  (load %.1f)'
              % (n, batch, r + 1, wall['reference'], wall['gau_keras'],
                 ratios[-1][0], cpu['reference'], cpu['gau_keras'],
                 ratios[-1][1], os.getloadavg()[0]), flush=True)
    fastest = tuple(best['reference'][i] / best['gau_keras'][i]
                    for i in (0, 1))
    return ratios, fastest, agree, steps, (inputs, target)


# --------------------------------------------------------------- profile


def profile_ops(step, inputs, target, count, logdir):
    """({op type: ms per step}, {op name: ms per step}) from the TF
    profiler, after one unprofiled step."""
    step(inputs, target).numpy()
    return profiling.profile(lambda: step(inputs, target).numpy(), logdir,
                             count)


def print_profile(case, profiles, top):
    ref, ours = (profiles[k][0] for k in ('reference', 'gau_keras'))
    keys = sorted(set(ref) | set(ours), key=lambda k: -max(ref.get(k, 0),
                                                           ours.get(k, 0)))
    print('\nop-level profile, %s (ms per step: sum of op durations over '
          'the executor threads)' % case)
    print('| op type | reference | gau_keras |')
    print('|---|---|---|')
    for k in keys[:top]:
        print('| %s | %.1f | %.1f |' % (k, ref.get(k, 0), ours.get(k, 0)))
    print('| total (all ops) | %.1f | %.1f |' % (sum(ref.values()),
                                                  sum(ours.values())))
    for model in ('reference', 'gau_keras'):
        by_name = profiles[model][1]
        print('\n%s, top ops by name (ms per step):' % model)
        for k in sorted(by_name, key=lambda k: -by_name[k])[:top]:
            print('  %7.1f  %s' % (by_name[k], k))


# ------------------------------------------------------------------ main


def bench_layer(args, batch, n):
    """One GAU layer alone, fwd + bwd (sum of squares of the output), key
    mask on: stock bert4keras layer vs gau_keras's, and gau_keras's with
    ``backend.FUSE_SWISH_GRADIENT = False``; steps interleaved, medians."""
    from gau_keras import backend
    from gau_keras.layers import GatedAttentionUnit
    from bert4keras.layers import SinusoidalPositionEmbedding
    cfg = gau_keras.configs.load_config(args.config)
    hidden, e, s = (cfg['hidden_size'], cfg['intermediate_size'],
                    cfg['attention_key_size'])
    rs = np.random.RandomState(0)
    x = tf.constant(rs.randn(batch, n, hidden).astype('float32'))
    mask = tf.ones([batch, n], tf.bool)
    stock = StockGAU(e, key_size=s, use_bias=False, activation='swish',
                     normalization='softmax_plus')
    sinus = SinusoidalPositionEmbedding(s, 'zero')
    ours = GatedAttentionUnit(e, s, use_bias=False,
                              normalization='softmax_plus')

    def step_of(layer, call, fused=True):
        backend.FUSE_SWISH_GRADIENT = fused
        call(x)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = call(x)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [x] + layer.trainable_weights)
        step(x)  # traced with this FUSE_SWISH_GRADIENT
        backend.FUSE_SWISH_GRADIENT = True
        return step
    steps = {
        'stock': step_of(stock, lambda x: stock(
            [x, sinus(x)], mask=[mask, None], p_bias='rotary')),
        'gau_keras': step_of(ours, lambda x: ours(x, mask=mask)),
        'gau_keras, unfused swish gradient': step_of(
            ours, lambda x: ours(x, mask=mask), fused=False)}
    times = {k: [] for k in steps}
    for i in range(args.rounds * args.steps):
        for k in (list(steps) if i % 2 else list(steps)[::-1]):
            times[k] += harness.time_calls(
                lambda: [g.numpy() for g in steps[k](x)]).wall
    med = {k: statistics.median(v) for k, v in times.items()}
    print('one GAU layer fwd+bwd, n=%d b=%d, H=%d e=%d s=%d, %d steps each'
          ' (interleaved): ' % (n, batch, hidden, e, s, len(times['stock']))
          + ', '.join('%s %.1f ms' % (k, 1000 * v) for k, v in med.items())
          + '; stock / gau_keras = %.3f' % (med['stock'] / med['gau_keras']),
          flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default='gau_alpha_base',
                   help='a config file or the name of a shipped config')
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--cases', nargs='+', default=['512x4', '2048x1'],
                   help='n x batch, e.g. 512x4 2048x1')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--layer', action='store_true',
                   help='time one GAU layer alone (stock vs gau_keras, and '
                   'gau_keras with the unfused swish gradient)')
    p.add_argument('--mlm', action='store_true',
                   help='add the tied MLM head and a cross-entropy loss')
    p.add_argument('--profile', default=None, metavar='DIR',
                   help='also profile ops with the TF profiler, logs in DIR')
    p.add_argument('--profile_steps', type=int, default=2)
    p.add_argument('--top', type=int, default=18)
    p.add_argument('--inter_op', type=int, default=0,
                   help='inter-op threads (0: TF default); 1 makes the '
                   'profiled op durations add up to the step time')
    return p.parse_args()


def main():
    args = parse_args()
    config_name = args.config
    # bert4keras reads a file: the shipped config's path for a name
    args.config = resolve_config_path(args.config)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    print('TF %s, %d CPU threads, CPU flags: %s' % (
        tf.__version__, os.cpu_count(), harness.cpu_flags_string()))
    print('config %s, %d layers, fp32, Adam, %s, inter-op threads %s, '
          'load average %.1f'
          % (config_name, args.layers,
             'MLM head + cross-entropy' if args.mlm else 'MSE on the encoder',
             args.inter_op or 'default',
             os.getloadavg()[0]), flush=True)
    if args.layer:
        for case in args.cases:
            n, batch = (int(v) for v in case.lower().split('x'))
            bench_layer(args, batch, n)
        return
    rows = []
    for case in args.cases:
        n, batch = (int(v) for v in case.lower().split('x'))
        tf.keras.backend.clear_session()
        models = build_models(args)
        ratios, fastest, agree, steps, (inputs, target) = bench_case(
            args, models, batch, n)
        rows.append((n, batch, ratios, fastest, agree))
        if args.profile:
            profiles = {name: profile_ops(step, inputs, target,
                                          args.profile_steps,
                                          os.path.join(args.profile, name))
                        for name, step in steps.items()}
            print_profile('n=%d b=%d' % (n, batch), profiles, args.top)
    print('\n| n | batch | rounds | wall ratio, median (range) | '
          'CPU-time ratio, median (range) | ratio of fastest steps, wall / '
          'CPU | max abs output diff |')
    print('|---|---|---|---|---|---|---|')
    for n, batch, ratios, fastest, agree in rows:
        wall, cpu = [r[0] for r in ratios], [r[1] for r in ratios]
        print('| %d | %d | %d | %.3f (%.3f–%.3f) | %.3f (%.3f–%.3f) | '
              '%.3f / %.3f | %.1e |'
              % (n, batch, len(ratios), statistics.median(wall), min(wall),
                 max(wall), statistics.median(cpu), min(cpu), max(cpu),
                 fastest[0], fastest[1], agree))
    print('\nratio = reference / gau_keras time per step (> 1: gau_keras is '
          'faster); CPU time = process CPU seconds per step, steadier than '
          'wall time when other jobs share the cores.  Load average at the '
          'end: '
          '%.1f %.1f %.1f' % os.getloadavg())


if __name__ == '__main__':
    main()
