"""Fault injection: a run that is SIGKILLed again and again, inside
training steps and inside checkpoint writes, whose latest checkpoint is
deleted or truncated between restarts, ends with exactly the weights of an
uninterrupted run.

Subprocesses of tests/_train_worker.py (an MLP with dropout, AdamW with
gradient accumulation 2, a checkpoint every 3 steps, so most checkpoints
fall in the middle of an accumulation).  The faults are drawn from a seeded
``random.Random``: the run is reproducible.
"""
import os
import random
import signal
import subprocess
import sys

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest

from conftest import TESTS
from run_files import checkpoint_steps, damage_checkpoint, worker_weights

pytestmark = pytest.mark.slow

WORKER = [sys.executable, os.path.join(TESTS, '_train_worker.py')]
ARGS = ['--model', 'mlp', '--dropout', '0.3', '--optimizer', 'adamw',
        '--grad_accum_steps', '2', '--steps', '30', '--save_every', '3']
FAULTS = ('kill_in_step', 'kill_in_merge', 'kill_in_state', 'kill_in_sweep',
          'delete_latest', 'truncate_latest')


def launch(workdir, out, extra=()):
    return subprocess.Popen(
        WORKER + ARGS + list(extra) + ['--workdir', str(workdir), '--out',
                                       str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_until(proc, is_target, lines=None):
    """Read the worker's lines (into ``lines``); SIGKILL it at the first
    target line.  Returns True if it was killed, False if it finished."""
    lines = [] if lines is None else lines
    for line in proc.stdout:
        lines.append(line)
        if is_target(line):
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            return True
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, ''.join(lines) + err[-3000:]
    return False


def first_step(lines):
    return next(int(line.split()[1]) for line in lines
                if line.startswith('step '))


def intact_checkpoints(ckpt, truncated):
    return [n for n in checkpoint_steps(ckpt) if n not in truncated]


def damage_latest(ckpt, how, truncated):
    """Delete or truncate the newest checkpoint (only while an older one
    exists: the rule is to fall back, not to lose everything)."""
    steps = intact_checkpoints(ckpt, truncated)
    if len(steps) < 2:
        return False
    if how == 'truncate_latest':
        truncated.add(steps[-1])
    damage_checkpoint(ckpt, steps[-1], how)
    return True


def target_for(fault, rng):
    """(worker flags, predicate on its lines) for a kill fault: after the
    n-th step line, or stalled at the n-th window of a checkpoint write."""
    stage = fault.split('_')[-1]
    nth = rng.randint(1, 4) if stage == 'step' else rng.randint(1, 2)
    marker = 'step ' if stage == 'step' else 'window %s' % stage
    flags = [] if stage == 'step' else ['--fault_window',
                                        '%s:%d' % (stage, nth)]
    left = [nth]

    def hit(line):
        if line.startswith(marker):
            left[0] -= 1
        return left[0] == 0
    return flags, hit


def test_random_faults_end_with_uninterrupted_weights(tmp_path):
    rng = random.Random(20261130)
    reference = launch(tmp_path / 'ref', tmp_path / 'ref.npz')
    workdir, out = tmp_path / 'faulty', tmp_path / 'faulty.npz'
    ckpt = str(workdir / 'ckpt')
    plan = list(FAULTS) + [rng.choice(FAULTS[:4])]
    rng.shuffle(plan)
    injected, todo, truncated, starts = [], list(plan), set(), []
    while todo:
        fault = todo.pop(0)
        if fault in ('delete_latest', 'truncate_latest'):
            if damage_latest(ckpt, fault, truncated):
                injected.append(fault)
            elif len(todo) > 0:
                todo.insert(1, fault)      # after the next kill
            continue
        resume = max(intact_checkpoints(ckpt, truncated) or [0])
        flags, hit = target_for(fault, rng)
        proc, lines = launch(workdir, out, flags), []
        killed = run_until(proc, hit, lines)
        starts.append((resume, first_step(lines) - 1))
        truncated.clear()      # set aside by that run, and written anew
        if not killed:
            break                      # the run finished before the fault
        injected.append(fault)
    resume, lines = max(intact_checkpoints(ckpt, truncated) or [0]), []
    assert not run_until(launch(workdir, out), lambda line: False, lines)
    starts.append((resume, first_step(lines) - 1))
    # every restart resumed from the newest intact checkpoint, never from 0
    assert all(want == got for want, got in starts), starts
    assert not run_until(reference, lambda line: False)
    print('faults injected and survived (%d): %s'
          % (len(injected), ', '.join(injected)))
    for a, b in zip(worker_weights(out),
                    worker_weights(tmp_path / 'ref.npz')):
        np.testing.assert_array_equal(a, b)
    assert len(injected) == len(plan), injected
    assert {'delete_latest', 'truncate_latest'} <= set(injected)
