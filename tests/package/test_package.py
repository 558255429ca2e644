"""Import-time behaviour: Keras 2 selection, import order (TensorFlow
first is in test_bert4keras_dropin.py), TensorFlow checks, lazy
submodules, and the README's load_model recipe in a fresh process."""
import json
import os
import subprocess
import sys
import textwrap

import gau_keras
import pytest

FIX = 'TF_KERAS=1 TF_USE_LEGACY_KERAS=1'


def run_python(code, cwd=None, **env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ('TF_KERAS', 'TF_USE_LEGACY_KERAS',
                        'GAU_KERAS_ALLOW_UNTESTED_TF')}
    env.update(env_changes, TF_CPP_MIN_LOG_LEVEL='3')
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def last_error(out):
    assert out.returncode != 0, out.stdout
    return out.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_keras3_already_loaded_is_a_clear_error():
    out = run_python('import tensorflow as tf\n'
                     'tf.keras.layers.Layer\n'
                     'import gau_keras')
    line = last_error(out)
    assert line.startswith('ImportError: Keras 3 is already in use')
    assert FIX in line and 'import gau_keras' in line


@pytest.mark.parametrize('var', ['TF_KERAS', 'TF_USE_LEGACY_KERAS'])
def test_conflicting_environment_is_a_clear_error(var):
    out = run_python('import gau_keras', **{var: '0'})
    assert var in last_error(out)


@pytest.mark.slow
@pytest.mark.parametrize('first,second', [
    ('from bert4keras.tokenizers import Tokenizer', 'import gau_keras'),
    ('from bert4keras.backend import keras, K',
     'from gau_keras import build_transformer_model')])
def test_bert4keras_first_without_variables_names_cause_and_fix(first,
                                                                second):
    """bert4keras.backend picks Keras 3 when TF_KERAS is unset: gau_keras
    fails at its import, saying so and how to fix it (never "cannot import
    name")."""
    out = run_python(first + '\n' + second)
    line = last_error(out)
    assert line.startswith('ImportError: bert4keras was imported before '
                           'gau_keras without TF_KERAS=1'), out.stderr
    assert FIX in line and 'import gau_keras' in line
    assert 'cannot import name' not in out.stderr


@pytest.mark.slow
def test_orders_that_work():
    """The bert4keras package alone before gau_keras, and any bert4keras
    module first when the variables are set, both build a model."""
    build = ("m = gau_keras.build_transformer_model('gau_alpha_tiny', "
             "model='gau_alpha')\nprint(type(m).__module__)")
    out = run_python('import bert4keras\nimport gau_keras\n' + build)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1].startswith('tf_keras')
    out = run_python('from bert4keras.models import build_transformer_model\n'
                     'import tensorflow\nimport gau_keras\n' + build,
                     TF_KERAS='1', TF_USE_LEGACY_KERAS='1')
    assert out.returncode == 0, out.stderr


def test_missing_tensorflow_says_what_to_install():
    out = run_python("import sys\nsys.modules['tensorflow'] = None\n"
                     'import gau_keras')
    line = last_error(out)
    assert line.startswith('ImportError: gau_keras needs TensorFlow 2.21')
    assert "gau_keras[gpu]" in line and 'tf-keras==2.21.*' in line


@pytest.mark.slow
def test_untested_tensorflow_version():
    code = ("import tensorflow as tf\ntf.__version__ = '2.15.1'\n"
            'import gau_keras\nprint("imported")')
    line = last_error(run_python(code))
    assert 'TensorFlow 2.15.1 is installed' in line
    assert '>=2.21,<2.22' in line and 'GAU_KERAS_ALLOW_UNTESTED_TF' in line
    # allowed: a warning, but tf-keras must still match TensorFlow
    line = last_error(run_python(code, GAU_KERAS_ALLOW_UNTESTED_TF='1'))
    assert line == ("ImportError: tf-keras 2.21.0 does not match TensorFlow "
                    "2.15.1: `pip install 'tf-keras==2.15.*'`")
    code = code.replace('import gau_keras', "import tf_keras\n"
                        "tf_keras.__version__ = '2.15.0'\nimport gau_keras")
    out = run_python(code, GAU_KERAS_ALLOW_UNTESTED_TF='1')
    assert out.returncode == 0 and 'imported' in out.stdout, out.stderr
    assert 'RuntimeWarning' in out.stderr and '2.15.1' in out.stderr


def test_lazy_submodules_keep_their_errors(tmp_path, monkeypatch):
    """An error inside a submodule reached through ``gau_keras.X`` or
    ``from gau_keras import X`` propagates with its own text."""
    (tmp_path / 'broken_import.py').write_text(
        "raise ImportError('the real cause: libfoo missing')\n")
    (tmp_path / 'broken_attr.py').write_text(
        'import math\nmath.no_such_function\n')
    monkeypatch.setattr(gau_keras, '__path__',
                        list(gau_keras.__path__) + [str(tmp_path)])
    for name in ('broken_import', 'broken_attr'):
        monkeypatch.delitem(sys.modules, 'gau_keras.' + name, raising=False)
    with pytest.raises(ImportError, match='the real cause: libfoo missing'):
        from gau_keras import broken_import  # noqa: F401
    with pytest.raises(ImportError, match='no_such_function'):
        from gau_keras import broken_attr  # noqa: F401
    with pytest.raises(ImportError, match='no_such_function'):
        gau_keras.broken_attr
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        gau_keras.nothing_here
    assert gau_keras.training.__name__ == 'gau_keras.training'


@pytest.mark.slow
def test_import_makes_the_layers_reachable_in_a_fresh_process():
    """After a bare ``import gau_keras``, every Layer / Initializer class of
    the layers, FLASH and the output layers is in custom_objects()."""
    out = run_python('''
    import gau_keras
    from gau_keras import keras, layers, flash, output_layers
    objs = gau_keras.layers.custom_objects()
    reg = keras.utils.get_custom_objects()
    base = (keras.layers.Layer, keras.initializers.Initializer)
    names = [n for m in (layers, flash, output_layers)
             for n, c in vars(m).items() if isinstance(c, type) and
             issubclass(c, base) and c.__module__ == m.__name__]
    assert len(names) >= 14, names
    for n in names + ["GatedAttentionUnit", "MixedChunkAttention",
                      "Embedding", "UniLMMask", "MultiHeadAttention"]:
        assert n in objs and n in reg, n
    print(gau_keras.models.FLASH.layer_name(0, 1))
    ''')
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == 'Transformer-0-MixedChunkAttention-1'


def test_renamed_modules_keep_their_old_import_paths():
    """gau_keras.heads and gau_keras.checkpoints are aliases of
    gau_keras.output_layers (+ the bert4keras names of gau_keras.layers)
    and gau_keras.release_checkpoints."""
    from gau_keras import (checkpoints, heads, layers, output_layers,
                           release_checkpoints)
    assert 'alias' in heads.__doc__.lower()
    assert 'alias' in checkpoints.__doc__.lower()
    for name in output_layers.__all__:
        assert getattr(heads, name) is getattr(output_layers, name), name
    for name in heads.__all__:
        assert getattr(heads, name) is getattr(
            output_layers if name in output_layers.__all__ else layers, name)
    assert heads.MultiHeadAttention is layers.MultiHeadAttention
    assert set(heads.FIXED_HEADS) <= set(layers.custom_objects())
    public = [n for n in vars(release_checkpoints) if not n.startswith('_')
              and getattr(getattr(release_checkpoints, n), '__module__',
                          None) == release_checkpoints.__name__]
    assert 'write_checkpoint' in public
    for name in public:
        assert name in release_checkpoints.__all__, name
        assert getattr(checkpoints, name) is getattr(release_checkpoints,
                                                     name)


#: (model, application) pairs the builder allows.
APPLICATIONS = [('gau_alpha', 'encoder'), ('gau_alpha', 'lm'),
                ('gau_alpha', 'unilm'), ('flash_quad', 'encoder'),
                ('flash_quad', 'lm'), ('flash_quad', 'unilm'),
                ('flash', 'encoder'), ('flash', 'lm')]


@pytest.mark.slow
def test_readme_load_model_recipe_in_a_fresh_process(tmp_path):
    """One process saves every model / application, a fresh
    one loads each with the README's exact recipe (and one without
    custom_objects) and gets the same outputs."""
    save = '''
    import json, sys
    import numpy as np
    import gau_keras
    x = np.array([[2, 5, 7, 9, 4, 0], [3, 4, 5, 6, 7, 8]])
    s = np.array([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1]])
    np.save('x.npy', x); np.save('s.npy', s)
    for model, application in json.loads(sys.argv[1]):
        m = gau_keras.build_transformer_model(
            model + '_tiny', model=model, application=application,
            with_mlm='linear')
        path = '%s_%s.keras' % (model, application)
        m.save(path)
        np.save(path + '.npy', m([x, s]).numpy())
        if (model, application) == ('flash', 'encoder'):
            m.save('flash_encoder.h5')
    '''
    load = '''
    import json, sys
    import numpy as np
    import gau_keras
    from gau_keras import keras
    x, s = np.load('x.npy'), np.load('s.npy')
    pairs = json.loads(sys.argv[1])
    for model, application in pairs:
        path = '%s_%s.keras' % (model, application)
        loaded = keras.models.load_model(
            path, custom_objects=gau_keras.layers.custom_objects())
        np.testing.assert_array_equal(loaded([x, s]).numpy(),
                                      np.load(path + '.npy'))
    plain = keras.models.load_model('flash_lm.keras')
    h5 = keras.models.load_model(
        'flash_encoder.h5', custom_objects=gau_keras.layers.custom_objects())
    np.testing.assert_array_equal(h5([x, s]).numpy(),
                                  np.load('flash_encoder.keras.npy'))
    print('loaded', len(pairs) + 2)
    '''
    arg = json.dumps(APPLICATIONS)
    for code in (save, load):
        env = {k: v for k, v in os.environ.items()
               if k not in ('TF_KERAS', 'TF_USE_LEGACY_KERAS')}
        out = subprocess.run([sys.executable, '-c', textwrap.dedent(code),
                              arg], env=dict(env, TF_CPP_MIN_LOG_LEVEL='3'),
                             capture_output=True, text=True, timeout=600,
                             cwd=str(tmp_path))
        assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == str(len(APPLICATIONS) + 2)
