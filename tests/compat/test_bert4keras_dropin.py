"""bert4keras drop-in details: the pooler of the GAU models, integer labels
into custom losses, the import order, the public names of the modules and
the layer-name table of docs/porting.md."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import gau_keras
from gau_keras.backend import K, keras
from tiny_configs import GAU_MODELS, tiny_config

from conftest import ROOT


def _build(model, **kwargs):
    return gau_keras.build_transformer_model(
        model=model, return_keras_model=False,
        **dict(tiny_config(model, dropout=0.0), **kwargs))


def _tokens():
    rng = np.random.RandomState(1)
    tokens = rng.randint(1, 50, size=(3, 7))
    return [tokens, (np.arange(7)[None] >= 4).astype('int32').repeat(3, 0)]


# -- the pooler (with_pool) ---------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('model', GAU_MODELS)
def test_with_pool_is_tanh_dense_of_the_first_token(model):
    plain = _build(model)
    pooled = _build(model, with_pool=True)
    for layer in plain.model.layers:            # same body weights
        if layer.weights:
            pooled.model.get_layer(layer.name).set_weights(layer.get_weights())
    x = _tokens()
    sequence = plain.model.predict(x, verbose=0)
    out = pooled.model.predict(x, verbose=0)
    kernel, bias = pooled.model.get_layer('Pooler-Dense').get_weights()
    assert out.shape == (3, 16)
    np.testing.assert_allclose(out, np.tanh(sequence[:, 0] @ kernel + bias),
                               atol=1e-5)


@pytest.mark.parametrize('model', ['gau_alpha', 'flash_quad'])
def test_with_pool_and_mlm_outputs_in_bert4keras_order(model):
    """SimBERT's build: with_pool='linear', application='unilm' →
    outputs [pooler, MLM]."""
    bert = _build(model, with_pool='linear', application='unilm')
    pool, mlm = bert.model.outputs
    assert tuple(pool.shape) == (None, 16)
    assert tuple(mlm.shape) == (None, None, 50)
    x = _tokens()
    p, probs = bert.model.predict(x, verbose=0)
    dense = bert.model.get_layer('Pooler-Dense')
    assert dense.get_config()['activation'] == 'linear'
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    mlm_only = _build(model, with_mlm=True)
    assert len(mlm_only.model.outputs) == 1


@pytest.mark.slow
@pytest.mark.parametrize('model', GAU_MODELS)
def test_pooler_round_trips_through_a_release_checkpoint(model, tmp_path):
    bert = _build(model, with_pool=True)
    dense = bert.model.get_layer('Pooler-Dense')
    dense.set_weights([w + 0.25 for w in dense.get_weights()])
    path = str(tmp_path / 'bert_model.ckpt')
    bert.save_weights_as_checkpoint(path)
    import tensorflow as tf
    names = dict(tf.train.list_variables(path))
    assert names['bert/pooler/dense/kernel'] == [16, 16]
    assert names['bert/pooler/dense/bias'] == [16]
    again = gau_keras.build_transformer_model(
        checkpoint_path=path, model=model, with_pool=True,
        return_keras_model=False, **tiny_config(model, dropout=0.0))
    for a, b in zip(again.model.get_layer('Pooler-Dense').get_weights(),
                    dense.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = _tokens()
    np.testing.assert_allclose(again.model.predict(x, verbose=0),
                               bert.model.predict(x, verbose=0), atol=1e-6)


def test_with_nsp_is_refused():
    with pytest.raises(Exception, match='with_nsp'):
        _build('gau_alpha', with_nsp=True)


# -- integer labels into a custom loss ------------------------------------

def globalpointer_crossentropy(y_true, y_pred):
    """bert4keras's task_relation_extraction_gplinker.py loss, verbatim."""
    from bert4keras.backend import sparse_multilabel_categorical_crossentropy
    shape = K.shape(y_pred)
    y_true = y_true[..., 0] * K.cast(shape[2], K.floatx()) + y_true[..., 1]
    y_pred = K.reshape(y_pred, (shape[0], -1, K.prod(shape[2:])))
    loss = sparse_multilabel_categorical_crossentropy(y_true, y_pred, True)
    return K.mean(K.sum(loss, axis=1))


def test_integer_labels_reach_a_custom_loss_as_float32():
    from gau_keras.layers import EfficientGlobalPointer
    from gau_keras.snippets import DataGenerator, sequence_padding

    class Generator(DataGenerator):
        def __iter__(self, random=False):
            tokens, labels = [], []
            for is_end, (ids, spans) in self.sample(random):
                tokens.append(ids)
                labels.append(sequence_padding([list(s) for s in spans]))
                if len(tokens) == self.batch_size or is_end:
                    yield [sequence_padding(tokens)], sequence_padding(
                        labels, seq_dims=2)
                    tokens, labels = [], []

    data = [([1, 5, 6, 7, 2], [{(1, 2)}, {(3, 3), (1, 1)}]),
            ([1, 8, 9, 2], [{(2, 2)}, {(0, 0)}])]
    generator = Generator(data, batch_size=2)
    x, y = next(generator.forfit(random=False))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, sequence_padding(
        [sequence_padding([list(s) for s in d[1]]) for d in data], seq_dims=2))
    tokens = keras.layers.Input((None,))
    h = keras.layers.Embedding(10, 8)(tokens)
    scores = EfficientGlobalPointer(heads=2, head_size=4)(h)
    model = keras.models.Model(tokens, scores)
    model.compile(loss=globalpointer_crossentropy, optimizer='sgd')
    history = model.fit(generator.forfit(), steps_per_epoch=1, epochs=1,
                        verbose=0)
    assert np.isfinite(history.history['loss'][0])
    # the same loss as with labels converted by hand
    expected = model.evaluate(x, y.astype('float32'), verbose=0)
    assert model.evaluate(generator.forfit(random=False), steps=1,
                          verbose=0) == pytest.approx(expected, rel=1e-6)


def test_float_targets():
    from gau_keras.snippets import fit_batch, float_targets
    a = np.array([[1], [0]])
    assert float_targets(a).dtype == np.float32
    assert float_targets(np.array([True])).dtype == np.float32
    assert float_targets(np.array([0.5], 'float64')).dtype == np.float64
    out = float_targets([a, {'b': a}])
    assert out[0].dtype == np.float32 and out[1]['b'].dtype == np.float32
    x, y = fit_batch(([a, a], None))
    assert isinstance(x, tuple) and y is None
    x, y, w = fit_batch(([a], a, a))
    assert isinstance(x, list) and y.dtype == np.float32 and w is a


# -- import order (no environment variables) --------------------------------

def _fresh_python(code):
    env = {k: v for k, v in os.environ.items()
           if k not in ('TF_KERAS', 'TF_USE_LEGACY_KERAS')}
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    return subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


BUILD_AND_TRAIN = '''
import numpy as np
model = gau_keras.build_transformer_model('gau_alpha_tiny', with_pool=True)
out = keras.layers.Dense(2, activation='softmax')(model.output)
model = keras.models.Model(model.inputs, out)
model.compile(loss='sparse_categorical_crossentropy', optimizer='adam')
x = [np.ones((2, 5), 'int32'), np.zeros((2, 5), 'int32')]
model.fit(x, np.array([[0], [1]]), verbose=0)
print(type(model).__module__)
'''


@pytest.mark.slow
def test_tensorflow_before_gau_keras_works():
    """bert4keras's task_iflytek_multigpu.py order: TensorFlow (and its
    device_lib) first.  gau_keras still selects tf-keras, sets both
    variables, and a model builds and trains."""
    out = _fresh_python('import tensorflow as tf\n'
                        'from tensorflow.python.client import device_lib\n'
                        'import gau_keras, os\n'
                        'print(tf.keras.layers.Layer.__module__)\n'
                        'print(os.environ["TF_KERAS"], '
                        'os.environ["TF_USE_LEGACY_KERAS"])\n'
                        'from gau_keras.backend import keras\n'
                        'from keras.layers import Dense\n'
                        'assert Dense is keras.layers.Dense\n'
                        + BUILD_AND_TRAIN)
    assert out.returncode == 0, out.stderr[-3000:]
    layer_module, flags, model_module = out.stdout.split('\n')[-4:-1]
    assert layer_module.startswith('tf_keras'), out.stdout
    assert flags == '1 1'
    assert model_module.startswith('tf_keras')


@pytest.mark.slow
@pytest.mark.parametrize('first', ['from keras.layers import Dense',
                                   'import keras'])
def test_keras_3_names_before_gau_keras_fail_at_import(first):
    out = _fresh_python('import tensorflow\n' + first +
                        '\nimport gau_keras\nprint("imported")')
    assert out.returncode != 0 and 'imported' not in out.stdout
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith('ImportError: Keras 3 objects were imported '
                           'before gau_keras')
    assert first.split()[-1] in line            # names what it found
    assert 'Fix: put `import gau_keras`' in line


# -- the public names of bert4keras's modules -----------------------------

@pytest.mark.parametrize('name', ['layers', 'models', 'backend', 'snippets',
                                  'tokenizers', 'optimizers'])
def test_every_public_bert4keras_name_is_exported(name):
    import importlib
    from gau_keras.bert4keras_names import OMITTED
    theirs = importlib.import_module('bert4keras.' + name)
    theirs = getattr(theirs, 'module', theirs)   # snippets' uniout hook
    ours = importlib.import_module('gau_keras.' + name)
    missing = sorted(n for n in dir(theirs) if not n.startswith('_') and
                     n not in OMITTED and not hasattr(ours, n))
    assert missing == []
    for n in dir(theirs):         # keras's classes are keras's, unchanged
        value = getattr(theirs, n)
        if isinstance(value, type) and value.__module__.startswith(
                'tf_keras'):
            assert getattr(ours, n) is value, n


def test_reexports_prefer_the_fixed_versions():
    import bert4keras.models
    from gau_keras import backend, layers, models
    assert models.ConditionalRandomField is layers.ConditionalRandomField
    assert models.GlobalPointer is layers.GlobalPointer
    assert layers.sinusoidal_embeddings is backend.sinusoidal_embeddings
    assert models.BERT is bert4keras.models.BERT
    assert models.extend_with_language_model is \
        bert4keras.models.extend_with_language_model
    for n in ('Flatten', 'BatchNormalization', 'TimeDistributed', 'Softmax',
              'Permute', 'GRU', 'Conv1D', 'concatenate', 'InputSpec'):
        assert getattr(layers, n) is getattr(keras.layers, n)
    for n in ('recompute_grad', 'piecewise_linear', 'attention_normalize',
              'Sinusoidal'):
        assert callable(getattr(backend, n))


def test_omitted_names_are_documented():
    from gau_keras.bert4keras_names import OMITTED
    with open(os.path.join(ROOT, 'docs', 'porting.md'), encoding='utf-8') as f:
        text = f.read()
    for name in OMITTED:
        assert '`%s`' % name in text, name


# -- docs/porting.md's layer-name table ---------------------------------------

def test_layer_name_table_in_the_docs_matches_the_models():
    from gau_keras.bert4keras_names import layer_name_table
    with open(os.path.join(ROOT, 'docs', 'porting.md'), encoding='utf-8') as f:
        text = f.read()
    found = re.search(r'<!-- layer-names:start -->\n(.*?)<!-- layer-names:end '
                      r'-->', text, re.S)
    assert found, 'docs/porting.md has no layer-name table'
    assert found.group(1) == layer_name_table()


def test_layer_name_table_is_the_models_layers():
    """Independent of the generator: a built GAU-α's layer names (block
    numbers written {i}) all appear in the table's gau_alpha column."""
    from gau_keras.bert4keras_names import layer_name_table
    rows = [line.split('|') for line in layer_name_table().splitlines()[2:]]
    gau = {r[1].strip().strip('`') for r in rows if r[2].strip() == 'x'}
    model = gau_keras.build_transformer_model(
        model='gau_alpha', with_pool=True, with_mlm=True,
        **dict(tiny_config('gau_alpha'), embedding_size=8))
    names = {re.sub(r'^Transformer-\d+-', 'Transformer-{i}-', l.name)
             for l in model.layers}
    assert names == gau
    assert '`Transformer-{i}-GatedAttentionUnit-Norm`' in rows[-1][2]


# -- the bert4keras-examples extra --------------------------------------------

def test_the_examples_extra_brings_what_the_ports_import():
    """Third-party modules imported by tests/bert4keras_examples/ are in
    install_requires or the 'bert4keras-examples' extra (and in
    requirements.txt, which the tests install)."""
    import ast
    setup = ast.parse(open(os.path.join(ROOT, 'setup.py')).read())
    call = next(n for n in ast.walk(setup) if isinstance(n, ast.Call) and
                getattr(n.func, 'id', '') == 'setup')
    extras = next(k.value for k in call.keywords if k.arg == 'extras_require')
    extras = {ast.literal_eval(k): ast.literal_eval(v) for k, v in
              zip(extras.keys, extras.values) if
              ast.literal_eval(k) == 'bert4keras-examples'}

    def project(requirement):
        return re.split(r'[<>=\[ ]', requirement)[0].replace('-', '_')
    provided = {project(r) for r in extras['bert4keras-examples']}
    provided |= {'numpy', 'tf_keras', 'jieba'}   # install_requires
    provided |= {'gau_keras', 'keras', 'tensorflow', 'bert4keras'}
    folder = os.path.join(ROOT, 'tests', 'bert4keras_examples')
    imported = set()
    for name in os.listdir(folder):
        if name.endswith('.py'):
            tree = ast.parse(open(os.path.join(folder, name),
                                  encoding='utf-8').read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split('.')[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imported.add(node.module.split('.')[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names
                   and m != '__future__'}
    assert 'tqdm' in third_party
    assert third_party <= provided, third_party - provided
    requirements = open(os.path.join(ROOT, 'requirements.txt')).read()
    for module in third_party & {project(r) for r in
                                 extras['bert4keras-examples']}:
        assert re.search(r'^%s==' % module, requirements, re.M), module
