"""Fine-tuning on one CLUE task: train, keep the best dev epoch, predict test.

``finetune`` trains an encoder (random weights, or a checkpoint) with the
task's head on the train split, evaluates dev after every epoch, keeps the
best weights, predicts the test file(s) and writes ``output_dir/metrics.json``
plus the CLUE submission file(s).  Training runs through
``gau_keras.training.Trainer``, so a killed run started again with the same
settings resumes from its last checkpoint.  Example::

    from gau_keras import clue
    record = clue.finetune('afqmc', 'clue/afqmc', 'gau_alpha_tiny',
                           'vocab.txt', 'runs/afqmc', epochs=2, maxlen=64)
    record['best_dev'], record['test']

The run folder ``output_dir`` guarantees:

* one process at a time: a second run into it is refused, naming the
  holder's pid (``gau_keras.files.run_lock``; a dead holder's lock is
  taken over);
* no silent mix of two runs: ``settings.json`` records every setting that
  shapes the result (the data files', vocab's and checkpoint's contents
  included); a rerun with other settings is refused naming each change,
  except :data:`SAFE_SETTINGS` (and ``epochs``, which may grow to extend a
  run); ``overwrite=True`` starts afresh, moving the old run aside into
  ``<output_dir>.old-<time>``;
* every split (train, dev, test) is read and checked, and every setting
  validated, before the first step;
* at each epoch end the checkpoint is saved before dev is evaluated; the
  record keeps exactly the epochs up to the checkpoint resumed (an epoch
  saved but not yet evaluated is evaluated on resume);
* every output (metrics.json, submissions, zip, best weights) is replaced
  whole or not at all.
"""
import contextlib
import os
import time

from gau_keras import configs, files, optimizers, training
from gau_keras.clue import encoding, heads, pipeline, runs, submission
from gau_keras.clue.readers import ClueDataError
from gau_keras.clue.tasks import get_task
from gau_keras.files import write_json
from gau_keras.progress import is_terminal

#: Settings that may differ when a run is resumed: where files are (their
#: contents are checked instead), how the run is executed or evaluated.
SAFE_SETTINGS = ('data_dir', 'config', 'vocab', 'checkpoint',
                 'output_dir', 'eval_batch_size', 'make_zip', 'xla',
                 'strategy', 'tpu', 'save_every')
#: Settings that may only grow on resume (more epochs extend a run).
GROW_SETTINGS = ('epochs',)
#: Files that make a folder a fine-tuning run.
RUN_FILES = ('metrics.json', 'best.weights.h5', 'train', 'run.json')
#: What to do about an unreadable or incomplete record.
_FIX = ('restore it, or start afresh with overwrite=True (--overwrite; the '
        'old run is moved aside)')


class VocabMismatchError(ValueError):
    """The vocab does not fit the config of the checkpoint to fine-tune."""


def check_vocab(tokenizer, config, checkpoint=None, vocab=None):
    """The tokenizer's vocab size; with a ``checkpoint`` it must equal the
    config's ``vocab_size`` (VocabMismatchError otherwise).  ``vocab`` only
    names the vocab file in the message.  Example::

        n = check_vocab(load_tokenizer('vocab.txt'), 'gau_alpha_tiny')
    """
    size = int(configs.load_config(config)['vocab_size'])
    n = tokenizer._vocab_size
    if checkpoint and n != size:
        raise VocabMismatchError(
            'vocab %s has %d tokens but the config %s (and its checkpoint) '
            'has vocab_size %d: use the vocab that came with the checkpoint'
            % (vocab, n, config, size))
    return n


def build_model(task, config, vocab_size, checkpoint=None, model='gau_alpha',
                dropout=0.1):
    """The encoder of ``config`` (from ``checkpoint`` if given, else random
    weights sized to ``vocab_size``) with the task's head on top."""
    import gau_keras
    kwargs = {} if checkpoint else {'vocab_size': vocab_size}
    encoder = gau_keras.build_transformer_model(config, checkpoint,
                                                model=model, **kwargs)
    return heads.build_head(task, encoder, dropout=dropout)


def save_weights(model, path):
    """``model.save_weights(path)`` (an .h5 file), replacing ``path`` whole
    or not at all."""
    tmp = os.path.join(os.path.dirname(path) or '.',
                       '.%d.tmp.%s' % (os.getpid(), os.path.basename(path)))
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


class EpochEnd(object):
    """Trainer callback: dev metric after every epoch, best weights kept in
    ``output_dir/best.weights.h5``, ``record`` rewritten to metrics.json.
    The Trainer calls it after the epoch's checkpoint is saved."""

    def __init__(self, task, model, dev, dev_feats, output_dir,
                 eval_batch_size, record):
        self.task, self.model, self.dev, self.feats = task, model, dev, \
            dev_feats
        self.output_dir, self.eval_batch_size = output_dir, eval_batch_size
        self.record = record
        self.per_epoch = record['steps_per_epoch']
        self.best_path = os.path.join(output_dir, 'best.weights.h5')
        self.t0 = time.time()

    def __call__(self, step, loss):
        if step % self.per_epoch:
            return
        train_time = time.time() - self.t0
        t = time.time()
        preds = pipeline.predict(self.task, self.model, self.feats, self.dev,
                                 self.eval_batch_size)
        scores = self.task.evaluate(self.dev, preds)
        epoch = step // self.per_epoch
        value = scores[self.task.metric]
        self.record['epochs'].append(dict(
            epoch=epoch, loss=loss, dev=scores, train_seconds=train_time,
            eval_seconds=time.time() - t))
        best = self.record.get('best_dev')
        if best is None or value > best:
            self.record.update(best_dev=value, best_epoch=epoch)
            save_weights(self.model, self.best_path)
        # On a terminal the line follows the progress bar's.
        print('%sepoch %d: dev %s = %.4f (best %.4f at epoch %d)' % (
            '\n' if is_terminal() else '', epoch, self.task.metric, value,
            self.record['best_dev'], self.record['best_epoch']))
        write_json(os.path.join(self.output_dir, 'metrics.json'),
                   self.record)
        self.t0 = time.time()


def resume_record(record, output_dir, step=None):
    """Carry the per-epoch dev scores of ``output_dir/metrics.json`` into
    ``record``: those of the epochs completed by ``step``, the step the
    Trainer resumed from (all of them when None), one entry per epoch;
    ``best_dev`` / ``best_epoch`` are recomputed from them.  Returns the
    completed epochs the file has no scores for.  An unreadable file raises
    RunFolderError naming it."""
    path = os.path.join(output_dir, 'metrics.json')
    old = files.read_json(path, 'metrics record', _FIX) \
        if os.path.exists(path) else {}
    per_epoch = record['steps_per_epoch']
    done = None if step is None else step // per_epoch
    by_epoch = {}
    for entry in old.get('epochs', []):
        if done is None or entry['epoch'] <= done:
            by_epoch[entry['epoch']] = entry
    dropped = sorted({e['epoch'] for e in old.get('epochs', [])}
                     - set(by_epoch))
    if dropped:
        print('%s: the scores of epoch(s) %s are newer than the checkpoint '
              'resumed (step %d): those epochs are trained again'
              % (path, dropped, step))
    record['epochs'] = [by_epoch[k] for k in sorted(by_epoch)]
    record.pop('best_dev', None)
    record.pop('best_epoch', None)
    for entry in record['epochs']:
        value = entry['dev'][record['metric']]
        if 'best_dev' not in record or value > record['best_dev']:
            record.update(best_dev=value, best_epoch=entry['epoch'])
    return [k for k in range(1, (done or 0) + 1) if k not in by_epoch]


def predict_tests(task, model, tokenizer, output_dir, record, maxlen=128,
                  stride=None, eval_batch_size=64, test_sets=None):
    """Writes every test set's submission file into ``output_dir`` (and its
    entry in ``record['test']``); returns the file names.  ``test_sets``:
    ``task.test_sets()`` already read (read now when None)."""
    names = []
    for test_name, items, out_name in test_sets or task.test_sets():
        t = time.time()
        feats = pipeline.encode_examples(task, items, tokenizer, maxlen,
                                         stride)
        preds = pipeline.predict(task, model, feats, items, eval_batch_size)
        path = task.write_submission(os.path.join(output_dir, out_name),
                                     items, preds)
        submission.check_submission(path, items)
        record['test'][test_name] = dict(file=out_name, items=len(items),
                                         seconds=time.time() - t)
        print('%s: %d predictions -> %s' % (test_name, len(items), path))
        names.append(out_name)
    return names


def _positive_int(name, value, least=1):
    if isinstance(value, bool) or not (isinstance(value, int) and
                                       value >= least):
        raise ValueError('%s must be an integer >= %d, got %r'
                         % (name, least, value))


def _check_settings(epochs, maxlen, batch_size, learning_rate, weight_decay,
                    eval_batch_size=1, save_every=None):
    _positive_int('epochs', epochs)
    _positive_int('maxlen', maxlen, 8)
    _positive_int('batch_size', batch_size)
    _positive_int('eval_batch_size', eval_batch_size)
    if save_every is not None:
        _positive_int('save_every', save_every)
    training.check_learning_rate(learning_rate, weight_decay)


def load_splits(task):
    """(train, dev, test sets) of ``task``: every file read and checked
    (so a bad test file stops the run before training, not after it);
    an empty train or dev split raises ClueDataError naming its files."""
    splits = {}
    for split in ('train', 'dev'):
        splits[split] = task.load(split)
        if not splits[split]:
            raise ClueDataError(
                'no %s examples (empty, or every line skipped)' % split,
                path=', '.join(os.path.join(task.data_dir, n)
                               for n in task.split_files[split]))
    return splits['train'], splits['dev'], task.test_sets()


def _data_digests(task):
    """{file name: SHA-1} of the files that shape training and model
    selection (train, dev, their answers and labels)."""
    names = list(task.split_files['train']) + list(task.split_files['dev'])
    names += list(getattr(task, 'answer_files', {}).values())
    names += [n for n in ('labels.json',)
              if os.path.isfile(os.path.join(task.data_dir, n))]
    return {n: files.file_digest(os.path.join(task.data_dir, n))
            for n in names}


def _checkpoint_digest(checkpoint):
    if not checkpoint:
        return None
    for path in (checkpoint, str(checkpoint) + '.index'):
        if os.path.isfile(path):
            return files.file_digest(path)
    return None


def run_settings(task, settings):
    """What ``settings.json`` records: the call's settings plus the
    contents that shape the result (data files, vocab, model config,
    checkpoint), so moving a file is safe and changing one is not."""
    out = dict(settings, task=task.name)
    for name, digest in _data_digests(task).items():
        out['sha1 of data_dir/' + name] = digest
    out['sha1 of vocab'] = files.file_digest(settings['vocab'])
    out['sha1 of checkpoint'] = _checkpoint_digest(settings['checkpoint'])
    out['model config'] = configs.load_config(settings['config'])
    return out


def _encode_splits(task, tokenizer, train, dev, maxlen, stride):
    """(train features, dev features, seconds spent encoding)."""
    t = time.time()
    train_feats = pipeline.encode_examples(task, train, tokenizer, maxlen,
                                           stride)
    dev_feats = pipeline.encode_examples(task, dev, tokenizer, maxlen, stride)
    return train_feats, dev_feats, time.time() - t


def _open_run(output_dir, task, settings, overwrite):
    """Move an old run aside (``overwrite``), then check the settings
    against the folder's record (see ``files.check_settings``)."""
    if overwrite:
        moved = files.move_aside(output_dir)
        if moved:
            print('overwrite: the previous run in %s moved to %s'
                  % (output_dir, moved))
    files.check_settings(output_dir, run_settings(task, settings),
                         safe=SAFE_SETTINGS, grow=GROW_SETTINGS,
                         run_files=RUN_FILES,
                         overwrite_hint='overwrite=True (--overwrite)')


def _resume(trainer, epoch_end, record, output_dir):
    """Restore the Trainer; bring the record to its step (evaluating an
    epoch end that was saved but not evaluated)."""
    start = trainer.restore()
    missing = resume_record(record, output_dir, start)
    per_epoch = record['steps_per_epoch']
    if missing == [start // per_epoch] and start % per_epoch == 0:
        print('epoch %d was saved but not evaluated: evaluating it now'
              % missing[0])
        epoch_end(start, trainer.checkpoints.saved.get('loss'))
    elif missing:
        raise files.RunFolderError(
            '%s has no dev scores for epoch(s) %s, completed by the '
            'checkpoint resumed (step %d): the best epoch cannot be chosen; '
            '%s' % (os.path.join(output_dir, 'metrics.json'), missing,
                    start, _FIX))
    best = epoch_end.best_path
    if record.get('best_epoch') is None and os.path.exists(best):
        os.remove(best)         # an epoch the record does not hold


def finetune(task, data_dir, config, vocab, output_dir, *, checkpoint=None,
             model='gau_alpha', epochs=3, maxlen=128, batch_size=32,
             learning_rate=1e-4, optimizer='adamw', weight_decay=0.01,
             lr_schedule=None, grad_accum_steps=1, dropout=0.1, stride=None,
             eval_batch_size=64, mixed_precision='fp32', xla=False,
             strategy='default', tpu=None, seed=42, deterministic=False,
             save_every=None, make_zip=False, overwrite=False, callbacks=()):
    """Fine-tune on CLUE task ``task`` and write its submission file(s).

    ``task`` is a task name (``clue.task_names()``, or 'cluewsc2020') and
    ``data_dir`` that task's folder as downloaded from CLUE; ``config`` a
    config JSON or a shipped config name; ``vocab`` a BERT-style vocab.txt;
    ``checkpoint`` the encoder to start from (None: random weights, sized to
    the vocab), ``model`` its builder name.  ``batch_size`` is global (at
    most the number of training rows); ``optimizer``, ``learning_rate``,
    ``weight_decay``, ``lr_schedule`` (bert4keras ``{step: factor}``) and
    ``grad_accum_steps`` go to ``optimizers.build_optimizer``;
    ``mixed_precision``, ``xla``, ``strategy``, ``tpu``, ``seed`` and
    ``deterministic`` to ``training.setup``.  ``stride``: cmrc2018's tokens
    between window starts (default maxlen // 2).  ``save_every``: also
    checkpoint every that many steps inside an epoch (a killed run loses at
    most that many; epoch ends are always checkpointed).  ``make_zip`` also
    packs the submission files as ``output_dir/clue_submit.zip``;
    ``overwrite`` starts afresh, moving an old run in ``output_dir`` aside;
    ``callbacks`` are extra ``f(step, loss)`` Trainer callbacks.  See the
    module doc for what the run folder guarantees.

    Returns the metrics record (also in ``output_dir/metrics.json``): sizes,
    per-epoch dev scores, ``best_dev`` / ``best_epoch``, the test files and
    ``args``, the settings of the call.  Raises VocabMismatchError when a
    checkpoint's config does not fit the vocab, ClueDataError on bad data,
    ``files.RunFolderError`` for a folder in use or holding a run with
    other settings.  Example::

        record = finetune('tnews', 'clue/tnews', 'gau_alpha_tiny',
                          'vocab.txt', 'runs/tnews', epochs=1, maxlen=64)
    """
    settings = dict(locals())      # the arguments of this call, for the record
    for name in ('callbacks', 'overwrite'):
        settings.pop(name)
    _check_settings(epochs, maxlen, batch_size, learning_rate, weight_decay,
                    eval_batch_size, save_every)
    setup = training.setup(mixed_precision, xla, strategy, tpu, seed,
                           deterministic)
    lock = files.run_lock(output_dir) if training.is_chief(setup.strategy) \
        else contextlib.nullcontext()
    with lock:
        return _finetune(settings, setup, overwrite, callbacks)


def _finetune(s, setup, overwrite, callbacks):
    """The body of ``finetune`` (``s``: its settings), run under the lock."""
    output_dir = s['output_dir']
    task = get_task(s['task'], s['data_dir'])
    tokenizer = encoding.load_tokenizer(s['vocab'])
    vocab_size = check_vocab(tokenizer, s['config'], s['checkpoint'],
                             s['vocab'])
    train, dev, test_sets = load_splits(task)
    _open_run(output_dir, task, s, overwrite)
    train_feats, dev_feats, seconds = _encode_splits(
        task, tokenizer, train, dev, s['maxlen'], s['stride'])
    batches = pipeline.dataset_fn(task, train_feats, s['batch_size'],
                                  s['seed'])
    per_epoch = pipeline.steps_per_epoch(len(train_feats), s['batch_size'])
    record = dict(task=task.name, metric=task.metric, train=len(train),
                  dev=len(dev), train_rows=len(train_feats),
                  steps_per_epoch=per_epoch, epochs=[], test={},
                  encode_seconds=seconds, args=s)
    with setup.strategy.scope():
        net = build_model(task, s['config'], vocab_size, s['checkpoint'],
                          s['model'], s['dropout'])
        opt = optimizers.build_optimizer(
            s['optimizer'], s['learning_rate'],
            weight_decay=s['weight_decay'], lr_schedule=s['lr_schedule'],
            grad_accum_steps=s['grad_accum_steps'])
    runs.write_run_files(output_dir, task, s['config'], s['vocab'],
                         model=s['model'], maxlen=s['maxlen'],
                         stride=s['stride'], dropout=s['dropout'],
                         head_size=64,             # build_head's default
                         do_lower_case=tokenizer._do_lower_case)
    epoch_end = EpochEnd(task, net, dev, dev_feats, output_dir,
                         s['eval_batch_size'], record)
    trainer = training.Trainer(
        net, heads.head_loss(task.head), opt, batches,
        per_epoch * s['epochs'], os.path.join(output_dir, 'train'),
        save_every=s['save_every'] or per_epoch,
        save_at=lambda step: step % per_epoch == 0, strategy=setup.strategy,
        progress_every=per_epoch,
        jit_compile=setup.jit_compile,
        callbacks=[epoch_end] + list(callbacks))
    _resume(trainer, epoch_end, record, output_dir)
    t = time.time()
    trainer.train()
    record['train_total_seconds'] = time.time() - t
    if os.path.exists(epoch_end.best_path):
        net.load_weights(epoch_end.best_path)
    names = predict_tests(task, net, tokenizer, output_dir, record,
                          s['maxlen'], s['stride'], s['eval_batch_size'],
                          test_sets)
    if s['make_zip']:
        record['zip'] = submission.make_zip(
            output_dir, names, os.path.join(output_dir, 'clue_submit.zip'))
    write_json(os.path.join(output_dir, 'metrics.json'), record)
    return record
