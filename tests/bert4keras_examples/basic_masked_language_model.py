#! -*- coding: utf-8 -*-
# 测试代码可用性: MLM
# Port of bert4keras 0.11.5's examples/basic_masked_language_model.py:
# imports, paths and model='gau_alpha' changed (tests/compat/
# test_bert4keras_examples.py writes the checkpoint and vocabulary).

from gau_keras.models import build_transformer_model
from gau_keras.tokenizers import Tokenizer
import numpy as np

config_path = 'bert_config.json'
checkpoint_path = 'bert_model.ckpt'
dict_path = 'vocab.txt'

tokenizer = Tokenizer(dict_path, do_lower_case=True)  # 建立分词器
model = build_transformer_model(
    config_path=config_path, checkpoint_path=checkpoint_path, with_mlm=True,
    model='gau_alpha'
)  # 建立模型，加载权重

token_ids, segment_ids = tokenizer.encode(u'科学技术是第一生产力')

# mask掉“技术”
token_ids[3] = token_ids[4] = tokenizer._token_dict['[MASK]']

# 用mlm模型预测被mask掉的部分
probas = model.predict([np.array([token_ids]), np.array([segment_ids])])[0]
print(tokenizer.decode(probas[3:5].argmax(axis=1)))  # 结果正是“技术”
