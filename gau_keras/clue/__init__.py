"""CLUE fine-tuning support: the eleven tasks, their data, metrics and
submission files (see :mod:`gau_keras.clue.tasks`).

Example::

    from gau_keras import clue
    task = clue.get_task('cluewsc2020', 'data/cluewsc2020')
    train, dev = task.load('train'), task.load('dev')
    task.head, task.metric, task.labels      # 'classification', ...
    for test_name, items, out_name in task.test_sets():
        task.write_submission('out/' + out_name, items, predictions)

    # a whole run: train, best dev epoch, submission files, metrics.json
    record = clue.finetune('afqmc', 'clue/afqmc', 'gau_alpha_tiny',
                           'vocab.txt', 'runs/afqmc', epochs=2)
"""
from gau_keras.clue.readers import (  # noqa: F401
    ChidExample, ChoiceExample, ClueDataError, NerExample, SpanExample,
    TextExample)
from gau_keras.clue.tasks import (  # noqa: F401
    ALIASES, TASKS, Task, canonical_name, get_task, register_task,
    task_names)
from gau_keras.clue import metrics, submission  # noqa: F401
from gau_keras.clue.finetuning import (  # noqa: F401
    VocabMismatchError, finetune)
from gau_keras.clue.predict import load_predictor  # noqa: F401
