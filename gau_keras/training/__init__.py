"""Resumable training loop and distribution strategies.

A run is ``Trainer(...).train()``: every ``save_every`` steps (and at the end)
it saves model, optimizer, step, data position and the layers' RNG states with
``tf.train.CheckpointManager`` in ``workdir``; started again with the same
command it continues from the last checkpoint, so a killed run ends with the
same weights as an uninterrupted one (same seed, ``enable_op_determinism``).

Batch sizes are GLOBAL: ``dataset_fn`` yields whole batches, each replica of
the strategy gets its consecutive 1/R of the rows, and the loss is the mean
over the global batch, so results do not depend on the number of replicas.

The parts:

* :mod:`~gau_keras.training.strategies`: ``setup`` (precision, seed,
  strategy), ``get_strategy``, ``set_seed``, ``check_learning_rate``;
* :mod:`~gau_keras.training.trainer`: ``Trainer``, ``train`` and the loss
  reduction helpers;
* :mod:`~gau_keras.training.adversarial`: ``adversarial_training`` (FGM)
  and ``gradient_penalty`` for ``model.fit`` and the Trainer;
* :mod:`~gau_keras.training.resume`: ``RunCheckpoints`` (saving, finding
  the newest complete checkpoint, restoring, repairing the state file).

Example::

    s = setup('bf16', strategy='mirrored', seed=42)   # precision, seed
    with s.strategy.scope():
        model = gau_keras.build_transformer_model(cfg, with_mlm='linear')
        opt = build_optimizer('adamw', 1e-4)
    Trainer(model, loss, opt, dataset_fn, 1000, 'runs/x', save_every=500,
            strategy=s.strategy, jit_compile=s.jit_compile).train()

The command-line flags for these settings live with the scripts
(``scripts/flags.py``).
"""
from gau_keras.training.strategies import (  # noqa: F401
    STRATEGIES, Setup, check_learning_rate, get_strategy, is_chief,
    set_seed, setup, use_logical_cpus)
from gau_keras.training.resume import (  # noqa: F401
    CheckpointMismatchError, NoUsableCheckpointError, RunCheckpoints,
    batch_digest, checkpoint_number, checkpoint_problem, find_checkpoints,
    layer_random_generators, saved_run_info)
from gau_keras.training.adversarial import (  # noqa: F401
    adversarial_training, embedding_matrix, gradient_penalty)
from gau_keras.training.trainer import (  # noqa: F401
    MAX_SKIPPED_STEPS, MEAN_REDUCTIONS, SUM_REDUCTIONS, Trainer,
    elementwise_loss, learning_rate_value, loss_reduction, train,
    write_scalar)
