"""Writing, reading back and zipping CLUE submission files.

Two layouts: JSON lines ``{"id": …, "label": …}`` (classification, c3,
cluener) and one JSON object (chid: blank → candidate index, cmrc2018:
question id → answer text).  Ids are written exactly as the test file has
them (int or string).  Every file is written whole or not at all
(``gau_keras.files.atomic_write``): a kill while a rerun rewrites a
submission leaves the previous complete file.

Example::

    write_json_lines('out/afqmc_predict.json', [{'id': 3, 'label': '1'}])
    read_submission('out/afqmc_predict.json')      # {3: '1'}
    make_zip('out', ['afqmc_predict.json'], 'out/submit.zip')
"""
import collections
import json
import os
import zipfile

from gau_keras import files
from gau_keras.clue.readers import ClueDataError


def _parent(path):
    folder = os.path.dirname(os.path.abspath(str(path)))
    os.makedirs(folder, exist_ok=True)


def write_json_lines(path, rows):
    """One JSON object a line (UTF-8, no ASCII escaping)."""
    _parent(path)
    with files.atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + '\n')
    return str(path)


def write_json_object(path, mapping):
    """One JSON object (UTF-8, indented)."""
    _parent(path)
    with files.atomic_write(path) as f:
        json.dump(mapping, f, ensure_ascii=False, indent=2)
        f.write('\n')
    return str(path)


def check_unique_ids(examples, path):
    """A test file must not list an id twice (each is predicted once)."""
    counts = collections.Counter(_key(e.uid) for e in examples)
    twice = [uid for uid, n in counts.items() if n > 1]
    if twice:
        raise ClueDataError('test ids occur more than once: %s'
                            % twice[:5], path=path, field='id')


def _key(uid):
    return json.dumps(uid, ensure_ascii=False)


def read_submission(path):
    """{id: label} of a submission file in either layout; an id given
    twice raises ClueDataError."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError:
        obj = None
    except _RepeatedKey as e:
        raise ClueDataError('id %r predicted twice' % e.args[0], path,
                            field='id') from None
    if isinstance(obj, dict) and not ('id' in obj and 'label' in obj):
        return obj
    out = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row['id'] in out:
            raise ClueDataError('id %r predicted twice' % row['id'], path,
                                line_no, 'id')
        out[row['id']] = row['label']
    return out


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs):
    """A JSON object as a dict; a key given twice raises ``_RepeatedKey``
    (plain ``json.loads`` would keep the last value silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def check_submission(path, examples):
    """Every test item predicted exactly once (no extra, none missing)."""
    predicted = read_submission(path)
    wanted = [e.uid for e in examples]
    missing = [u for u in wanted if u not in predicted]
    extra = set(predicted) - set(wanted)
    if missing or extra or len(predicted) != len(wanted):
        raise ClueDataError('submission does not predict each test item '
                            'once: missing %s, extra %s' % (
                                missing[:5], sorted(map(str, extra))[:5]),
                            path=path)
    return predicted


def make_zip(folder, names, zip_path):
    """Packs ``folder/name`` for each name at the root of ``zip_path`` (the
    layout CLUE's upload expects)."""
    _parent(zip_path)
    with files.atomic_write(zip_path, 'wb') as f, \
            zipfile.ZipFile(f, 'w', zipfile.ZIP_DEFLATED) as z:
        for name in names:
            z.write(os.path.join(str(folder), name), arcname=name)
    return str(zip_path)
