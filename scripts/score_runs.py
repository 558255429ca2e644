"""Scores finetune_clue.py runs of an accuracy task: best dev accuracy (from
each run's metrics.json) and test accuracy of its submission file against
``DATA_DIR/test_labels.json``; mean ± population std per group of runs.

    python scripts/score_runs.py runs/sentiment random=runs/ft_random_* \\
        pretrained=runs/ft_pre_*

Each group is ``name=glob``; a run is a finetune_clue.py ``--output_dir``.
"""
import argparse
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import gau_keras  # noqa: E402,F401  (selects Keras 2 before TensorFlow)
from gau_keras.clue import metrics, submission  # noqa: E402


def score_run(data_dir, run_dir):
    """(best dev accuracy, test accuracy) of one finetune_clue.py run."""
    path = os.path.join(run_dir, 'metrics.json')
    if not os.path.exists(path):
        raise FileNotFoundError('%s: no metrics.json (not a finished '
                                'finetune_clue.py run)' % run_dir)
    with open(path, encoding='utf-8') as f:
        run = json.load(f)
    if run.get('metric') != 'accuracy':
        raise ValueError('%s: metric is %r, this script scores accuracy'
                         % (path, run.get('metric')))
    truth = submission.read_submission(os.path.join(data_dir,
                                                    'test_labels.json'))
    predicted = submission.read_submission(os.path.join(
        run_dir, run['test']['test.json']['file']))
    missing = sorted(set(truth) - set(predicted))
    if missing:
        raise ValueError('%s: %d test ids without a prediction (first: %r)'
                         % (run_dir, len(missing), missing[0]))
    ids = sorted(truth)
    test = metrics.accuracy([predicted[i] for i in ids],
                            [truth[i] for i in ids])
    return float(run['best_dev']), float(test)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('data_dir', help='the task folder (with test_labels.json)')
    p.add_argument('groups', nargs='+', metavar='NAME=GLOB')
    args = p.parse_args(argv)
    print('| runs | n | dev accuracy (best epoch), mean ± std | test accuracy, '
          'mean ± std | per run dev / test |')
    print('|---|---|---|---|---|')
    for group in args.groups:
        name, _, pattern = group.partition('=')
        runs = sorted(glob.glob(pattern))
        if not pattern or not runs:
            p.error('%r: no run folders match %r' % (group, pattern))
        scores = [score_run(args.data_dir, r) for r in runs]
        dev, test = [s[0] for s in scores], [s[1] for s in scores]
        print('| %s | %d | %.4f ± %.4f | %.4f ± %.4f | %s |' % (
            name, len(runs), statistics.mean(dev), statistics.pstdev(dev),
            statistics.mean(test), statistics.pstdev(test),
            ', '.join('%.4f/%.4f' % s for s in scores)))


if __name__ == '__main__':
    main()
