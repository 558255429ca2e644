"""The wheel: what it holds, and the installed package run outside the
checkout.

``wheel`` is built once per module from a copy of the sources (so the
checkout gets no build/ folder whose stale files could end up in it).
``installed_python`` installs it with ``--no-deps`` into a throwaway venv
and returns that venv's python.  The venv sees the outer environment's
packages (TensorFlow, tf-keras, bert4keras) through a .pth line placed
after its own site-packages, so its own gau_keras (from the wheel) wins.
Each test runs it from an empty working directory with no PYTHONPATH: the
shipped presets are found by name, and ``clue.finetune`` and ``pretrain``
run end to end.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import ROOT
from test_layout import bench_named, code_problems

SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'requirements.txt',
           'gau_keras')


def run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, timeout=600,
                         **kwargs)
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    return out


def build_wheel(folder):
    """A wheel of a copy of the checkout's sources, built in ``folder``."""
    src = folder / 'src'
    src.mkdir()
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, str(src / name),
                            ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy(path, str(src / name))
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--no-index', '-q', '-w',
         str(folder / 'dist'), str(src)])
    (path,) = glob.glob(str(folder / 'dist' / 'gau_keras-*.whl'))
    return path


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The path of a wheel built once for this module."""
    return build_wheel(tmp_path_factory.mktemp('wheel'))


@pytest.fixture(scope='module')
def installed_python(wheel, tmp_path_factory):
    """``installed_python(code, cwd)`` runs ``code`` with the python of a
    venv that has the wheel installed; returns its stdout.  ``.venv`` is
    the venv's folder."""
    venv = tmp_path_factory.mktemp('installed') / 'venv'
    run([sys.executable, '-m', 'venv', '--system-site-packages',
         '--without-pip', str(venv)])
    python = str(venv / 'bin' / 'python')
    run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q',
         '--no-deps', '--no-index', wheel])
    site = run([python, '-c', 'import sysconfig; '
                'print(sysconfig.get_paths()["purelib"])']).stdout.strip()
    with open(os.path.join(site, 'zz_outer_env.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'

    def run_code(code, cwd):
        return run([python, '-c', code], cwd=str(cwd), env=env).stdout
    run_code.venv = venv
    return run_code


# ---- what the wheel holds ------------------------------------------------

@pytest.mark.slow
def test_the_wheel_ships_presets_and_no_benchmark_code(wheel):
    """Only gau_keras/ (and its dist-info): every preset, no test or
    configs/ folder, no module named or written like measuring code, and
    no code that reaches outside the package."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        sources = {n: z.read(n).decode('utf-8') for n in names
                   if n.endswith('.py')}
    shipped = sorted(os.path.basename(p) for p in glob.glob(
        os.path.join(ROOT, 'gau_keras', 'presets', '*.json')))
    assert shipped and sorted(
        os.path.basename(n) for n in names
        if re.match(r'gau_keras/presets/[^/]+\.json$', n)) == shipped
    code = [n for n in names if not n.startswith('gau_keras-')]
    assert all(n.startswith('gau_keras/') for n in code), code
    assert 'gau_keras/__init__.py' in sources
    assert bench_named(code) == []
    for marker in ('class StockGAUAlpha', 'def run_isolated',
                   'def run_speed', 'def op_times', 'def equal_param_configs'):
        assert not [n for n, text in sources.items() if marker in text], \
            marker
    problems = ['%s %s' % (n, p) for n, text in sources.items()
                for p in code_problems(text, n.count('/'))]
    assert not problems, '\n'.join(problems)


# ---- the installed wheel, run outside the checkout ------------------------

PRESET = '''
import gau_keras
print(gau_keras.__file__)
from gau_keras.configs import preset_names
print(",".join(preset_names()))
t = gau_keras.build_transformer_model('flash_tiny', model='flash',
                                      return_keras_model=False)
print(t.model.count_params(), t.chunk_size)
try:
    gau_keras.build_transformer_model('flash_tny', model='flash')
except gau_keras.configs.ConfigError as e:
    print("error:", e)
'''


@pytest.mark.slow
def test_installed_wheel_builds_a_preset_outside_the_checkout(
        installed_python, tmp_path):
    """The shipped presets are found by name from the installed package;
    a misspelt name is an error that suggests the right one."""
    lines = installed_python(PRESET, tmp_path).strip().splitlines()
    module, presets, built, error = lines[-4:]
    assert module.startswith(str(installed_python.venv)), module
    assert 'flash_tiny' in presets.split(',')
    assert built.split()[1] == '64'          # chunk_size of flash_tiny.json
    assert error.startswith('error:') and 'flash_tiny' in error


def write_lines(path, rows):
    with open(path, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + '\n')


def tiny_tnews(folder):
    """A tnews-format task folder (2 classes) and a char vocab for it."""
    data = folder / 'tnews'
    data.mkdir()
    labels = [('100', 'news_sports'), ('101', 'news_culture')]
    texts = {'100': ['女排联赛决赛今晚开打', '国足主帅宣布名单', '中超联赛第三轮',
                     '篮球比赛加时取胜'],
             '101': ['故宫举办书画特展', '博物馆新展品亮相', '古籍修复师的一天',
                     '诗歌朗诵会在京举行']}
    write_lines(data / 'labels.json', [
        {'label': k, 'label_desc': d} for k, d in labels])
    rows = [{'label': k, 'label_desc': dict(labels)[k], 'sentence': t,
             'keywords': ''} for k in texts for t in texts[k]]
    write_lines(data / 'train.json', rows)
    write_lines(data / 'dev.json', rows[::3])
    tests = ['奥运会开幕式彩排', '演唱会门票售罄', '书画展开幕']
    write_lines(data / 'test.json', [{'id': i, 'sentence': t, 'keywords': ''}
                                     for i, t in enumerate(tests)])
    chars = sorted({c for r in rows for c in r['sentence']} |
                   {c for t in tests for c in t})
    vocab = folder / 'vocab.txt'
    vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
                               + chars) + '\n', encoding='utf-8')
    return str(data), str(vocab), len(tests)


FINETUNE = '''
import json
import gau_keras
from gau_keras import clue
data, vocab, out = {args}
record = clue.finetune('tnews', data, 'gau_alpha_tiny', vocab, out,
                       epochs=1, maxlen=32, batch_size=4, seed=0)
print(json.dumps(dict(module=gau_keras.__file__, record=record)))
'''


@pytest.mark.slow
def test_installed_wheel_fine_tunes_outside_the_checkout(installed_python,
                                                        tmp_path):
    work = tmp_path / 'elsewhere'
    work.mkdir()
    data, vocab, n_test = tiny_tnews(tmp_path)
    out = tmp_path / 'run'
    code = FINETUNE.format(args=', '.join(repr(x) for x in (
        data, vocab, str(out))))
    last = installed_python(code, work).strip().splitlines()[-1]
    result = json.loads(last)
    assert result['module'].startswith(str(installed_python.venv)), \
        result['module']
    assert not result['module'].startswith(ROOT + os.sep)
    with open(out / 'metrics.json', encoding='utf-8') as f:
        assert json.load(f) == result['record']
    with open(out / 'tnews11_predict.json', encoding='utf-8') as f:
        predictions = [json.loads(line) for line in f if line.strip()]
    assert sorted(p['id'] for p in predictions) == list(range(n_test))
    assert {p['label'] for p in predictions} <= {'100', '101'}
    assert result['record']['best_epoch'] == 1


PRETRAIN = '''
import json
import gau_keras
from gau_keras.pretraining import pretrain
corpus, vocab, out = {args}
summary = pretrain(out, corpus=[corpus], vocab=vocab, steps=4,
                   batch_size=2, maxlen=32, save_every=2, heldout_batches=1,
                   log_every=2, seed=0)
print(json.dumps(dict(module=gau_keras.__file__, summary=summary)))
'''


@pytest.mark.slow
def test_installed_wheel_pretrains_outside_the_checkout(installed_python,
                                                       tmp_path):
    """gau_keras.pretraining.pretrain from the installed wheel: a 4-step
    MLM run on a small corpus ends with the release-layout export."""
    work = tmp_path / 'elsewhere'
    work.mkdir()
    data, vocab, _ = tiny_tnews(tmp_path)
    with open(os.path.join(data, 'train.json'), encoding='utf-8') as f:
        texts = [json.loads(line)['sentence'] for line in f if line.strip()]
    corpus = tmp_path / 'corpus.txt'
    corpus.write_text('\n'.join(t + '，' + t for t in texts) + '\n',
                      encoding='utf-8')
    out = tmp_path / 'pretrain'
    code = PRETRAIN.format(args=', '.join(repr(x) for x in (
        str(corpus), vocab, str(out))))
    last = installed_python(code, work).strip().splitlines()[-1]
    result = json.loads(last)
    assert result['module'].startswith(str(installed_python.venv)), \
        result['module']
    with open(out / 'pretrain.json', encoding='utf-8') as f:
        assert json.load(f) == result['summary']
    export = out / 'export'
    for name in ('bert_config.json', 'vocab.txt', 'bert_model.ckpt.index'):
        assert (export / name).exists(), name
    with open(export / 'vocab.txt', encoding='utf-8') as f:
        assert f.read() == open(vocab, encoding='utf-8').read()
