"""gau_keras.progress: a log file gets one line per period, no ``\\r``.

Keras's Progbar treats every Linux process as interactive; these tests run
with stdout captured or redirected to a file, as CI and ``nohup`` do.
"""
import io
import json
import os
import re
import subprocess
import sys

import pytest

from gau_keras import corpora
from gau_keras.progress import (StepProgress, fit_verbose, format_values,
                                is_terminal)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
ROOT = os.path.dirname(HERE)


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_terminal_detection_and_fit_verbose():
    assert is_terminal(Terminal()) and not is_terminal(io.StringIO())
    assert not is_terminal(object())            # no isatty at all
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
    assert fit_verbose(stream=io.StringIO()) == 2
    assert fit_verbose('auto', stream=io.StringIO()) == 2
    assert fit_verbose(stream=Terminal()) == 1
    assert fit_verbose(0, stream=io.StringIO()) == 0


def test_step_progress_prints_a_line_per_period_and_at_the_end():
    out = io.StringIO()
    p = StepProgress(10, every=4, stream=out, clock=Clock())
    printed = [p.update(step, [('loss', float(step)), ('acc', step / 10)])
               for step in range(1, 11)]
    lines = out.getvalue().splitlines()
    # loss: the mean over the period's steps (1-4, 5-8, 9-10)
    assert lines == ['4/10 - 1s - loss: 2.5000 - acc: 0.2500',
                     '8/10 - 2s - loss: 6.5000 - acc: 0.6500',
                     '10/10 - 3s - loss: 9.5000 - acc: 0.9500']
    assert [x for x in printed if x] == lines
    assert '\r' not in out.getvalue() and '\b' not in out.getvalue()


def test_step_progress_resumed_and_silent():
    out = io.StringIO()
    p = StepProgress(6, every=3, stream=out)
    p.start_at(3)
    assert p.update(3) is None  # the resumed step is not printed again
    p.update(6)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith('6/6 - ')
    out = io.StringIO()
    p = StepProgress(4, every=2, stateful_metrics=['acc'], stream=out)
    for step in range(1, 5):
        p.update(step, [('acc', step / 4), ('note', 'n/a')])
    assert [line.split(' - ')[2:] for line in out.getvalue().splitlines()] \
        == [['acc: 0.5000', 'note: n/a'], ['acc: 1.0000', 'note: n/a']]
    quiet = io.StringIO()
    p = StepProgress(4, every=1, verbose=0, stream=quiet)
    for step in range(1, 5):
        p.update(step)
    assert quiet.getvalue() == ''
    assert format_values([('acc', 'n/a'), ('x', 2)]) == 'acc: n/a - x: 2.0000'


@pytest.mark.slow
def test_finetune_log_has_one_training_line_and_one_dev_line_per_epoch(
        tmp_path):
    from gau_keras import clue
    from gau_keras.clue import encoding
    data = os.path.join(HERE, 'fixtures', 'clue', 'tnews')
    task = clue.get_task('tnews', data, False)
    items = task.load('train') + task.load('dev')
    items += [e for _, s, _ in task.test_sets() for e in s]
    vocab = corpora.save_vocab(corpora.build_tokenizer_vocab(
        [t for e in items for t in encoding.example_texts(e)]),
        str(tmp_path / 'vocab.txt'))
    config = tmp_path / 'config.json'
    config.write_text(json.dumps({
        'vocab_size': 50, 'hidden_size': 16, 'intermediate_size': 32,
        'attention_key_size': 8, 'num_attention_heads': 1,
        'num_hidden_layers': 1, 'hidden_act': 'swish',
        'type_vocab_size': 2}))
    log = tmp_path / 'log.txt'
    with open(log, 'w') as out:
        subprocess.run(
            [sys.executable, os.path.join(ROOT, 'scripts', 'finetune_clue.py'),
             '--task', 'tnews', '--data_dir', data, '--config', str(config),
             '--vocab', vocab, '--output_dir', str(tmp_path / 'run'),
             '--epochs', '2', '--batch_size', '2', '--maxlen', '32'],
            stdout=out, stderr=subprocess.DEVNULL, check=True, cwd=ROOT,
            timeout=600)
    text = log.read_text()
    assert '\r' not in text and '\b' not in text
    lines = text.splitlines()
    per_epoch = json.loads((tmp_path / 'run' / 'metrics.json').read_text())[
        'steps_per_epoch']
    steps = [line for line in lines if re.match(r'\d+/\d+ - \d+s - loss: ',
                                                line)]
    assert [s.split(' - ')[0] for s in steps] == [
        '%d/%d' % (per_epoch, 2 * per_epoch),
        '%d/%d' % (2 * per_epoch, 2 * per_epoch)]
    assert [line.split(':')[0] for line in lines
            if line.startswith('epoch ')] == ['epoch 1', 'epoch 2']
    assert len(lines) < 20, lines
