"""Progress output that suits a terminal and a log file alike.

Keras's ``Progbar`` counts every Linux process as interactive (it tests
``'posix' in sys.modules``), so a run piped to a file (``nohup``, CI, the
demo's log) gets a ``\\r`` update per step.  Here output goes to a
terminal only when ``sys.stdout.isatty()``; otherwise progress is one line
per period (an epoch, an evaluation):

* ``fit_verbose()``: the ``verbose`` for ``model.fit`` / ``model.evaluate``
  (1, the bar, on a terminal; 2, one line per epoch, otherwise).
* ``StepProgress``: a step counter for custom loops (the ``Trainer``, the
  pretraining run): Keras's bar on a terminal, else one line every
  ``every`` steps and at the end.

Example::

    model.fit(gen.forfit(), steps_per_epoch=len(gen), epochs=3,
              verbose=fit_verbose())
"""
import sys
import time

import tensorflow as tf


def is_terminal(stream=None):
    """True if ``stream`` (default ``sys.stdout``) is an interactive
    terminal; a closed or replaced stream without ``isatty`` is not."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def fit_verbose(verbose=1, stream=None):
    """Keras ``verbose`` for ``fit`` / ``evaluate``: ``verbose`` on a
    terminal; a bar (1) becomes one line per epoch (2) otherwise.

    Example::

        model.fit(x, y, epochs=3, verbose=fit_verbose())
    """
    if verbose in (1, 'auto') and not is_terminal(stream):
        return 2
    return verbose


def format_values(values):
    """``[('loss', 0.5), ('acc', 0.25)]`` → ``'loss: 0.5000 - acc: 0.2500'``
    (Keras's one-line format)."""
    parts = []
    for name, value in values:
        try:
            parts.append('%s: %.4f' % (name, float(value)))
        except (TypeError, ValueError):
            parts.append('%s: %s' % (name, value))
    return ' - '.join(parts)


class StepProgress(object):
    """Progress of a loop of ``total`` steps.

    On a terminal (or with ``interactive=True``) it is Keras's ``Progbar``;
    otherwise ``update`` prints one line as Keras's ``verbose=2`` does,
    ``s/total - ts - name: value`` (t: seconds since the object was made),
    when the step is a multiple of
    ``every`` or the last.  A value is the mean over the steps since the
    previous line, or the last one for names in ``stateful_metrics`` (as
    Keras's bar).  ``verbose=0`` prints nothing.

    Example::

        progress = StepProgress(1000, every=100)
        for step in range(1000):
            progress.update(step + 1, [('loss', train_step())])
    """

    def __init__(self, total, every=None, verbose=1, stateful_metrics=None,
                 interactive=None, stream=None, clock=time.time):
        self.total, self.verbose = int(total), verbose
        self.every = max(int(every or total), 1)
        self.stream, self.clock = stream, clock
        self.interactive = is_terminal(stream) if interactive is None \
            else interactive
        self.bar = None
        if self.interactive and verbose:
            self.bar = tf.keras.utils.Progbar(
                self.total, verbose=verbose,
                stateful_metrics=stateful_metrics)
        self.stateful = set(stateful_metrics or ())
        self.start = clock()
        self.last_printed = None
        self.sums = {}

    def start_at(self, step):
        """Begin at ``step`` (a resumed run) without printing a line."""
        self.last_printed = step
        if self.bar is not None:
            self.bar.update(step)

    def _add(self, name, value):
        """Adds a value to the period's mean (a stateful or non-numeric
        value replaces it)."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            self.sums[name] = (value, 0)
            return
        total, count = self.sums.get(name, (0.0, 0))
        if name in self.stateful or not count:
            total, count = 0.0, 0
        self.sums[name] = (total + value, count + 1)

    def update(self, step, values=()):
        """Record ``step`` (1-based count of finished steps) and metric
        ``values`` (pairs of name and number); returns the printed line or
        None."""
        if self.bar is not None:
            self.bar.update(step, list(values))
            return None
        if not self.verbose or step == self.last_printed:
            return None
        for name, value in values:
            self._add(name, value)
        if step % self.every and step < self.total:
            return None
        self.last_printed = step
        line = '%d/%d - %.0fs' % (step, self.total,
                                  self.clock() - self.start)
        text = format_values([(name, total / count if count else total)
                              for name, (total, count) in self.sums.items()])
        self.sums = {}
        if text:
            line += ' - ' + text
        print(line, file=self.stream or sys.stdout, flush=True)
        return line


__all__ = ['StepProgress', 'fit_verbose', 'format_values', 'is_terminal']
