"""Checkpoints of a training run: finding, checking, restoring, repairing.

``RunCheckpoints`` keeps one run's checkpoints in ``workdir/ckpt``: model,
optimizer, step, data position, the layers' RNG states and a JSON
``run_info`` (precision, the last batch's size, digest and loss).  Restoring
takes the newest checkpoint that reads completely, names the newer ones it
skipped and why, and points the ``checkpoint`` state file back at it; a
workdir that holds checkpoints is never silently restarted from step 0.

Example::

    ckpts = RunCheckpoints('runs/x', model, optimizer, step, position)
    start = ckpts.restore()             # 0 for an empty workdir
    ckpts.save(100, info={'precision': 'fp32'})
"""
import collections
import hashlib
import json
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from gau_keras import precision as gk_precision
from gau_keras.training.strategies import is_chief


def _layer_paths(module, prefix=''):
    """(path, layer) for every nested layer: 'Outer/inner', duplicates of a
    name under one parent numbered 'name#2'.  Independent of the layers
    that a precision policy adds (e.g. a float32 output cast)."""
    seen = collections.Counter()
    for child in module._flatten_layers(include_self=False, recursive=False):
        seen[child.name] += 1
        name = child.name if seen[child.name] == 1 else '%s#%d' % (
            child.name, seen[child.name])
        path = prefix + name
        yield path, child
        yield from _layer_paths(child, path + '/')


def layer_random_generators(model):
    """{layer path: tf.random.Generator} of the model's random layers.

    Keras draws dropout masks from a generator per layer (after
    ``set_seed``, which enables ``tf.random.Generator``); these are created
    lazily and a functional model does not checkpoint weightless layers, so
    the trainer creates them now and saves their states itself, keyed by the
    layer's path ('Transformer-0-GatedAttentionUnit/attention_dropout'), so
    the same model built under another precision policy matches.  Ops such
    as ``tf.nn.dropout`` that use the global seed cannot be restored.
    """
    generators = {}
    for path, layer in _layer_paths(model):
        rng = getattr(layer, '_random_generator', None)
        if rng is None or not hasattr(rng, '_maybe_init'):
            continue
        rng._maybe_init()
        if getattr(rng, '_generator', None) is not None:
            generators[path.replace('/', '.')] = rng._generator
    return generators


class CheckpointMismatchError(ValueError):
    """A workdir's checkpoint that cannot continue this run (another model,
    optimizer or batch size)."""


class NoUsableCheckpointError(RuntimeError):
    """The workdir holds checkpoints but none of them restores."""


def checkpoint_number(prefix):
    """N of '.../ckpt-N' (None for other names)."""
    tail = os.path.basename(str(prefix)).rsplit('-', 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def checkpoint_problem(prefix):
    """None if checkpoint ``prefix`` reads completely, else the reason.

    Checks that the index and data files exist and that every tensor reads
    (TensorFlow verifies each tensor's CRC32C), naming the file at fault.
    Example::

        checkpoint_problem('runs/x/ckpt/ckpt-40')   # -> None or a reason
    """
    index = prefix + '.index'
    if not tf.io.gfile.exists(index):
        return 'its index file %s is missing' % index
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        return 'its index %s is unreadable: %s' % (
            index, str(e).strip().splitlines()[0])
    data = sorted(tf.io.gfile.glob(prefix + '.data-*'))
    if not data:
        return 'its data file %s.data-* is missing' % prefix
    for name in reader.get_variable_to_shape_map():
        try:
            reader.get_tensor(name)
        except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
            return 'its data file %s is truncated or corrupt (%s: %s)' % (
                ', '.join(data), name, str(e).strip().splitlines()[0])
    return None


def find_checkpoints(directory, prefix='ckpt'):
    """Checkpoint prefixes ``directory/ckpt-N``, newest first: every N that
    has files or is named by the ``checkpoint`` state file (which may be
    unreadable or out of date).  Example::

        find_checkpoints('runs/x/ckpt')   # -> ['.../ckpt-40', '.../ckpt-30']
    """
    numbers = set()
    for path in tf.io.gfile.glob(os.path.join(directory, prefix + '-*.*')):
        stem, ext = os.path.basename(path).split('.', 1)
        if (ext == 'index' or ext.startswith('data-')) and \
                not ext.endswith('.skipped'):
            numbers.add(checkpoint_number(stem))
    state = _state_paths(directory)
    for path in state or ():
        n = checkpoint_number(path)
        if n is not None:
            numbers.add(n)
    numbers.discard(None)
    return [os.path.join(directory, '%s-%d' % (prefix, n))
            for n in sorted(numbers, reverse=True)]


def _state_paths(directory):
    """Paths named by ``directory/checkpoint``; None if it is unreadable."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError):
        return None
    if state is None:
        return None
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path:
        paths.append(state.model_checkpoint_path)
    return [p if os.path.isabs(p) else os.path.join(directory, p)
            for p in paths]


def _restore_error(checkpoint, prefix):
    """Restore; None if every object matched, else the assertion text."""
    try:
        checkpoint.restore(prefix).assert_existing_objects_matched()
    except AssertionError as e:
        return str(e)
    return None


def _only_loss_scale_unmatched(message):
    """True if an ``assert_existing_objects_matched`` message lists only the
    fp16 loss-scale variables (absent from an fp32/bf16 checkpoint)."""
    names = re.findall(r"<tf.Variable '([^']+)'", message)
    found = re.search(r'Found (\d+) Python objects', message)
    return bool(found and names and int(found.group(1)) == len(names) and
                set(names) <= {'current_loss_scale:0', 'good_steps:0'})


def batch_digest(batch):
    """SHA-1 of a batch's arrays (dtypes, shapes and bytes): tells whether
    the batch before a resumed position is still the one trained."""
    digest = hashlib.sha1()
    for t in tf.nest.flatten(batch):
        array = np.asarray(t)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def saved_run_info(prefix):
    """The ``run_info`` dict stored in checkpoint ``prefix`` ({} if none)."""
    try:
        raw = tf.train.load_variable(
            prefix, 'run_info/.ATTRIBUTES/VARIABLE_VALUE')
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (tf.errors.OpError, ValueError, KeyError):
        return {}


class RunCheckpoints(object):
    """The checkpoints of one run in ``workdir/ckpt`` (see the module doc).

    ``optimizer`` is the one the run applies (under fp16 a
    ``LossScaleOptimizer``); a checkpoint written under another precision
    is restored through the inner optimizer, without the loss scale.  On a
    multi-worker run every worker saves (saving is a collective op) and
    only the chief's files are kept.  ``say`` prints the messages about
    skipped checkpoints and repairs.
    """

    def __init__(self, workdir, model, optimizer, step, position,
                 strategy=None, keep=3, say=print):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.workdir, self.step, self.say = str(workdir), step, say
        self.chief = is_chief(self.strategy)
        self.run_info = tf.Variable('', dtype=tf.string, trainable=False)
        self.saved = {}     # run_info of the checkpoint restored
        with self.strategy.scope():
            rng = layer_random_generators(model)
        parts = dict(model=model, step=step, position=position, rng=rng)
        self.checkpoint = tf.train.Checkpoint(
            optimizer=optimizer, run_info=self.run_info, **parts)
        self._plain = tf.train.Checkpoint(
            optimizer=gk_precision.unwrap_optimizer(optimizer), **parts)
        self.directory = os.path.join(self.workdir, 'ckpt')
        self._save_dir = self.directory
        if not self.chief:
            resolver = self.strategy.cluster_resolver
            self._save_dir = os.path.join(self.workdir, 'tmp_worker_%s_%s' % (
                resolver.task_type, resolver.task_id))
        self._keep = keep
        self._state_note = self._open_manager()

    def _open_manager(self):
        """Open the CheckpointManager; an unreadable state file is set aside
        (returns the note saying so, else None)."""
        try:
            self._new_manager()
            return None
        except (ValueError, tf.errors.OpError) as e:
            state = os.path.join(self._save_dir, 'checkpoint')
            tf.io.gfile.rename(state, state + '.unreadable', overwrite=True)
            self._new_manager()
            return ('the checkpoint state file %s is unreadable (%s); set '
                    'aside as %s.unreadable' % (
                        state, str(e).splitlines()[0], state))

    def _new_manager(self):
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._save_dir, max_to_keep=self._keep)

    @property
    def latest(self):
        """Prefix of the newest checkpoint saved or restored (or None)."""
        return self.manager.latest_checkpoint

    def save(self, step, info=None):
        """Save ``ckpt-<step>`` (with ``info`` as its run_info if given)."""
        if info is not None:
            self.run_info.assign(json.dumps(info))
        return self.manager.save(checkpoint_number=step)

    def remove_worker_copy(self):
        """Delete a non-chief worker's temporary checkpoint folder."""
        if not self.chief:
            shutil.rmtree(self._save_dir, ignore_errors=True)

    # -- restoring ---------------------------------------------------------

    def restore(self):
        """Restore the newest complete checkpoint; return its step (0 when
        ``workdir/ckpt`` holds no checkpoint at all).

        A newer checkpoint whose files are missing, truncated or corrupt (or
        an unreadable ``checkpoint`` state file) is skipped with a message
        naming the file; when checkpoints exist but none restores,
        NoUsableCheckpointError (never a silent restart from step 0).
        """
        if self._state_note:
            self.say(self._state_note)
        candidates = find_checkpoints(self.directory)
        if not candidates:
            self._refuse_orphan_state()
            return 0
        prefix, skipped = self._newest_complete(candidates)
        self._restore_from(prefix)
        for bad, reason in skipped:
            self.say('skipping checkpoint %s: %s' % (bad, reason))
        if skipped:
            self.say('resuming from the newest complete checkpoint %s'
                     % prefix)
        if skipped or self.latest != prefix:
            self._repair_state(prefix, [p for p, _ in skipped])
        return int(self.step.numpy())

    def _newest_complete(self, candidates):
        """(first prefix that reads completely, [(newer prefix, reason)])."""
        skipped = []
        for prefix in candidates:
            problem = checkpoint_problem(prefix)
            if problem is None:
                return prefix, skipped
            skipped.append((prefix, problem))
        raise NoUsableCheckpointError(
            'workdir %s holds checkpoints but none restores:\n  %s\n'
            'Refusing to start again from step 0 (that would overwrite '
            'them); move %s away to start from scratch.' % (
                self.workdir, '\n  '.join('%s: %s' % p for p in skipped),
                self.directory))

    def _refuse_orphan_state(self):
        """Only an empty (or absent) checkpoint folder means a fresh run."""
        state = os.path.join(self.directory, 'checkpoint')
        if tf.io.gfile.exists(state):
            named = _state_paths(self.directory)
            raise NoUsableCheckpointError(
                'workdir %s has a checkpoint state file %s (%s) but no '
                'checkpoint files: refusing to start again from step 0; '
                'move %s away to start from scratch' % (
                    self.workdir, state,
                    'unreadable' if named is None
                    else 'naming ' + ', '.join(named),
                    self.directory))

    def _restore_from(self, prefix):
        info = saved_run_info(prefix)
        precision = gk_precision.current_precision()
        checkpoint = self.checkpoint
        if info.get('precision', precision) != precision:
            self.say('checkpoint %s was written under %s, this run uses %s:'
                     ' weights and optimizer state are float32 in both, '
                     'continuing (the fp16 loss scale starts afresh)'
                     % (prefix, info['precision'], precision))
            checkpoint = self._plain
        error = _restore_error(checkpoint, prefix)
        if error and not (checkpoint is self._plain and
                          _only_loss_scale_unmatched(error)):
            raise CheckpointMismatchError(
                'checkpoint %s does not fit this Trainer (another model, '
                'optimizer or dropout layout?): %s' % (
                    prefix, error.splitlines()[0][:600]))
        self.run_info.assign(json.dumps(info))
        self.saved = info

    def _repair_state(self, prefix, skipped):
        """Point the state file at ``prefix`` (and the older complete
        checkpoints) and set the skipped files aside as ``*.skipped``."""
        if not self.chief:
            return
        for bad in skipped:
            for path in tf.io.gfile.glob(bad + '.*'):
                if not path.endswith('.skipped'):
                    tf.io.gfile.rename(path, path + '.skipped',
                                       overwrite=True)
        number = checkpoint_number(prefix)
        older = [p for p in find_checkpoints(self.directory)
                 if checkpoint_number(p) <= number]
        tf.compat.v1.train.update_checkpoint_state(
            self.directory, prefix, all_model_checkpoint_paths=older[::-1])
        self._new_manager()

    def check_batches(self, dataset_fn, position):
        """After a resume whose first batch has another size than the last
        one saved: the batch before ``position`` must still have the size it
        had when it was trained (else the data position has shifted)."""
        info = self.saved
        if not position or 'batch_rows' not in info:
            return
        batch = next(iter(dataset_fn(position - 1)))
        rows = int(np.shape(tf.nest.flatten(batch)[0])[0])
        if rows != info['batch_rows']:
            raise CheckpointMismatchError(
                'the global batch size changed: batch %d had %d rows when '
                'checkpoint %s was written, dataset_fn now gives it %d rows, '
                'so data position %d would point to other examples; resume '
                'with the original batch size, or use a new workdir'
                % (position - 1, info['batch_rows'], self.latest, rows,
                   position))
        if batch_digest(batch) != info.get('batch_digest'):
            self.say('warning: batch %d differs from the one trained before'
                     ' the checkpoint (same size): the data changed'
                     % (position - 1))
