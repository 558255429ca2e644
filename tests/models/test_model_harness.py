"""The model-level harness (tests/model_harness.py) on every GAU model:
gau_alpha, flash_quad and flash, as encoder, LM and (where the model has
it) UniLM.  The fast lane runs each check once per model; ``make test``
runs every model × application × precision, and XLA parity (compiles).
The models' own numpy references are in test_models.py and
test_flash_models.py."""
import pytest

from tiny_configs import GAU_MODELS

#: Error allowed relative to max|float32 output| (d=16 tiny models with
#: random weights; float16 keeps 10 mantissa bits, bfloat16 7).  Measured:
#: at most 0.001 (fp16) and 0.007 (bf16) on every model and application.
TOLERANCE = {'mixed_float16': 0.003, 'mixed_bfloat16': 0.02}

#: The runs of the fast lane: each model once, each application and each
#: precision at least once.
FAST = {('gau_alpha', 'unilm'), ('flash_quad', 'encoder'), ('flash', 'lm'),
        ('gau_alpha', 'lm', 'mixed_float16'),
        ('flash_quad', 'encoder', 'mixed_bfloat16'),
        ('flash', 'lm', 'mixed_bfloat16')}


def runs(*axes):
    """Every combination of ``axes``; those not in FAST marked slow."""
    import itertools
    return [pytest.param(*case, marks=() if case in FAST
                         else pytest.mark.slow)
            for case in itertools.product(*axes)
            if not (case[0] == 'flash' and case[1] == 'unilm')]


@pytest.mark.parametrize('model,application',
                         runs(GAU_MODELS, ('encoder', 'lm', 'unilm')))
def test_save_load(model_harness, model, application):
    model_harness(model, application).save_load()


@pytest.mark.parametrize('model,application,policy_name',
                         runs(GAU_MODELS, ('encoder', 'lm'),
                              sorted(TOLERANCE)))
def test_mixed_precision_close_to_float32(model_harness, model, application,
                                          policy_name):
    model_harness(model, application).mixed_precision_close(
        policy_name, TOLERANCE[policy_name])


@pytest.mark.slow
@pytest.mark.parametrize('model', GAU_MODELS)
def test_xla_parity(model_harness, model):
    model_harness(model, 'lm' if model == 'flash' else 'encoder'
                  ).xla_parity()
