"""Command-line flags shared by the scripts, mapped onto library calls.

The library takes explicit parameters; this module turns ``argparse`` flags
into them.  Scripts in this folder import it as ``import flags`` (each script
puts its own folder on ``sys.path``).  Example::

    parser = flags.add_training_args(argparse.ArgumentParser())
    args = parser.parse_args()
    setup = flags.setup_from_args(args)      # precision, seed, strategy
    with setup.strategy.scope():
        opt = flags.optimizer_from_args(args)
"""
import argparse
import json

from gau_keras import optimizers as gk_optimizers
from gau_keras import training

TRAINING_FLAGS = ('mixed_precision', 'xla', 'strategy', 'tpu', 'seed',
                  'deterministic')


def add_training_args(parser, loop=True):
    """Add the training-stack flags to an ``argparse`` parser; returns it.

    --mixed_precision {fp32,fp16,bf16,auto} --xla --strategy {...} --tpu
    --seed --deterministic --optimizer --learning_rate --weight_decay
    --lr_schedule '{"1000": 1}' --grad_accum_steps --batch_size (global)
    and, with ``loop`` (for a script whose run length and checkpoint folder
    are these flags), --steps --save_every --workdir.
    """
    g = parser.add_argument_group('training stack (gau_keras.training)')
    g.add_argument('--mixed_precision', default='fp32',
                   choices=['fp32', 'fp16', 'bf16', 'auto'],
                   help="'auto': the faster of fp32 and bf16 (fp16 on a "
                        "GPU) by a matmul probe, cached per machine")
    g.add_argument('--xla', action='store_true',
                   help='jit_compile the forward and backward pass')
    g.add_argument('--strategy', default='default',
                   choices=training.STRATEGIES)
    g.add_argument('--tpu', default=None, help="TPU name for --strategy tpu")
    g.add_argument('--seed', type=int, default=42)
    g.add_argument('--deterministic', action='store_true',
                   help='tf.config.experimental.enable_op_determinism()')
    g.add_argument('--optimizer', default='adamw',
                   choices=sorted(gk_optimizers.OPTIMIZERS))
    g.add_argument('--learning_rate', type=positive_float, default=1e-4)
    g.add_argument('--weight_decay', type=non_negative_float, default=0.01)
    g.add_argument('--lr_schedule', type=json_schedule, default=None,
                   help='bert4keras schedule as JSON, e.g. \'{"1000": 1}\'')
    g.add_argument('--grad_accum_steps', type=positive_int, default=1)
    g.add_argument('--batch_size', type=positive_int, default=32,
                   help='GLOBAL batch size (all replicas together)')
    if loop:
        g.add_argument('--steps', type=positive_int, default=1000)
        g.add_argument('--save_every', type=positive_int, default=500)
        g.add_argument('--workdir', default='runs/default')
    return parser


def positive_int(text):
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError('%r is not a positive integer'
                                         % (text,))
    return value


def _number(text, ok, what):
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not (value == value and ok(value) and value != float('inf')):
        raise argparse.ArgumentTypeError('%r is not a %s number'
                                         % (text, what))
    return value


def positive_float(text):
    """argparse type: a finite number > 0."""
    return _number(text, lambda v: v > 0, 'positive')


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    return _number(text, lambda v: v >= 0, 'non-negative')


def json_schedule(text):
    """argparse type: a bert4keras ``lr_schedule`` given as JSON."""
    try:
        schedule = {int(k): float(v) for k, v in json.loads(text).items()}
        gk_optimizers.check_schedule(schedule)
    except (ValueError, AttributeError, TypeError) as e:
        raise argparse.ArgumentTypeError('--lr_schedule %r: %s' % (text, e))
    return schedule


def setup_from_args(args):
    """``training.setup`` with the values of ``add_training_args``'s flags."""
    missing = [n for n in ('mixed_precision', 'xla', 'strategy', 'seed')
               if not hasattr(args, n)]
    if missing:
        raise ValueError('setup_from_args: args has no %s; call '
                         'add_training_args(parser) first' % missing)
    return training.setup(**{n: getattr(args, n) for n in TRAINING_FLAGS
                             if hasattr(args, n)})


def optimizer_from_args(args):
    """``build_optimizer`` from the flags (call inside strategy.scope())."""
    training.check_learning_rate(args.learning_rate, args.weight_decay)
    return gk_optimizers.build_optimizer(
        args.optimizer, args.learning_rate, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, grad_accum_steps=args.grad_accum_steps)
