"""Build a char vocab.txt (special tokens first) for from-scratch work.

    python scripts/build_vocab.py --out vocab.txt --task tnews --data_dir data/tnews
    python scripts/build_vocab.py --out vocab.txt corpus.txt more.json [--max_size 8000]

Texts come from a CLUE task folder (train + dev; ``--include_test`` adds
the test files, whose texts carry no labels) and/or from files: ``.json``
files (JSON or JSON lines: every string value) and text files (every line).
The vocab is what bert4keras's ``Tokenizer(vocab, do_lower_case=True)``
needs to tokenize those texts without [UNK]: [PAD] [UNK] [CLS] [SEP] [MASK],
then characters and '##' word continuations by falling frequency.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
import gau_keras  # noqa: E402,F401  (before tensorflow)
from gau_keras import clue, corpora  # noqa: E402
from gau_keras.clue.encoding import example_texts  # noqa: E402
from gau_keras.clue.readers import read_json  # noqa: E402


def json_strings(obj):
    """Every string value inside a JSON value (keys excluded)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for v in obj:
            yield from json_strings(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from json_strings(v)


def file_texts(path):
    """Texts of one file (.json: JSON or JSON lines; else: lines)."""
    if path.endswith('.json'):
        try:
            return list(json_strings(read_json(path)))
        except clue.ClueDataError:
            from gau_keras.clue.readers import read_json_lines
            return [s for _, row in read_json_lines(path)
                    for s in json_strings(row)]
    return corpora.read_lines(path)


def task_texts(task_name, data_dir, include_test=False):
    """Texts of a CLUE task folder (train + dev [+ test])."""
    task = clue.get_task(task_name, data_dir)
    examples = task.load('train') + task.load('dev')
    if include_test:
        for _, items, _ in task.test_sets():
            examples += items
    return [t for e in examples for t in example_texts(e)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('files', nargs='*', help='text or JSON files')
    p.add_argument('--out', required=True, help='vocab.txt to write')
    p.add_argument('--task', help='CLUE task of --data_dir')
    p.add_argument('--data_dir', help='one CLUE task folder')
    p.add_argument('--include_test', action='store_true')
    p.add_argument('--max_size', type=int, default=None)
    p.add_argument('--min_count', type=int, default=1)
    p.add_argument('--cased', action='store_true',
                   help='keep case (for a Tokenizer without lower-casing)')
    args = p.parse_args(argv)
    if bool(args.task) != bool(args.data_dir):
        p.error('--task and --data_dir go together')
    if not (args.files or args.task):
        p.error('give text/JSON files and/or --task with --data_dir')
    return args


def main(argv=None):
    args = parse_args(argv)
    texts = []
    for path in args.files:
        if not os.path.isfile(path):
            raise SystemExit('build_vocab: no such file: %s' % path)
        texts += file_texts(path)
    if args.task:
        texts += task_texts(args.task, args.data_dir, args.include_test)
    vocab = corpora.build_tokenizer_vocab(texts, args.max_size,
                                          args.min_count, not args.cased)
    corpora.save_vocab(vocab, args.out)
    print('build_vocab: %d tokens from %d texts -> %s'
          % (len(vocab), len(texts), args.out))
    return args.out


if __name__ == '__main__':
    main()
