"""Alias of ``gau_keras.release_checkpoints``, kept for one release so that
``from gau_keras.checkpoints import X`` keeps working.

Import from ``gau_keras.release_checkpoints`` instead: TF1 name-based
weights in the layout of the public GAU-α release (``bert_model.ckpt``).
The Trainer's resumable training checkpoints are another thing
(``gau_keras.training``).
"""
from gau_keras.release_checkpoints import *  # noqa: F401,F403
from gau_keras.release_checkpoints import __all__  # noqa: F401
