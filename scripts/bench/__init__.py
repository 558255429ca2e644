"""Measurement tools of the gau_keras checkout (not part of the library).

Put ``scripts/`` on ``sys.path`` and import the modules by name::

    import sys; sys.path.insert(0, 'scripts')
    from bench import harness, flops
    harness.time_calls(lambda: sum(range(10 ** 5)), steps=3).median

Modules: ``harness`` (timer, matmul rate, machine info, isolated runs),
``flops`` (analytic parameter and FLOP counts), ``suite`` (speed / maxbatch
runs and the ``scripts/benchmark.py`` command line), ``quality`` (quality and
length-generalisation runs), ``bert4keras_gau`` (bert4keras's own GAU-α
stack, the reference), ``profiling`` (op times from TensorFlow's profiler),
``clue_steps`` (training-step time per CLUE task).
"""
