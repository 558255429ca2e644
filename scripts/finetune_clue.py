"""Fine-tune GAU-α / FLASH on one CLUE task and write its submission file.

    python scripts/finetune_clue.py --task TASK --data_dir DIR --config CFG \\
        --vocab VOCAB --output_dir OUT [--checkpoint CKPT] [--model gau_alpha]
        [--epochs N] [--batch_size B] [--maxlen L] [--lr LR]
        [--optimizer adam|adamw|lamb|adafactor] [--mixed_precision fp32|fp16|bf16]
        [--xla] [--strategy ...] [--seed S] [--zip]

TASK: tnews iflytek afqmc cmnli ocnli wsc (cluewsc2020) csl cmrc2018 c3 chid
cluener; DIR is that task's folder as downloaded from CLUE.  Trains on
train, evaluates dev after every epoch, keeps the best weights, predicts the
test file(s) and writes ``OUT/metrics.json`` plus the CLUE submission
file(s) (``--zip``: also ``OUT/clue_submit.zip``).  Without --checkpoint the
encoder starts from random weights.  The task logic is in gau_keras.clue.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import gau_keras  # noqa: E402  (before tensorflow)
from gau_keras import clue, training  # noqa: E402
from gau_keras.clue import encoding, heads, pipeline, submission  # noqa


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--task', required=True,
                   help='one of %s (or cluewsc2020)'
                   % ', '.join(clue.task_names()))
    p.add_argument('--data_dir', required=True)
    p.add_argument('--config', required=True,
                   help='model config JSON or a preset name')
    p.add_argument('--vocab', required=True, help='BERT-style vocab.txt')
    p.add_argument('--output_dir', required=True)
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--model', default='gau_alpha')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--maxlen', type=int, default=128)
    p.add_argument('--stride', type=int, default=None,
                   help='cmrc2018: tokens between window starts '
                   '(default maxlen // 2)')
    p.add_argument('--lr', type=float, default=None,
                   help='learning rate (same as --learning_rate)')
    p.add_argument('--dropout', type=float, default=0.1)
    p.add_argument('--eval_batch_size', type=int, default=64)
    p.add_argument('--zip', action='store_true',
                   help='also pack the submission files as a CLUE zip')
    training.add_training_args(p)
    args = p.parse_args(argv)
    if args.lr is not None:
        args.learning_rate = args.lr
    if args.epochs < 1 or args.maxlen < 8:
        p.error('--epochs must be >= 1 and --maxlen >= 8')
    return args


def check_vocab(tokenizer, args):
    """The vocab must fit the config (and a checkpoint exactly)."""
    config = gau_keras.load_config(
        gau_keras.configs.resolve_config_path(args.config))
    n, size = tokenizer._vocab_size, int(config['vocab_size'])
    if args.checkpoint and n != size:
        raise SystemExit('vocab %s has %d tokens but the config %s (and its '
                         'checkpoint) has vocab_size %d: use the vocab that '
                         'came with the checkpoint' % (args.vocab, n,
                                                       args.config, size))
    return n


def build_model(task, args, vocab_size):
    kwargs = {} if args.checkpoint else {'vocab_size': vocab_size}
    encoder = gau_keras.build_transformer_model(
        args.config, args.checkpoint, model=args.model, **kwargs)
    return heads.build_head(task, encoder, dropout=args.dropout)


class EpochEnd(object):
    """Trainer callback: dev metric after every epoch, best weights kept."""

    def __init__(self, task, model, dev, dev_feats, args, record):
        self.task, self.model, self.dev, self.feats = task, model, dev, \
            dev_feats
        self.args, self.record = args, record
        self.per_epoch = record['steps_per_epoch']
        self.best_path = os.path.join(args.output_dir, 'best.weights.h5')
        self.t0 = time.time()

    def __call__(self, step, loss):
        if step % self.per_epoch:
            return
        train_time = time.time() - self.t0
        t = time.time()
        preds = pipeline.predict(self.task, self.model, self.feats, self.dev,
                                 self.args.eval_batch_size)
        scores = self.task.evaluate(self.dev, preds)
        epoch = step // self.per_epoch
        value = scores[self.task.metric]
        self.record['epochs'].append(dict(
            epoch=epoch, loss=loss, dev=scores, train_seconds=train_time,
            eval_seconds=time.time() - t))
        best = self.record.get('best_dev')
        if best is None or value > best:
            self.record.update(best_dev=value, best_epoch=epoch)
            self.model.save_weights(self.best_path)
        print('\nepoch %d: dev %s = %.4f (best %.4f at epoch %d)' % (
            epoch, self.task.metric, value, self.record['best_dev'],
            self.record['best_epoch']))
        write_json(os.path.join(self.args.output_dir, 'metrics.json'),
                   self.record)
        self.t0 = time.time()


def resume_record(record, output_dir):
    """A resumed run keeps the epochs (and best) already recorded."""
    path = os.path.join(output_dir, 'metrics.json')
    if not os.path.exists(path):
        return
    with open(path, encoding='utf-8') as f:
        old = json.load(f)
    if old.get('task') == record['task'] and \
            old.get('steps_per_epoch') == record['steps_per_epoch']:
        for key in ('epochs', 'best_dev', 'best_epoch'):
            if key in old:
                record[key] = old[key]


def write_json(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


def predict_tests(task, model, tokenizer, args, record):
    """Writes every test set's submission file; returns their names."""
    names = []
    for test_name, items, out_name in task.test_sets():
        t = time.time()
        feats = pipeline.encode_examples(task, items, tokenizer, args.maxlen,
                                         args.stride)
        preds = pipeline.predict(task, model, feats, items,
                                 args.eval_batch_size)
        path = task.write_submission(
            os.path.join(args.output_dir, out_name), items, preds)
        submission.check_submission(path, items)
        record['test'][test_name] = dict(file=out_name, items=len(items),
                                         seconds=time.time() - t)
        print('%s: %d predictions -> %s' % (test_name, len(items), path))
        names.append(out_name)
    return names


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    setup = training.setup_from_args(args)
    task = clue.get_task(args.task, args.data_dir)
    tokenizer = encoding.load_tokenizer(args.vocab)
    vocab_size = check_vocab(tokenizer, args)
    train, dev = task.load('train'), task.load('dev')
    t = time.time()
    train_feats = pipeline.encode_examples(task, train, tokenizer,
                                           args.maxlen, args.stride)
    dev_feats = pipeline.encode_examples(task, dev, tokenizer, args.maxlen,
                                         args.stride)
    per_epoch = pipeline.steps_per_epoch(len(train_feats), args.batch_size)
    record = dict(task=task.name, metric=task.metric, train=len(train),
                  dev=len(dev), train_rows=len(train_feats),
                  steps_per_epoch=per_epoch, epochs=[], test={},
                  encode_seconds=time.time() - t, args=vars(args))
    resume_record(record, args.output_dir)
    with setup.strategy.scope():
        model = build_model(task, args, vocab_size)
        optimizer = training.optimizer_from_args(args)
    trainer = training.Trainer(
        model, heads.head_loss(task.head), optimizer,
        pipeline.dataset_fn(task, train_feats, args.batch_size, args.seed),
        per_epoch * args.epochs, os.path.join(args.output_dir, 'train'),
        save_every=per_epoch, strategy=setup.strategy,
        jit_compile=setup.jit_compile,
        callbacks=[EpochEnd(task, model, dev, dev_feats, args, record)])
    t = time.time()
    trainer.train()
    record['train_total_seconds'] = time.time() - t
    best = os.path.join(args.output_dir, 'best.weights.h5')
    if os.path.exists(best):
        model.load_weights(best)
    names = predict_tests(task, model, tokenizer, args, record)
    if args.zip:
        record['zip'] = submission.make_zip(
            args.output_dir, names,
            os.path.join(args.output_dir, 'clue_submit.zip'))
    write_json(os.path.join(args.output_dir, 'metrics.json'), record)
    return record


if __name__ == '__main__':
    main()
