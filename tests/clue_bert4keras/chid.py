# -*- coding: utf-8 -*-
"""Port of CLUE-bert4keras's src/chid.py: ChID idiom cloze (multiple
choice), each candidate idiom prepended to the passage with the blank
marked, scored by [CLS] → Dense(1); the blanks of a passage get distinct
idioms (Hungarian assignment, scipy).

Edits: imports; maxlen / batch_size / epochs sized for tests; ``>=`` when
keeping the best weights (one epoch on tiny data may score 0);
``verbose=fit_verbose()`` in ``fit_generator``; raw strings for the
``#idiom`` patterns (an invalid escape sequence in newer Pythons).
"""
import json, re
import numpy as np
from snippets import *
from gau_keras.snippets import sequence_padding, DataGenerator
from gau_keras.snippets import open
from scipy.optimize import linear_sum_assignment
from itertools import groupby
from tqdm import tqdm

# Settings
num_classes = 10
maxlen = 48
batch_size = 2
epochs = 1


def sample_split(texts, answers, candidates):
    """One sample per blank, the text around it cut to fit ``maxlen``."""
    results = []
    for i, a in enumerate(answers):
        texts_a, texts_b = texts[:i + 1], texts[i + 1:]
        offset = 3 + 4 + 1 + 4 * (len(texts_a) + len(texts_b) - 2)
        while True:
            l_a = sum([len(t) for t in texts_a])
            l_b = sum([len(t) for t in texts_b])
            if l_a + l_b > maxlen - offset:
                if l_a > l_b:
                    if len(texts_a[0]) > 1:
                        texts_a[0] = texts_a[0][1:]
                    else:
                        texts_a = texts_a[1:]
                        offset -= 4
                else:
                    if len(texts_b[-1]) > 1:
                        texts_b[-1] = texts_b[-1][:-1]
                    else:
                        texts_b = texts_b[:-1]
                        offset -= 4
            else:
                break
        results.append((texts_a, texts_b, a, candidates))
    return results


def load_data(q_file, a_file=None):
    """Reads a file: [(left texts, right texts, (line, blank, answer id),
    candidates)]."""
    D = []
    with open(q_file) as fq:
        if a_file is not None:
            A = json.load(open(a_file))
        for i, l in enumerate(fq):
            l = json.loads(l)
            assert len(l['candidates']) == num_classes
            for c in l['content']:
                texts = re.split(r'#idiom\d{6}#', c)
                keys = re.findall(r'#idiom\d{6}#', c)
                if a_file is None:
                    answers = [(i, k, 0) for k in keys]
                else:
                    answers = [(i, k, A[k]) for k in keys]
                D.extend(sample_split(texts, answers, l['candidates']))
    return D


# The data
train_data = load_data(
    data_path + 'chid/train.json', data_path + 'chid/train_answer.json'
)
valid_data = load_data(
    data_path + 'chid/dev.json', data_path + 'chid/dev_answer.json'
)


class data_generator(DataGenerator):
    """Batches of num_classes rows per blank (one per candidate)."""
    def __iter__(self, random=False):
        mark_ids = tokenizer.tokens_to_ids([u'[unused1]'])
        mask_ids = tokenizer.tokens_to_ids([u'[MASK]']) * 4
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (ta, tb, (_, _, a), cs) in self.sample(random):
            token_ids = []
            for i, t in enumerate(ta):
                token_ids.extend(tokenizer.encode(t)[0][1:-1])
                if i != len(ta) - 1:
                    token_ids.extend(mask_ids)
            token_ids.extend(mark_ids)
            for i, t in enumerate(tb):
                token_ids.extend(tokenizer.encode(t)[0][1:-1])
                if i != len(tb) - 1:
                    token_ids.extend(mask_ids)
            token_ids.append(tokenizer._token_end_id)
            for c in cs:
                batch_token_ids.append(tokenizer.encode(c)[0] + token_ids)
                batch_segment_ids.append([0] * len(batch_token_ids[-1]))
                batch_labels.append([a])
            if len(batch_token_ids) == self.batch_size * num_classes or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)


def multichoice_crossentropy(y_true, y_pred):
    """Cross entropy over the candidates of each blank."""
    y_true = K.cast(y_true, 'int32')[::num_classes]
    y_pred = K.reshape(y_pred, (-1, num_classes))
    return K.mean(
        K.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    )


def multichoice_accuracy(y_true, y_pred):
    """Share of blanks whose best-scored candidate is the answer."""
    y_true = K.cast(y_true, 'int32')[::num_classes, 0]
    y_pred = K.reshape(y_pred, (-1, num_classes))
    y_pred = K.cast(K.argmax(y_pred, axis=1), 'int32')
    return K.mean(K.cast(K.equal(y_true, y_pred), K.floatx()))


# The model
output = base.model.get_layer(last_layer).output
output = pooling_layer(output)
output = keras.layers.Dense(units=1,
                            kernel_initializer=base.initializer)(output)

model = keras.models.Model(base.model.input, output)
model.summary()

model.compile(
    loss=multichoice_crossentropy,
    optimizer=optimizer2,
    metrics=[multichoice_accuracy]
)


class Evaluator(keras.callbacks.Callback):
    """Keeps the weights of the best dev accuracy."""
    def __init__(self):
        self.best_val_acc = 0.

    def on_epoch_end(self, epoch, logs=None):
        val_acc = self.evaluate(valid_data, valid_generator)
        if val_acc >= self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights('weights/chid.weights')
        print(
            u'val_acc: %.5f, best_val_acc: %.5f\n' %
            (val_acc, self.best_val_acc)
        )

    def evaluate(self, data, generator):
        total, right = 0, 0.
        logits = np.empty((0, num_classes))
        for x_true, y_true in tqdm(generator, ncols=0):
            y_pred = model.predict(x_true).reshape((-1, num_classes))
            logits = np.concatenate([logits, y_pred], axis=0)
        for _, g in groupby(data, key=lambda d: d[2][0]):
            y_true = np.array([d[2][2] for d in g])
            costs = -logits[total:total + len(y_true)]
            y_pred = linear_sum_assignment(costs)[1]
            total += len(y_true)
            right += (y_true == y_pred).sum()
        return right / total


def test_predict(in_file, out_file):
    """Writes the predictions of ``in_file`` as a CLUE submission file."""
    test_data = load_data(in_file)
    test_generator = data_generator(test_data, batch_size)

    logits = np.empty((0, num_classes))
    for x_true, _ in tqdm(test_generator, ncols=0):
        y_pred = model.predict(x_true).reshape((-1, num_classes))
        logits = np.concatenate([logits, y_pred], axis=0)

    results, total = {}, 0
    for _, g in groupby(test_data, key=lambda d: d[2][0]):
        keys = [d[2][1] for d in g]
        costs = -logits[total:total + len(keys)]
        y_pred = linear_sum_assignment(costs)[1]
        for k, r in zip(keys, y_pred):
            results[k] = int(r)
        total += len(keys)

    with open(out_file, 'w', encoding='utf-8') as f:
        json.dump(results, f, ensure_ascii=False, indent=4)


if __name__ == '__main__':

    evaluator = Evaluator()

    model.fit_generator(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=epochs,
        callbacks=[evaluator],
        verbose=fit_verbose()
    )

    model.load_weights('weights/chid.weights')
    test_predict(
        in_file=data_path + 'chid/test1.0.json',
        out_file='results/chid10_predict.json'
    )
    test_predict(
        in_file=data_path + 'chid/test1.1.json',
        out_file='results/chid11_predict.json'
    )

else:

    model.load_weights('weights/chid.weights')
