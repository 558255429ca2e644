"""Cached FLASH decoding vs re-running the full forward pass per token.

Builds the causal FLASH LM of the shipped flash_tiny config (random weights),
greedily generates ``--tokens`` tokens after a short prompt both ways and
prints both timings, the speedup and whether the token sequences are
identical (random weights make greedy output repetitive, so it also
compares seeded sampling, and the outputs on random tokens).  Not a test.

Usage::

    .venv/bin/python scripts/bench_decoding.py              # 512 tokens
    .venv/bin/python scripts/bench_decoding.py --tokens 128 --no-jit
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gau_keras  # noqa: E402,F401  (before tensorflow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gau_keras import build_transformer_model  # noqa: E402
from gau_keras.decoding import (FlashDecoder,  # noqa: E402
                                generate_without_cache, sampler)
from bench import harness  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='flash_tiny',
                   help='a config file or the name of a shipped config')
    p.add_argument('--tokens', type=int, default=512)
    p.add_argument('--prompt', type=int, default=8, help='prompt length')
    p.add_argument('--no-jit', action='store_true',
                   help='run the cached step without XLA')
    return p.parse_args()


def timed(fn, *args):
    """(fn(*args), its wall seconds)."""
    t = harness.time_calls(lambda: fn(*args))
    return t.result, t.wall[0]


def main():
    args = parse_args()
    tf.random.set_seed(0)
    lm = build_transformer_model(args.config, model='flash',
                                 application='lm', return_keras_model=False)
    prompt = np.random.RandomState(0).randint(1, lm.vocab_size,
                                              (1, args.prompt))
    decoder = FlashDecoder(lm, jit_compile=not args.no_jit)
    decoder.generate(prompt, 2)                      # compile the step
    cached, t_cached = timed(decoder.generate, prompt, args.tokens)
    full, t_full = timed(generate_without_cache, lm, prompt, args.tokens)
    print('CPU flags: %s; load average %.2f' % (harness.cpu_flags_string(),
                                                os.getloadavg()[0]))
    print('model: %s (d=%d, %d blocks, chunk_size=%d), prompt %d tokens, '
          'greedy, %d new tokens, XLA step: %s'
          % (os.path.basename(args.config), lm.hidden_size,
             lm.num_hidden_layers, lm.chunk_size, args.prompt, args.tokens,
             not args.no_jit))
    print('cached decoding:            %.2f s  (%.2f ms/token)'
          % (t_cached, 1e3 * t_cached / args.tokens))
    print('full forward per token:     %.2f s  (%.2f ms/token)'
          % (t_full, 1e3 * t_full / args.tokens))
    print('speedup: %.1fx' % (t_full / t_cached))
    print('identical token sequences: %s' % bool(np.array_equal(cached,
                                                                 full)))
    print('first 16 tokens: %s' % cached[0, :16].tolist())
    sampled, t_sampled = timed(decoder.generate, prompt, args.tokens, None,
                               sampler(1))
    sampled_full = generate_without_cache(lm, prompt, args.tokens, None,
                                          sampler(1))
    print('seeded sampling (same uniforms both ways), cached %.2f s: '
          'identical token sequences: %s; first 16 tokens: %s'
          % (t_sampled, bool(np.array_equal(sampled, sampled_full)),
             sampled[0, :16].tolist()))
    diff, largest = output_difference(lm, decoder, args)
    print('max |cached step - full forward| of the outputs (probabilities '
          'up to %.2e) on %d random tokens: %.2e'
          % (largest, args.prompt + args.tokens, diff))


def output_difference(lm, decoder, args):
    """Largest difference between stepwise and one-pass outputs."""
    ids = np.random.RandomState(1).randint(1, lm.vocab_size,
                                           (1, args.prompt + args.tokens))
    full = lm.model([ids, np.zeros_like(ids)], training=False).numpy()[0]
    decoder.reset(1)
    steps = np.stack([decoder.step(ids[:, t])[0]
                      for t in range(ids.shape[1])])
    return float(np.abs(steps - full).max()), float(np.abs(full).max())


if __name__ == '__main__':
    main()
