"""Analytic parameter and FLOP counts of the benchmarked encoders, and
equal-parameter sizing.

A multiply-add is 2 FLOPs; only matmuls are counted (embedding look-ups,
norms, RoPE, softmax and the optimizer are memory-bound and small); a
training step is forward + backward ≈ 3 × forward.  The parameter formulas
equal Keras's ``count_params`` of the built models
(tests/tools/test_benchmarks.py).

Example::

    import sys; sys.path.insert(0, 'scripts')
    from bench import flops
    cfgs = flops.equal_param_configs(hidden=64, units=2, key_size=16)
    flops.forward_flops('flash', cfgs['flash'], n=512, batch=2)
"""

#: The models the counts know; 'stock_gau' is bert4keras's own GAU-α stack
#: (bench.bert4keras_gau), counted as gau_alpha.
MODELS = ('gau_alpha', 'flash_quad', 'flash', 'roformer_v2', 'bert',
          'stock_gau')


# --------------------------------------------------------------------------
# parameters: analytic counts and equal-parameter sizing
# --------------------------------------------------------------------------

def gau_unit_params(H, e, s):
    """One GAU (gau_alpha / flash_quad / stock): W_i [H, 2e+s], W_o [e, H],
    q and k scales [s]:  P = H(2e+s) + eH + 2s."""
    return H * (2 * e + s) + e * H + 2 * s


def flash_unit_params(H, e, s):
    """One mixed-chunk attention: as a GAU but four scales [4, s]:
    P = H(2e+s) + eH + 4s."""
    return H * (2 * e + s) + e * H + 4 * s


def transformer_layer_params(model, H, I):
    """One layer: roformer_v2 (no biases, parameter-free norms)
    P = 4H² + 2HI; bert (biases, two LayerNorms) P = 4H² + 2HI + I + 9H."""
    if model == 'roformer_v2':
        return 4 * H * H + 2 * H * I
    if model == 'bert':
        return 4 * H * H + 2 * H * I + I + 9 * H
    raise ValueError('transformer_layer_params: model must be roformer_v2 '
                     'or bert, got %r' % (model,))


def encoder_params(model, cfg):
    """Parameters outside the embedding tables (bert: + its Embedding-Norm).

    Example::

        encoder_params('gau_alpha', dict(hidden_size=768,
            intermediate_size=1536, attention_key_size=128,
            num_hidden_layers=24))
    """
    H, L = cfg['hidden_size'], cfg['num_hidden_layers']
    I = cfg['intermediate_size']
    if model in ('gau_alpha', 'stock_gau'):
        return L * gau_unit_params(H, I, cfg['attention_key_size'])
    if model == 'flash_quad':
        return 2 * L * gau_unit_params(H, I, cfg['attention_key_size'])
    if model == 'flash':
        return 2 * L * flash_unit_params(H, I, cfg['attention_key_size'])
    extra = 2 * H if model == 'bert' else 0
    return L * transformer_layer_params(model, H, I) + extra


def embedding_params(model, cfg):
    """Token + segment (+ bert's position) embedding tables."""
    rows = cfg['vocab_size'] + cfg.get('type_vocab_size', 2)
    if model == 'bert':
        rows += cfg['max_position_embeddings']
    return rows * cfg['hidden_size']


def total_params(model, cfg):
    """Encoder plus embedding parameters."""
    return encoder_params(model, cfg) + embedding_params(model, cfg)


def counted_params(keras_model):
    """(total, encoder) parameters of a built Keras model, counted by Keras
    (encoder: all but the 'Embedding-Token' / '-Segment' / '-Position'
    tables): the measured side of ``total_params`` / ``encoder_params``."""
    total = keras_model.count_params()
    tables = sum(layer.count_params() for layer in keras_model.layers
                 if layer.name in ('Embedding-Token', 'Embedding-Segment',
                                   'Embedding-Position'))
    return total, total - tables

def matched_intermediate(model, target, H, layers):
    """The intermediate size I whose ``layers``-layer ``model`` encoder has
    ``target`` parameters (nearest integer; the count is affine in I)."""
    if model == 'roformer_v2':
        per_i, fixed = 2 * H * layers, 4 * H * H * layers
    else:
        per_i, fixed = (2 * H + 1) * layers, (4 * H * H + 9 * H) * layers \
            + 2 * H
    i = int(round((target - fixed) / float(per_i)))
    if i < 1:
        raise ValueError('cannot match %d encoder parameters with %d %s '
                         'layers of width %d: the attention alone has %d'
                         % (target, layers, model, H, fixed))
    return i


def equal_param_configs(hidden=768, units=2, key_size=128, expansion=2,
                        heads=12, vocab_size=12000, chunk_size=256,
                        max_position=512, act='swish'):
    """{model: config} with equal encoder parameters.

    ``units`` residual units: gau_alpha (and stock_gau) get ``units``
    layers; flash_quad and flash ``units // 2`` blocks of two; roformer_v2
    and bert ``units // 2`` layers whose intermediate size is solved so
    their encoder parameters equal gau_alpha's (e = expansion × hidden).

    Example::

        cfgs = equal_param_configs(hidden=768, units=2)
        cfgs['roformer_v2']['intermediate_size']   # 3200
    """
    if units < 2 or units % 2:
        raise ValueError('units must be an even number >= 2, got %r'
                         % (units,))
    e = expansion * hidden
    common = dict(hidden_size=hidden, vocab_size=vocab_size,
                  type_vocab_size=2, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    gau = dict(common, hidden_act=act, intermediate_size=e,
               attention_key_size=key_size, num_attention_heads=1)
    cfgs = {'gau_alpha': dict(gau, num_hidden_layers=units),
            'stock_gau': dict(gau, num_hidden_layers=units),
            'flash_quad': dict(gau, num_hidden_layers=units // 2),
            'flash': dict(gau, num_hidden_layers=units // 2,
                          chunk_size=chunk_size)}
    target = encoder_params('gau_alpha', cfgs['gau_alpha'])
    for model, activation in (('roformer_v2', 'relu'), ('bert', 'gelu')):
        layers = units // 2
        cfg = dict(common, hidden_act=activation, num_hidden_layers=layers,
                   num_attention_heads=heads,
                   intermediate_size=matched_intermediate(model, target,
                                                          hidden, layers))
        if model == 'bert':
            cfg['max_position_embeddings'] = max_position
        cfgs[model] = cfg
    return cfgs


# --------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------

def gau_unit_flops(n, H, e, s):
    """Forward FLOPs of one GAU on one sequence of n tokens (matmuls):
    dense 2nH(2e+s) + 2neH, attention QKᵀ 2n²s + AV 2n²e."""
    return 2 * n * H * (2 * e + s) + 2 * n * e * H + 2 * n * n * (s + e)


def flash_unit_flops(n, H, e, s, c):
    """Forward FLOPs of one mixed-chunk attention (bidirectional) on n
    tokens padded to g = ⌈n/c⌉ chunks: dense as a GAU on g·c rows, local
    2gc²(s+e), global KᵀV 2gcse + Q(KᵀV) 2gcse."""
    g = -(-n // c)
    m = g * c
    return (2 * m * H * (2 * e + s) + 2 * m * e * H
            + 2 * g * c * c * (s + e) + 4 * m * s * e)


def transformer_layer_flops(n, H, I):
    """Forward FLOPs of one Transformer layer on n tokens: Q, K, V, O
    8nH², feed-forward 4nHI, attention QKᵀ + AV 4n²H."""
    return 8 * n * H * H + 4 * n * H * I + 4 * n * n * H


def mlm_head_flops(n, H, vocab):
    """Forward FLOPs of a tied MLM head on n tokens: the [n, H] @ [H, vocab]
    logits matmul, 2nH·vocab."""
    return 2 * n * H * vocab


def forward_flops(model, cfg, n, batch=1, with_mlm=False):
    """Analytic forward FLOPs of the encoder (no embeddings; the tied MLM
    head's logits too with ``with_mlm``).

    Example::

        forward_flops('gau_alpha', cfg, n=512, batch=4)
    """
    if model not in MODELS:
        raise ValueError('forward_flops: unknown model %r; known: %s'
                         % (model, ', '.join(MODELS)))
    H, L = cfg['hidden_size'], cfg['num_hidden_layers']
    I = cfg['intermediate_size']
    if model in ('gau_alpha', 'stock_gau'):
        per = L * gau_unit_flops(n, H, I, cfg['attention_key_size'])
    elif model == 'flash_quad':
        per = 2 * L * gau_unit_flops(n, H, I, cfg['attention_key_size'])
    elif model == 'flash':
        per = 2 * L * flash_unit_flops(n, H, I, cfg['attention_key_size'],
                                       cfg.get('chunk_size', 256))
    else:
        per = L * transformer_layer_flops(n, H, I)
    if with_mlm:
        per += mlm_head_flops(n, H, cfg['vocab_size'])
    return float(per) * batch


def train_flops(model, cfg, n, batch=1, with_mlm=False):
    """A training step: forward + backward ≈ 3 × forward."""
    return 3.0 * forward_flops(model, cfg, n, batch, with_mlm)
