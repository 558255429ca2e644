"""The library package stands alone: gau_keras/ holds no measuring code and
reaches nothing outside itself; the wheel ships the library and its presets
only.

* Code under gau_keras/ never refers to the checkout: no 'scripts' / 'tests'
  paths, no ROOT / CHECKOUT names, no ``os.path.dirname`` chain over
  ``__file__`` that climbs above the package, no module loaded from a file
  path (``importlib`` file loaders, ``runpy``, ``sys.path`` edits), no
  subprocess.  Docstrings and comments may name a script for the reader
  (e.g. the pretraining package's docstring names ``scripts/pretrain.py``,
  its command line): text creates no dependency, so only code is checked.
* No module is named like a benchmark (the tools live in scripts/bench/).
* The wheel's contents are checked with these scanners in test_wheel.py.
"""
import ast
import os
import re
import subprocess

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, 'gau_keras')

#: Module or package names that mean measuring code.
BENCH_NAME = re.compile(r'bench|profil|stock', re.I)
#: Identifiers that name the checkout.
ROOT_NAME = re.compile(r'(^|_)(ROOT|CHECKOUT)$')
#: Calls that load code from a file path or start processes.
FILE_LOADERS = {'spec_from_file_location', 'SourceFileLoader',
                'SourcelessFileLoader', 'load_source', 'run_path',
                'run_module'}
FORBIDDEN_MODULES = {'subprocess', 'runpy', 'imp', 'multiprocessing'}
PROCESS_CALLS = {'system', 'popen', 'execv', 'execve', 'execvp', 'spawnv',
                 'spawnl', 'fork'}


def docstring_nodes(tree):
    """The string constants that are docstrings (module, class, def)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(
                    first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                out.add(id(first.value))
    return out


def dirname_depth(node):
    """How many ``dirname`` calls wrap ``__file__`` in ``node`` (0 if the
    innermost argument is not ``__file__``)."""
    depth = 0
    while isinstance(node, ast.Call) and node.args:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(
            func, 'id', '')
        if name == 'dirname':
            depth += 1
        elif name not in ('abspath', 'realpath', 'normpath', 'fspath'):
            return 0
        node = node.args[0]
    return depth if isinstance(node, ast.Name) and node.id == '__file__' \
        else 0


def _path_string(value):
    """True for 'scripts', 'tests', '..' and paths through them."""
    parts = re.split(r'[\\/]', value)
    return value in ('scripts', 'tests', '..') or (
        len(parts) > 1 and bool({'scripts', 'tests', '..'} &
                                set(parts[:-1])))


def code_problems(source, levels):
    """What in ``source`` (a module ``levels`` folders below gau_keras/,
    1 for gau_keras/x.py) reaches outside the package: a list of
    'line N: what'."""
    tree = ast.parse(source)
    docs, found = docstring_nodes(tree), []

    def bad(node, what):
        found.append('line %d: %s' % (node.lineno, what))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs and _path_string(node.value):
            bad(node, 'path %r' % node.value)
        elif isinstance(node, ast.Name) and ROOT_NAME.search(node.id):
            bad(node, 'name %s' % node.id)
        elif isinstance(node, ast.Attribute) and (
                ROOT_NAME.search(node.attr) or node.attr in FILE_LOADERS):
            bad(node, 'attribute %s' % node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [
                getattr(node, 'module', None) or '']
            hit = [n for n in names if n.split('.')[0] in FORBIDDEN_MODULES
                   or n in FILE_LOADERS]
            if hit:
                bad(node, 'import %s' % ', '.join(hit))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                owner = getattr(func.value, 'id', '') or getattr(
                    func.value, 'attr', '')
                if owner == 'os' and func.attr in PROCESS_CALLS:
                    bad(node, 'os.%s' % func.attr)
                if owner == 'path' and func.attr in ('insert', 'append',
                                                     'extend'):
                    bad(node, 'sys.path.%s' % func.attr)
            if dirname_depth(node) > levels:
                bad(node, 'dirname of __file__ %d times (above gau_keras/)'
                    % dirname_depth(node))
    return sorted(set(found), key=lambda s: int(s.split()[1][:-1]))


def package_files(top):
    """(path relative to ``top``'s parent, absolute path) of every file
    under ``top``, caches left out."""
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        for name in files:
            if not name.endswith(('.pyc', '.pyo')):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, os.path.dirname(top)), path


def text_problems(relpath, text):
    """Problems of one file of the package: code for .py, any mention of
    the checkout's scripts/ or tests/ folders for the rest."""
    if relpath.endswith('.py'):
        return code_problems(text, relpath.count(os.sep))
    return ['mentions %s' % w for w in ('scripts/', 'tests/') if w in text]


# --------------------------------------------------------------------------
# (a) the scanner, and the package
# --------------------------------------------------------------------------

def test_the_scanner_finds_every_kind_of_reach_outside():
    source = '''"""Docstring naming scripts/pretrain.py: allowed."""
import os, subprocess
import importlib.util
from runpy import run_path
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
cmd = [os.path.join(ROOT, 'scripts', 'finetune_clue.py')]
fixtures = os.path.join(HERE, '..', 'tests/fixtures')
spec = importlib.util.spec_from_file_location('x', 'x.py')
os.system('ls')
sys.path.insert(0, HERE)
'''
    problems = '\n'.join(code_problems(source, levels=1))
    for what in ('line 2: import subprocess',
                 'line 4: import run_path, runpy', "line 8: path '..'",
                 'line 5: name ROOT', 'line 5: dirname of __file__ 2',
                 "line 7: path 'scripts'", "line 8: path 'tests/fixtures'",
                 'line 9: attribute spec_from_file_location',
                 'line 10: os.system', 'line 11: sys.path.insert'):
        assert what in problems, (what, problems)
    assert 'line 1:' not in problems and 'line 6:' not in problems
    # two dirnames are the package itself one level down (gau_keras/x/y.py)
    assert code_problems(source.splitlines()[4], levels=2) == [
        'line 1: name ROOT']


#: A commit whose gau_keras/ held measuring code that reached the checkout.
MEASURING_COMMIT = '0157cac'


def test_the_scan_fails_measuring_code_inside_the_package():
    """gau_keras/benchmarks.py and gau_keras/clue/bench.py of
    MEASURING_COMMIT import subprocess, build ROOT paths and read tests/
    fixtures: the scan reports each (needs the git history)."""
    bad = {}
    for path, levels in (('gau_keras/benchmarks.py', 1),
                         ('gau_keras/clue/bench.py', 2)):
        out = subprocess.run(['git', 'show', MEASURING_COMMIT + ':' + path],
                             cwd=ROOT,
                             capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip('no git history with %s' % path)
        bad[path] = code_problems(out.stdout, levels)
    assert any('import subprocess' in p
               for p in bad['gau_keras/benchmarks.py'])
    assert any('name ROOT' in p for p in bad['gau_keras/benchmarks.py'])
    assert any("path 'tests'" in p for p in bad['gau_keras/clue/bench.py'])


def test_no_file_of_the_package_reaches_outside_it():
    problems = []
    for relpath, path in package_files(PACKAGE):
        try:
            with open(path, encoding='utf-8') as f:
                text = f.read()
        except UnicodeDecodeError:
            continue
        problems += ['%s %s' % (relpath, p)
                     for p in text_problems(relpath, text)]
    assert not problems, '\n'.join(problems)


# --------------------------------------------------------------------------
# (b) no benchmark modules in the package
# --------------------------------------------------------------------------

def bench_named(relpaths):
    """The paths whose module or package name is a benchmark's."""
    out = []
    for relpath in relpaths:
        parts = relpath.replace('\\', '/').split('/')
        names = parts[:-1] + [os.path.splitext(parts[-1])[0]]
        if any(BENCH_NAME.search(n) for n in names):
            out.append(relpath)
    return out


def test_no_module_is_named_like_a_benchmark():
    assert bench_named(['gau_keras/benchmarks.py', 'gau_keras/clue/bench.py',
                        'gau_keras/stock.py', 'gau_keras/profiling.py',
                        'gau_keras/x/stock_gau/__init__.py']) == [
        'gau_keras/benchmarks.py', 'gau_keras/clue/bench.py',
        'gau_keras/stock.py', 'gau_keras/profiling.py',
        'gau_keras/x/stock_gau/__init__.py']
    assert bench_named(['gau_keras/layers.py', 'gau_keras/flash.py']) == []
    names = [r for r, _ in package_files(PACKAGE) if r.endswith('.py')]
    assert 'gau_keras/__init__.py' in names
    assert bench_named(names) == []
