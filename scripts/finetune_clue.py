"""Fine-tune GAU-α / FLASH on one CLUE task and write its submission file.

    python scripts/finetune_clue.py --task TASK --data_dir DIR --config CFG \\
        --vocab VOCAB --output_dir OUT [--checkpoint CKPT] [--model gau_alpha]
        [--epochs N] [--batch_size B] [--maxlen L] [--lr LR]
        [--optimizer adam|adamw|lamb|adafactor] [--mixed_precision fp32|fp16|bf16]
        [--xla] [--strategy ...] [--seed S] [--save_every N] [--zip]
        [--overwrite]

TASK: tnews iflytek afqmc cmnli ocnli wsc (cluewsc2020) csl cmrc2018 c3 chid
cluener; DIR is that task's folder as downloaded from CLUE.  Trains on
train, evaluates dev after every epoch, keeps the best weights, predicts the
test file(s) and writes ``OUT/metrics.json`` plus the CLUE submission
file(s) (``--zip``: also ``OUT/clue_submit.zip``).  Without --checkpoint the
encoder starts from random weights.  OUT is one run: checkpoints in
OUT/train (every epoch end, and every --save_every steps), resumed by the
same command; a rerun with other settings is refused unless --overwrite
(which moves the old run to OUT.old-<time>).  The work is done by
``gau_keras.clue.finetune``; this script maps its flags onto that call.
"""
import argparse
import os
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(SCRIPTS))
sys.path.insert(0, SCRIPTS)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import gau_keras  # noqa: E402,F401  (before tensorflow)
import flags  # noqa: E402
from gau_keras import clue, files  # noqa: E402

#: The flags passed on to ``clue.finetune`` under the same name.
FINETUNE_FLAGS = (
    'checkpoint', 'model', 'epochs', 'maxlen', 'batch_size', 'learning_rate',
    'optimizer', 'weight_decay', 'lr_schedule', 'grad_accum_steps',
    'dropout', 'stride', 'eval_batch_size', 'mixed_precision', 'xla',
    'strategy', 'tpu', 'seed', 'deterministic', 'save_every', 'overwrite')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--task', required=True,
                   help='one of %s (or cluewsc2020)'
                   % ', '.join(clue.task_names()))
    p.add_argument('--data_dir', required=True)
    p.add_argument('--config', required=True,
                   help='model config JSON or a preset name')
    p.add_argument('--vocab', required=True, help='BERT-style vocab.txt')
    p.add_argument('--output_dir', required=True)
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--model', default='gau_alpha')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--maxlen', type=int, default=128)
    p.add_argument('--stride', type=int, default=None,
                   help='cmrc2018: tokens between window starts '
                   '(default maxlen // 2)')
    p.add_argument('--lr', type=float, default=None,
                   help='learning rate (same as --learning_rate)')
    p.add_argument('--dropout', type=float, default=0.1)
    p.add_argument('--eval_batch_size', type=flags.positive_int, default=64)
    p.add_argument('--zip', action='store_true',
                   help='also pack the submission files as a CLUE zip')
    p.add_argument('--save_every', type=flags.positive_int, default=None,
                   help='also checkpoint every N steps inside an epoch '
                   '(default: at epoch ends only)')
    p.add_argument('--overwrite', action='store_true',
                   help='start afresh: move an old run in --output_dir to '
                   'OUT.old-<time>')
    flags.add_training_args(p, loop=False)
    args = p.parse_args(argv)
    if args.lr is not None:
        args.learning_rate = args.lr
    if args.epochs < 1 or args.maxlen < 8:
        p.error('--epochs must be >= 1 and --maxlen >= 8')
    return args


def main(argv=None):
    """Parse the flags, run ``clue.finetune``; return its metrics record."""
    args = parse_args(argv)
    try:
        return clue.finetune(
            args.task, args.data_dir, args.config, args.vocab,
            args.output_dir, make_zip=args.zip,
            **{name: getattr(args, name) for name in FINETUNE_FLAGS})
    except (clue.VocabMismatchError, files.RunFolderError) as e:
        raise SystemExit('error: %s' % e)


if __name__ == '__main__':
    main()
