"""Examples → features → padded batches, and model outputs → predictions,
for every CLUE head (the glue between tasks, encoding and heads).

Example::

    feats = encode_examples(task, train, tokenizer, maxlen=128)
    fn = dataset_fn(task, feats, batch_size=32, seed=0)   # for the Trainer
    preds = predict(task, model, encode_examples(task, dev, tokenizer, 128),
                    dev)
    task.evaluate(dev, preds)
"""
import math

import numpy as np
import tensorflow as tf

from gau_keras.clue import encoding, metrics

#: padded lengths are rounded up to a multiple of this (fewer shapes)
LENGTH_MULTIPLE = 8


def encode_examples(task, examples, tokenizer, maxlen, stride=None):
    """One feature dict per model row (cmrc2018: per window, with
    ``example`` = index of its question).  cluener entities that cannot be
    token spans are counted in ``task.log`` and reported."""
    if task.head == 'classification':
        return [dict(zip(('ids', 'segs'), encoding.encode_text(
            tokenizer, e, maxlen)), label=e.label) for e in examples]
    if task.head == 'multiple_choice':
        return [_choice_feature(task, tokenizer, e, maxlen) for e in examples]
    if task.head == 'span':
        out = []
        for i, e in enumerate(examples):
            for w in encoding.span_windows(tokenizer, e, maxlen,
                                           stride or maxlen // 2):
                out.append(dict(ids=w.token_ids, segs=w.segment_ids,
                                label=(w.start, w.end), window=w, example=i))
        return out
    out = []
    for e in examples:
        ids, segs, spans, mapping = encoding.encode_ner(
            tokenizer, e, maxlen, task.labels, log=task.log)
        out.append(dict(ids=ids, segs=segs, spans=spans, mapping=mapping))
    task.log.report('%s/' % task.name)
    task.log.counts.clear()
    return out


def _choice_feature(task, tokenizer, e, maxlen):
    if task.name == 'chid':
        ids, segs = encoding.encode_chid(tokenizer, e, maxlen)
        valid = [True] * len(ids)
    else:
        ids, segs, valid = encoding.encode_choices(tokenizer, e, maxlen,
                                                   task.num_choices)
    return dict(ids=ids, segs=segs, valid=valid, label=e.label)


def _length(n):
    return int(math.ceil(max(n, 1) / LENGTH_MULTIPLE) * LENGTH_MULTIPLE)


def _pad2(rows, n):
    out = np.zeros((len(rows), n), np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def make_batch(task, feats):
    """(x, y) of a list of features (y = labels, zeros on test)."""
    if task.head == 'multiple_choice':
        c = max(len(f['ids']) for f in feats)
        n = _length(max(len(r) for f in feats for r in f['ids']))
        ids = np.zeros((len(feats), c, n), np.int32)
        segs = np.zeros_like(ids)
        valid = np.zeros((len(feats), c), np.int32)
        for b, f in enumerate(feats):
            ids[b, :len(f['ids'])] = _pad2(f['ids'], n)
            segs[b, :len(f['segs'])] = _pad2(f['segs'], n)
            valid[b, :len(f['valid'])] = f['valid']
        y = np.array([f['label'] or 0 for f in feats], np.int32)
        return [ids, segs, valid], y
    n = _length(max(len(f['ids']) for f in feats))
    x = [_pad2([f['ids'] for f in feats], n),
         _pad2([f['segs'] for f in feats], n)]
    if task.head == 'classification':
        y = np.array([f['label'] or 0 for f in feats], np.int32)
    elif task.head == 'span':
        y = np.array([f['label'] for f in feats], np.int32)
    else:
        y = encoding.ner_targets([f['spans'] for f in feats],
                                 len(task.labels), n)
    return x, y


def steps_per_epoch(n, batch_size):
    return max(1, int(math.ceil(n / batch_size)))


def dataset_fn(task, feats, batch_size, seed):
    """``dataset_fn(position)`` for gau_keras.training.Trainer: batch p is a
    pure function of p (epoch e = p // steps shuffled with seed + e; the
    last batch of an epoch is filled up from the epoch's start, so every
    batch has ``batch_size`` rows).  ``batch_size`` may not exceed the
    number of rows (a batch never holds a row twice)."""
    if not feats:
        raise ValueError('no training rows to make batches of')
    if batch_size > len(feats):
        raise ValueError(
            'batch_size %d is larger than the %d training rows: a batch '
            'would repeat rows; use a batch size <= %d'
            % (batch_size, len(feats), len(feats)))
    per_epoch = steps_per_epoch(len(feats), batch_size)

    def batches(position):
        while True:
            epoch, i = divmod(position, per_epoch)
            order = np.random.RandomState(seed + epoch).permutation(
                len(feats))
            rows = [order[(i * batch_size + k) % len(order)]
                    for k in range(batch_size)]
            yield make_batch(task, [feats[r] for r in rows])
            position += 1

    return batches


_INFER = [None, None]     # (model, its traced inference function)


def _inference_function(model):
    """The traced inference function of the latest model used (kept across
    epochs, so dev evaluation does not trace again every epoch)."""
    if _INFER[0] is not model:
        _INFER[:] = [model, tf.function(lambda x: model(x, training=False),
                                        reduce_retracing=True)]
    return _INFER[1]


def feature_length(feat):
    """Padded length a feature needs (its longest row)."""
    ids = feat['ids']
    if ids and isinstance(ids[0], (list, tuple)):
        return max(len(r) for r in ids)
    return len(ids)


def length_order(feats):
    """Indices of ``feats`` sorted by length (stable: equal lengths keep
    their order), so each batch pads little."""
    return sorted(range(len(feats)), key=lambda i: feature_length(feats[i]))


def model_outputs(model, task, feats, batch_size=64, by_length=True,
                  infer=None):
    """Model outputs per feature (list), in the order of ``feats``.

    ``by_length``: batches are formed from the features sorted by length
    (similar lengths together, less padding), then the outputs are put back
    in the original order.  ``infer(list of int32 tensors)`` defaults to one
    traced function of ``model`` serving every padded length."""
    infer = infer or _inference_function(model)
    order = length_order(feats) if by_length else list(range(len(feats)))
    out = [None] * len(feats)
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        x, _ = make_batch(task, [feats[r] for r in rows])
        y = np.asarray(infer([tf.constant(a) for a in x]), np.float32)
        for r, value in zip(rows, y):
            out[r] = value
    return out


def predict(task, model, feats, examples, batch_size=64):
    """One prediction per example (see gau_keras.clue.tasks)."""
    outputs = model_outputs(model, task, feats, batch_size)
    return decode(task, outputs, feats, examples)


def decode(task, outputs, feats, examples):
    """Predictions per example from the model outputs per feature."""
    if task.head == 'classification':
        return [int(np.argmax(o)) for o in outputs]
    if task.head == 'multiple_choice':
        if task.name == 'chid':
            width = max(len(o) for o in outputs)     # batches may differ
            scores = np.full((len(outputs), width), -1e4, np.float32)
            for i, o in enumerate(outputs):
                scores[i, :len(o)] = o
            return metrics.assign_by_group([e.group for e in examples],
                                           scores)
        return [int(np.argmax(o[:len(e.choices)]))
                for o, e in zip(outputs, examples)]
    if task.head == 'span':
        windows = [f['window'] for f in feats]
        answers = encoding.best_spans(
            examples, windows, [o[:, 0] for o in outputs],
            [o[:, 1] for o in outputs])
        return [answers[e.uid] for e in examples]
    return [encoding.decode_entities(o, f['mapping'], task.labels)
            for o, f in zip(outputs, feats)]
