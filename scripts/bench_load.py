"""Build and checkpoint-load time of GAU-α base: gau_keras vs bert4keras.

    python scripts/bench_load.py [--config gau_alpha_base]

Writes a random checkpoint with the public release's variable names (the
real one cannot be downloaded here), then times, in fresh Keras sessions:
gau_keras (build, load) and bert4keras's own Transformer with its
GatedAttentionUnit and its tf.train.load_variable-per-variable loader.
The GAU-α repository's mapping lists [i_dense, o_dense, q, k], but
bert4keras's GatedAttentionUnit orders its weights [i_dense, q, k, o_dense]
on tf-keras 2.21, so the bert4keras run here uses the order that works.
"""
import argparse
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gau_keras  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bert4keras import models as b4k  # noqa: E402

from gau_keras.checkpoints import write_checkpoint  # noqa: E402
from gau_keras.configs import load_config, resolve_config_path  # noqa: E402
from bench import harness  # noqa: E402
from bench.bert4keras_gau import StockGAUAlpha  # noqa: E402


def release_checkpoint(config, path):
    """Random arrays under the release's names and shapes."""
    rng = np.random.default_rng(0)
    d, e, s = (config['hidden_size'], config['intermediate_size'],
               config['attention_key_size'])
    var = {'bert/embeddings/word_embeddings': (config['vocab_size'], d),
           'bert/embeddings/token_type_embeddings': (2, d)}
    for i in range(config['num_hidden_layers']):
        p = 'GAU_alpha/encoder/layer_%d/gau/' % i
        var.update({p + 'i_dense/kernel': (d, 2 * e + s),
                    p + 'o_dense/kernel': (e, d),
                    p + 'q_scaleoffset/gamma': (s,),
                    p + 'k_scaleoffset/gamma': (s,)})
    values = {k: (rng.standard_normal(v) * 0.02).astype('float32')
              for k, v in var.items()}
    return write_checkpoint(path, values), values


def run(label, build, load, repeats):
    """Best-of-``repeats`` seconds of ``build()`` and ``load(built)``, each
    repeat in a fresh Keras session; prints the table row."""
    rows = []
    for _ in range(repeats):
        tf.keras.backend.clear_session()
        built = harness.time_calls(build)
        transformer = built.result
        loaded = harness.time_calls(lambda: load(transformer))
        rows.append((built.wall[0], loaded.wall[0]))
    best_build = min(r[0] for r in rows)
    best_load = min(r[1] for r in rows)
    print('| %-36s | %8.2f | %8.2f |' % (label, best_build, best_load))
    return transformer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='gau_alpha_base',
                        help='a JSON config file or a shipped config name')
    parser.add_argument('--out', default='runs/bench_load')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    args.config = resolve_config_path(args.config)   # bert4keras needs a path
    config = load_config(args.config)
    ckpt, values = release_checkpoint(config, os.path.join(args.out,
                                                           'bert_model.ckpt'))
    print('checkpoint: %s, %d variables, %.1f M parameters'
          % (ckpt, len(values), sum(v.size for v in values.values()) / 1e6))
    print('best of %d, seconds\n' % args.repeats)
    print('| %-36s | %8s | %8s |' % ('implementation', 'build', 'load'))
    print('|%s|%s|%s|' % ('-' * 38, '-' * 10, '-' * 10))
    ours = run('gau_keras (one CheckpointReader)',
               lambda: gau_keras.build_transformer_model(
                   args.config, model='gau_alpha', return_keras_model=False),
               lambda t: t.load_weights_from_checkpoint(ckpt), args.repeats)
    theirs = run('bert4keras (load_variable per name)',
                 lambda: b4k.build_transformer_model(
                     args.config, model=StockGAUAlpha,
                     return_keras_model=False),
                 lambda t: t.load_weights_from_checkpoint(ckpt), args.repeats)
    x = np.random.default_rng(1).integers(1, 100, (2, 16))
    inputs = [x, np.zeros_like(x)]
    diff = np.abs(ours.model.predict(inputs, verbose=0) -
                  theirs.model.predict(inputs, verbose=0)).max()
    print('\nmax |gau_keras - bert4keras| on a batch: %.2g' % diff)


if __name__ == '__main__':
    main()
