"""The public names of bert4keras 0.11.5's modules, in gau_keras's.

A ported script's ``from bert4keras.X import name`` becomes ``from
gau_keras.X import name`` for every public name of bert4keras's ``layers``,
``models``, ``backend``, ``snippets``, ``tokenizers`` and ``optimizers``
(``X`` the same): each gau_keras module defines its own versions of what it
fixes and takes the rest from bert4keras with ``reexport``.  ``OMITTED``
lists the few names left out, with the reason.

Example::

    from gau_keras.bert4keras_names import missing_names
    missing_names('layers')     # [] : every name but OMITTED's is there
"""
import importlib
import types

#: The modules whose names gau_keras mirrors.
MODULES = ('layers', 'models', 'backend', 'snippets', 'tokenizers',
           'optimizers')

_IMPORTS = ('imported by bert4keras for its own use (standard library, numpy, '
            'TensorFlow internals), not its API')

#: Names deliberately not re-exported → why.
OMITTED = {
    'np': _IMPORTS, 'json': _IMPORTS, 'os': _IMPORTS, 'sys': _IMPORTS,
    're': _IMPORTS, 'unicodedata': _IMPORTS, 'nest': _IMPORTS,
    'tape': _IMPORTS, 'tf_inspect': _IMPORTS, 'device_lib': _IMPORTS,
    'six': _IMPORTS, 'logging': _IMPORTS, 'defaultdict': _IMPORTS,
    'strtobool': 'distutils (removed in Python 3.12) helper bert4keras '
                 'imports to read TF_KERAS; gau_keras sets TF_KERAS itself',
    'custom_objects': "bert4keras's per-module dicts of its classes; "
                      'gau_keras has one registry: '
                      'gau_keras.layers.custom_objects() returns the dict',
}


def bert4keras_module(name):
    """bert4keras's module ``name`` (``snippets`` unwrapped from the
    ``uniout`` hook bert4keras installs in its place)."""
    module = importlib.import_module('bert4keras.' + name)
    if not isinstance(module, types.ModuleType):
        module = module.module
    return module


def public_names(module):
    """Names not starting with '_' (what ``from module import *`` and a
    reader of the module see)."""
    return sorted(n for n in vars(module) if not n.startswith('_'))


def reexport(namespace, name, sources=()):
    """Bind in ``namespace`` every public name of ``bert4keras.<name>`` it
    lacks (except ``OMITTED``): from the first of ``sources`` (gau_keras
    modules with fixed versions) that has it, else bert4keras's object.
    Returns the names added.

    Example (at the end of gau_keras/layers.py)::

        reexport(globals(), 'layers', sources=[backend])
    """
    origin = bert4keras_module(name)
    added = []
    for key in public_names(origin):
        if key in namespace or key in OMITTED:
            continue
        for source in tuple(sources) + (origin,):
            if hasattr(source, key):
                namespace[key] = getattr(source, key)
                break
        added.append(key)
    return added


def missing_names(name):
    """Public names of ``bert4keras.<name>`` that ``gau_keras.<name>``
    lacks, ``OMITTED`` aside (``[]`` when the module is complete)."""
    ours = importlib.import_module('gau_keras.' + name)
    return [key for key in public_names(bert4keras_module(name))
            if key not in OMITTED and not hasattr(ours, key)]


# -- the Keras layer names of each model (docs/porting.md's table) ----------

#: The models of the layer-name table: gau_keras's and, for comparison,
#: bert4keras's BERT.
TABLE_MODELS = ('gau_alpha', 'flash_quad', 'flash', 'bert')

#: A tiny config every model of the table builds from (2 blocks; an
#: embedding size below the hidden size, so the mapping layers exist).
_TINY = dict(vocab_size=32, hidden_size=16, embedding_size=8,
             intermediate_size=32, attention_key_size=8,
             num_attention_heads=1, num_hidden_layers=2, hidden_act='swish',
             type_vocab_size=2, max_position_embeddings=32, chunk_size=4,
             hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def layer_names(model):
    """The layer names of ``model`` (a registered model name) built with
    the pooler and the MLM head, block numbers written ``{i}`` (config keys
    a model does not read are ignored).

    Example::

        layer_names('gau_alpha')[:2]   # ['Input-Token', 'Input-Segment']
    """
    import re
    import warnings
    from gau_keras.models import build_transformer_model
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        built = build_transformer_model(model=model, with_pool=True,
                                        with_mlm=True, **_TINY)
    names = []
    for layer in built.layers:
        name = re.sub(r'^Transformer-\d+-', 'Transformer-{i}-', layer.name)
        if name not in names:
            names.append(name)
    return names


def layer_name_table(models=TABLE_MODELS):
    """docs/porting.md's table: one row per layer name, one column per
    model ('x' where the model has that layer), then the row of each
    model's block output (``gau_keras.layer_names.block_output_format``).
    """
    from gau_keras.layer_names import block_output_format
    per_model = {m: layer_names(m) for m in models}
    rows = []
    for m in models:
        rows += [n for n in per_model[m] if n not in rows]
    lines = ['| layer | %s |' % ' | '.join('`%s`' % m for m in models),
             '|---|%s' % ('---|' * len(models))]
    for name in rows:
        marks = ['x' if name in per_model[m] else '' for m in models]
        lines.append('| `%s` | %s |' % (name, ' | '.join(marks)))
    outputs = ['`%s`' % block_output_format(m).replace('{index}', '{i}')
               for m in models]
    lines.append('| **block `i` output** | %s |' % ' | '.join(outputs))
    return '\n'.join(lines) + '\n'
