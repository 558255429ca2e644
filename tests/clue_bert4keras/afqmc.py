# -*- coding: utf-8 -*-
"""Port of CLUE-bert4keras's src/afqmc.py: AFQMC sentence-pair similarity,
the two texts joined, [CLS] → Dense + softmax.

Edits: imports; maxlen / batch_size / epochs sized for tests; ``>=`` when
keeping the best weights (one epoch on tiny data may score 0);
``verbose=fit_verbose()`` in ``fit_generator``.
"""
import json
import numpy as np
from snippets import *
from gau_keras.snippets import sequence_padding, DataGenerator
from gau_keras.snippets import open
from tqdm import tqdm

# Settings
num_classes = 2
maxlen = 64
batch_size = 4
epochs = 1


def load_data(filename):
    """Reads a file: [(text 1, text 2, label id)]."""
    D = []
    with open(filename) as f:
        for i, l in enumerate(f):
            l = json.loads(l)
            text1, text2 = l['sentence1'], l['sentence2']
            label = l.get('label', 0)
            D.append((text1, text2, int(label)))
    return D


# The data
train_data = load_data(data_path + 'afqmc/train.json')
valid_data = load_data(data_path + 'afqmc/dev.json')


class data_generator(DataGenerator):
    """Batches of token ids, segment ids (all 0) and labels."""
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text1, text2, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(
                text1, text2, maxlen=maxlen
            )
            batch_token_ids.append(token_ids)
            batch_segment_ids.append([0] * len(segment_ids))
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)

# The model
output = base.model.get_layer(last_layer).output
output = pooling_layer(output)
output = keras.layers.Dense(
    units=num_classes,
    activation='softmax',
    kernel_initializer=base.initializer
)(output)

model = keras.models.Model(base.model.input, output)
model.summary()

model.compile(
    loss='sparse_categorical_crossentropy',
    optimizer=optimizer,
    metrics=['accuracy']
)


class Evaluator(keras.callbacks.Callback):
    """Keeps the weights of the best dev accuracy."""
    def __init__(self):
        self.best_val_acc = 0.

    def on_epoch_end(self, epoch, logs=None):
        val_acc = self.evaluate(valid_generator)
        if val_acc >= self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights('weights/afqmc.weights')
        print(
            u'val_acc: %.5f, best_val_acc: %.5f\n' %
            (val_acc, self.best_val_acc)
        )

    def evaluate(self, data):
        total, right = 0., 0.
        for x_true, y_true in data:
            y_pred = model.predict(x_true).argmax(axis=1)
            y_true = y_true[:, 0]
            total += len(y_true)
            right += (y_true == y_pred).sum()
        return right / total


def test_predict(in_file, out_file):
    """Writes the predictions of ``in_file`` as a CLUE submission file."""
    test_data = load_data(in_file)
    test_generator = data_generator(test_data, batch_size)

    results = []
    for x_true, _ in tqdm(test_generator, ncols=0):
        y_pred = model.predict(x_true).argmax(axis=1)
        results.extend(y_pred)

    fw = open(out_file, 'w')
    with open(in_file) as fr:
        for l, r in zip(fr, results):
            l = json.loads(l)
            l = json.dumps({'id': str(l['id']), 'label': str(r)})
            fw.write(l + '\n')
    fw.close()


if __name__ == '__main__':

    evaluator = Evaluator()

    model.fit_generator(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=epochs,
        callbacks=[evaluator],
        verbose=fit_verbose()
    )

    model.load_weights('weights/afqmc.weights')
    test_predict(
        in_file=data_path + 'afqmc/test.json',
        out_file='results/afqmc_predict.json'
    )

else:

    model.load_weights('weights/afqmc.weights')
