"""Import-time behaviour: Keras 2 selection and the Keras 3 guard."""
import os
import subprocess
import sys

import pytest


def run_python(code, **env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ('TF_KERAS', 'TF_USE_LEGACY_KERAS')}
    env.update(env_changes, TF_CPP_MIN_LOG_LEVEL='3')
    return subprocess.run([sys.executable, '-c', code], env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_selects_tf_keras_even_after_tensorflow():
    out = run_python('import tensorflow as tf\nimport gau_keras, os\n'
                     'print(tf.keras.layers.Layer.__module__)\n'
                     'print(os.environ["TF_KERAS"], '
                     'os.environ["TF_USE_LEGACY_KERAS"])')
    assert out.returncode == 0, out.stderr
    module, flags = out.stdout.strip().splitlines()[-2:]
    assert module.startswith('tf_keras')
    assert flags == '1 1'


def test_keras3_already_loaded_is_a_clear_error():
    out = run_python('import tensorflow as tf\n'
                     'tf.keras.layers.Layer\n'
                     'import gau_keras')
    assert out.returncode != 0
    assert 'ImportError: Keras 3 is already in use' in out.stderr


@pytest.mark.parametrize('var', ['TF_KERAS', 'TF_USE_LEGACY_KERAS'])
def test_conflicting_environment_is_a_clear_error(var):
    out = run_python('import gau_keras', **{var: '0'})
    assert out.returncode != 0
    assert var in out.stderr.splitlines()[-1]
