"""Apply a fine-tuned CLUE model (a run folder) to new inputs.

``load_predictor(run_dir)`` rebuilds the model from the run folder alone
(run.json, config.json, vocab.txt, best.weights.h5; see
:mod:`gau_keras.clue.runs`) and returns a :class:`Predictor` whose
``predict(inputs)`` gives one result per input.  Inputs and results per
task (CLUE field names work as dict keys everywhere):

=====================  ===============================  =====================
task                   one input                        one result
=====================  ===============================  =====================
tnews, iflytek         ``text`` or {"sentence"}         {"label", "label_id",
                                                        "probabilities":
                                                        {label: p}}
afqmc, cmnli, ocnli    ``(text_a, text_b)`` or          same
                       {"sentence1", "sentence2"}
csl                    ``(keywords, abstract)`` (a list same
                       of keywords or one string) or
                       {"keyword", "abst"}
wsc                    the text with the noun marked    same (labels "true" /
                       ``_like this_`` and the pronoun  "false")
                       ``[like this]``, or CLUE's
                       {"text", "target"}
cluener                ``text`` or {"text"}             {"entities": [{"type",
                                                        "text", "start",
                                                        "end"}]}, ``end``
                                                        inclusive (CLUE's
                                                        convention), char
                                                        indices into the text
cmrc2018               ``(context, question)`` or       {"answer"} (text cut
                       {"context", "question"}          from the context)
c3                     ``(context, question, choices)`` {"answer", "answer_id",
                       or {"context" (text or list of   "probabilities" (one
                       sentences), "question",          per choice)}
                       "choice"}
chid                   ``(content, candidates)`` or     {"answers": {blank:
                       {"content", "candidates"}; the   idiom}, "answer_ids":
                       blanks are CLUE's #idiom123456#  {blank: index}}
                       markers, assigned jointly
=====================  ===============================  =====================

Inputs longer than the run's maxlen are encoded exactly as in fine-tuning:
truncated (classification, cluener: entities past the cut are not found,
c3, chid) or cut into windows (cmrc2018).  Inference batches are formed
from inputs sorted by length, then the original order is restored.

Example::

    from gau_keras import clue
    predictor = clue.load_predictor('runs/tnews')
    predictor.predict(['今天天气很好', '股市大涨'])
    # [{'label': '100', 'label_id': 0, 'probabilities': {...}}, ...]
"""
import numpy as np
import tensorflow as tf

from gau_keras.clue import pipeline, runs, tasks
from gau_keras.clue.readers import (
    ChoiceExample, ClueDataError, NerExample, SpanExample, TextExample,
    field)

INPUT = '<input>'      # the "file" named in errors about an input


def _signature(head):
    if head == 'multiple_choice':
        return [tf.TensorSpec([None, None, None], tf.int32, 'token_ids'),
                tf.TensorSpec([None, None, None], tf.int32, 'segment_ids'),
                tf.TensorSpec([None, None], tf.int32, 'valid')]
    return [tf.TensorSpec([None, None], tf.int32, 'token_ids'),
            tf.TensorSpec([None, None], tf.int32, 'segment_ids')]


def inference_function(model, head):
    """``f(list of int32 tensors)`` → model outputs, traced once for every
    batch size and length (an input signature of [None, None] int32)."""
    fn = tf.function(lambda *x: model(list(x), training=False),
                     input_signature=_signature(head), reduce_retracing=True)
    return lambda x: fn(*x)


def rebuild_task(record):
    """The run's task, with its stored labels (no data folder needed)."""
    name = record['task']
    if name not in tasks.TASKS:
        raise ClueDataError('unknown task %r: register it with '
                            'gau_keras.clue.register_task before loading '
                            'the run' % name, path=record.get('run_dir'))
    task = tasks.TASKS[name](record['run_dir'], verbose=False)
    if record['labels'] is not None:
        task._labels = list(record['labels'])
    settings = record['task_settings']
    if 'num_choices' in settings:
        task.num_choices = int(settings['num_choices'])
    return task


def build_model(record, task):
    """The run's Keras model (encoder + head) with its best weights."""
    import gau_keras
    from gau_keras.clue import heads
    encoder = gau_keras.build_transformer_model(
        runs.run_file(record, 'config'), model=record['model'])
    model = heads.build_head(task, encoder, record['head']['dropout'],
                             record['head']['head_size'])
    model.load_weights(runs.run_file(record, 'weights'))
    return model


def load_predictor(run_dir, mixed_precision=None):
    """A :class:`Predictor` of the run folder ``run_dir``.

    ``mixed_precision`` ('fp32' | 'fp16' | 'bf16' | 'auto', default: leave
    the global Keras policy as it is) is set with ``gau_keras.set_precision``
    before the model is built; 'auto' measures which is faster here.
    Outputs are float32 under every policy.  Example::

        predictor = load_predictor('runs/afqmc')
        predictor.predict([('花呗怎么还款', '花呗如何还钱')])
    """
    from gau_keras.tokenizers import Tokenizer
    record = runs.read_run(run_dir)
    if mixed_precision is not None:
        from gau_keras.precision import set_precision
        set_precision(mixed_precision)
    task = rebuild_task(record)
    tokenizer = Tokenizer(runs.run_file(record, 'vocab'),
                          do_lower_case=record['do_lower_case'])
    return Predictor(record, task, tokenizer, build_model(record, task))


class Predictor(object):
    """A fine-tuned model with its task, tokenizer and encoding settings.

    ``predict(inputs, batch_size=64)`` → one result per input (see the
    module's table); ``examples(inputs)`` → the task's examples of the
    inputs; ``labels`` the label strings (or None).
    """

    def __init__(self, record, task, tokenizer, model):
        self.record, self.task = record, task
        self.tokenizer, self.model = tokenizer, model
        self.maxlen, self.stride = record['maxlen'], record['stride']
        self.infer = inference_function(model, task.head)

    @property
    def labels(self):
        return self.task.labels

    @property
    def pair(self):
        """True for sentence-pair classification (2-tuple inputs)."""
        return isinstance(self.task, (tasks.PairTask, tasks.Csl))

    def predict(self, inputs, batch_size=64, by_length=True):
        """One result per input (``by_length=False`` batches the inputs in
        the given order instead of by length)."""
        inputs = list(inputs)
        examples, owners = self.examples(inputs)
        if not examples:
            return [self._result(i, [], []) for i in inputs]
        feats = pipeline.encode_examples(self.task, examples, self.tokenizer,
                                         self.maxlen, self.stride)
        outputs = pipeline.model_outputs(self.model, self.task, feats,
                                         batch_size, by_length, self.infer)
        preds = pipeline.decode(self.task, outputs, feats, examples)
        if self.task.head == 'span':
            outputs = [None] * len(examples)     # windows, not examples
        grouped = [([], []) for _ in inputs]
        for k, (pred, out, ex) in enumerate(zip(preds, outputs, examples)):
            grouped[owners[k]][0].append((pred, out))
            grouped[owners[k]][1].append(ex)
        return [self._result(item, *group)
                for item, group in zip(inputs, grouped)]

    # ---- inputs → examples -------------------------------------------------
    def examples(self, inputs):
        """(examples, owner of each example = index of its input)."""
        out, owners = [], []
        for i, item in enumerate(inputs):
            for e in self._to_examples(item, i):
                out.append(e)
                owners.append(i)
        return out, owners

    def _to_examples(self, item, i):
        head, name = self.task.head, self.task.name
        if head == 'classification':
            return [TextExample(i, *self._texts(item, i))]
        if head == 'global_pointer':
            text = item if isinstance(item, str) else _get(item, 'text', i)
            return [NerExample(i, _string(text, 'text', i))]
        if head == 'span':
            context, question = _fields(item, ('context', 'question'), i)
            return [SpanExample(i, question, context)]
        if name == 'chid':
            return self._blanks(item, i)
        return [self._choices(item, i)]

    def _texts(self, item, i):
        pair = self.pair
        if isinstance(item, dict):
            a, b = self.task.texts(item, INPUT, i + 1)
        elif isinstance(item, (tuple, list)):
            if not pair or len(item) != 2:
                raise ClueDataError('expected %s, got a %d-tuple' % (
                    'a 2-tuple (text_a, text_b)' if pair else 'one text',
                    len(item)), INPUT, i + 1)
            a, b = item
            if self.task.name == 'csl' and isinstance(a, (list, tuple)):
                a = '；'.join(a)
        else:
            if pair:
                raise ClueDataError('task %r takes text pairs: a 2-tuple '
                                    '(text_a, text_b)' % self.task.name,
                                    INPUT, i + 1)
            a, b = item, None
        return (_string(a, 'text', i),
                None if b is None else _string(b, 'text_b', i))

    def _choices(self, item, i):
        context, question, choices = _fields(
            item, ('context', 'question', 'choice'), i, list_ok='context')
        if isinstance(context, list):
            context = ''.join(context)
        n = self.task.num_choices
        if not (isinstance(choices, (list, tuple)) and 1 <= len(choices) <= n):
            raise ClueDataError('expected a list of 1..%d choices' % n,
                                INPUT, i + 1, 'choice')
        return ChoiceExample(i, _string(context, 'context', i), question,
                             [_string(c, 'choice', i) for c in choices])

    def _blanks(self, item, i):
        content, candidates = _fields(item, ('content', 'candidates'), i,
                                      list_ok='content')
        passages = [content] if isinstance(content, str) else list(content)
        out = []
        for p, passage in enumerate(passages):
            found = self.task.blanks(_string(passage, 'content', i),
                                     list(candidates), None, INPUT, i + 1,
                                     'test', (i, p))
            out.extend(found)
        if not out:
            raise ClueDataError('no blank (#idiom123456#) in the content',
                                INPUT, i + 1, 'content')
        return out

    # ---- predictions → results ---------------------------------------------
    def _result(self, item, pairs, examples):
        head = self.task.head
        if head == 'classification':
            (pred, logits), = pairs
            return self._label(pred, logits)
        if head == 'global_pointer':
            (pred, _), = pairs
            text = examples[0].text
            return {'entities': [
                {'type': t, 'text': text[s:e + 1], 'start': int(s),
                 'end': int(e)} for s, e, t in pred]}
        if head == 'span':
            return {'answer': pairs[0][0]}
        if self.task.name == 'chid':
            return {'answers': {e.uid: e.candidates[p]
                                for (p, _), e in zip(pairs, examples)},
                    'answer_ids': {e.uid: int(p)
                                   for (p, _), e in zip(pairs, examples)}}
        (pred, scores), = pairs
        choices = examples[0].choices
        probs = softmax(scores[:len(choices)])
        return {'answer': choices[pred], 'answer_id': int(pred),
                'probabilities': [float(p) for p in probs]}

    def _label(self, pred, logits):
        probs = softmax(logits)
        return {'label': self.labels[pred], 'label_id': int(pred),
                'probabilities': {l: float(p)
                                  for l, p in zip(self.labels, probs)}}


def softmax(logits):
    x = np.asarray(logits, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def _string(value, name, i):
    if not isinstance(value, str):
        raise ClueDataError('expected a string, got %r' % (value,), INPUT,
                            i + 1, name)
    return value


def _get(item, name, i):
    if not isinstance(item, dict):
        raise ClueDataError('expected a string or a JSON object, got %r'
                            % (item,), INPUT, i + 1)
    return field(item, name, INPUT, i + 1)


def _fields(item, names, i, list_ok=None):
    """The values of ``names`` from a dict (CLUE field names; c3's
    ``choice`` also as ``choices``) or a tuple in that order."""
    if isinstance(item, dict):
        if names[-1] == 'choice' and 'choice' not in item:
            names = names[:-1] + ('choices',)
        values = [field(item, n, INPUT, i + 1) for n in names]
    elif isinstance(item, (tuple, list)) and len(item) == len(names):
        values = list(item)
    else:
        raise ClueDataError('expected (%s) or a JSON object with those '
                            'fields' % ', '.join(names), INPUT, i + 1)
    for n, v in zip(names, values):
        if not (isinstance(v, str) or (n == list_ok and isinstance(v, list))
                or n in ('choice', 'choices', 'candidates')):
            raise ClueDataError('expected a string, got %r' % (v,), INPUT,
                                i + 1, n)
    return values
