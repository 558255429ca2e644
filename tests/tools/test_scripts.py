"""The user-facing scripts run end to end (small settings)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def run_script(args, tmp_path):
    out = subprocess.run([sys.executable] + args, cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_demo_round_trips_a_release_layout_checkpoint(tmp_path):
    out = run_script(['scripts/demo.py', '--quick', '--config',
                      'configs/gau_alpha_tiny.json', '--out',
                      str(tmp_path)], tmp_path)
    assert 'GAU_alpha/encoder/layer_0/gau/i_dense/kernel' in out
    assert 'max |original - reloaded| = 0' in out
    assert os.path.exists(tmp_path / 'bert_model.ckpt.index')


def _fake_run(folder, best_dev, predictions):
    os.makedirs(folder)
    with open(os.path.join(folder, 'metrics.json'), 'w') as f:
        json.dump({'metric': 'accuracy', 'best_dev': best_dev,
                   'test': {'test.json': {'file': 'pred.json'}}}, f)
    with open(os.path.join(folder, 'pred.json'), 'w') as f:
        for i, label in enumerate(predictions):
            f.write(json.dumps({'id': i, 'label': label}) + '\n')


def test_score_runs_counts_test_accuracy_and_spread(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    import score_runs
    data = tmp_path / 'task'
    os.makedirs(data)
    with open(data / 'test_labels.json', 'w') as f:
        for i, label in enumerate(['1', '0', '1', '1']):
            f.write(json.dumps({'id': i, 'label': label}) + '\n')
    _fake_run(str(tmp_path / 'a_0'), 0.5, ['1', '0', '1', '1'])  # 4/4
    _fake_run(str(tmp_path / 'a_1'), 0.7, ['0', '0', '1', '1'])  # 3/4
    assert score_runs.score_run(str(data), str(tmp_path / 'a_1')) == (
        0.7, 0.75)
    out = run_script(['scripts/score_runs.py', str(data),
                      'a=%s' % (tmp_path / 'a_*')], tmp_path)
    # mean and population std of dev (0.5, 0.7) and test (1.0, 0.75)
    assert '| a | 2 | 0.6000 ± 0.1000 | 0.8750 ± 0.1250 |' in out
    _fake_run(str(tmp_path / 'b_0'), 0.5, ['1', '0'])
    try:
        score_runs.score_run(str(data), str(tmp_path / 'b_0'))
    except ValueError as e:
        assert 'b_0: 2 test ids without a prediction' in str(e)
    else:
        raise AssertionError('missing predictions were not reported')
