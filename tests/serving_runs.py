"""Tiny fine-tuning run folders with random weights (no training), for the
serving tests: the run folder format of ``gau_keras.clue.runs``."""
import json
import os

import numpy as np

from tiny_configs import tiny_config

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'fixtures', 'clue')
#: The one-block tiny GAU-α (vocab 50, dropout 0.1).
TINY = tiny_config(num_hidden_layers=1)


def spread_logits(model, tokenizer, task, scale):
    """Random [CLS] features barely differ between texts: the classifier
    is centred on the train texts' mean logits and scaled up."""
    from gau_keras.clue import encoding
    x = [encoding.encode_text(tokenizer, e, 32) for e in task.load('train')]
    n = max(len(i) for i, _ in x)
    ids = np.array([i + [0] * (n - len(i)) for i, _ in x])
    segs = np.array([s + [0] * (n - len(s)) for _, s in x])
    logits = model([ids, segs], training=False).numpy()
    layer = model.get_layer('CLUE-Classifier')
    layer.kernel.assign(layer.kernel * scale)
    layer.bias.assign(-logits.mean(0) * scale)


def random_run(name, out, scale=100.0):
    """Run folder ``out`` of CLUE fixture task ``name``: a char vocab of
    its texts, a tiny gau_alpha, random weights.  The classifier is scaled
    and centred so that different texts get different labels."""
    import gau_keras
    from gau_keras import clue, corpora
    from gau_keras.clue import encoding, heads, runs
    os.makedirs(out, exist_ok=True)
    task = clue.get_task(name, os.path.join(FIXTURES, name), False)
    train = task.load('train')
    texts = [x for e in train + task.load('dev')
             for x in encoding.example_texts(e)]
    vocab = corpora.save_vocab(corpora.build_tokenizer_vocab(texts),
                               os.path.join(out, 'source_vocab.txt'))
    config = os.path.join(out, 'source_config.json')
    with open(config, 'w') as f:
        json.dump(TINY, f)
    tokenizer = encoding.load_tokenizer(vocab)
    encoder = gau_keras.build_transformer_model(
        config, model='gau_alpha', vocab_size=tokenizer._vocab_size)
    model = heads.build_head(task, encoder, dropout=0.1)
    if task.head == 'classification':
        spread_logits(model, tokenizer, task, scale)
    model.save_weights(os.path.join(out, 'best.weights.h5'))
    runs.write_run_files(out, task, config, vocab, model='gau_alpha',
                         maxlen=32, stride=None, dropout=0.1, head_size=64)
    return out, [e.text_a if e.text_b is None else (e.text_a, e.text_b)
                 for e in train]
