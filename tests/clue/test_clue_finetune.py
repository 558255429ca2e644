"""scripts/finetune_clue.py end to end on each task's fixture folder:
1 epoch of a tiny GAU-α from scratch, a metrics.json and a submission file
with exactly one prediction per test item."""
import json
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from gau_keras import clue
from gau_keras.clue import encoding, finetuning, heads, submission

from conftest import ROOT, load_script
from run_files import clue_vocab
from tiny_configs import tiny_config

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'clue')
#: The one-block tiny GAU-α (vocab 50, dropout 0.1).
TINY = tiny_config(num_hidden_layers=1)


def finetune_script():
    return load_script('finetune_clue')


@pytest.fixture(scope='module')
def script():
    return finetune_script()


@pytest.fixture(scope='module')
def setup_files(tmp_path_factory):
    """Tiny config and one char vocab over all fixture texts."""
    folder = tmp_path_factory.mktemp('clue_ft')
    vocab = clue_vocab(clue.task_names(), FIXTURES, folder / 'vocab.txt')
    config = folder / 'tiny.json'
    config.write_text(json.dumps(TINY))
    return str(config), vocab


@pytest.mark.slow
@pytest.mark.parametrize('name', ['tnews', 'iflytek', 'afqmc', 'cmnli',
                                  'ocnli', 'cluewsc2020', 'csl', 'cmrc2018',
                                  'c3', 'chid', 'cluener'])
def test_one_epoch_writes_metrics_and_a_full_submission(
        name, script, setup_files, tmp_path):
    config, vocab = setup_files
    task = clue.get_task(name, os.path.join(FIXTURES, clue.canonical_name(
        name)), False)
    out = tmp_path / 'out'
    args = ['--task', name, '--data_dir', task.data_dir, '--config', config,
            '--vocab', vocab, '--output_dir', str(out), '--epochs', '1',
            '--batch_size', '2', '--maxlen', '32', '--seed', '1']
    if name == 'afqmc':
        args.append('--zip')
    script.main(args)
    record = json.loads((out / 'metrics.json').read_text())
    assert record['best_epoch'] == 1 and len(record['epochs']) == 1
    assert 0 <= record['epochs'][0]['dev'][task.metric] <= 1
    assert record['epochs'][0]['train_seconds'] > 0
    for test_name, items, out_name in task.test_sets():
        predicted = submission.check_submission(str(out / out_name), items)
        assert len(predicted) == len(items)
        assert record['test'][test_name]['file'] == out_name
    if name == 'afqmc':
        with zipfile.ZipFile(out / 'clue_submit.zip') as z:
            assert z.namelist() == ['afqmc_predict.json']


@pytest.mark.slow
@pytest.mark.parametrize('model', ['flash', 'flash_quad', 'roformer_v2'])
def test_any_builder_model_fine_tunes(model, script, setup_files, tmp_path):
    """--model takes any builder name: FLASH, FLASH-Quad and bert4keras's
    roformer_v2 (attention dropout 0.1, one trace for every length)."""
    config, vocab = setup_files
    task = clue.get_task('afqmc', os.path.join(FIXTURES, 'afqmc'), False)
    out = tmp_path / 'out'
    script.main(['--task', 'afqmc', '--data_dir', task.data_dir,
                 '--config', config, '--vocab', vocab, '--output_dir',
                 str(out), '--epochs', '1', '--batch_size', '2',
                 '--maxlen', '32', '--model', model])
    _, items, out_name = task.test_sets()[0]
    assert len(submission.check_submission(str(out / out_name),
                                           items)) == len(items)


@pytest.mark.slow
def test_library_call_records_its_settings(setup_files, tmp_path):
    """clue.finetune with explicit parameters: the record's args are the
    call's settings, extra callbacks see every step, metrics.json is the
    returned record."""
    config, vocab = setup_files
    task = clue.get_task('tnews', os.path.join(FIXTURES, 'tnews'), False)
    steps = []
    record = clue.finetune(
        'tnews', task.data_dir, config, vocab, str(tmp_path), epochs=1,
        maxlen=32, batch_size=2, learning_rate=1e-3, seed=3,
        callbacks=[lambda step, loss: steps.append(step)])
    per_epoch = -(-len(task.load('train')) // 2)
    assert steps == list(range(1, per_epoch + 1))
    assert record['args'] == dict(
        task='tnews', data_dir=task.data_dir, config=config, vocab=vocab,
        output_dir=str(tmp_path), checkpoint=None, model='gau_alpha',
        epochs=1, maxlen=32, batch_size=2, learning_rate=1e-3,
        optimizer='adamw', weight_decay=0.01, lr_schedule=None,
        grad_accum_steps=1, dropout=0.1, stride=None, eval_batch_size=64,
        mixed_precision='fp32', xla=False, strategy='default', tpu=None,
        seed=3, deterministic=False, save_every=None, make_zip=False)
    assert json.loads((tmp_path / 'metrics.json').read_text()) == record
    with pytest.raises(ValueError, match='maxlen must be an integer >= 8'):
        clue.finetune('tnews', task.data_dir, config, vocab, str(tmp_path),
                      maxlen=4)


def test_vocab_must_match_a_checkpoints_config(script, setup_files,
                                               tmp_path):
    """The library raises VocabMismatchError; the script exits with its
    message (before any model is built)."""
    config, vocab = setup_files
    tokenizer = encoding.load_tokenizer(vocab)
    assert tokenizer._vocab_size != TINY['vocab_size']
    with pytest.raises(clue.VocabMismatchError, match='has vocab_size 50'):
        finetuning.check_vocab(tokenizer, config, 'some/ckpt', vocab)
    assert finetuning.check_vocab(tokenizer, config) == \
        tokenizer._vocab_size          # random weights: sized to the vocab
    with pytest.raises(SystemExit, match='has vocab_size 50'):
        script.main(['--task', 'afqmc', '--data_dir',
                     os.path.join(FIXTURES, 'afqmc'), '--config', config,
                     '--vocab', vocab, '--output_dir', str(tmp_path),
                     '--checkpoint', 'some/ckpt'])


def test_losses_against_numpy():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    want = -np.log(np.exp(logits[[0, 1], labels]) /
                   np.exp(logits).sum(-1))
    got = heads.softmax_loss(tf.constant(labels), tf.constant(logits))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    # multilabel CE: log(1 + Σ_neg e^s) + log(1 + Σ_pos e^-s) per type
    s = np.array([[[[1.0, -2.0], [-np.inf, 0.5]]]], np.float32)   # b,h,n,n
    y = np.array([[[[1, 0], [0, 0]]]], np.float32)
    want = np.log(1 + np.exp(-2.0) + np.exp(0.5)) + np.log(1 + np.exp(-1.0))
    got = heads.multilabel_loss(tf.constant(y), tf.constant(s))
    np.testing.assert_allclose(got.numpy(), [want], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['afqmc', 'c3', 'cmrc2018', 'cluener'])
def test_heads_run_under_mixed_bfloat16(name, policy, setup_files):
    """Every head kind gives float32 outputs and a finite loss under the
    mixed_bfloat16 policy (the encoder body in bfloat16)."""
    import gau_keras
    from gau_keras.clue import pipeline
    policy('mixed_bfloat16')
    config, vocab = setup_files
    tokenizer = encoding.load_tokenizer(vocab)
    task = clue.get_task(name, os.path.join(FIXTURES, name), False)
    encoder = gau_keras.build_transformer_model(
        config, model='gau_alpha', vocab_size=tokenizer._vocab_size)
    model = heads.build_head(task, encoder)
    feats = pipeline.encode_examples(task, task.load('train'), tokenizer, 32)
    x, y = pipeline.make_batch(task, feats[:2])
    out = model([tf.constant(a) for a in x], training=True)
    assert out.dtype == tf.float32
    loss = heads.head_loss(task.head)(tf.constant(y), out)
    assert loss.shape == (2,) and np.all(np.isfinite(loss.numpy()))
