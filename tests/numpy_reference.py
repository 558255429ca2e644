"""Plain-numpy reference forward passes (float64), independent of gau_keras/TF.

Transcribed from the formulas of the GAU paper (arXiv 2202.10447), RoPE
(arXiv 2104.09864), softmax_plus (https://kexue.fm/archives/8823) and GAU-α
(https://kexue.fm/archives/9052):

    GAU:  U = φ(X W_u), V = φ(X W_v), Z = φ(X W_z)  (one dense: u, v, z)
          Q = RoPE(γ_q ⊙ Z + β_q),  K = RoPE(γ_k ⊙ Z + β_k)
          A = normalise(Q Kᵀ / √s),  O = (U ⊙ A V) W_o
    GAU-α: emb(token) + emb(segment) → RMS norm → L × [GAU → Add → RMS norm]
          → optional tied MLM logits h Eᵀ.

Nothing here imports TensorFlow, Keras or gau_keras.
"""
import numpy as np

#: tf-keras's K.epsilon(), the epsilon of bert4keras's LayerNormalization.
RMS_EPS = 1e-7


def swish(x):
    x = np.asarray(x, np.float64)
    return x / (1.0 + np.exp(-x))


def rope_angles(positions, dim, base=10000.0):
    """p·θ_i with θ_i = base^(-2i/dim), i = 0 … dim/2-1: [..., n, dim/2]."""
    positions = np.asarray(positions, np.float64)
    theta = base ** (-2.0 * np.arange(dim // 2) / dim)
    return positions[..., None] * theta


def rope(x, positions=None, layout='interleaved', base=10000.0):
    """Rotates each pair (x_a, x_b) of the last axis by p·θ_i.

    x: [b, n, d]. positions: None (0 … n-1), [n] or [b, n].
    'interleaved' pairs (x_2i, x_2i+1); 'half' pairs (x_i, x_{i+d/2}).
    """
    x = np.asarray(x, np.float64)
    n, d = x.shape[-2], x.shape[-1]
    if positions is None:
        positions = np.arange(n)
    ang = rope_angles(positions, d, base)
    if ang.ndim == 2:
        ang = ang[None]
    cos, sin = np.cos(ang), np.sin(ang)
    out = np.empty_like(x)
    if layout == 'interleaved':
        ia, ib = np.arange(0, d, 2), np.arange(1, d, 2)
    elif layout == 'half':
        ia, ib = np.arange(d // 2), np.arange(d // 2, d)
    else:
        raise ValueError(layout)
    xa, xb = x[..., ia], x[..., ib]
    out[..., ia] = xa * cos - xb * sin
    out[..., ib] = xb * cos + xa * sin
    return out


def rms_norm(x, eps=RMS_EPS):
    """x / sqrt(mean(x²) + ε) over the last axis (no scale, no offset)."""
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def _masked_softmax(a, mask):
    a = np.where(mask, a, -np.inf)
    m = np.max(a, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(mask, np.exp(a - m), 0.0)
    return e / np.maximum(np.sum(e, axis=-1, keepdims=True), 1e-300)


def normalize(a, mask=None, method='softmax_plus'):
    """A from logits a = QKᵀ/√s; mask True where a query may see a key.

    n = number of keys the query may see (sum of its mask row).
      squared_relu: relu(a)² / n   (masked entries are 0)
      squared_relu_n2: relu(a / n)²  (the paper's pseudo-code, 1/n²)
      softmax_plus: softmax(log(max(n, 16)) / log(512) · a) over visible keys
      softmax:      softmax(a) over visible keys
    """
    a = np.asarray(a, np.float64)
    if mask is None:
        mask = np.ones(a.shape, bool)
    mask = np.broadcast_to(np.asarray(mask, bool), a.shape)
    n = np.maximum(mask.sum(axis=-1, keepdims=True), 1).astype(np.float64)
    if method == 'squared_relu':
        return np.where(mask, np.maximum(a, 0.0) ** 2, 0.0) / n
    if method == 'squared_relu_n2':
        return np.where(mask, np.maximum(a / n, 0.0) ** 2, 0.0)
    if method == 'softmax_plus':
        return _masked_softmax(a * np.log(np.maximum(n, 16.0)) / np.log(512.0),
                               mask)
    if method == 'softmax':
        return _masked_softmax(a, mask)
    raise ValueError(method)


def causal(q_len, k_len=None):
    """bool [q, k]: query i sees key j iff j ≤ i (+ k - q, end-aligned)."""
    k_len = q_len if k_len is None else k_len
    return np.arange(k_len)[None, :] <= np.arange(q_len)[:, None] + (
        k_len - q_len)


def dense(x, kernel, bias=None, activation=None):
    y = np.asarray(x, np.float64) @ np.asarray(kernel, np.float64)
    if bias is not None:
        y = y + bias
    return activation(y) if activation is not None else y


def gau(x, p, units, key_size, context=None, key_mask=None, bool_bias=None,
        float_bias=None, is_causal=False, normalization='softmax_plus',
        layout='interleaved', use_rope=True, attention_scale=True,
        activation=swish, positions=None):
    """One GAU layer.

    x [b, m, d]; context [b, n, d_c] for cross-attention (None: self).
    p: dict with 'i_kernel' (self: [d, 2e+s], cross: [d, e+s]), 'kv_kernel'
    (cross: [d_c, e+s]), 'o_kernel' [e, d], 'q_gamma', 'k_gamma' [s] and the
    optional 'i_bias', 'kv_bias', 'o_bias', 'q_beta', 'k_beta'.
    key_mask [b, n] (True = real key); bool_bias [n, n] or [b, m, n];
    float_bias additive, broadcastable to [b, m, n].
    """
    e, s = units, key_size
    x = np.asarray(x, np.float64)
    h = dense(x, p['i_kernel'], p.get('i_bias'), activation)
    if context is None:
        u, v, zq = h[..., :e], h[..., e:2 * e], h[..., 2 * e:2 * e + s]
        zk = zq
        ctx_len = x.shape[1]
    else:
        context = np.asarray(context, np.float64)
        u, zq = h[..., :e], h[..., e:e + s]
        hk = dense(context, p['kv_kernel'], p.get('kv_bias'), activation)
        v, zk = hk[..., :e], hk[..., e:e + s]
        ctx_len = context.shape[1]
    q = zq * p['q_gamma'] + (p['q_beta'] if p.get('q_beta') is not None
                             else 0.0)
    k = zk * p['k_gamma'] + (p['k_beta'] if p.get('k_beta') is not None
                             else 0.0)
    if use_rope:
        q = rope(q, positions, layout)
        k = rope(k, positions if context is None else None, layout)
    a = np.einsum('bmd,bnd->bmn', q, k)
    if attention_scale:
        a = a / np.sqrt(s)
    if float_bias is not None:
        a = a + np.asarray(float_bias, np.float64)
    b, m = x.shape[0], x.shape[1]
    mask = np.ones((b, m, ctx_len), bool)
    if key_mask is not None:
        mask &= np.asarray(key_mask, bool)[:, None, :]
    if bool_bias is not None:
        mask &= np.asarray(bool_bias, bool)
    if is_causal:
        mask &= causal(m, ctx_len)[None]
    A = normalize(a, mask, normalization)
    return dense(u * np.einsum('bmn,bnd->bmd', A, v), p['o_kernel'],
                 p.get('o_bias'))


def release_layer_params(weights, i):
    """GAU params of layer i from the release's checkpoint names."""
    prefix = 'GAU_alpha/encoder/layer_%d/gau/' % i
    return {'i_kernel': weights[prefix + 'i_dense/kernel'],
            'o_kernel': weights[prefix + 'o_dense/kernel'],
            'q_gamma': weights[prefix + 'q_scaleoffset/gamma'],
            'k_gamma': weights[prefix + 'k_scaleoffset/gamma']}


def lm_mask(n):
    """bert4keras LM mask: [n, n], key j visible to query i iff j ≤ i."""
    return causal(n)


def unilm_mask(segment_ids):
    """bert4keras UniLM mask [b, n, n] from segment ids (0 = source)."""
    idxs = np.cumsum(segment_ids, axis=1)
    return idxs[:, None, :] <= idxs[:, :, None]


def gau_alpha(token_ids, segment_ids, weights, num_layers, units, key_size,
              application='encoder', with_mlm=None, eps=RMS_EPS,
              normalization='softmax_plus', activation=swish,
              position_ids=None):
    """The whole GAU-α forward pass from release-named weights (float64).

    weights: {'bert/embeddings/word_embeddings': [V, d],
              'bert/embeddings/token_type_embeddings': [2, d],
              'GAU_alpha/encoder/layer_i/gau/...': ...}.
    Token id 0 is padding (masked as a key).  application: 'encoder', 'lm'
    (causal) or 'unilm' (mask from segment ids).  with_mlm='linear' returns
    the tied logits h Eᵀ, with_mlm='softmax' their softmax.  position_ids
    ([b, n], optional) are the RoPE positions (default 0 … n-1).
    """
    token_ids = np.asarray(token_ids)
    segment_ids = np.asarray(segment_ids)
    E = np.asarray(weights['bert/embeddings/word_embeddings'], np.float64)
    S = np.asarray(weights['bert/embeddings/token_type_embeddings'],
                   np.float64)
    h = rms_norm(E[token_ids] + S[segment_ids], eps)
    key_mask = token_ids != 0
    n = token_ids.shape[1]
    bool_bias = None
    if application == 'lm':
        bool_bias = lm_mask(n)[None]
    elif application == 'unilm':
        bool_bias = unilm_mask(segment_ids)
    for i in range(num_layers):
        o = gau(h, release_layer_params(weights, i), units, key_size,
                key_mask=key_mask, bool_bias=bool_bias,
                normalization=normalization, activation=activation,
                positions=position_ids)
        h = rms_norm(h + o, eps)
    if not with_mlm:
        return h
    logits = h @ E.T
    if with_mlm == 'linear':
        return logits
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def random_release_weights(rng, vocab_size, hidden, units, key_size,
                           num_layers, dtype=np.float32):
    """Release-named random weights with realistic scales.

    Embeddings ~ N(0, 1/√d)-ish, kernels ~ N(0, 1/√fan_in), gammas ~ 1 ± 0.1.
    """
    d, e, s = hidden, units, key_size
    w = {'bert/embeddings/word_embeddings':
         rng.normal(0, 1, (vocab_size, d)) / np.sqrt(d),
         'bert/embeddings/token_type_embeddings':
         rng.normal(0, 1, (2, d)) / np.sqrt(d)}
    for i in range(num_layers):
        prefix = 'GAU_alpha/encoder/layer_%d/gau/' % i
        w[prefix + 'i_dense/kernel'] = rng.normal(
            0, 1, (d, 2 * e + s)) / np.sqrt(d)
        w[prefix + 'q_scaleoffset/gamma'] = 1 + 0.1 * rng.normal(size=s)
        w[prefix + 'k_scaleoffset/gamma'] = 1 + 0.1 * rng.normal(size=s)
        w[prefix + 'o_dense/kernel'] = rng.normal(0, 1, (e, d)) / np.sqrt(e)
    return {k: v.astype(dtype) for k, v in w.items()}
