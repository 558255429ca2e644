"""The measuring harness every benchmark tool shares.

* ``time_calls``: the one timer (wall and process-CPU seconds per call,
  warm-up calls timed apart); ``StepClock``: the same clock as a
  ``gau_keras.training.Trainer`` callback.
* ``matmul_rate``: FLOP/s of a plain ``tf.matmul``, the yardstick of
  model-FLOP utilisation.
* ``machine_info`` / ``format_machine`` / ``cpu_flags_string``: CPU model,
  the speed-relevant CPU flags (``gau_keras.precision.cpu_flags``), load,
  library versions.
* ``run_isolated``: one function call in a fresh Python process under a
  memory and wall-time watchdog, so its peak memory (``peak_rss_mb``) is its
  own.

Example::

    import sys; sys.path.insert(0, 'scripts')
    from bench import harness
    t = harness.time_calls(lambda: sum(range(10 ** 6)), steps=5, warmup=1)
    print('%.4f s (best %.4f s)' % (t.median, t.best))
    print(harness.format_machine(harness.machine_info()))
"""
import argparse
import collections
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

#: The folder that holds the ``bench`` package, and the checkout above it.
SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKOUT = os.path.dirname(SCRIPTS)


# --------------------------------------------------------------------------
# the timer
# --------------------------------------------------------------------------

class Timing(collections.namedtuple('Timing', 'wall cpu warm result')):
    """Seconds of the timed calls: ``wall`` and process ``cpu`` (lists),
    ``warm`` (wall seconds of the warm-up calls, tracing included) and the
    last call's ``result``."""

    @property
    def median(self):
        return statistics.median(self.wall)

    @property
    def best(self):
        return min(self.wall)


def time_calls(fn, steps=1, warmup=0):
    """Calls ``fn()`` ``warmup`` times, then ``steps`` timed times.

    Example::

        t = time_calls(lambda: step(x).numpy(), steps=3, warmup=1)
        t.median, t.best, t.wall, t.cpu, t.warm
    """
    wall, cpu, warm, result = [], [], [], None
    for i in range(warmup + steps):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        elapsed = time.perf_counter() - t
        if i < warmup:
            warm.append(elapsed)
        else:
            wall.append(elapsed)
            cpu.append(time.process_time() - c)
    return Timing(wall, cpu, warm, result)


class StepClock(object):
    """A ``Trainer`` callback ``(step, loss)`` that stamps the end of every
    step; ``intervals(skip)`` are the step times from the second step on,
    the first ``skip`` of them dropped.

    Example::

        clock = StepClock()
        training.Trainer(..., callbacks=[clock]).train()
        statistics.median(clock.intervals(skip=2))
    """

    def __init__(self):
        self.stamps = []

    def __call__(self, step, loss):
        self.stamps.append(time.perf_counter())

    def intervals(self, skip=0):
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])][skip:]


def summarize(values):
    """{'median', 'min', 'max', 'n'} of a list of seconds."""
    return dict(median=statistics.median(values), min=min(values),
                max=max(values), n=len(values))


def int_list(text):
    """argparse type: '128,512' → [128, 512]."""
    return [int(v) for v in text.split(',') if v]


def choice_list(allowed):
    """argparse type: comma-separated names, each one of ``allowed``."""
    def parse(text):
        names = [v for v in text.split(',') if v]
        bad = [v for v in names if v not in allowed]
        if bad:
            raise ValueError('unknown %s; choose from %s' % (
                ', '.join(bad), ', '.join(allowed)))
        return names
    return parse

# --------------------------------------------------------------------------
# the matmul yardstick
# --------------------------------------------------------------------------

class Rate(collections.namedtuple('Rate', 'flops seconds')):
    """FLOPs of one call and the seconds of the timed calls."""

    @property
    def median(self):
        return self.flops / statistics.median(self.seconds)

    @property
    def best(self):
        return self.flops / min(self.seconds)


def matmul_rate(shape=(8192, 768, 1536), dtype='float32', steps=7):
    """A plain [m, k] @ [k, n] ``tf.matmul`` in ``dtype`` (a tf.function,
    one warm-up call, then ``steps`` timed): a ``Rate`` (``.median`` and
    ``.best`` in FLOP/s, a multiply-add counting 2)."""
    import tensorflow as tf
    m, k, n = shape
    a = tf.cast(tf.random.normal((m, k)), dtype)
    b = tf.cast(tf.random.normal((k, n)), dtype)
    f = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y),
                                                       tf.float32)))
    timing = time_calls(lambda: f(a, b).numpy(), steps, warmup=1)
    return Rate(2.0 * m * k * n, timing.wall)


# --------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------

def cpu_flags_string(flags=None):
    """'avx2=yes avx512f=no …' for the speed-relevant CPU flags of this
    machine (``gau_keras.precision.cpu_flags()``) or of ``flags``."""
    from gau_keras import precision
    return precision.cpu_flags_summary(flags)


def cpu_model():
    """The 'model name' of /proc/cpuinfo ('' where there is none)."""
    try:
        with open('/proc/cpuinfo') as f:
            return next((line.split(':', 1)[1].strip() for line in f
                         if line.startswith('model name')), '')
    except OSError:
        return ''


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


def machine_info():
    """CPU model, cores, the speed-relevant CPU flags as {flag: bool}, load
    average, Python and library versions, as a dict."""
    from gau_keras import precision
    flags = precision.cpu_flags()
    return dict(cpu=cpu_model(), cores=os.cpu_count(),
                flags={k: k in flags for k in precision.SPEED_FLAGS},
                load_average=list(os.getloadavg()),
                python=platform.python_version(),
                versions=library_versions())


def format_machine(info):
    """Two printable lines of a ``machine_info()`` dict."""
    flags = cpu_flags_string({k for k, v in info['flags'].items() if v})
    return ('CPU: %s, %d cores, flags %s; load average %.1f %.1f %.1f\n'
            'Python %s; %s' % (
                info['cpu'], info['cores'], flags, *info['load_average'],
                info['python'], ', '.join('%s %s' % kv for kv in
                                          info['versions'].items())))


def set_threads(threads):
    """TensorFlow's intra- and inter-op pools of this process (before its
    first op) and, through the environment, of its subprocesses."""
    import tensorflow as tf
    for name in ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'):
        os.environ[name] = str(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


# --------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------

def peak_rss_mb():
    """Peak resident set of this process so far (ru_maxrss), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    """Resets the peak that ``allocator_peak_mb`` reports."""
    import tensorflow as tf
    try:
        tf.config.experimental.reset_memory_stats('CPU:0')
    except ValueError:
        pass


# --------------------------------------------------------------------------
# isolated runs: a fresh process per call, with a watchdog
# --------------------------------------------------------------------------

def _watch(proc, mem_budget_mb, time_budget_s):
    """Polls ``proc`` until it ends or passes a budget (then kills it):
    (status or None, largest resident set seen in MiB, wall seconds)."""
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
    return status, rss_seen, time.time() - t0


def run_isolated(target, spec, mem_budget_mb=None, time_budget_s=None,
                 log=None):
    """Runs ``target(spec)`` ('module:function', the module importable with
    ``scripts/`` on the path) in a fresh Python process and returns its
    JSON result dict plus 'wall_s'; status 'over_memory_budget' /
    'over_time_budget' when the watchdog killed it, 'error' (with the tail
    of stderr) when it failed.

    Example::

        run_isolated('bench.suite:worker',
                     dict(kind='matmul', shape=(256, 256, 256)))
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'result.json')
        err_path = os.path.join(tmp, 'stderr.txt')
        path = os.pathsep.join(p for p in (CHECKOUT,
                                           os.environ.get('PYTHONPATH'))
                               if p)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=path)
        with open(err_path, 'w') as err:
            proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), '--worker',
                 target, '--spec', json.dumps(spec), '--out', out],
                stdout=subprocess.DEVNULL, stderr=err, env=env)
            status, rss_seen, wall = _watch(proc, mem_budget_mb,
                                            time_budget_s)
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


def _worker_main(argv):
    """The child side of ``run_isolated``."""
    p = argparse.ArgumentParser(description='runs one function of a bench '
                                'module on a JSON spec (run_isolated)')
    p.add_argument('--worker', required=True, metavar='MODULE:FUNCTION')
    p.add_argument('--spec', required=True, help='JSON')
    p.add_argument('--out', required=True, help='result JSON file')
    a = p.parse_args(argv)
    module, _, name = a.worker.partition(':')
    fn = getattr(importlib.import_module(module), name)
    result = fn(json.loads(a.spec))
    with open(a.out, 'w') as f:
        json.dump(result, f, default=str)


if __name__ == '__main__':
    sys.path[0] = SCRIPTS    # import bench.* as a package, not this folder
    _worker_main(sys.argv[1:])
