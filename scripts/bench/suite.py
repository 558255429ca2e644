"""The benchmark suite of ``scripts/benchmark.py``: speed, maxbatch, and
the command line that also runs ``bench.quality``'s quality and length runs.

* ``speed``: training-step and inference time, tokens/s, peak memory and
  model-FLOP utilisation of gau_alpha, flash_quad, flash, bert4keras's
  roformer_v2 and bert, and the GAU-α stack built from bert4keras's stock
  ``GatedAttentionUnit`` ('stock_gau', ``bench.bert4keras_gau``), at equal
  encoder parameters and equal tokens per batch, over sequence lengths n,
  in fp32 / bf16 / XLA.  Every point runs in a fresh subprocess
  (``harness.run_isolated``), so its peak memory is its own:
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the worker (peak
  resident set), minus the same figure right after importing TensorFlow;
  beside it TensorFlow's own CPU allocator peak
  (``tf.config.experimental.get_memory_info('CPU:0')['peak']``, reset
  between the inference and the training steps: tensors only, no oneDNN
  scratch, no graph or runtime memory).  A watchdog kills a point whose
  resident set passes ``--mem_budget_mb`` or whose wall time passes
  ``--point_budget_s``; larger n of that model and precision are skipped.
* ``maxbatch``: the largest batch that fits the memory budget at base
  width, full depth, n=1024, for flash_quad vs roformer_v2 (peak at batch 1
  and 2 measured, the affine fit solved for the budget).
* ``quality`` and ``length``: see ``bench.quality``.

FLOPs are counted analytically (``bench.flops``) and shown as a fraction of
a plain ``tf.matmul``'s rate (``harness.matmul_rate``), measured in each
point's own process right before its steps (float32 for fp32 / XLA rows,
bfloat16 for bf16 rows).

Run as a script (the same command line as ``scripts/benchmark.py``)::

    python scripts/bench/suite.py quick --out runs/bench_quick

or from Python::

    import sys; sys.path.insert(0, 'scripts')
    from bench import suite
    suite.main(['speed', '--models', 'gau_alpha', '--lengths', '128'])
"""
import json
import math
import os
import sys
import tempfile
import time

if __package__ in (None, ''):      # run as a script: import bench.*
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))

from gau_keras.files import write_json  # noqa: E402

from bench import harness, profiling, quality  # noqa: E402
from bench.flops import (encoder_params, equal_param_configs,  # noqa: E402
                         forward_flops, total_params, train_flops)
from bench.harness import choice_list, int_list  # noqa: E402

#: The models of the speed benchmark; 'stock_gau' is the GAU-α stack of
#: bert4keras's own GatedAttentionUnit (bench.bert4keras_gau), fp32 only.
SPEED_MODELS = ('gau_alpha', 'flash_quad', 'flash', 'roformer_v2', 'bert',
                'stock_gau')
#: 'xla' is fp32 with ``jit_compile=True``.
PRECISIONS = ('fp32', 'bf16', 'xla')


# --------------------------------------------------------------------------
# the worker: one point, in its own process
# --------------------------------------------------------------------------

def build_bench_model(model, cfg):
    """The Keras encoder of ``model`` from the config dict ``cfg`` (outputs
    [b, n, H]); 'stock_gau' is bert4keras's own GAU-α stack."""
    import gau_keras
    if model == 'stock_gau':
        from bert4keras import models as b4k
        from bench.bert4keras_gau import StockGAUAlpha
        return b4k.build_transformer_model(None, model=StockGAUAlpha, **cfg)
    return gau_keras.build_transformer_model(None, model=model, **cfg)


def matmul_rates(spec):
    """The plain matmul's rate in float32 and bfloat16 (median FLOP/s of
    ``spec['steps']`` calls) and the seconds of those calls."""
    shape = spec.get('shape', (8192, 768, 1536))
    out = dict(spec, status='ok')
    for dtype in ('float32', 'bfloat16'):
        rate = harness.matmul_rate(shape, dtype, spec.get('steps', 7))
        out[dtype], out[dtype + '_s'] = rate.median, rate.seconds
    return out


def worker(spec):
    """Runs one point described by ``spec`` (dict) in this process and
    returns the result dict.  kinds: 'speed' (inference then training steps
    timed), 'memory' (one training step), 'matmul' (the plain matmul
    rate).  ``harness.run_isolated('bench.suite:worker', spec)`` runs it in
    a fresh process."""
    import numpy as np
    import tensorflow as tf
    import gau_keras
    from bench.flops import counted_params
    rss_import = harness.peak_rss_mb()
    kind = spec.get('kind', 'speed')
    if kind == 'matmul':
        return matmul_rates(spec)
    jit = spec['precision'] == 'xla'
    gau_keras.set_precision('bf16' if spec['precision'] == 'bf16' else
                            'fp32', warn=False)
    built = harness.time_calls(lambda: build_bench_model(spec['model'],
                                                         spec['config']))
    model = built.result
    total, encoder = counted_params(model)
    b, n, cfg = spec['batch'], spec['n'], spec['config']
    rs = np.random.RandomState(0)
    tokens = tf.constant(rs.randint(1, cfg['vocab_size'], (b, n)), tf.int32)
    inputs = [tokens, tf.zeros_like(tokens)]
    target = tf.constant(rs.randn(b, n, cfg['hidden_size']), tf.float32)
    optimizer = tf.keras.optimizers.Adam(1e-4)

    @tf.function(jit_compile=jit)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            out = tf.cast(model(x, training=True), tf.float32)
            loss = tf.reduce_mean(tf.square(out - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(jit_compile=jit)
    def infer_step(x):
        return tf.reduce_sum(tf.cast(model(x, training=False), tf.float32))

    result = dict(spec, status='ok', params_total=total,
                  params_encoder=encoder, build_s=built.wall[0],
                  rss_import_mb=rss_import)
    if kind == 'memory':
        first = harness.time_calls(lambda: train_step(inputs,
                                                      target).numpy())
        result.update(first_step_s=first.wall[0],
                      peak_train_mb=harness.peak_rss_mb())
        return result
    timed_steps(result, spec, lambda: infer_step(inputs).numpy(),
                lambda: train_step(inputs, target).numpy())
    return result


def timed_steps(result, spec, infer, train):
    """Times ``infer`` then ``train`` (each after ``spec['warmup']``
    warm-up calls) into ``result``, with the memory peaks after each and,
    if the spec asks, the matmul rate first and a profile last."""
    warmup, steps = spec.get('warmup', 1), spec.get('steps', 3)
    if spec.get('matmul_shape'):
        result['matmul'] = matmul_rates(dict(shape=spec['matmul_shape'],
                                             steps=3))
    for key, fn in (('infer', infer), ('train', train)):
        harness.allocator_reset()
        t = harness.time_calls(fn, steps, warmup)
        result[key + '_s'], result['warm_%s_s' % key] = t.wall, t.warm
        result['peak_%s_mb' % key] = harness.peak_rss_mb()
        result['tf_peak_%s_mb' % key] = harness.allocator_peak_mb()
    result['load_average'] = list(os.getloadavg())
    if spec.get('profile'):
        with tempfile.TemporaryDirectory() as logdir:
            result['profile'] = profiling.profile_top(
                train, logdir, top=spec['profile'])


# --------------------------------------------------------------------------
# speed: the grid
# --------------------------------------------------------------------------

def parse_plan(text):
    """'fp32:2048,512;bf16:2048' → [('fp32', [2048, 512]), ('bf16',
    [2048])]: the run order of (precision, lengths) stages."""
    plan = []
    for stage in (t for t in text.split(';') if t.strip()):
        precision, _, lengths = stage.partition(':')
        precision = precision.strip()
        if precision not in PRECISIONS or not lengths:
            raise ValueError('--plan stage %r: want PRECISION:N,N,… with '
                             'PRECISION one of %s' % (stage, PRECISIONS))
        plan.append((precision, int_list(lengths)))
    return plan


def speed_points(models, precisions, lengths, tokens, mixed_lengths=None,
                 plan=None):
    """The grid in run order: stage by stage of ``plan`` (default: each
    precision over ``lengths``, bf16/xla over ``mixed_lengths`` if given),
    n in the order given, the model order reversed every other n (side by
    side, alternating).  stock_gau runs in fp32 only.  Points whose batch
    ``tokens // n`` would be 0 are left out (the caller reports them)."""
    if plan is None:
        plan = [(p, lengths if p == 'fp32' or not mixed_lengths
                 else mixed_lengths) for p in precisions]
    points, count = [], 0
    for precision, grid in plan:
        for n in grid:
            i, count = count, count + 1
            order = list(models) if i % 2 == 0 else list(models)[::-1]
            for model in order:
                if model == 'stock_gau' and precision != 'fp32':
                    continue
                if tokens // n >= 1:
                    points.append((precision, n, model))
    return points


def derive(result, cfg):
    """Adds medians, spread, tokens/s, model FLOPs and their fraction of
    the matmul rate (bf16 rows against the bfloat16 matmul) to a result."""
    if result.get('status') != 'ok':
        return result
    b, n = result['batch'], result['n']
    tokens = b * n
    for key in ('train', 'infer'):
        s = harness.summarize(result[key + '_s'])
        result[key] = s
        result[key + '_tokens_per_s'] = tokens / s['median']
    result['train_flops'] = train_flops(result['model'], cfg, n, b)
    result['infer_flops'] = forward_flops(result['model'], cfg, n, b)
    matmul = result.get('matmul') or {}
    rate = matmul.get('bfloat16' if result['precision'] == 'bf16'
                      else 'float32')
    if rate:
        result['train_flop_fraction'] = result['train_flops'] / \
            result['train']['median'] / rate
        result['infer_flop_fraction'] = result['infer_flops'] / \
            result['infer']['median'] / rate
    result['peak_delta_mb'] = result['peak_train_mb'] - \
        result['rss_import_mb']
    return result


def speed_report(args, cfgs):
    """The report skeleton of a speed run: machine, settings, configs,
    the analytic parameter counts; points not run for a reason known in
    advance are listed under 'skipped'."""
    report = dict(kind='speed', machine=harness.machine_info(),
                  settings=dict(
        models=args.models, precisions=args.precisions,
        lengths=args.lengths, mixed_lengths=args.mixed_lengths,
        plan=args.plan, tokens_per_batch=args.tokens,
        hidden=args.hidden, units=args.units, warmup=args.warmup,
        steps=args.steps, mem_budget_mb=args.mem_budget_mb,
        point_budget_s=args.point_budget_s,
        total_budget_s=args.total_budget_s,
        memory_method='ru_maxrss of a fresh worker process (peak '
        'resident set), minus its value after importing TensorFlow'),
        configs=cfgs, params={}, results=[], skipped=[])
    for model in args.models:
        report['params'][model] = dict(
            encoder=encoder_params(model, cfgs[model]),
            total=total_params(model, cfgs[model]))
    if 'stock_gau' in args.models:
        report['skipped'] += [dict(
            model='stock_gau', precision=precision,
            reason='fp32 only (the stock layer is the fp32 reference)')
            for precision in args.precisions if precision != 'fp32']
    report['skipped'] += [dict(n=n, reason='tokens per batch %d < n'
                               % args.tokens)
                          for n in args.lengths if args.tokens // n < 1]
    return report


def format_params(report):
    """One line per model: encoder parameters (and their difference from
    gau_alpha's), total, the config keys that differ between models."""
    lines, params = [], report['params']
    for model, p in params.items():
        lines.append('%-12s encoder parameters %10d (%+.2f%% vs gau_alpha), '
                     'total %10d; config %s' % (
                         model, p['encoder'], 100.0 * (p['encoder'] / float(
                             params.get('gau_alpha', p)['encoder']) - 1),
                         p['total'], json.dumps(
                             {k: v for k, v in
                              report['configs'][model].items()
                              if k in ('num_hidden_layers',
                                       'intermediate_size',
                                       'num_attention_heads',
                                       'chunk_size')})))
    return '\n'.join(lines)


def skip_reason(failed, key, n, args, t_start):
    """Why the point (model, precision) = ``key`` at ``n`` is not run: a
    smaller n of it failed (or any n errored), or the total budget is
    used; None to run it."""
    if key in failed and (failed[key][0] == 'error' or
                          n >= failed[key][1]):
        return 'skipped: %s at n=%d' % failed[key]
    if args.total_budget_s and time.time() - t_start > args.total_budget_s:
        return 'skipped: total time budget %.0f s used' % args.total_budget_s
    return None


def run_speed(args, log=print):
    """The speed grid as ``args`` say; returns the report dict (also
    written to ``args.out``/speed.json after every point)."""
    if getattr(args, 'plan', None):
        args.precisions = list(dict.fromkeys(p for p, _ in args.plan))
        args.lengths = sorted({n for _, ns in args.plan for n in ns})
        args.mixed_lengths = None
    else:
        args.plan = None
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, 'speed.json')
    cfgs = equal_param_configs(
        hidden=args.hidden, units=args.units, key_size=args.key_size,
        heads=args.heads, chunk_size=args.chunk_size,
        max_position=max(max(args.lengths), 512))
    report = speed_report(args, cfgs)
    log(harness.format_machine(report['machine']))
    log(format_params(report))
    t_start, failed = time.time(), {}
    for precision, n, model in speed_points(
            args.models, args.precisions, args.lengths, args.tokens,
            args.mixed_lengths, args.plan):
        key = (model, precision)
        reason = skip_reason(failed, key, n, args, t_start)
        if reason:
            report['skipped'].append(dict(model=model, precision=precision,
                                          n=n, reason=reason))
            log('%-12s %-4s n=%5d  %s' % (model, precision, n, reason))
            continue
        spec = dict(kind='speed', model=model, precision=precision, n=n,
                    batch=args.tokens // n, config=cfgs[model],
                    warmup=args.warmup, steps=args.steps,
                    matmul_shape=args.matmul_shape,
                    profile=args.profile if precision == 'fp32' and (
                        not args.profile_at or n in args.profile_at) else 0)
        result = derive(harness.run_isolated(
            'bench.suite:worker', spec, args.mem_budget_mb,
            args.point_budget_s, log=log), cfgs[model])
        if result['status'] != 'ok' and (key not in failed or
                                         n < failed[key][1]):
            failed[key] = (result['status'], n)
        report['results'].append(result)
        log(format_point(result))
        if result.get('profile'):
            log(format_profile(result['profile']))
        write_json(out, report)
    report['matmul'] = matmul_summary(report['results'])
    log('plain matmul %s, measured in every point\'s process: %s' % (
        'x'.join(map(str, args.matmul_shape)), ', '.join(
            '%s median %.1f GFLOP/s [%.1f-%.1f]' % (
                k, v['median'] / 1e9, v['min'] / 1e9, v['max'] / 1e9)
            for k, v in report['matmul'].items())))
    report['goals'] = speed_goals(report)
    report['machine']['load_average_end'] = list(os.getloadavg())
    write_json(out, report)
    return report


def matmul_summary(results):
    """{dtype: summarize(rates)} over the points' own matmul rates."""
    out = {}
    for dtype in ('float32', 'bfloat16'):
        rates = [r['matmul'][dtype] for r in results
                 if r.get('status') == 'ok' and r.get('matmul')]
        if rates:
            out[dtype] = harness.summarize(rates)
    return out


def format_point(r):
    head = '%-12s %-4s n=%5d b=%3d' % (r['model'], r['precision'], r['n'],
                                       r['batch'])
    if r['status'] != 'ok':
        return '%s  %s (rss seen %.0f MiB, %.0f s)' % (
            head, r['status'], r.get('rss_seen_mb', 0), r.get('wall_s', 0))
    return ('%s  train %.3f s [%.3f-%.3f] %7.0f tok/s %4.1f%% of matmul | '
            'infer %.3f s %7.0f tok/s | peak %6.0f MiB (+%.0f)' % (
                head, r['train']['median'], r['train']['min'],
                r['train']['max'], r['train_tokens_per_s'],
                100 * r.get('train_flop_fraction', 0),
                r['infer']['median'], r['infer_tokens_per_s'],
                r['peak_train_mb'], r['peak_delta_mb']))


def format_profile(profile):
    lines = ['    profile of one training step (ms, host self time summed '
             'over executor threads):']
    for key in ('by_type', 'by_name'):
        lines.append('    %s: %s' % (key, '; '.join(
            '%s %.0f' % (k, v) for k, v in profile[key])))
    return '\n'.join(lines)


def find_point(report, model, precision, n):
    for r in report['results']:
        if (r['model'], r['precision'], r['n']) == (model, precision, n) \
                and r.get('status') == 'ok':
            return r
    return None


def speed_goals(report):
    """The acceptance figures, from the fp32 rows of the report."""
    goals = []

    def ratio(a, b, n, what='train', metric='median'):
        ra, rb = (find_point(report, m, 'fp32', n) for m in (a, b))
        if ra is None or rb is None:
            return None
        if what == 'memory':
            return ra['peak_delta_mb'] / rb['peak_delta_mb']
        return rb[what]['median'] / ra[what]['median']

    for n in sorted(report['settings']['lengths']):
        v = ratio('gau_alpha', 'stock_gau', n)
        if v is not None:
            goals.append(dict(goal='gau_alpha vs stock_gau, train speed-up',
                              n=n, value=v, target=1.1 if n in (512, 2048)
                              else None))
    for a, b, n, target, what, label in (
            ('gau_alpha', 'roformer_v2', 2048, 1.2, 'train',
             'gau_alpha vs roformer_v2, train speed-up'),
            ('flash', 'roformer_v2', 8192, 3.0, 'train',
             'flash vs roformer_v2, train speed-up'),
            ('flash', 'flash_quad', 8192, 0.3, 'memory',
             'flash / flash_quad peak memory (delta)')):
        v = ratio(a, b, n, what)
        goal = dict(goal=label, n=n, value=v, target=target,
                    met=None if v is None else (
                        v <= target if what == 'memory' else v >= target))
        cfgs = report['configs']
        if what == 'train':
            goal['flop_ratio'] = forward_flops(b, cfgs[b], n) / \
                forward_flops(a, cfgs[a], n)
        goals.append(goal)
    for g in goals:
        if 'met' not in g:
            g['met'] = None if g['target'] is None else g['value'] >= \
                g['target']
    return goals


def speed_tables(report):
    """Markdown tables of the report: per precision, train ms and tokens/s,
    inference ms, peak memory, FLOP fraction; then the goals."""
    lines = []
    models = report['settings']['models']
    for precision in report['settings']['precisions']:
        rows = [r for r in report['results'] if r['precision'] == precision]
        if not rows:
            continue
        lengths = sorted({r['n'] for r in rows})
        for title, fmt in (
                ('train step, s (median of %d; [min–max])'
                 % report['settings']['steps'],
                 lambda r: '%.3f [%.3f–%.3f]' % (
                     r['train']['median'], r['train']['min'],
                     r['train']['max'])),
                ('train tokens/s (model FLOPs as % of the matmul rate)',
                 lambda r: '%.0f (%.0f%%)' % (
                     r['train_tokens_per_s'],
                     100 * r.get('train_flop_fraction', 0))),
                ('inference, s (median)',
                 lambda r: '%.3f' % r['infer']['median']),
                ('peak memory of training, MiB: process ru_maxrss growth '
                 'over the post-import baseline / TF allocator peak',
                 lambda r: '%.0f / %s' % (
                     r['peak_delta_mb'], '–' if r.get('tf_peak_train_mb')
                     is None else '%.0f' % r['tf_peak_train_mb']))):
            lines.append('\n%s, %s, %d tokens per batch\n' % (
                precision, title, report['settings']['tokens_per_batch']))
            lines.append('| model | ' + ' | '.join(
                'n=%d' % n for n in lengths) + ' |')
            lines.append('|---' * (len(lengths) + 1) + '|')
            for model in models:
                cells = []
                for n in lengths:
                    r = next((x for x in rows if x['model'] == model and
                              x['n'] == n), None)
                    if r is None:
                        cells.append('–')
                    elif r['status'] != 'ok':
                        cells.append(r['status'].replace('_', ' '))
                    else:
                        cells.append(fmt(r))
                if any(c != '–' for c in cells):
                    lines.append('| %s | %s |' % (model, ' | '.join(cells)))
    if report.get('skipped'):
        lines.append('\nnot run:')
        for k in report['skipped']:
            lines.append('- %s' % ', '.join(
                '%s=%s' % (key, k[key]) for key in ('model', 'precision',
                                                    'n', 'reason')
                if key in k))
    lines.append('\n| goal (fp32) | n | measured | target | met | '
                 'ratio of the analytic FLOPs |')
    lines.append('|---|---|---|---|---|---|')
    for g in report.get('goals', []):
        lines.append('| %s | %d | %s | %s | %s | %s |' % (
            g['goal'], g['n'], '–' if g['value'] is None else
            '%.2f' % g['value'], '–' if g['target'] is None else
            g['target'], {True: 'yes', False: 'no', None: '–'}[g['met']],
            '%.2f' % g['flop_ratio'] if g.get('flop_ratio') else ''))
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# the largest batch in a memory budget (base width, full depth, n=1024)
# --------------------------------------------------------------------------

def run_maxbatch(args, log=print):
    """Peak memory of one fp32 training step of flash_quad and
    roformer_v2 at base size (flash_quad_base: 12 blocks of 2 GAUs, H=768;
    roformer_v2: 12 layers, 12 heads, intermediate size matched) at
    n=``args.maxbatch_n`` and batches 1 and 2, each in a fresh process; the
    affine fit peak(b) = m0 + b·slope gives the largest b in the budget."""
    cfgs = equal_param_configs(hidden=768, units=24, key_size=128,
                               heads=12, vocab_size=12000)
    report = dict(kind='maxbatch', machine=harness.machine_info(),
                  n=args.maxbatch_n, budget_mb=args.maxbatch_budget_mb,
                  models={})
    log(harness.format_machine(report['machine']))
    for model in ('flash_quad', 'roformer_v2'):
        points = []
        for b in args.maxbatch_batches:
            spec = dict(kind='memory', model=model, precision='fp32',
                        n=args.maxbatch_n, batch=b, config=cfgs[model])
            r = harness.run_isolated('bench.suite:worker', spec,
                                     args.mem_budget_mb,
                                     args.point_budget_s, log=log)
            points.append(r)
            log('%-12s n=%d b=%d: %s' % (
                model, args.maxbatch_n, b, 'peak %.0f MiB (after import '
                '%.0f), first step %.1f s' % (
                    r['peak_train_mb'], r['rss_import_mb'],
                    r['first_step_s']) if r['status'] == 'ok'
                else r['status']))
        ok = [p for p in points if p['status'] == 'ok']
        entry = dict(points=points, config=cfgs[model],
                     encoder_params=encoder_params(model, cfgs[model]))
        if len(ok) >= 2:
            (b0, m0), (b1, m1) = [(p['batch'], p['peak_train_mb'])
                                  for p in ok[:2]]
            slope = (m1 - m0) / float(b1 - b0)
            base = m0 - slope * b0
            entry.update(slope_mb=slope, intercept_mb=base)
            if slope > 0:       # no growth measured: no finite answer
                entry['max_batch'] = int(math.floor(
                    (args.maxbatch_budget_mb - base) / slope))
        report['models'][model] = entry
    fq, rf = (report['models'][m].get('max_batch') for m in
              ('flash_quad', 'roformer_v2'))
    report['ratio'] = fq / float(rf) if fq and rf else None
    for model, e in report['models'].items():
        if 'max_batch' in e:
            log('%-12s %d encoder parameters: %.0f MiB + %.0f MiB per '
                'sequence of %d -> largest batch in %.0f MiB: %d' % (
                    model, e['encoder_params'], e['intercept_mb'],
                    e['slope_mb'], args.maxbatch_n,
                    args.maxbatch_budget_mb, e['max_batch']))
    if report['ratio']:
        log('flash_quad / roformer_v2 largest batch: %.2fx' %
            report['ratio'])
    write_json(os.path.join(args.out, 'maxbatch.json'), report)
    return report


# --------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------

def plot_speed(report, path):
    """time vs n and memory vs n (log axes), one column per precision."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    precisions = [p for p in report['settings']['precisions']
                  if any(r['precision'] == p and r['status'] == 'ok'
                         for r in report['results'])]
    fig, axes = plt.subplots(3, len(precisions),
                             figsize=(4.5 * len(precisions), 11),
                             squeeze=False)
    for j, precision in enumerate(precisions):
        for i, (key, label) in enumerate((
                ('train', 'train step, s'), ('infer', 'inference, s'),
                ('peak_delta_mb', 'peak memory growth (training, '
                 'ru_maxrss), MiB'))):
            ax = axes[i][j]
            for model in report['settings']['models']:
                rows = sorted((r for r in report['results']
                               if r['model'] == model and r['precision'] ==
                               precision and r['status'] == 'ok'),
                              key=lambda r: r['n'])
                if not rows:
                    continue
                xs = [r['n'] for r in rows]
                ys = [r[key]['median'] if isinstance(r[key], dict)
                      else r[key] for r in rows]
                ax.plot(xs, ys, marker='o', label=model)
            ax.set_xscale('log', base=2)
            ax.set_yscale('log')
            ax.set_xlabel('sequence length n (%d tokens per batch)'
                          % report['settings']['tokens_per_batch'])
            ax.set_title('%s: %s' % (precision, label), fontsize=10)
            ax.grid(True, which='both', alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.suptitle('%s, %d cores; H=%d, %d residual units, equal encoder '
                 'parameters' % (report['machine']['cpu'],
                                 report['machine']['cores'],
                                 report['settings']['hidden'],
                                 report['settings']['units']), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------
# command line (scripts/benchmark.py)
# --------------------------------------------------------------------------

def add_args(parser):
    """The flags of scripts/benchmark.py (sub-command first)."""
    p = parser
    p.add_argument('part', choices=('speed', 'maxbatch', 'quality', 'length',
                                    'quick', 'plot'),
                   help="quick: the 'make bench' subset")
    p.add_argument('--out', default=os.path.join('runs', 'bench'),
                   help='folder of the JSON results and PNG plots')
    g = p.add_argument_group('speed')
    g.add_argument('--models', type=choice_list(SPEED_MODELS),
                   default=list(SPEED_MODELS))
    g.add_argument('--precisions', type=choice_list(PRECISIONS),
                   default=list(PRECISIONS))
    g.add_argument('--lengths', type=int_list,
                   default=[128, 256, 512, 1024, 2048, 4096, 8192])
    g.add_argument('--mixed_lengths', type=int_list, default=None,
                   help='lengths for bf16 / xla (default: --lengths); '
                   'lengths run in the order given')
    g.add_argument('--plan', type=parse_plan, default=None,
                   help="run order as stages 'fp32:2048,8192;bf16:2048;…' "
                   '(overrides --precisions/--lengths/--mixed_lengths)')
    g.add_argument('--tokens', type=int, default=8192,
                   help='tokens per batch (batch = tokens // n)')
    g.add_argument('--hidden', type=int, default=768)
    g.add_argument('--units', type=int, default=2,
                   help='residual attention units (transformers: units/2 '
                   'layers)')
    g.add_argument('--key_size', type=int, default=128)
    g.add_argument('--heads', type=int, default=12)
    g.add_argument('--chunk_size', type=int, default=256)
    g.add_argument('--warmup', type=int, default=1)
    g.add_argument('--steps', type=int, default=3)
    g.add_argument('--matmul_shape', type=int_list, default=[8192, 768, 1536])
    g.add_argument('--profile', type=int, default=0, metavar='TOP',
                   help='also profile one training step per point with '
                   "TensorFlow's profiler and print its TOP op types/names")
    g.add_argument('--profile_at', type=int_list, default=None,
                   help='profile only at these n (default: every n); '
                   'fp32 points only')
    g.add_argument('--mem_budget_mb', type=float, default=12000,
                   help='watchdog: kill a point whose resident set passes '
                   'this (larger n of that model/precision are skipped)')
    g.add_argument('--point_budget_s', type=float, default=300,
                   help='watchdog: wall seconds per point')
    g.add_argument('--total_budget_s', type=float, default=0,
                   help='stop starting points after this many seconds '
                   '(0: no limit)')
    g = p.add_argument_group('maxbatch')
    g.add_argument('--maxbatch_n', type=int, default=1024)
    g.add_argument('--maxbatch_batches', type=int_list, default=[1, 2])
    g.add_argument('--maxbatch_budget_mb', type=float, default=16000)
    quality.add_quality_args(p)
    return p


def main(argv=None, log=print):
    """Entry point of scripts/benchmark.py.

    Example::

        main(['quick', '--out', 'runs/bench_quick'])
    """
    import argparse
    parser = add_args(argparse.ArgumentParser(
        description='gau_keras benchmarks: speed, maxbatch, quality, '
        'length (results: docs/benchmarks.md)'))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.part in ('speed', 'quick'):
        if args.part == 'quick':
            quick_defaults(args)
        report = run_speed(args, log)
        log(speed_tables(report))
        log('plots: %s' % plot_speed(report, os.path.join(args.out,
                                                          'speed.png')))
        return report
    if args.part == 'plot':
        return replot(args.out, log)
    if args.part == 'maxbatch':
        return run_maxbatch(args, log)
    if args.threads:
        harness.set_threads(args.threads)
    if args.part == 'quality':
        return quality.run_quality(args, log)
    return quality.run_length(args, log)


def replot(folder, log=print):
    """Tables and plots again from the JSON files in ``folder``:
    {part: plot path}."""
    out = {}
    for name in ('speed', 'maxbatch'):
        path = os.path.join(folder, name + '.json')
        if not os.path.exists(path):
            continue
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
        log('\n## %s (%s)\n' % (name, path))
        log(harness.format_machine(record['machine']))
        if name == 'speed':
            log(speed_tables(record))
            out[name] = plot_speed(record, os.path.join(folder,
                                                        'speed.png'))
        else:
            log(maxbatch_table(record))
    out.update(quality.replot(folder, log))
    return out


def maxbatch_table(record):
    """Markdown: per model, peak MiB at each batch, MiB per sequence, the
    largest batch in the budget."""
    lines = ['| model (n=%d, fp32 training, Adam) | encoder params | peak '
             'MiB at batch %s | MiB per sequence | largest batch in %.0f '
             'MiB |' % (record['n'], '/'.join(
                 str(p['batch']) for p in next(iter(
                     record['models'].values()))['points']),
                 record['budget_mb']), '|---|---|---|---|---|']
    for model, e in record['models'].items():
        lines.append('| %s | %d | %s | %s | %s |' % (
            model, e['encoder_params'], ' / '.join(
                '%.0f' % p['peak_train_mb'] if p['status'] == 'ok'
                else p['status'] for p in e['points']),
            '%.0f' % e['slope_mb'] if 'slope_mb' in e else '–',
            e.get('max_batch', '–')))
    if record.get('ratio'):
        lines.append('\nflash_quad / roformer_v2 largest batch: %.2f×'
                     % record['ratio'])
    return '\n'.join(lines)


def quick_defaults(args):
    """The 'make bench' subset: H=128, 2 units, 1024 tokens per batch,
    fp32 at n=128 and 512, bf16 at 512 (a few minutes)."""
    args.hidden, args.units, args.key_size, args.heads = 128, 2, 32, 4
    args.tokens, args.chunk_size = 1024, 64
    args.plan = parse_plan('fp32:128,512;bf16:512')
    args.matmul_shape = [2048, 512, 512]


if __name__ == '__main__':
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    main(log=lambda text: print(text, flush=True))
