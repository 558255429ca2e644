# -*- coding: utf-8 -*-
"""Port of CLUE-bert4keras's src/snippets.py: shared settings of the task
scripts (paths, tokenizer, pre-trained model, optimizers).

Edits from the original: the imports say gau_keras; the paths come from
environment variables (CLUE_DATA_PATH, GAU_CONFIG, GAU_CHECKPOINT,
GAU_VOCAB); ``model='gau_alpha'`` with ``vocab_size`` following the
tokenizer; ``last_layer`` from ``block_output_name`` (the BERT layer name
'Transformer-%s-FeedForward-Norm' does not exist in GAU-alpha);
``fit_verbose`` for the scripts' ``model.fit`` calls.
"""
import os

from gau_keras.backend import keras, K
from gau_keras.tokenizers import Tokenizer
from gau_keras.models import build_transformer_model
from gau_keras.layer_names import block_output_name
from gau_keras.optimizers import AdaFactor
from gau_keras.optimizers import extend_with_gradient_accumulation
from gau_keras.progress import fit_verbose

# Common settings
data_path = os.environ.get('CLUE_DATA_PATH', '/root/clue/datasets/')
learning_rate = 5e-4
pooling = 'first'

# Folder of the saved weights
if not os.path.exists('weights'):
    os.mkdir('weights')

# Folder of the submission files
if not os.path.exists('results'):
    os.mkdir('results')

# The pre-trained model (GAU-alpha's release, or a config without checkpoint)
config_path = os.environ.get('GAU_CONFIG', 'gau_alpha_base')
checkpoint_path = os.environ.get('GAU_CHECKPOINT') or None
dict_path = os.environ.get('GAU_VOCAB', 'vocab.txt')

# Tokenizer
tokenizer = Tokenizer(dict_path, do_lower_case=True)

# Pre-trained model
base = build_transformer_model(
    config_path,
    checkpoint_path,
    model='gau_alpha',
    application='unilm',
    return_keras_model=False,
    vocab_size=tokenizer._vocab_size,
)

# Output of the last block
last_layer = block_output_name(base, -1)

if pooling == 'first':
    pooling_layer = keras.layers.Lambda(lambda x: x[:, 0])
elif pooling == 'avg':
    pooling_layer = keras.layers.GlobalAveragePooling1D()
elif pooling == 'max':
    pooling_layer = keras.layers.GlobalMaxPooling1D()

# Optimizers
AdaFactorG = extend_with_gradient_accumulation(AdaFactor, name='AdaFactorG')

optimizer = AdaFactor(
    learning_rate=learning_rate, beta1=0.9, min_dim_size_to_factor=10**6
)

optimizer2 = AdaFactorG(
    learning_rate=learning_rate,
    beta1=0.9,
    min_dim_size_to_factor=10**6,
    grad_accum_steps=2,
)

optimizer4 = AdaFactorG(
    learning_rate=learning_rate,
    beta1=0.9,
    min_dim_size_to_factor=10**6,
    grad_accum_steps=4,
)
