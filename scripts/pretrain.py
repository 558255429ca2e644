"""Pretrain GAU-α / FLASH-Quad / FLASH with whole-word-masked MLM (jieba) or
causal LM; resumable; exports the release layout.  Logic:
``gau_keras.pretraining``; docs: docs/pretraining.md.

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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import gau_keras  # noqa: E402,F401  (before tensorflow)
from gau_keras import pretraining  # noqa: E402


def main(argv=None):
    parser = pretraining.add_pretrain_args(argparse.ArgumentParser(
        description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        if args.benchmark:
            return pretraining.run_benchmark(args)
        return pretraining.run(args)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))


if __name__ == '__main__':
    main()
