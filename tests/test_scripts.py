"""The user-facing scripts run end to end (small settings)."""
import os
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
    out = run_script(['scripts/demo.py', '--quick', '--config',
                      'configs/gau_alpha_tiny.json', '--out',
                      str(tmp_path)], tmp_path)
    assert 'GAU_alpha/encoder/layer_0/gau/i_dense/kernel' in out
    assert 'max |original - reloaded| = 0' in out
    assert os.path.exists(tmp_path / 'bert_model.ckpt.index')
