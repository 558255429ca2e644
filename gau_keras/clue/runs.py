"""The self-contained fine-tuning run folder: everything needed to rebuild
a fine-tuned CLUE model without its data folder.

A run folder holds (besides checkpoints, metrics and submission files)::

    run.json          task, labels, model name, maxlen, stride, head settings
    config.json       the model config as used (vocab_size filled in)
    vocab.txt         a copy of the vocab
    best.weights.h5   the best dev epoch's weights (written while training)

``run.json`` is ``{"format": "gau_keras.clue.run", "version": 1, "task",
"labels" (label strings in id order, or null), "model", "config", "vocab",
"do_lower_case", "maxlen", "stride", "head": {"dropout", "head_size"},
"weights", "task_settings": {"head": head kind, ...}}``.

Example::

    from gau_keras.clue import runs
    runs.write_run_files('out/tnews', task, 'gau_alpha_tiny', 'vocab.txt',
                         model='gau_alpha', maxlen=128, stride=None,
                         dropout=0.1, head_size=64)
    record = runs.read_run('out/tnews')      # validated dict
    record['labels'], runs.run_file(record, 'weights')
"""
import os

from gau_keras.clue.readers import ClueDataError, read_json
from gau_keras.files import copy_file, write_json

FORMAT = 'gau_keras.clue.run'
VERSION = 1
RUN_FILE = 'run.json'
CONFIG_FILE = 'config.json'
VOCAB_FILE = 'vocab.txt'
WEIGHTS_FILE = 'best.weights.h5'
#: keys every run.json must have
REQUIRED = ('format', 'version', 'task', 'labels', 'model', 'config',
            'vocab', 'do_lower_case', 'maxlen', 'stride', 'head', 'weights',
            'task_settings')


def task_settings(task):
    """What a task needs besides its labels to rebuild its head and decode:
    the head kind, and the number of choices for c3."""
    settings = {'head': task.head}
    if getattr(task, 'num_choices', None) is not None:
        settings['num_choices'] = int(task.num_choices)
    return settings


def model_config(config, vocab_size):
    """The config dict of ``config`` (a dict, a JSON file or a preset name)
    with ``vocab_size`` set: the model is built with the vocab's size (a
    checkpoint's config must already agree with it)."""
    if not isinstance(config, dict):
        from gau_keras.configs import resolve_config_path
        config = read_json(resolve_config_path(config))
    config = dict(config)
    config['vocab_size'] = int(vocab_size)
    return config


def write_run_files(output_dir, task, config, vocab_path, *, model, maxlen,
                    stride, dropout, head_size, do_lower_case=True):
    """Writes run.json, config.json and vocab.txt into ``output_dir``
    (atomically); returns the run record.  ``task`` is the bound
    :class:`gau_keras.clue.Task` (its labels are stored, so tnews / iflytek
    / cluener need no data folder later); ``config`` a dict, JSON file or
    preset name."""
    from gau_keras.tokenizers import load_vocab
    os.makedirs(output_dir, exist_ok=True)
    vocab_size = len(load_vocab(str(vocab_path)))
    labels = task.labels
    record = {
        'format': FORMAT, 'version': VERSION, 'task': task.name,
        'labels': None if labels is None else [str(l) for l in labels],
        'model': str(model), 'config': CONFIG_FILE, 'vocab': VOCAB_FILE,
        'do_lower_case': bool(do_lower_case), 'maxlen': int(maxlen),
        'stride': None if stride is None else int(stride),
        'head': {'dropout': float(dropout), 'head_size': int(head_size)},
        'weights': WEIGHTS_FILE, 'task_settings': task_settings(task)}
    copy_file(str(vocab_path), os.path.join(output_dir, VOCAB_FILE))
    write_json(os.path.join(output_dir, CONFIG_FILE),
               model_config(config, vocab_size))
    write_json(os.path.join(output_dir, RUN_FILE), record)
    return record


def run_file(record, key):
    """Absolute path of the file named by ``record[key]`` ('config',
    'vocab' or 'weights')."""
    return os.path.join(record['run_dir'], record[key])


def read_run(output_dir, require_weights=True):
    """The validated run record of a run folder, with ``run_dir`` added
    (absolute).  A missing file or key raises ClueDataError naming it."""
    output_dir = os.path.abspath(str(output_dir))
    path = os.path.join(output_dir, RUN_FILE)
    if not os.path.isfile(path):
        raise ClueDataError('not a run folder: %s is missing (written by '
                            'gau_keras.clue.finetune)' % RUN_FILE, path=path)
    record = read_json(path)
    if not isinstance(record, dict) or record.get('format') != FORMAT:
        raise ClueDataError('expected "format": "%s"' % FORMAT, path,
                            field='format')
    if record.get('version') != VERSION:
        raise ClueDataError('unsupported version %r (this reader knows %d)'
                            % (record.get('version'), VERSION), path,
                            field='version')
    for key in REQUIRED:
        if key not in record:
            raise ClueDataError('missing key', path, field=key)
    for key in ('dropout', 'head_size'):
        if key not in record['head']:
            raise ClueDataError('missing key', path, field='head.' + key)
    record['run_dir'] = output_dir
    keys = ('config', 'vocab') + (('weights',) if require_weights else ())
    for key in keys:
        if not os.path.isfile(run_file(record, key)):
            raise ClueDataError('missing file %s (named by %s key %r)' % (
                record[key], RUN_FILE, key), path=run_file(record, key))
    return record
