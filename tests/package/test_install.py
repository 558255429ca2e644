"""A non-editable install works outside the checkout: a wheel built from
the sources, installed into a throwaway venv, reaches the shipped configs
by name.

The throwaway venv sees the outer environment's packages (TensorFlow,
tf-keras, bert4keras) through a .pth line placed after its own
site-packages, so its own gau_keras (from the wheel) wins; the test runs
it from an empty working directory, away from the checkout.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'requirements.txt',
           'gau_keras')


def run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, timeout=300,
                         **kwargs)
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    return out


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """A wheel built (no build isolation, no network) from a copy of the
    sources, so the checkout gets no build/ or egg-info folders."""
    src = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, str(src / name),
                            ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy(path, str(src / name))
    out_dir = tmp_path_factory.mktemp('wheel')
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--no-index', '-q', '-w', str(out_dir),
         str(src)])
    (path,) = glob.glob(str(out_dir / 'gau_keras-*.whl'))
    return path


def test_wheel_ships_the_presets(wheel):
    shipped = sorted(os.path.basename(p) for p in glob.glob(
        os.path.join(ROOT, 'gau_keras', 'presets', '*.json')))
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(os.path.basename(n) for n in names
                  if n.startswith('gau_keras/presets/')) == shipped
    assert not any(n.startswith(('tests/', 'configs/')) for n in names)


def test_installed_wheel_builds_a_preset_outside_the_checkout(wheel,
                                                             tmp_path):
    venv = tmp_path / 'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
    python = str(venv / 'bin' / 'python')
    run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q',
         '--no-deps', '--no-index', wheel])
    site = run([python, '-c', 'import sysconfig; '
                'print(sysconfig.get_paths()["purelib"])']).stdout.strip()
    with open(os.path.join(site, 'zz_outer_env.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    work = tmp_path / 'elsewhere'
    work.mkdir()
    code = (
        'import gau_keras\n'
        'print(gau_keras.__file__)\n'
        'from gau_keras.configs import preset_names\n'
        'print(",".join(preset_names()))\n'
        "t = gau_keras.build_transformer_model('flash_tiny', model='flash', "
        'return_keras_model=False)\n'
        'print(t.model.count_params(), t.chunk_size)\n'
        'try:\n'
        "    gau_keras.build_transformer_model('flash_tny', model='flash')\n"
        'except gau_keras.configs.ConfigError as e:\n'
        '    print("error:", e)\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    lines = run([python, '-c', code], cwd=str(work),
                env=env).stdout.strip().splitlines()
    module, presets, built, error = lines[-4:]
    assert module.startswith(str(venv)), module
    assert 'flash_tiny' in presets.split(',')
    assert built.split()[1] == '64'          # chunk_size of flash_tiny.json
    assert error.startswith('error:') and 'flash_tiny' in error
