"""Fine-tuning run folders hold up: one writer, no silent mix of runs or
settings, outputs replaced whole, bad data and settings refused before the
first step, one record entry per epoch.

Tiny GAU-α on the tests/fixtures/clue folders (copied when a test damages
them); each test names the failure it guards against.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import clue, files, optimizers, training
from gau_keras.clue import encoding, pipeline, readers, submission
from gau_keras.files import RunFolderError

from conftest import ROOT, load_script
from tiny_configs import tiny_config
from run_files import HOLD_LOCK, checkpoint_steps, clue_vocab

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'clue')
#: The one-block tiny GAU-α (vocab 50, dropout 0.1).
TINY = tiny_config(num_hidden_layers=1)
#: tnews fixture: 5 training rows, so batch 2 gives 3 steps per epoch
PER_EPOCH = 3


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    """(tiny config path, char vocab over the tnews and cluener fixtures)."""
    folder = tmp_path_factory.mktemp('reliability')
    vocab = clue_vocab(['tnews', 'cluener'], FIXTURES, folder / 'vocab.txt')
    config = folder / 'tiny.json'
    config.write_text(json.dumps(TINY))
    return str(config), vocab


@pytest.fixture
def tnews(tmp_path):
    """A private copy of the tnews fixture folder."""
    return shutil.copytree(os.path.join(FIXTURES, 'tnews'),
                           str(tmp_path / 'tnews'))


def run(model_files, data_dir, out, **kwargs):
    config, vocab = model_files
    kwargs.setdefault('epochs', 1)
    kwargs.setdefault('seed', 1)
    return clue.finetune('tnews', data_dir, config, vocab, str(out),
                         maxlen=32, batch_size=2, deterministic=True,
                         **kwargs)


def finetune_script():
    return load_script('finetune_clue')


def checkpoints(out):
    return checkpoint_steps(os.path.join(str(out), 'train', 'ckpt'))


def epochs_of(out):
    with open(os.path.join(str(out), 'metrics.json'), encoding='utf-8') as f:
        return [e['epoch'] for e in json.load(f)['epochs']]


# ---- outputs are replaced whole or not at all ---------------------

KILL_MID_WRITE = r'''
import os, signal, sys, json
from gau_keras import files
from gau_keras.clue import submission
kind, path = sys.argv[1], sys.argv[2]

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def rows():
    for i in range(2000):
        if i == 1000:
            kill()            # 1000 rows (~100 kB) already written
        yield {'id': i, 'label': 'x' * 90}

class Bomb(dict):
    def items(self):
        kill()

if kind == 'submission':
    submission.write_json_lines(path, rows())
elif kind == 'zip':
    def names():
        yield 'big.txt'
        kill()
    submission.make_zip(os.path.dirname(path), names(), path)
else:
    files.write_json(path, {'a': 'x' * 100000, 'z': Bomb(a=1)})
'''


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['submission', 'zip', 'metrics'])
def test_kill_mid_write_leaves_the_previous_complete_file(kind, tmp_path):
    """A SIGKILL while an output is rewritten leaves the previous
    complete file, never a shorter file whose every line parses or a
    broken zip (what writing into the destination itself would leave)."""
    name = {'submission': 'tnews11_predict.json', 'zip': 'clue_submit.zip',
            'metrics': 'metrics.json'}[kind]
    path = tmp_path / name
    (tmp_path / 'big.txt').write_bytes(os.urandom(300000))
    if kind == 'zip':
        submission.make_zip(str(tmp_path), ['big.txt'], str(path))
    else:
        path.write_text('{"id": 1, "label": "old"}\n')
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, '-c', KILL_MID_WRITE, kind,
                           str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert path.read_bytes() == before
    if kind == 'zip':
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
    # the writer's temporary file is swept by the next run holding the lock
    assert any(n.endswith('.tmp') for n in os.listdir(tmp_path))
    with files.run_lock(str(tmp_path)):
        pass
    assert not any(n.endswith('.tmp') for n in os.listdir(tmp_path))


# ---- the record holds one entry per trained epoch -----------

@pytest.mark.slow
def test_fresh_start_after_moving_checkpoints_does_not_carry_old_epochs(
        model_files, tnews, tmp_path):
    """After moving OUT/train/ckpt away (the advice of
    NoUsableCheckpointError), a new run in OUT starts its record afresh
    rather than carrying the moved run's epochs and best over ([1, 1])."""
    out = tmp_path / 'out'
    first = run(model_files, tnews, out)
    shutil.move(str(out / 'train' / 'ckpt'), str(tmp_path / 'ckpt.away'))
    again = run(model_files, tnews, out)
    assert epochs_of(out) == [1]
    assert again['best_dev'] == first['best_dev']
    assert again['epochs'][0]['loss'] == first['epochs'][0]['loss']


@pytest.mark.slow
def test_losing_the_newest_checkpoint_trains_its_epoch_again_once(
        model_files, tnews, tmp_path):
    """The newest checkpoint lost (here deleted), the run resumes
    from the one before and the record keeps one entry per epoch (the old
    code appended the re-trained epoch again: [1, 2, 2])."""
    out = tmp_path / 'out'
    first = run(model_files, tnews, out, epochs=2)
    assert checkpoints(out) == [PER_EPOCH, 2 * PER_EPOCH]
    for path in (out / 'train' / 'ckpt').glob('ckpt-%d.*' % (2 * PER_EPOCH)):
        path.unlink()
    again = run(model_files, tnews, out, epochs=2)
    assert epochs_of(out) == [1, 2]
    assert [e['dev'] for e in again['epochs']] == \
        [e['dev'] for e in first['epochs']]
    assert [e['loss'] for e in again['epochs']] == \
        [e['loss'] for e in first['epochs']]


def test_an_epoch_saved_but_not_evaluated_is_evaluated_on_resume(
        model_files, tnews, tmp_path):
    """The checkpoint comes first at an epoch end; a run killed
    between it and the evaluation evaluates that epoch when resumed, with
    the loss the checkpoint recorded."""
    out = tmp_path / 'out'
    first = run(model_files, tnews, out)
    record = json.loads((out / 'metrics.json').read_text())
    record.update(epochs=[], best_dev=None, best_epoch=None)
    (out / 'metrics.json').write_text(json.dumps(record))
    again = run(model_files, tnews, out)
    assert again['epochs'][0]['dev'] == first['epochs'][0]['dev']
    assert again['epochs'][0]['loss'] == first['epochs'][0]['loss']
    assert again['best_epoch'] == 1


# ---- one process per run folder ----------------------------------

@pytest.mark.slow
def test_second_run_into_a_held_folder_is_refused_naming_the_pid(
        model_files, tnews, tmp_path):
    """While another process holds OUT, a run into it is refused
    naming that process, so two runs never write into one folder."""
    out = tmp_path / 'out'
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(RunFolderError,
                           match='in use by process %d' % holder.pid):
            run(model_files, tnews, out)
        script = finetune_script()
        config, vocab = model_files
        with pytest.raises(SystemExit, match='process %d' % holder.pid):
            script.main(['--task', 'tnews', '--data_dir', tnews, '--config',
                         config, '--vocab', vocab, '--output_dir', str(out),
                         '--epochs', '1', '--batch_size', '2'])
        assert not (out / 'metrics.json').exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(
        model_files, tnews, tmp_path, capsys):
    """A lock file left by a killed run (its pid is not running) is
    taken over with a message naming that pid."""
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    out = tmp_path / 'out'
    out.mkdir()
    (out / '.lock').write_text('%d somehost\n' % dead.pid)
    run(model_files, tnews, out)
    said = capsys.readouterr().out
    assert 'stale lock' in said and 'process %d' % dead.pid in said
    assert not (out / '.lock').exists()       # released at the end


# ---- resuming with other settings is refused ---------------------

def test_resuming_with_changed_settings_is_refused_naming_each(
        model_files, tnews, tmp_path, capsys):
    """A rerun with other result-shaping settings is refused naming
    each of them, never resumed as if they were the same run; epochs may
    grow and eval_batch_size change; another train.json
    content is a changed setting too."""
    out = tmp_path / 'out'
    run(model_files, tnews, out, learning_rate=1e-3)
    with pytest.raises(RunFolderError) as e:
        run(model_files, tnews, out, learning_rate=1e-5, seed=7, epochs=2,
            eval_batch_size=8)
    message = str(e.value)
    for name in ('learning_rate: 0.001 -> 1e-05', 'seed: 1 -> 7',
                 'overwrite=True'):
        assert name in message, message
    assert 'epochs' not in message and 'eval_batch_size' not in message
    config, vocab = model_files
    with pytest.raises(RunFolderError, match='maxlen: 32 -> 16'):
        clue.finetune('tnews', tnews, config, vocab, str(out), maxlen=16,
                      batch_size=2, seed=1, learning_rate=1e-3,
                      deterministic=True)
    recorded = json.loads((out / 'settings.json').read_text())
    with pytest.raises(RunFolderError, match='epochs: 1 -> 0'):
        files.check_settings(str(out), dict(recorded, epochs=0),
                             grow=('epochs',))
    capsys.readouterr()
    record = run(model_files, tnews, out, learning_rate=1e-3, epochs=2,
                 eval_batch_size=8)
    assert [e['epoch'] for e in record['epochs']] == [1, 2]
    assert 'safe to change' in capsys.readouterr().out
    with open(os.path.join(tnews, 'train.json'), 'a',
              encoding='utf-8') as f:
        f.write('{"label": "100", "label_desc": "news_story", '
                '"sentence": "新的一行", "keywords": ""}\n')
    with pytest.raises(RunFolderError, match='data_dir/train.json'):
        run(model_files, tnews, out, learning_rate=1e-3, epochs=2)


@pytest.mark.slow
def test_overwrite_moves_the_old_run_aside(model_files, tnews, tmp_path):
    """Overwrite=True starts afresh with the new settings and keeps
    the old run, moved to OUT.old-<time>."""
    out = tmp_path / 'out'
    old = run(model_files, tnews, out, learning_rate=1e-3)
    new = run(model_files, tnews, out, learning_rate=1e-2, overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith('out.old-')]
    assert len(aside) == 1
    kept = json.loads((aside[0] / 'metrics.json').read_text())
    assert kept['args']['learning_rate'] == 1e-3
    assert kept['best_dev'] == old['best_dev']
    assert json.loads((out / 'settings.json').read_text())[
        'learning_rate'] == 1e-2
    assert new['args']['learning_rate'] == 1e-2 and epochs_of(out) == [1]


def test_run_files_without_a_settings_record_are_refused(
        model_files, tnews, tmp_path):
    """A folder holding run outputs but no settings.json cannot be
    checked, so it is not resumed."""
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'metrics.json').write_text('{"epochs": []}')
    with pytest.raises(RunFolderError, match='no settings.json'):
        run(model_files, tnews, out)


# ---- cluener entities that cannot be token spans are counted -----

def test_entity_inside_a_merged_token_is_counted(tmp_path, capsys):
    """'我爱😀Apple公司': the tokenizer keeps '😀apple' as one token,
    so the entity 'Apple' cannot be a token span; it is skipped AND counted
    (in the summary), not dropped silently."""
    folder = tmp_path / 'cluener'
    folder.mkdir()
    line = {'text': '我爱😀Apple公司', 'label': {'company': {'Apple': [[3, 7]]},
                                              'name': {'我': [[0, 0]]}}}
    for split in ('train', 'dev'):
        (folder / ('%s.json' % split)).write_text(
            json.dumps(line, ensure_ascii=False) + '\n', encoding='utf-8')
    vocab = tmp_path / 'vocab.txt'
    vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
                                '我', '爱', '公', '司']) + '\n')
    tokenizer = encoding.load_tokenizer(str(vocab))
    task = clue.get_task('cluener', str(folder))
    examples = task.load('train')
    capsys.readouterr()
    feats = pipeline.encode_examples(task, examples, tokenizer, 32)
    assert len(feats[0]['spans']) == 1            # '我' kept, 'Apple' not
    assert '1 x skipped: entity not on token boundaries' in \
        capsys.readouterr().out
    log = readers.SkipLog(verbose=False)
    encoding.encode_ner(tokenizer, examples[0], 32, task.labels, log=log)
    assert log.total() == 1


# ---- refused before the first step, with the file named ----------------

def steps_seen():
    seen = []
    return seen, [lambda step, loss: seen.append(step)]


def test_batch_larger_than_the_training_set_is_refused(
        model_files, tnews, tmp_path):
    """Batch_size 6 on 5 training rows would repeat rows in one
    step; it is refused before training."""
    seen, callbacks = steps_seen()
    config, vocab = model_files
    with pytest.raises(ValueError, match='batch_size 6 is larger than the '
                       '5 training rows'):
        clue.finetune('tnews', tnews, config, vocab, str(tmp_path / 'o'),
                      maxlen=32, batch_size=6, epochs=1, callbacks=callbacks)
    assert seen == []


def test_empty_train_split_names_its_file(model_files, tnews, tmp_path):
    """An empty train.json is a ClueDataError naming it (the old
    code: a bare ZeroDivisionError in pipeline.dataset_fn)."""
    open(os.path.join(tnews, 'train.json'), 'w').close()
    with pytest.raises(readers.ClueDataError,
                       match=r'train\.json.*no train examples'):
        run(model_files, tnews, tmp_path / 'out')


def test_failing_evaluation_keeps_the_step_it_follows(tmp_path):
    """The Trainer saves a due checkpoint before the callbacks run,
    so a callback failing at an epoch end (an evaluation) loses nothing
    (callbacks first would leave no ckpt-3)."""
    with tf.distribute.get_strategy().scope():
        x = tf.keras.Input((3,))
        model = tf.keras.Model(x, tf.keras.layers.Dense(2)(x))

    def batches(position):
        while True:
            rs = np.random.RandomState(position)
            yield rs.randn(4, 3).astype('float32'), rs.randint(0, 2, 4)
            position += 1

    def failing_eval(step, loss):
        if step == 3:
            raise ValueError('evaluation failed')
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trainer = training.Trainer(model, loss, optimizers.AdamW(1e-3), batches,
                               6, str(tmp_path), save_every=3, verbose=0,
                               callbacks=[failing_eval])
    with pytest.raises(ValueError, match='evaluation failed'):
        trainer.train()
    assert os.path.exists(str(tmp_path / 'ckpt' / 'ckpt-3.index'))


@pytest.mark.parametrize('damage', ['empty dev', 'eval_batch_size 0'])
def test_evaluation_problems_are_refused_before_training(
        damage, model_files, tnews, tmp_path):
    """An empty dev.json (named) and eval_batch_size 0 stop the run
    before its first step, instead of failing after the first epoch's
    training and losing it."""
    seen, callbacks = steps_seen()
    kwargs = {}
    if damage == 'empty dev':
        open(os.path.join(tnews, 'dev.json'), 'w').close()
        error, match = readers.ClueDataError, r'dev\.json.*no dev examples'
    else:
        kwargs['eval_batch_size'] = 0
        error, match = ValueError, 'eval_batch_size must be an integer >= 1'
    with pytest.raises(error, match=match):
        run(model_files, tnews, tmp_path / 'out', callbacks=callbacks,
            **kwargs)
    assert seen == []


@pytest.mark.parametrize('damage', ['missing', 'malformed', 'duplicate ids',
                                    'gbk'])
def test_test_file_problems_stop_the_run_before_training(
        damage, model_files, tnews, tmp_path):
    """Every split is read and checked before the first step, so a
    test-file problem never surfaces only after all training."""
    path = os.path.join(tnews, 'test.json')
    lines = open(path, encoding='utf-8').read().splitlines()
    if damage == 'missing':
        os.remove(path)
    elif damage == 'malformed':
        lines[1] = lines[1][:-3]
    elif damage == 'duplicate ids':
        lines.append(lines[0])
    if damage == 'gbk':
        with open(path, 'wb') as f:
            f.write(('\n'.join(lines) + '\n').encode('gbk'))
    elif damage != 'missing':
        with open(path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines) + '\n')
    seen, callbacks = steps_seen()
    with pytest.raises(readers.ClueDataError, match=r'test\.json'):
        run(model_files, tnews, tmp_path / 'out', callbacks=callbacks)
    assert seen == []


def test_gbk_data_is_a_clue_data_error_with_file_and_line(tnews, tmp_path):
    """GBK-encoded data raises ClueDataError naming file, line and
    column (not a bare UnicodeDecodeError), for JSON-lines and whole-file
    JSON alike."""
    path = os.path.join(tnews, 'train.json')
    text = open(path, encoding='utf-8').read()
    with open(path, 'wb') as f:
        f.write(text.encode('gbk'))
    task = clue.get_task('tnews', tnews, False)
    with pytest.raises(readers.ClueDataError) as e:
        task.load('train')
    assert e.value.path == path and e.value.line == 1
    assert 'not UTF-8' in str(e.value) and 'column' in str(e.value)
    whole = tmp_path / 'c3.json'
    whole.write_bytes('[\n  ["第一句"],\n  ["中文"]\n]'.encode('gbk'))
    with pytest.raises(readers.ClueDataError) as e:
        readers.read_json(str(whole))
    assert e.value.line == 2 and 'not UTF-8' in str(e.value)


@pytest.mark.parametrize('content', ['', '{"task": "tnews", "epo'])
def test_unreadable_metrics_names_the_file_and_the_fix(
        content, model_files, tnews, tmp_path):
    """An empty or truncated metrics.json is named with the way
    out, not a bare JSONDecodeError on every rerun."""
    out = tmp_path / 'out'
    run(model_files, tnews, out)
    (out / 'metrics.json').write_text(content)
    with pytest.raises(RunFolderError) as e:
        run(model_files, tnews, out)
    assert str(out / 'metrics.json') in str(e.value)
    assert 'unreadable' in str(e.value) and 'overwrite' in str(e.value)


# ---- the fine-tuning flags that exist all work -------------------

def test_finetune_flags_have_no_ignored_loop_flags_and_save_every_works(
        model_files, tnews, tmp_path):
    """finetune_clue.py has no --steps or --workdir (fine-tuning
    cannot honour them: the run length is --epochs, the checkpoints live in
    OUT/train), so they are usage errors rather than ignored flags;
    --save_every checkpoints inside an epoch."""
    script = finetune_script()
    config, vocab = model_files
    base = ['--task', 'tnews', '--data_dir', tnews, '--config', config,
            '--vocab', vocab, '--output_dir', str(tmp_path / 'out'),
            '--epochs', '1', '--batch_size', '2', '--maxlen', '32']
    for flag in ('--steps', '--workdir'):
        with pytest.raises(SystemExit):
            script.parse_args(base + [flag, '5'])
    seen = []

    def listing(step, loss):
        seen.append(checkpoints(tmp_path / 'out'))
    args = script.parse_args(base + ['--save_every', '1'])
    assert args.save_every == 1
    clue.finetune('tnews', tnews, config, vocab, str(tmp_path / 'out'),
                  epochs=1, batch_size=2, maxlen=32, save_every=1,
                  callbacks=[listing])
    assert seen == [[1], [1, 2], [1, 2, 3]]
