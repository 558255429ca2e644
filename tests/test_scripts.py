"""The user-facing scripts run end to end (small settings)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(args, tmp_path):
    out = subprocess.run([sys.executable] + args, cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_demo_round_trips_a_release_layout_checkpoint(tmp_path):
    out = run_script(['scripts/demo.py', '--config',
                      'configs/gau_alpha_tiny.json', '--out',
                      str(tmp_path)], tmp_path)
    assert 'GAU_alpha/encoder/layer_0/gau/i_dense/kernel' in out
    assert 'max |original - reloaded| = 0' in out
    assert os.path.exists(tmp_path / 'bert_model.ckpt.index')


def test_train_sentiment_runs_and_resumes(tmp_path):
    args = ['scripts/train_sentiment.py', '--steps', '4', '--save_every',
            '2', '--batch_size', '8', '--maxlen', '32', '--eval_size', '16',
            '--workdir', str(tmp_path)]
    first = run_script(args, tmp_path)
    assert re.search(r'held-out accuracy on 16 reviews: [01]\.\d+', first)
    second = run_script(args[:2] + ['6'] + args[3:], tmp_path)  # 6 steps
    assert 'resuming from step 4 of 6' in second
