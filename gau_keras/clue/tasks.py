"""The eleven CLUE tasks: readers for their folder layouts, head kind,
metric and submission writer, in one registry.

A task is bound to one task folder as downloaded from CLUE (the layout
bojone/CLUE-bert4keras reads)::

    from gau_keras import clue
    task = clue.get_task('tnews', 'data/tnews')   # or 'cluewsc2020', ...
    train = task.load('train')                    # list of examples
    for test_name, items, out_name in task.test_sets():
        preds = [0] * len(items)                  # one per item
        task.write_submission('out/' + out_name, items, preds)
    print(task.evaluate(task.load('dev'), dev_predictions))

Heads: ``classification`` ([CLS] → classes), ``multiple_choice`` (one score
per (context, question+choice); c3 and chid), ``span`` (cmrc2018 start/end
pointer), ``global_pointer`` (cluener span head).  Predictions passed to
``evaluate`` / ``write_submission`` are one per example: a class or choice
index, an answer text (cmrc2018), or a list of (start, end, type) entities
(cluener, end inclusive).
"""
import os
import re

from gau_keras.clue import metrics, submission
from gau_keras.clue.readers import (
    OTHER_BLANK, ChidExample, ChoiceExample, ClueDataError, NerExample,
    SkipLog, SpanExample, TextExample, field, item_id, label_string,
    read_json, read_json_lines, require_file)

SPLITS = ('train', 'dev')
NLI_LABELS = ('entailment', 'neutral', 'contradiction')


class Task(object):
    """Base class: subclasses set the class attributes and ``read``.

    ``split_files``: files of train / dev; ``test_files``: (test file,
    submission file) pairs, the first required, the others predicted when
    present (CLUE 1.0 test sets; a ``test1.0.json`` of any task is
    predicted into ``<task>10_predict.json`` unless named otherwise).
    """
    name = None
    aliases = ()
    head = None
    metric = 'accuracy'
    split_files = {'train': ('train.json',), 'dev': ('dev.json',)}
    test_files = ()

    def __init__(self, data_dir, verbose=True):
        self.data_dir = str(data_dir)
        self.log = SkipLog(verbose)
        self._labels = None

    # ---- files ----------------------------------------------------------
    def path(self, name, split):
        return require_file(self.data_dir, name, self.name, split)

    def load(self, split):
        """Examples of 'train' or 'dev' (every file of the split)."""
        if split not in self.split_files:
            raise ClueDataError('unknown split %r of task %r (expected one '
                                'of %s)' % (split, self.name,
                                            sorted(self.split_files)))
        paths = [self.path(n, split) for n in self.split_files[split]]
        out = []
        for p in paths:
            out.extend(self.read(p, split))
        self.log.report('%s/' % self.name)
        self.log.counts.clear()
        return out

    def test_sets(self):
        """[(test file name, examples, submission file name)] for the
        required test file and every optional one that is present."""
        out = []
        files = list(self.test_files)
        if 'test1.0.json' not in dict(files):       # CLUE 1.0 test set
            files.append(('test1.0.json', '%s10_predict.json' % self.name))
        for i, (test_name, out_name) in enumerate(files):
            path = os.path.join(self.data_dir, test_name)
            if i > 0 and not os.path.isfile(path):
                continue
            items = self.read(self.path(test_name, 'test'), 'test')
            submission.check_unique_ids(items, path)
            out.append((test_name, items, out_name))
        self.log.report('%s/' % self.name)
        return out

    def read(self, path, split):
        raise NotImplementedError

    # ---- labels, metric, submission --------------------------------------
    @property
    def labels(self):
        """Class strings (classification), entity types (NER), else None."""
        return self._labels

    def evaluate(self, examples, predictions):
        """{'accuracy': ...} (fractions in [0, 1])."""
        return {'accuracy': metrics.accuracy(
            predictions, [e.label for e in examples])}

    def write_submission(self, path, examples, predictions):
        raise NotImplementedError


# --------------------------------------------------------------------------
# Classification (tnews, iflytek, afqmc, cmnli, ocnli, wsc, csl)
# --------------------------------------------------------------------------

class ClassificationTask(Task):
    """Label strings → indices; ``skip_labels`` lines dropped (counted)
    from train / dev; test labels ignored."""
    head = 'classification'
    fixed_labels = None
    skip_labels = ()

    @property
    def labels(self):
        if self._labels is None:
            self._labels = list(self.fixed_labels or self.read_labels())
        return self._labels

    def read_labels(self):
        raise NotImplementedError

    def texts(self, row, path, line):
        """(text_a, text_b or None) of one line."""
        raise NotImplementedError

    def read(self, path, split):
        out = []
        for line, row in read_json_lines(path):
            example = self.example(row, path, line, split)
            if example is not None:
                out.append(example)
        return out

    def example(self, row, path, line, split):
        text_a, text_b = self.texts(row, path, line)
        if split == 'test':
            if not text_a.strip():
                self.log.add(path, 'kept: empty test text (predicted '
                             'like the others)')
            return TextExample(item_id(row, path, line), text_a, text_b)
        if not text_a.strip() or (text_b is not None and not text_b.strip()):
            self.log.add(path, 'skipped: empty text')
            return None
        label = label_string(field(row, 'label', path, line))
        if label in self.skip_labels:
            self.log.add(path, 'skipped: label %r' % label)
            return None
        if label not in self.labels:
            raise ClueDataError('label %r is not one of the task\'s labels '
                                '%s' % (label, self.labels), path, line,
                                'label')
        uid = row.get('id', row.get('idx', line))
        return TextExample(uid, text_a, text_b, self.labels.index(label))

    def write_submission(self, path, examples, predictions):
        labels = [self.labels[int(p)] for p in _aligned(examples,
                                                        predictions)]
        return submission.write_json_lines(
            path, [{'id': e.uid, 'label': l}
                   for e, l in zip(examples, labels)])


class LabelsFileTask(ClassificationTask):
    """tnews / iflytek: the classes are the ``label`` fields of
    labels.json, in file order."""

    def read_labels(self):
        path = self.path('labels.json', 'labels')
        labels = [label_string(field(row, 'label', path, line))
                  for line, row in read_json_lines(path)]
        if not labels:
            raise ClueDataError('no labels', path)
        return labels

    def texts(self, row, path, line):
        return field(row, 'sentence', path, line, str), None


class Tnews(LabelsFileTask):
    name = 'tnews'
    test_files = (('test.json', 'tnews11_predict.json'),
                  ('test1.0.json', 'tnews10_predict.json'))


class Iflytek(LabelsFileTask):
    name = 'iflytek'
    test_files = (('test.json', 'iflytek_predict.json'),
                  ('test1.0.json', 'iflytek10_predict.json'))


class PairTask(ClassificationTask):
    """sentence1 / sentence2 pairs."""

    def texts(self, row, path, line):
        return (field(row, 'sentence1', path, line, str),
                field(row, 'sentence2', path, line, str))


class Afqmc(PairTask):
    name = 'afqmc'
    fixed_labels = ('0', '1')
    test_files = (('test.json', 'afqmc_predict.json'),)


class Cmnli(PairTask):
    name = 'cmnli'
    fixed_labels = NLI_LABELS
    skip_labels = ('-',)
    test_files = (('test.json', 'cmnli_predict.json'),)


class Ocnli(PairTask):
    name = 'ocnli'
    fixed_labels = NLI_LABELS
    skip_labels = ('-',)
    split_files = {'train': ('train.50k.json',), 'dev': ('dev.json',)}
    test_files = (('test.json', 'ocnli_50k_predict.json'),)


class Csl(ClassificationTask):
    """Keywords joined by '；' paired with the abstract."""
    name = 'csl'
    fixed_labels = ('0', '1')
    test_files = (('test.json', 'csl_predict.json'),)

    def texts(self, row, path, line):
        keywords = field(row, 'keyword', path, line, (list, str))
        if isinstance(keywords, str):
            keywords = [keywords]
        return '；'.join(keywords), field(row, 'abst', path, line, str)


class Wsc(ClassificationTask):
    """CLUEWSC2020: the noun (span1) is marked _like this_ and the pronoun
    (span2) [like this] in the text; labels 'false' / 'true'."""
    name = 'wsc'
    aliases = ('cluewsc2020', 'cluewsc')
    fixed_labels = ('false', 'true')
    test_files = (('test.json', 'cluewsc11_predict.json'),
                  ('test1.0.json', 'cluewsc10_predict.json'))

    def texts(self, row, path, line):
        text = field(row, 'text', path, line, str)
        target = field(row, 'target', path, line, dict)
        s1 = self.span(text, target, 1, path, line)
        s2 = self.span(text, target, 2, path, line)
        return mark_spans(text, s1, s2), None

    def span(self, text, target, k, path, line):
        """(start, end) of span k, its index corrected to the nearest
        occurrence of its text (counted) when they disagree."""
        name = 'target.span%d_' % k
        span_text = field(target, 'span%d_text' % k, path, line, str)
        start = field(target, 'span%d_index' % k, path, line, int)
        if text[start:start + len(span_text)] != span_text:
            found = nearest_occurrence(text, span_text, start)
            if found is None or not span_text:
                raise ClueDataError('span text %r is not in the text'
                                    % span_text, path, line, name + 'text')
            self.log.add(path, 'corrected: span%d_index' % k)
            start = found
        return start, start + len(span_text)


def mark_spans(text, noun, pronoun):
    """Text with the noun span as _noun_ and the pronoun span as [pronoun].

    >>> mark_spans('小明说他来了', (0, 2), (3, 4))
    '_小明_说[他]来了'
    """
    marks = sorted([(noun, '_', '_'), (pronoun, '[', ']')])
    out, pos = [], 0
    for (start, end), left, right in marks:
        if start < pos:
            raise ClueDataError('spans %r and %r overlap' % (noun, pronoun))
        out += [text[pos:start], left, text[start:end], right]
        pos = end
    return ''.join(out + [text[pos:]])


def nearest_occurrence(text, sub, near):
    """Start of the occurrence of ``sub`` in ``text`` closest to ``near``."""
    starts = [m.start() for m in re.finditer(re.escape(sub), text)] \
        if sub else []
    return min(starts, key=lambda s: abs(s - near)) if starts else None


def _aligned(examples, predictions):
    predictions = list(predictions)
    if len(predictions) != len(examples):
        raise ValueError('%d predictions for %d test items: exactly one '
                         'per item is needed' % (len(predictions),
                                                 len(examples)))
    return predictions


# --------------------------------------------------------------------------
# Multiple choice: c3, chid
# --------------------------------------------------------------------------

class C3(Task):
    """Documents ``[[sentences], [{question, choice, answer|id}], doc id]``
    from m-*.json + d-*.json; fewer than 4 choices are padded by the
    encoder (the padding is never predicted)."""
    name = 'c3'
    head = 'multiple_choice'
    num_choices = 4
    split_files = {'train': ('m-train.json', 'd-train.json'),
                   'dev': ('m-dev.json', 'd-dev.json')}
    test_files = (('test1.1.json', 'c311_predict.json'),
                  ('test1.0.json', 'c310_predict.json'))

    def read(self, path, split):
        data = read_json(path)
        if not isinstance(data, list):
            raise ClueDataError('expected a list of documents', path)
        out = []
        for d, doc in enumerate(data):
            if not (isinstance(doc, list) and len(doc) >= 2):
                raise ClueDataError('document %d is not [sentences, '
                                    'questions, id]' % d, path)
            context = ''.join(doc[0])
            for q, qa in enumerate(doc[1]):
                out.append(self.example(qa, context, doc, d, q, path, split))
        return out

    def example(self, qa, context, doc, d, q, path, split):
        where = 'document %d question %d' % (d, q)
        question = _item_field(qa, 'question', path, where, str)
        choices = list(_item_field(qa, 'choice', path, where, list))
        if not 1 <= len(choices) <= self.num_choices:
            raise ClueDataError('%s has %d choices (1..%d allowed)' % (
                where, len(choices), self.num_choices), path,
                field='choice')
        if split == 'test':
            return ChoiceExample(_item_field(qa, 'id', path, where),
                                 context, question, choices)
        answer = _item_field(qa, 'answer', path, where, str)
        if answer not in choices:
            raise ClueDataError('%s: answer %r is not one of its choices %r'
                                % (where, answer, choices), path,
                                field='answer')
        uid = '%s-%d' % (doc[2] if len(doc) > 2 else d, q)
        return ChoiceExample(uid, context, question, choices,
                             choices.index(answer))

    def write_submission(self, path, examples, predictions):
        rows = []
        for e, p in zip(examples, _aligned(examples, predictions)):
            if not 0 <= int(p) < len(e.choices):
                raise ValueError('prediction %r for %r is not a choice index'
                                 % (p, e.uid))
            rows.append({'id': e.uid, 'label': int(p)})
        return submission.write_json_lines(path, rows)


def _item_field(item, name, path, where, kind=None):
    try:
        return field(item, name, path, None, kind)
    except ClueDataError as e:
        raise ClueDataError('%s: %s' % (where, e), path, None, name) \
            from None


BLANK = re.compile(r'#idiom\d{6}#')


class Chid(Task):
    """Lines ``{"candidates": [...], "content": ["…#idiom000123#…"]}`` and
    answer files ``{"#idiom000123#": index}``; one example per blank, the
    blanks of one passage are assigned jointly (each candidate at most
    once, :func:`metrics.assign_blanks`)."""
    name = 'chid'
    head = 'multiple_choice'
    answer_files = {'train': 'train_answer.json', 'dev': 'dev_answer.json'}
    test_files = (('test1.1.json', 'chid11_predict.json'),
                  ('test1.0.json', 'chid10_predict.json'))

    def read(self, path, split):
        answers = None
        if split != 'test':
            answers_path = self.path(self.answer_files[split], split)
            answers = (read_json(answers_path), answers_path)
            if not isinstance(answers[0], dict):
                raise ClueDataError('expected {"#idiom…#": index}',
                                    answers_path)
        out, groups = [], 0
        for line, row in read_json_lines(path):
            candidates = field(row, 'candidates', path, line, list)
            content = field(row, 'content', path, line, (list, str))
            for passage in [content] if isinstance(content, str) else content:
                blanks = self.blanks(passage, candidates, answers, path, line,
                                     split, groups)
                if blanks:
                    out.extend(blanks)
                    groups += 1
                else:
                    self.log.add(path, 'skipped: passage without a blank')
        return out

    def blanks(self, passage, candidates, answers, path, line, split, group):
        keys = BLANK.findall(passage)
        if len(keys) > len(candidates):
            raise ClueDataError('%d blanks but only %d candidates' % (
                len(keys), len(candidates)), path, line, 'candidates')
        pieces = BLANK.split(passage)
        out = []
        for i, key in enumerate(keys):
            left = OTHER_BLANK.join(pieces[:i + 1])
            right = OTHER_BLANK.join(pieces[i + 1:])
            label = None
            if answers is not None:
                label = self.answer(answers, key, len(candidates), path, line)
            out.append(ChidExample(key, left, right, list(candidates), label,
                                   group))
        return out

    def answer(self, answers, key, n, path, line):
        answers, answers_path = answers
        if key not in answers:
            raise ClueDataError('blank %s has no answer in %s' % (
                key, os.path.basename(answers_path)), path, line, 'content')
        value = answers[key]
        if isinstance(value, bool) or not (
                isinstance(value, int) and 0 <= value < n):
            raise ClueDataError('answer of %s must be a candidate index in '
                                '[0, %d), got %r' % (key, n, value),
                                answers_path, field=key)
        return value

    def write_submission(self, path, examples, predictions):
        predictions = _aligned(examples, predictions)
        return submission.write_json_object(
            path, {e.uid: int(p) for e, p in zip(examples, predictions)})


# --------------------------------------------------------------------------
# cmrc2018 (span extraction)
# --------------------------------------------------------------------------

class Cmrc2018(Task):
    """SQuAD-v1 style.  An answer whose ``answer_start`` does not point at
    its text is moved to the nearest occurrence of the text (counted); an
    answer not in the context at all is skipped (counted), and a training
    question left without answers too.  Dev keeps every reference text for
    EM / F1."""
    name = 'cmrc2018'
    head = 'span'
    metric = 'em'
    test_files = (('test.json', 'cmrc2018_predict.json'),)

    def read(self, path, split):
        data = field(read_json(path), 'data', path, None, list)
        out = []
        for a, article in enumerate(data):
            for p, para in enumerate(_item_field(
                    article, 'paragraphs', path, 'data[%d]' % a, list)):
                where = 'data[%d].paragraphs[%d]' % (a, p)
                context = _item_field(para, 'context', path, where, str)
                for q, qa in enumerate(_item_field(para, 'qas', path, where,
                                                   list)):
                    e = self.example(qa, context, path, split,
                                     '%s.qas[%d]' % (where, q))
                    if e is not None:
                        out.append(e)
        return out

    def example(self, qa, context, path, split, where):
        uid = _item_field(qa, 'id', path, where)
        question = _item_field(qa, 'question', path, where, str)
        if split == 'test':
            return SpanExample(uid, question, context)
        answers = []
        for k, ans in enumerate(_item_field(qa, 'answers', path, where,
                                            list)):
            w = '%s.answers[%d]' % (where, k)
            text = _item_field(ans, 'text', path, w, str)
            start = _item_field(ans, 'answer_start', path, w, int)
            found = self.locate(context, text, start, path, split)
            if found is not None or split == 'dev':
                answers.append((text, found))
        if split == 'train' and not answers:
            self.log.add(path, 'skipped: training question without an '
                         'answer in its context')
            return None
        return SpanExample(uid, question, context, answers)

    def locate(self, context, text, start, path, split):
        if text and context[start:start + len(text)] == text:
            return start
        found = nearest_occurrence(context, text, start) if text else None
        if found is not None:
            self.log.add(path, 'corrected: answer_start moved to its text')
        elif split == 'train':
            self.log.add(path, 'skipped: answer not in its context')
        else:
            self.log.add(path, 'answer not in its context (kept as a '
                         'reference for EM/F1)')
        return found

    def evaluate(self, examples, predictions):
        references = {e.uid: [t for t, _ in e.answers] for e in examples}
        predicted = {e.uid: p for e, p in zip(
            examples, _aligned(examples, predictions))}
        return metrics.cmrc2018_scores(references, predicted)

    def write_submission(self, path, examples, predictions):
        predictions = _aligned(examples, predictions)
        return submission.write_json_object(
            path, {e.uid: str(p) for e, p in zip(examples, predictions)})


# --------------------------------------------------------------------------
# cluener (NER with a GlobalPointer head)
# --------------------------------------------------------------------------

class Cluener(Task):
    """Lines ``{"text", "label": {type: {entity: [[start, end]]}}}`` (end
    inclusive); the types are those of train.json + dev.json, sorted.  An
    entity whose span does not spell its text is skipped (counted)."""
    name = 'cluener'
    head = 'global_pointer'
    metric = 'f1'
    test_files = (('test.json', 'cluener_predict.json'),)

    @property
    def labels(self):
        if self._labels is None:
            types = set()
            for split in SPLITS:
                for e in self.load(split):
                    types.update(t for _, _, t in e.entities)
            self._labels = sorted(types)
        return self._labels

    def read(self, path, split):
        out = []
        for line, row in read_json_lines(path):
            text = field(row, 'text', path, line, str)
            if split == 'test':
                out.append(NerExample(item_id(row, path, line), text))
                continue
            if not text.strip():
                self.log.add(path, 'skipped: empty text')
                continue
            entities = self.entities(row.get('label', {}), text, path, line)
            out.append(NerExample(row.get('id', line), text, entities))
        return out

    def entities(self, label, text, path, line):
        if not isinstance(label, dict):
            raise ClueDataError('expected {type: {entity: [[start, end]]}}',
                                path, line, 'label')
        out = set()
        for kind, found in label.items():
            if not isinstance(found, dict):
                raise ClueDataError('expected {entity: [[start, end]]}',
                                    path, line, 'label.%s' % kind)
            for entity, spans in found.items():
                for span in spans:
                    if not (isinstance(span, list) and len(span) == 2):
                        raise ClueDataError('span %r is not [start, end]'
                                            % (span,), path, line,
                                            'label.%s' % kind)
                    start, end = span
                    if text[start:end + 1] != entity:
                        self.log.add(path, 'skipped: entity whose span '
                                     'does not spell it')
                        continue
                    out.add((start, end, kind))
        return sorted(out)

    def evaluate(self, examples, predictions):
        return metrics.entity_prf([e.entities for e in examples],
                                  _aligned(examples, predictions))

    def write_submission(self, path, examples, predictions):
        rows = []
        for e, found in zip(examples, _aligned(examples, predictions)):
            rows.append({'id': e.uid, 'label': entity_dict(e.text, found)})
        return submission.write_json_lines(path, rows)


def entity_dict(text, entities):
    """CLUENER's ``{type: {entity text: [[start, end], ...]}}``.

    >>> entity_dict('在北京', [(1, 2, 'address')])
    {'address': {'北京': [[1, 2]]}}
    """
    out = {}
    for start, end, kind in sorted(entities):
        spans = out.setdefault(kind, {}).setdefault(text[start:end + 1], [])
        spans.append([int(start), int(end)])
    return out


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

TASKS = {cls.name: cls for cls in (Tnews, Iflytek, Afqmc, Cmnli, Ocnli, Wsc,
                                   Csl, Cmrc2018, C3, Chid, Cluener)}
ALIASES = {alias: cls.name for cls in TASKS.values() for alias in cls.aliases}


def register_task(cls):
    """Adds a ``Task`` subclass to the registry (one line per new task).

    Its ``name`` and ``aliases`` become valid ``--task`` values of
    ``scripts/finetune_clue.py``.  Example::

        class Sentiment(Tnews):
            name, aliases = 'sentiment', ()
        register_task(Sentiment)
    """
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError('register_task(%r): not a gau_keras.clue.Task '
                        'subclass' % (cls,))
    TASKS[cls.name] = cls
    ALIASES.update({alias: cls.name for alias in cls.aliases})
    return cls


def task_names():
    """The eleven task names (aliases not included)."""
    return list(TASKS)


def canonical_name(name):
    """'cluewsc2020' → 'wsc'; unknown names raise ClueDataError."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in TASKS:
        raise ClueDataError('unknown CLUE task %r; known tasks: %s '
                            '(aliases: %s)' % (name, ', '.join(TASKS),
                                               ', '.join(sorted(ALIASES))))
    return key


def get_task(name, data_dir, verbose=True):
    """The task ``name`` (or alias) bound to its folder ``data_dir``."""
    return TASKS[canonical_name(name)](data_dir, verbose=verbose)
