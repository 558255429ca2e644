"""Subprocess worker of tests/test_training.py (not a test module).

Trains a small model with ``gau_keras.training.Trainer`` and saves the final
weights to ``--out``.  Batches are a pure function of their position.

    python tests/_train_worker.py --model mlp --strategy mirrored --cpus 2 \
        --workdir /tmp/w --out /tmp/w.npz --steps 6

``--fault_window STAGE:N`` marks three points inside every checkpoint
write for tests/test_faults.py: it prints ``window <stage>`` before the
shards are merged into ``ckpt-N.index/data`` (stage merge), before the
``checkpoint`` state file is updated (state) and before each file of an old
checkpoint is deleted (sweep), and stalls at the N-th STAGE point, where
the test SIGKILLs it.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import gau_keras  # noqa: E402,F401  (before tensorflow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gau_keras import optimizers, precision, training  # noqa: E402
from gau_keras.configs import preset_path  # noqa: E402

BATCH, LENGTH, VOCAB = 8, 16, 2000


def batch_at(position, model):
    """The global batch number ``position`` (a pure function of it)."""
    rs = np.random.RandomState(1000 + position)
    if model == 'mlp':
        x = rs.randn(BATCH, 12).astype('float32')
        return x, (x[:, :3].sum(1) > 0).astype('int32')
    tokens = rs.randint(1, VOCAB, (BATCH, LENGTH)).astype('int32')
    return [tokens, np.zeros_like(tokens)], tokens


def build_model(kind, dropout):
    if kind == 'mlp':
        x = tf.keras.Input((12,))
        h = tf.keras.layers.Dense(16, activation='tanh')(x)
        h = tf.keras.layers.Dropout(dropout)(h)
        return tf.keras.Model(x, tf.keras.layers.Dense(2)(h))
    return gau_keras.build_transformer_model(
        preset_path('gau_alpha_tiny'),
        model='gau_alpha', with_mlm='linear', dropout_rate=dropout,
        attention_dropout_rate=dropout)


def open_fault_windows(spec):
    """Print at three points of every checkpoint write; stall at the N-th
    point of STAGE (``spec`` = 'STAGE:N')."""
    from tensorflow.python.checkpoint import checkpoint_management as cm
    from tensorflow.python.ops import gen_io_ops
    from fault_windows import windows
    window = windows(spec)
    gen_io_ops.merge_v2_checkpoints = window(
        'merge', gen_io_ops.merge_v2_checkpoints)
    cm.update_checkpoint_state_internal = window(
        'state', cm.update_checkpoint_state_internal)
    cm._delete_file_if_exists = window('sweep', cm._delete_file_if_exists)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--model', default='mlp', choices=['mlp', 'gau_alpha'])
    p.add_argument('--strategy', default='default')
    p.add_argument('--cpus', type=int, default=1)
    p.add_argument('--precision', default='fp32')
    p.add_argument('--optimizer', default='adamw')
    p.add_argument('--grad_accum_steps', type=int, default=1)
    p.add_argument('--dropout', type=float, default=0.0)
    p.add_argument('--steps', type=int, default=6)
    p.add_argument('--save_every', type=int, default=2)
    p.add_argument('--sleep', type=float, default=0.0)
    p.add_argument('--fault_window', default=None)
    p.add_argument('--workdir', required=True)
    p.add_argument('--out', required=True)
    args = p.parse_args()
    if args.fault_window:
        open_fault_windows(args.fault_window)
    if args.cpus > 1:
        training.use_logical_cpus(args.cpus)
    strategy = training.get_strategy(args.strategy)
    precision.set_precision(args.precision)
    training.set_seed(7)
    with strategy.scope():
        model = build_model(args.model, args.dropout)
        opt = optimizers.build_optimizer(
            args.optimizer, 3e-3, weight_decay=0.01,
            lr_schedule={2: 1.0, 20: 0.5},
            grad_accum_steps=args.grad_accum_steps)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction='none')

    def dataset_fn(position):
        while True:
            yield batch_at(position, args.model)
            position += 1

    def report(step, value):
        print('step %d loss %.6f' % (step, value), flush=True)
        time.sleep(args.sleep)

    trainer = training.Trainer(
        model, loss, opt, dataset_fn, args.steps, args.workdir,
        save_every=args.save_every, strategy=strategy, verbose=0,
        callbacks=[report])
    trainer.train()
    if training.is_chief(strategy):
        np.savez(args.out, *[w.numpy() for w in model.weights])
    print('done', flush=True)


if __name__ == '__main__':
    main()
