"""Reading CLUE files: JSON / JSON lines with errors that name the culprit.

Every problem in a data file raises :class:`ClueDataError` naming the file,
the line (JSON lines) and the field; tolerated problems (NLI lines labelled
"-", empty texts in training data, cmrc2018 answers not in their context)
are counted in a :class:`SkipLog` and printed once per file.

Example::

    from gau_keras.clue.readers import read_json_lines, field
    for line_no, row in read_json_lines('tnews/train.json'):
        text = field(row, 'sentence', 'tnews/train.json', line_no)
"""
import collections
import json
import os
from dataclasses import dataclass, field as dc_field


class ClueDataError(ValueError):
    """Bad CLUE data: the message names file, line and field.

    Attributes ``path``, ``line`` and ``field`` hold the culprit (``None``
    where it does not apply).
    """

    def __init__(self, message, path=None, line=None, field=None):
        where = ''
        if path is not None:
            where = str(path) + ('' if line is None else ':%d' % line)
            where += ('' if field is None else ' field %r' % field) + ': '
        super().__init__(where + message)
        self.path, self.line, self.field = path, line, field


# --------------------------------------------------------------------------
# Examples (one per prediction the task makes)
# --------------------------------------------------------------------------

@dataclass
class TextExample:
    """Single text or text pair; ``label`` = class index (None on test)."""
    uid: object
    text_a: str
    text_b: str = None
    label: int = None


@dataclass
class ChoiceExample:
    """c3: (context, question) with unpadded ``choices``; label = index."""
    uid: object
    context: str
    question: str
    choices: list
    label: int = None


@dataclass
class ChidExample:
    """One chid blank: text left / right of it (other blanks of the passage
    replaced by :data:`OTHER_BLANK`), the passage's candidates, the answer
    index; ``group`` = passage number (its blanks are assigned jointly)."""
    uid: str
    left: str
    right: str
    candidates: list
    label: int = None
    group: int = 0


@dataclass
class SpanExample:
    """cmrc2018 question: ``answers`` = [(text, char_start)] (train: only
    those found in the context; dev: all reference texts)."""
    uid: str
    question: str
    context: str
    answers: list = dc_field(default_factory=list)


@dataclass
class NerExample:
    """cluener line: ``entities`` = sorted [(start, end_inclusive, type)]."""
    uid: object
    text: str
    entities: list = dc_field(default_factory=list)


OTHER_BLANK = '＿＿＿＿'


# --------------------------------------------------------------------------
# Skips
# --------------------------------------------------------------------------

class SkipLog(object):
    """Counts tolerated problems per (file, reason) and prints a summary.

    Example::

        log = SkipLog(); log.add('train.json', 'skipped: label "-"')
        log.report()     # prints: train.json: 1 x skipped: label "-"
    """

    def __init__(self, verbose=True):
        self.counts = collections.Counter()
        self.verbose = verbose

    def add(self, path, reason, n=1):
        self.counts[(os.path.basename(str(path)), reason)] += n

    def total(self, reason=None):
        return sum(n for (_, r), n in self.counts.items()
                   if reason is None or r == reason)

    def report(self, prefix=''):
        if self.verbose:
            for (name, reason), n in sorted(self.counts.items()):
                print('%s%s: %d x %s' % (prefix, name, n, reason))


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def require_file(data_dir, name, task, split):
    """``data_dir/name`` or a ClueDataError saying which task needs it."""
    path = os.path.join(str(data_dir), name)
    if not os.path.isfile(path):
        raise ClueDataError(
            'missing file %s: task %r expects it for its %s split '
            '(CLUE layout of the %s folder)' % (name, task, split, task),
            path=path)
    return path


def _not_utf8(path, error, line, column):
    return ClueDataError(
        'not UTF-8 text (byte 0x%02x at column %d: %s); CLUE files are '
        'UTF-8: convert it, e.g. iconv -f GBK -t UTF-8'
        % (error.object[error.start], column, error.reason), path=path,
        line=line)


def decode_line(raw, path, line_no):
    """One line of bytes as text (a UTF-8 BOM on line 1 dropped); bytes
    that are not UTF-8 raise ClueDataError naming file, line and column."""
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as e:
        column = len(raw[:e.start].decode('utf-8', 'replace')) + 1
        raise _not_utf8(path, e, line_no, column) from None
    return text[1:] if line_no == 1 and text.startswith('\ufeff') else text


def read_json_lines(path):
    """Yields (line_number, object) of a JSON-lines file (blank lines
    skipped); malformed JSON or text that is not UTF-8 raises
    ClueDataError with file and line."""
    with open(path, 'rb') as f:
        for line_no, raw in enumerate(f, 1):
            line = decode_line(raw, path, line_no)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ClueDataError('malformed JSON (%s)' % e.msg,
                                    path=path, line=line_no) from None
            if not isinstance(obj, dict):
                raise ClueDataError('expected a JSON object, got %s'
                                    % type(obj).__name__, path, line_no)
            yield line_no, obj


def read_json(path):
    """Whole-file JSON; malformed JSON or text that is not UTF-8 raises
    ClueDataError with the line."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        start = data.rfind(b'\n', 0, e.start) + 1
        raise _not_utf8(path, e, data.count(b'\n', 0, e.start) + 1,
                        len(data[start:e.start].decode('utf-8', 'replace'))
                        + 1) from None
    text = text[1:] if text.startswith('\ufeff') else text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ClueDataError('malformed JSON (%s, column %d)'
                            % (e.msg, e.colno), path=path,
                            line=e.lineno) from None


def field(row, name, path, line=None, kind=None):
    """``row[name]`` or a ClueDataError naming file, line and field;
    ``kind`` (a type or tuple) checks the value's type."""
    if not isinstance(row, dict) or name not in row:
        raise ClueDataError('missing field', path, line, name)
    value = row[name]
    if kind is not None and not isinstance(value, kind):
        raise ClueDataError('expected %s, got %r' % (
            getattr(kind, '__name__', kind), value), path, line, name)
    return value


def item_id(row, path, line):
    """A test item's id: ``id`` (or ``idx`` for files that use it), kept
    exactly as written (int or string)."""
    for key in ('id', 'idx'):
        if key in row:
            return row[key]
    raise ClueDataError('missing field (test items need an id)', path,
                        line, 'id')


def label_string(value):
    """CLUE labels come as "1" or 1: both mean the label string "1"."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)
