"""Every gau_keras name that README.md and docs/*.md mention exists.

Checked: dotted names ``gau_keras.X.Y`` (import the longest module prefix,
getattr the rest), and the lists of names that follow a module file, as in
"Each formula is a function of `gau_keras/flash.py`: `a`, `b` / `c`."
"""
import glob
import importlib
import os
import re

import gau_keras  # noqa: F401
import pytest

from conftest import ROOT

DOCS = [os.path.join(ROOT, 'README.md')] + sorted(
    glob.glob(os.path.join(ROOT, 'docs', '*.md')))

DOTTED = re.compile(r'(?<![\w/.])gau_keras(?:\.[A-Za-z_]\w*)+')
FILE_LIST = re.compile(r'`gau_keras/(\w+)\.py`:((?:\s*(?:,|/|and)?\s*'
                       r'`[A-Za-z_]\w*`)+)')


def resolve(dotted):
    """The object named by ``dotted`` ('gau_keras.layers.Embedding')."""
    parts = dotted.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for j, attr in enumerate(parts[i:]):
            if not hasattr(obj, attr):
                raise AttributeError('%s: %r has no attribute %r'
                                     % (dotted, '.'.join(parts[:i + j]),
                                        attr))
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def mentioned_names(text):
    """(name, line) of every gau_keras name in a Markdown text."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        found += [(m.group(0), lineno) for m in DOTTED.finditer(line)]
    for m in FILE_LIST.finditer(text):
        lineno = text[:m.start()].count('\n') + 1
        for name in re.findall(r'`(\w+)`', m.group(2)):
            found.append(('gau_keras.%s.%s' % (m.group(1), name), lineno))
    return found


def test_the_scanner_finds_names():
    text = ('Use `gau_keras.layers.custom_objects()` or gau_keras.flash.\n'
            'a function of `gau_keras/flash.py`:\n  `split_chunks` / '
            '`merge_chunks`, `nope_x`.\nnot my_gau_keras.x nor '
            'docs/gau_keras.md')
    names = [n for n, _ in mentioned_names(text)]
    assert names == ['gau_keras.layers.custom_objects', 'gau_keras.flash',
                     'gau_keras.flash.split_chunks',
                     'gau_keras.flash.merge_chunks', 'gau_keras.flash.nope_x']
    resolve('gau_keras.flash.split_chunks')
    with pytest.raises(AttributeError, match='nope_x'):
        resolve('gau_keras.flash.nope_x')


@pytest.mark.parametrize('path', DOCS, ids=os.path.basename)
def test_every_mentioned_name_exists(path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    missing = []
    for name, lineno in mentioned_names(text):
        try:
            resolve(name)
        except (AttributeError, ImportError) as e:
            missing.append('%s:%d: %s (%s)' % (os.path.basename(path),
                                                lineno, name, e))
    assert not missing, '\n'.join(missing)
