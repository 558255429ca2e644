"""A fine-tuning run folder → a SavedModel for TF Serving, taking raw text.

Signatures (``tf.saved_model.load(DIR).signatures[name]``):

* ``serving_default`` — classification tasks (tnews, iflytek, afqmc, cmnli,
  ocnli, csl, wsc): inputs ``text`` (tf.string [batch]) and, for sentence
  pairs, ``text_b``; outputs ``label`` (tf.string [batch]), ``label_id``
  (int32 [batch]) and ``probabilities`` (float32 [batch, labels], in the
  order of the run's labels).  csl's ``text`` is its keywords joined by
  '；'; wsc's is the text with the noun marked ``_like this_`` and the
  pronoun ``[like this]``.
  cluener: input ``text``; outputs ``entity_count`` (int32 [batch]) and,
  padded to the batch's largest count, ``entity_start`` / ``entity_end``
  (int32, char indices into the text, end inclusive, -1 padding),
  ``entity_type`` and ``entity_text`` (tf.string, '' padding), sorted by
  (start, end, type).
* ``ids`` — the model on token ids: inputs ``token_ids`` and
  ``segment_ids`` (int32 [batch, length], 0-padded); output ``logits``
  (classification, float32 [batch, labels]) or ``scores`` (cluener,
  float32 [batch, types, length, length]).

Tokenization runs in the graph (:mod:`gau_keras.serving.tokenization`,
tensorflow-text ops): a serving process needs TensorFlow and
``import tensorflow_text`` only.  cmrc2018, c3 and chid take several texts
per answer (windows, choices) and are served through ``load_predictor``.

Example::

    from gau_keras.serving import saved_model
    saved_model.export_saved_model('runs/tnews', 'export/tnews/1')
    # elsewhere: import tensorflow as tf, tensorflow_text
    serve = tf.saved_model.load('export/tnews/1').signatures[
        'serving_default']
    serve(text=tf.constant(['今天天气很好']))['label']
"""
import os
import shutil

import tensorflow as tf

from gau_keras.serving.tokenization import GraphTokenizer

SERVABLE_HEADS = ('classification', 'global_pointer')
IDS = tf.TensorSpec([None, None], tf.int32)
TEXT = tf.TensorSpec([None], tf.string)


class ServingModule(tf.Module):
    """The Keras model of a predictor with its in-graph tokenizer."""

    def __init__(self, predictor):
        super().__init__(name='gau_keras_serving')
        task = predictor.task
        if task.head not in SERVABLE_HEADS:
            raise ValueError(
                'task %r (head %r) is not exported for text serving: only '
                'classification tasks and cluener are (use '
                'gau_keras.clue.load_predictor for it)' % (task.name,
                                                          task.head))
        self.head = task.head
        self.pair = predictor.pair
        model = predictor.model
        # the variables are saved; the Keras object itself is not (its
        # Keras metadata is not needed to serve, and costs time to write)
        self.model_variables = list(model.variables)
        self._call = lambda ids, segs: model([ids, segs], training=False)
        self.tokenizer = GraphTokenizer(
            predictor.tokenizer._token_dict,
            predictor.record['do_lower_case'], predictor.maxlen)
        self.labels = tf.constant(list(task.labels), tf.string)
        # entity order: by type name, whatever the label order
        names = list(task.labels)
        ranks = sorted(range(len(names)), key=lambda k: names[k])
        self.type_rank = tf.constant(
            [ranks.index(k) for k in range(len(names))], tf.int64)

    def run(self, token_ids, segment_ids):
        return self._call(token_ids, segment_ids)

    def classify(self, token_ids, segment_ids):
        logits = tf.cast(self.run(token_ids, segment_ids), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {'label': tf.gather(self.labels, label_id),
                'label_id': label_id, 'probabilities': probabilities}

    def entities(self, text):
        ids, segs, first, last = self.tokenizer.encode_with_offsets(text)
        scores = tf.cast(self.run(ids, segs), tf.float32)   # [b, k, n, n]
        real = first >= 0
        pair_ok = (real[:, :, None] & real[:, None, :] &
                   (tf.range(tf.shape(ids)[1])[:, None] <=
                    tf.range(tf.shape(ids)[1])[None, :]))
        found = tf.where((scores > 0) & pair_ok[:, None])   # [m, 4]
        b, k, s, e = (found[:, i] for i in range(4))
        start = tf.gather_nd(first, tf.stack([b, s], 1))
        end = tf.gather_nd(last, tf.stack([b, e], 1))
        return self._entity_outputs(text, b, k, start, end)

    def _entity_outputs(self, text, b, k, start, end):
        """Sorted, deduplicated (start, end, type) per text, padded."""
        n = tf.cast(tf.reduce_max(tf.strings.length(text, 'UTF8_CHAR')),
                    tf.int64) + 1
        types = tf.cast(tf.shape(self.labels)[0], tf.int64)
        key = ((b * n + tf.cast(start, tf.int64)) * n +
               tf.cast(end, tf.int64)) * types + tf.gather(self.type_rank, k)
        order = tf.argsort(key)
        key = tf.gather(key, order)
        keep = tf.concat([[True], key[1:] != key[:-1]], 0)
        pick = tf.boolean_mask(order, keep)
        b, k, start, end = (tf.gather(x, pick) for x in (b, k, start, end))
        rows = tf.shape(text, out_type=tf.int64)[0]

        def pad(values, fill):
            return tf.RaggedTensor.from_value_rowids(
                values, b, nrows=rows).to_tensor(fill)
        spans = tf.strings.substr(tf.gather(text, b), start, end - start + 1,
                                  unit='UTF8_CHAR')
        count = tf.math.bincount(tf.cast(b, tf.int32),
                                 minlength=tf.cast(rows, tf.int32),
                                 maxlength=tf.cast(rows, tf.int32),
                                 dtype=tf.int32)
        return {'entity_count': count, 'entity_start': pad(start, -1),
                'entity_end': pad(end, -1),
                'entity_type': pad(tf.gather(self.labels, k), ''),
                'entity_text': pad(spans, '')}


def signatures(module):
    """{'serving_default': ..., 'ids': ...} concrete functions."""
    if module.head == 'global_pointer':
        serve = tf.function(lambda text: module.entities(text),
                            input_signature=[TEXT])
        ids = tf.function(lambda token_ids, segment_ids: {
            'scores': tf.cast(module.run(token_ids, segment_ids),
                              tf.float32)}, input_signature=[IDS, IDS])
    else:
        ids = tf.function(lambda token_ids, segment_ids: {
            'logits': tf.cast(module.run(token_ids, segment_ids),
                              tf.float32)}, input_signature=[IDS, IDS])
        if module.pair:
            serve = tf.function(lambda text, text_b: module.classify(
                *module.tokenizer.encode(text, text_b)),
                input_signature=[TEXT, TEXT])
        else:
            serve = tf.function(lambda text: module.classify(
                *module.tokenizer.encode(text)), input_signature=[TEXT])
    return {'serving_default': serve.get_concrete_function(),
            'ids': ids.get_concrete_function()}


def export_saved_model(run, out_dir):
    """Writes the SavedModel of ``run`` (a run folder or a Predictor) to
    ``out_dir`` (replaced if it exists; its vocab.txt and run.json are
    copied into ``assets.extra/``).  Returns ``out_dir``.

    Example::

        export_saved_model('runs/tnews', 'export/tnews/1')
    """
    from gau_keras.clue.predict import Predictor, load_predictor
    predictor = run if isinstance(run, Predictor) else load_predictor(run)
    module = ServingModule(predictor)
    sigs = signatures(module)
    tmp = out_dir.rstrip('/\\') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures=sigs)
    extra = os.path.join(tmp, 'assets.extra')
    os.makedirs(extra, exist_ok=True)
    for name in ('vocab', 'config'):
        shutil.copy(os.path.join(predictor.record['run_dir'],
                                 predictor.record[name]), extra)
    shutil.copy(os.path.join(predictor.record['run_dir'], 'run.json'),
                extra)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir
