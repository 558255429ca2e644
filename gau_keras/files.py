"""Writing run outputs safely: a file is replaced whole or not at all.

Every output a run writes (metrics, submissions, exported configs) goes
through ``atomic_write``: the text is written to a temporary file in the same
folder, flushed to disk, then renamed over the destination.  A kill at any
moment leaves either the previous complete file or the new complete file,
never a truncated one.  Example::

    with atomic_write('runs/x/metrics.json') as f:
        json.dump(record, f)
    write_json('runs/x/metrics.json', record)     # the same, in one call

A run folder is used by one process at a time (``run_lock``), records the
settings it was started with (``check_settings``: a resume with other
settings is refused naming each) and can be set aside whole
(``move_aside``) to start afresh::

    with run_lock('runs/x'):
        check_settings('runs/x', {'lr': 1e-4, 'epochs': 3},
                       grow=('epochs',))
"""
import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode='w', encoding='utf-8'):
    """Yield a file object whose content replaces ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as
    it was.  ``mode`` is 'w' (text, ``encoding``) or 'wb'.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path),
                               suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if 'b' in mode
                                    else {'encoding': encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path, obj, indent=2):
    """Write ``obj`` as UTF-8 JSON (non-ASCII kept), atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)


def copy_file(src, dst):
    """Copy ``src`` to ``dst`` atomically; copying a file onto itself is a
    no-op (the destination is never opened for writing before the source
    is read)."""
    if os.path.exists(dst) and os.path.samefile(src, dst):
        return dst
    with open(src, 'rb') as f_in, atomic_write(dst, 'wb') as f_out:
        while True:
            block = f_in.read(1 << 20)
            if not block:
                break
            f_out.write(block)
    return dst


# --------------------------------------------------------------------------
# Run folders: one writer at a time, the settings a run was started with
# --------------------------------------------------------------------------

LOCK_NAME = '.lock'
SETTINGS_NAME = 'settings.json'


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (held by another process,
    started with other settings, or holding an unreadable record)."""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(path):
    """(pid or None, text) of a lock file."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read().strip()
    except OSError:
        return None, ''
    first = text.split()[:1]
    return (int(first[0]) if first and first[0].isdigit() else None), text


def _try_lock(path):
    """An open file descriptor holding an exclusive ``flock`` on ``path``
    (the file at ``path`` now, not one removed meanwhile), or None when
    another process holds it."""
    import fcntl
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)        # the holder removed it as we opened it: again


@contextlib.contextmanager
def run_lock(folder, say=print):
    """Hold ``folder/.lock`` while the block runs: one process per run
    folder.

    A second process entering the same folder gets RunFolderError naming
    the holder's pid.  The lock is an ``flock``, released by the kernel when
    its holder dies, so a lock file left by a killed run is taken over (with
    a message naming the dead pid), and the temporary files its interrupted
    ``atomic_write`` calls left are removed.  The lock file is removed on
    exit.  Example::

        with run_lock('runs/tnews'):
            ...                 # train, evaluate, write outputs
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    fd = _try_lock(path)
    if fd is None:
        pid, text = _read_holder(path)
        raise RunFolderError(
            'run folder %s is in use by process %s (%s holds %r): wait for '
            'it to finish, or use another folder'
            % (folder, pid if pid is not None else '(unknown)', path, text))
    pid, _ = _read_holder(path)
    remove_temporaries(folder)
    if pid is not None and pid != os.getpid():
        say('taking over the stale lock %s of process %d (%s)' % (
            path, pid, 'alive but not holding it'
            if _pid_alive(pid) else 'not running'))
    try:
        os.ftruncate(fd, 0)
        os.write(fd, ('%d %s\n' % (os.getpid(), os.uname().nodename))
                 .encode())
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)


def remove_temporaries(folder):
    """Delete the ``.<name>.<random>.tmp`` files (and ``.<pid>.tmp.<name>``
    ones, which keep a suffix that names their format) that writes killed
    midway left under ``folder``; return their paths."""
    removed = []
    for root, _, names in os.walk(folder):
        for name in names:
            if name.startswith('.') and (name.endswith('.tmp') or
                                         '.tmp.' in name):
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    os.remove(path)
                    removed.append(path)
    return removed


def move_aside(folder, keep=(LOCK_NAME,)):
    """Move everything in ``folder`` (except the names in ``keep``) into a
    new sibling ``<folder>.old-<YYYYmmdd-HHMMSS>``; return its path (None
    when there was nothing to move).  Example::

        move_aside('runs/tnews')     # -> 'runs/tnews.old-20261207-010203'
    """
    import time
    names = [n for n in sorted(os.listdir(folder)) if n not in keep] \
        if os.path.isdir(folder) else []
    if not names:
        return None
    base = '%s.old-%s' % (os.path.normpath(folder),
                          time.strftime('%Y%m%d-%H%M%S'))
    target, n = base, 1
    while os.path.exists(target):
        n += 1
        target = '%s-%d' % (base, n)
    os.makedirs(target)
    for name in names:
        os.replace(os.path.join(folder, name), os.path.join(target, name))
    return target


def read_json(path, what='record', fix=None):
    """The JSON object in ``path``; an empty, truncated or malformed file
    raises RunFolderError naming the file and ``fix`` (what to do)."""
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise RunFolderError('%s: this %s is unreadable (%s)%s' % (
            path, what, str(e).splitlines()[0] or 'empty file',
            '; ' + fix if fix else '')) from None


def _plain(value):
    """``value`` as JSON would give it back (tuples → lists, keys → str)."""
    return json.loads(json.dumps(value, sort_keys=True))


def file_digest(path, block=1 << 20):
    """SHA-1 of a file's bytes (hex): identifies its content wherever the
    file is moved.  Example::

        file_digest('vocab.txt')        # -> 'a94a8fe5cc…'
    """
    import hashlib
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(block), b''):
            digest.update(chunk)
    return digest.hexdigest()


def check_settings(folder, settings, safe=(), grow=(), run_files=(),
                   say=print, overwrite_hint='overwrite=True'):
    """Compare ``settings`` with those recorded in ``folder/settings.json``
    and record them.

    A fresh folder (no record, none of the ``run_files`` names) records
    ``settings``; one holding ``run_files`` but no record is refused (its
    settings cannot be checked).  A folder with a
    record may continue only with the same settings: every other
    difference raises RunFolderError naming each changed setting (old →
    new).  Names in ``safe`` may change freely (said); names in ``grow``
    may only increase (e.g. epochs, to extend a run).  The record is
    rewritten with the new values of the safe settings.  Example::

        check_settings('runs/tnews', {'lr': 1e-4, 'epochs': 3},
                       grow=('epochs',))
    """
    path = os.path.join(folder, SETTINGS_NAME)
    settings = _plain(settings)
    fix = 'start afresh with %s (the old run is moved aside)' % overwrite_hint
    if not os.path.exists(path):
        found = [n for n in run_files
                 if os.path.exists(os.path.join(folder, n))]
        if found:
            raise RunFolderError(
                '%s holds run files (%s) but no %s, so the settings they '
                'were made with cannot be checked: use another folder, or '
                '%s' % (folder, ', '.join(found), SETTINGS_NAME, fix))
        write_json(path, settings)
        return settings
    old = read_json(path, 'settings record', fix)
    changed, noted = [], []
    for key in sorted(set(old) | set(settings)):
        before, after = old.get(key), settings.get(key)
        if before == after:
            continue
        ok = key in safe or (key in grow and isinstance(before, (int, float))
                             and isinstance(after, (int, float))
                             and after >= before)
        (noted if ok else changed).append('%s: %s -> %s' % (
            key, json.dumps(before), json.dumps(after)))
    if changed:
        raise RunFolderError(
            '%s holds a run started with other settings:\n  %s\nResume '
            'with the recorded settings, use another folder, or %s'
            % (folder, '\n  '.join(changed), fix))
    if noted:
        say('resuming %s with changed settings that are safe to change: %s'
            % (folder, '; '.join(noted)))
        write_json(path, settings)
    return settings
