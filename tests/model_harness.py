"""The model-level harness: checks every GAU model must pass.

``ModelHarness(model, application, tmp_path)`` builds the model's tiny
config (tiny_configs.py) with a linear MLM head and runs, on a padded batch
whose rows span several FLASH chunks:

- ``save_load``: release-layout checkpoint → a fresh build → the same
  outputs exactly; ``model.save('.keras')`` → ``load_model`` in safe mode
  with no custom_objects → the same outputs exactly;
- ``mixed_precision_close``: the same weights under mixed_float16 /
  mixed_bfloat16 compute in the low dtype in every attention unit, output
  float32, finite, within ``tol`` × max|float32 output| on the real tokens;
- ``xla_parity``: the forward pass compiled with XLA equals the eager one,
  and two SGD steps of the Trainer with and without ``jit_compile`` give the
  same losses and weights.

The tests in tests/models/test_model_harness.py run it on gau_alpha,
flash_quad and flash through the ``model_harness`` fixture of conftest::

    def test_save_load(model_harness):
        model_harness('flash', 'lm').save_load()
"""
import numpy as np
import tensorflow as tf

from tiny_configs import tiny_config

#: Row lengths of the harness batch (0 = padding after them).
LENGTHS = (13, 9, 3)


def attention_units(model):
    """The model's attention layers (GAU or mixed-chunk attention)."""
    from gau_keras.flash import MixedChunkAttention
    from gau_keras.layers import GatedAttentionUnit
    return [layer for layer in model.layers
            if isinstance(layer, (GatedAttentionUnit, MixedChunkAttention))]


class ModelHarness(object):
    """Build → save/load → fp16/bf16 closeness → XLA parity for one model
    and application (see the module docstring)."""

    def __init__(self, model, application, tmp_path):
        self.model = model
        self.application = application
        self.tmp_path = tmp_path
        self.config = tiny_config(model, dropout=0.0)
        tf.keras.utils.set_random_seed(0)      # reproducible weights

    def build(self, **kwargs):
        """A Transformer of the tiny config (under the current policy)."""
        import gau_keras
        return gau_keras.build_transformer_model(
            model=self.model, application=self.application,
            with_mlm='linear', return_keras_model=False,
            **dict(self.config, **kwargs))

    def inputs(self, seed=0):
        """[token ids, segment ids] of a right-padded batch; the second half
        of every row is segment 1 (the UniLM target part)."""
        rng = np.random.default_rng(seed)
        n = max(LENGTHS)
        ids = np.zeros((len(LENGTHS), n), np.int32)
        seg = np.zeros((len(LENGTHS), n), np.int32)
        for row, length in enumerate(LENGTHS):
            ids[row, :length] = rng.integers(1, self.config['vocab_size'],
                                             length)
            seg[row, length // 2:length] = 1
        return [ids, seg]

    @staticmethod
    def run(model, x):
        return model(x, training=False).numpy()

    def save_load(self):
        """Checkpoint and ``.keras`` round trips give the same outputs."""
        from gau_keras.backend import keras
        t, x = self.build(), self.inputs()
        want = self.run(t.model, x)
        prefix = t.save_weights_as_checkpoint(
            str(self.tmp_path / 'ckpt' / 'model.ckpt'))
        fresh = self.build()
        assert not np.allclose(self.run(fresh.model, x), want)
        fresh.load_weights_from_checkpoint(prefix)
        np.testing.assert_array_equal(self.run(fresh.model, x), want)
        path = str(self.tmp_path / 'model.keras')
        t.model.save(path)
        loaded = keras.models.load_model(path)      # safe mode, registered
        assert len(attention_units(loaded)) == len(attention_units(t.model))
        np.testing.assert_array_equal(self.run(loaded, x), want)

    def mixed_precision_close(self, policy_name, tol):
        """Same weights under ``policy_name``: low-dtype units, float32
        finite outputs within ``tol`` × scale on the real tokens.  Returns
        the largest error relative to that scale."""
        t, x = self.build(), self.inputs(seed=1)
        want = self.run(t.model, x)
        prefix = t.save_weights_as_checkpoint(
            str(self.tmp_path / 'mp' / 'model.ckpt'))
        tf.keras.mixed_precision.set_global_policy(policy_name)
        try:
            low = self.build()
        finally:
            tf.keras.mixed_precision.set_global_policy('float32')
        low.load_weights_from_checkpoint(prefix)
        dtype = policy_name.replace('mixed_', '')
        assert {u.compute_dtype for u in attention_units(low.model)} == {
            dtype}
        out = low.model(x, training=False)
        assert out.dtype == tf.float32
        got = out.numpy()
        assert np.isfinite(got).all()
        real = x[0] != 0
        scale = np.abs(want[real]).max()
        np.testing.assert_allclose(got[real], want[real], atol=tol * scale)
        return np.abs(got[real] - want[real]).max() / scale

    def xla_parity(self, steps=2):
        """XLA forward = eager forward; XLA Trainer steps = eager steps."""
        t, x = self.build(), self.inputs(seed=2)
        eager = self.run(t.model, x)
        compiled = tf.function(lambda a, b: t.model([a, b], training=False),
                               jit_compile=True)
        np.testing.assert_allclose(compiled(*x).numpy(), eager,
                                   atol=1e-5 * np.abs(eager).max())
        other = self.build()
        init = t.model.get_weights()
        other.model.set_weights(init)
        results = [self._train(m, x, steps, jit)
                   for m, jit in ((t.model, False), (other.model, True))]
        (loss_a, w_a), (loss_b, w_b) = results
        np.testing.assert_allclose(loss_b, loss_a, rtol=1e-5)
        for a, b in zip(w_a, w_b):
            np.testing.assert_allclose(b, a, atol=1e-5)
        moved = max(np.abs(a - b).max() for a, b in zip(w_a, init))
        assert moved > 1e-3 and loss_a[-1] < loss_a[0], loss_a

    def _train(self, model, x, steps, jit):
        from gau_keras import training
        loss = tf.keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction='none')
        losses = []

        def batches(position):
            while True:
                yield x, x[0]
        training.Trainer(model, loss, tf.keras.optimizers.SGD(0.5), batches,
                         steps, str(self.tmp_path / ('xla%s' % jit)),
                         save_every=steps, jit_compile=jit, verbose=0,
                         callbacks=[lambda s, l: losses.append(l)]).train()
        return losses, model.get_weights()
