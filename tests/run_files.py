"""What the run tests share: the files they set a run up with, and readers
of what the runs leave.

* ``clue_vocab``: a char vocab over CLUE fixture tasks' texts;
* ``write_corpus``: a pretraining corpus as two files (text, JSON lines),
  its vocab and a config;
* ``HOLD_LOCK``: a program that holds a run folder's lock (argv[1]);
* ``checkpoint_steps``: the steps of the checkpoints in a folder, read from
  the file names (not through the library's own listing);
  ``damage_checkpoint`` deletes or truncates one;
* ``worker_weights``, ``assert_same_weights``, ``losses_of``: the weights
  file and the log of tests/_train_worker.py.
"""
import json
import os

import numpy as np

from gau_keras import clue
from gau_keras.clue import encoding
from gau_keras.datasets import text

HOLD_LOCK = r'''
import sys, time
from gau_keras import files
with files.run_lock(sys.argv[1]):
    print('locked', flush=True)
    time.sleep(120)
'''


def clue_vocab(names, data_root, path):
    """A char vocab (saved at ``path``) over every text of the train, dev
    and test files of the tasks ``names`` under ``data_root``."""
    texts = []
    for name in names:
        task = clue.get_task(name, os.path.join(data_root, name), False)
        items = task.load('train') + task.load('dev')
        items += [e for _, s, _ in task.test_sets() for e in s]
        texts += [x for e in items for x in encoding.example_texts(e)]
    return text.save_vocab(text.build_tokenizer_vocab(texts), str(path))


def write_corpus(folder, lines, config):
    """``lines`` as two corpus files in ``folder`` (a.txt with the first
    half, b.jsonl with the rest), their char vocab, ``config`` as tiny.json:
    ``dict(paths, vocab, config)``."""
    half = len(lines) // 2
    txt, jsl = folder / 'a.txt', folder / 'b.jsonl'
    txt.write_text('\n'.join(lines[:half]) + '\n', encoding='utf-8')
    jsl.write_text(''.join(json.dumps({'text': t}, ensure_ascii=False) + '\n'
                           for t in lines[half:]), encoding='utf-8')
    vocab = text.save_vocab(text.build_tokenizer_vocab(lines),
                            str(folder / 'vocab.txt'))
    path = folder / 'tiny.json'
    path.write_text(json.dumps(config))
    return dict(paths=[str(txt), str(jsl)], vocab=vocab, config=str(path))


def checkpoint_steps(folder):
    """Steps N of the ckpt-N.index files in ``folder`` (none if absent)."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(int(n[5:-6]) for n in names
                  if n.startswith('ckpt-') and n.endswith('.index'))


def damage_checkpoint(folder, step, how):
    """'delete_latest': remove ckpt-``step``'s files; 'truncate_latest':
    cut its data file to a third."""
    prefix = os.path.join(folder, 'ckpt-%d' % step)
    data = prefix + '.data-00000-of-00001'
    if how == 'delete_latest':
        os.remove(prefix + '.index')
        os.remove(data)
    else:
        with open(data, 'r+b') as f:
            f.truncate(os.path.getsize(data) // 3)


def worker_weights(path):
    """The arrays of a weights file (.npz) the training worker wrote."""
    data = np.load(str(path))
    return [data['arr_%d' % i] for i in range(len(data.files))]


def assert_same_weights(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol)


def losses_of(log):
    """The losses of the worker's 'step N ... LOSS' lines, in order."""
    return [float(line.split()[-1]) for line in log.splitlines()
            if line.startswith('step ')]
