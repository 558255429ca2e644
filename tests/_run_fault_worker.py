"""Subprocess worker of tests/test_fault_injection_runs.py (not a test
module): one fine-tuning or pretraining run, with marked points where the
test can SIGKILL it.

    python tests/_run_fault_worker.py finetune OUT DATA CONFIG VOCAB \
        [--window STAGE:N] [--hold S]
    python tests/_run_fault_worker.py pretrain OUT CORPUS1 CORPUS2 VOCAB \
        CONFIG [--window STAGE:N] [--hold S]

It prints ``locked`` once it holds the run folder (then waits ``--hold``
seconds), ``step N`` after every training step (after its checkpoint when
one is due) and ``window STAGE`` at each of these points, stalling at the
N-th point of STAGE until killed:

* ``eval``: an evaluation starts (fine-tuning: dev or test predictions;
  pretraining: the held-out score before or after training);
* ``write``: a finished output is about to be renamed into place (every
  ``gau_keras.files`` write, the best weights);
* ``merge``: a checkpoint's shards are about to be merged into its files.
"""
import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import gau_keras  # noqa: E402,F401  (before tensorflow)


def open_windows(spec):
    """Print at every marked point; stall at the N-th point of STAGE
    (``spec`` = 'STAGE:N', or None: never stall)."""
    from tensorflow.python.ops import gen_io_ops
    from gau_keras.clue import pipeline
    from gau_keras.pretraining import run
    from fault_windows import windows
    window = windows(spec)
    os.replace = window('write', os.replace)
    pipeline.predict = window('eval', pipeline.predict)
    run.mlm_accuracy = window('eval', run.mlm_accuracy)
    gen_io_ops.merge_v2_checkpoints = window(
        'merge', gen_io_ops.merge_v2_checkpoints)


def announce_lock(hold):
    """Print 'locked' when a run takes its folder's lock, then wait."""
    from gau_keras import files
    take = files.run_lock

    @contextlib.contextmanager
    def announced(folder, *args, **kwargs):
        with take(folder, *args, **kwargs) as path:
            print('locked', flush=True)
            time.sleep(hold)
            yield path
    files.run_lock = announced


def main():
    p = argparse.ArgumentParser()
    p.add_argument('kind', choices=['finetune', 'pretrain'])
    p.add_argument('out')
    p.add_argument('files', nargs='+')
    p.add_argument('--window', default=None)
    p.add_argument('--hold', type=float, default=0.0)
    args = p.parse_args()
    open_windows(args.window)
    announce_lock(args.hold)

    def report(step, loss):
        print('step %d' % step, flush=True)
    if args.kind == 'finetune':
        from gau_keras import clue
        data, config, vocab = args.files
        clue.finetune('tnews', data, config, vocab, args.out, epochs=3,
                      maxlen=32, batch_size=2, save_every=2, seed=1,
                      deterministic=True, make_zip=True, callbacks=[report])
    else:
        from gau_keras import pretraining
        first, second, vocab, config = args.files
        pretraining.pretrain(
            args.out, corpus=[first, second], vocab=vocab, config=config,
            maxlen=32, batch_size=4, steps=12, save_every=2, log_every=1,
            optimizer='adamw', learning_rate=1e-3, lr_schedule={1: 1.0},
            seed=0, deterministic=True, heldout=second, heldout_batches=2,
            callbacks=[report])
    print('done', flush=True)


if __name__ == '__main__':
    main()
