"""Apply a fine-tuned CLUE run folder to new inputs.

    python scripts/predict.py RUN_DIR --text T [--text_b T2]
    python scripts/predict.py RUN_DIR --input FILE.jsonl --output OUT.jsonl \\
        [--batch_size 64]

RUN_DIR is a ``finetune_clue.py --output_dir`` folder (run.json,
config.json, vocab.txt, best.weights.h5).  ``--text`` prints one result as
JSON: a text (tnews, iflytek, wsc, cluener), a pair with ``--text_b``
(afqmc, cmnli, ocnli, csl: keywords joined by '；'), or cmrc2018's context
with its question as ``--text_b``.  ``--input`` reads JSON lines with CLUE's
field names (``sentence``; ``sentence1``/``sentence2``; ``text``;
``context``/``question``; c3's ``context``/``question``/``choice``; chid's
``content``/``candidates``) and writes one result per line, with the
input's ``id`` when it has one.  Bad input stops with a message naming the
file and line.  Results: see ``gau_keras.clue.predict``.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import gau_keras  # noqa: E402,F401  (before tensorflow)
from gau_keras.clue import load_predictor  # noqa: E402
from gau_keras.clue.predict import INPUT  # noqa: E402
from gau_keras.clue.readers import ClueDataError, read_json_lines  # noqa
from gau_keras.files import atomic_write  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('run_dir')
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--text', help='one input text')
    source.add_argument('--input', help='JSON lines, CLUE field names')
    p.add_argument('--text_b', help='second text of a pair (cmrc2018: '
                   'the question)')
    p.add_argument('--output', help='JSON lines out (with --input)')
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--mixed_precision', default='fp32',
                   choices=['fp32', 'fp16', 'bf16', 'auto'],
                   help="compute precision; 'auto' measures the faster of "
                   'fp32 and bf16 (fp16 on a GPU) on this machine')
    args = p.parse_args(argv)
    if args.input and not args.output:
        p.error('--input needs --output')
    if args.text_b is not None and args.text is None:
        p.error('--text_b goes with --text')
    if args.batch_size < 1:
        p.error('--batch_size must be >= 1')
    return args


def one_input(predictor, text, text_b):
    head = predictor.task.head
    if head in ('multiple_choice',):
        raise SystemExit('task %r takes JSON lines (--input): a question '
                         'with its choices' % predictor.task.name)
    if predictor.pair or head == 'span':
        if text_b is None:
            raise SystemExit('task %r needs --text_b' % predictor.task.name)
        return (text, text_b)
    if text_b is not None:
        raise SystemExit('task %r takes one text (no --text_b)'
                         % predictor.task.name)
    return text


def read_inputs(predictor, path):
    """(rows, line numbers); each row checked, errors name file and line."""
    rows, lines = [], []
    for line, row in read_json_lines(path):
        try:
            predictor.examples([row])
        except ClueDataError as e:
            raise ClueDataError(str(e).replace(INPUT + ':1', '%s:%d' % (
                path, line), 1)) from None
        rows.append(row)
        lines.append(line)
    return rows, lines


def main(argv=None):
    args = parse_args(argv)
    predictor = load_predictor(args.run_dir, args.mixed_precision)
    if args.text is not None:
        item = one_input(predictor, args.text, args.text_b)
        result = predictor.predict([item])[0]
        print(json.dumps(result, ensure_ascii=False))
        return [result]
    try:
        rows, _ = read_inputs(predictor, args.input)
    except ClueDataError as e:
        raise SystemExit(str(e))
    results = predictor.predict(rows, batch_size=args.batch_size)
    with atomic_write(args.output) as f:
        for row, result in zip(rows, results):
            if 'id' in row:
                result = dict(id=row['id'], **result)
            f.write(json.dumps(result, ensure_ascii=False) + '\n')
    print('%d results -> %s' % (len(results), args.output))
    return results


if __name__ == '__main__':
    main()
