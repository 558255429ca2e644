"""Plain-numpy transcription of FLASH's mixed-chunk attention, token by token.

Written from the formulas (not from gau_keras.flash): for each query token i
of chunk g = i // c it sums explicitly over the keys j it may see, with no
chunk reshaping, cumsum or einsum:

    local   Σ_{j in chunk g, j real (, j ≤ i)}  w(q_i·k_j/√s) v_j
            w(a) = relu(a)² / m           (squared_relu)
            w(a) = relu(a / m)²           (squared_relu_n2, the paper's 1/n²)
            w    = softmax(log(max(m,16))/log(512)·a) over the visible keys
            m = the number of keys the query sees in its chunk
                ('visible', default), or c ('chunk', the paper's 1/c)
    global  Σ_{j real, j in chunks h < g if causal}  (q_lin,i·k_lin,j) v_j / N
            N = number of those j (non-causal: the sample's real length)
    out     (u_i ⊙ (local + global)) W_o + b_o

Example::

    y = mixed_chunk_attention(x, weights, chunk_size=4, causal=True)
"""
import math

import numpy as np


def swish(x):
    return x / (1.0 + np.exp(-x))


def rope(x, positions):
    """Interleaved RoPE: pairs (x_2i, x_2i+1) rotated by p·10000^(-2i/d)."""
    d = x.shape[-1]
    theta = 10000.0 ** (-2.0 * np.arange(d // 2) / d)
    angle = np.asarray(positions, dtype=np.float64)[:, None] * theta
    cos, sin = np.cos(angle), np.sin(angle)
    out = np.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 1::2] * cos + x[..., 0::2] * sin
    return out


def local_weights(logits, m, normalization):
    """Weights of the visible keys of one query (1-D logits a = q·k/√s);
    m is the divisor n of the normalization."""
    if normalization == 'squared_relu':
        return np.maximum(logits, 0.0) ** 2 / m
    if normalization == 'squared_relu_n2':
        return np.maximum(logits / m, 0.0) ** 2
    if normalization == 'softmax_plus':
        logits = logits * math.log(max(m, 16)) / math.log(512)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def mixed_chunk_attention(x, weights, chunk_size, causal=False, mask=None,
                          normalization='squared_relu', units=None,
                          key_size=None, attention_scale=True,
                          local_normalizer='visible'):
    """Output [b, n, d] of the mixed-chunk attention layer, in float64.

    weights: dict with 'i_kernel' [d, 2e+s], 'i_bias' (or None), 'o_kernel'
    [e, d], 'o_bias' (or None), 'gamma' [4, s], 'beta' [4, s] (or None).
    mask: bool [b, n], False on padding tokens.
    """
    x = np.asarray(x, np.float64)
    b, n, _ = x.shape
    s = weights['gamma'].shape[1]
    e = weights['o_kernel'].shape[0]
    mask = np.ones((b, n), bool) if mask is None else np.asarray(mask, bool)
    h = x @ weights['i_kernel']
    if weights.get('i_bias') is not None:
        h = h + weights['i_bias']
    h = swish(h)
    u, v, z = h[..., :e], h[..., e:2 * e], h[..., 2 * e:]
    beta = weights.get('beta')
    qk = [rope(z * weights['gamma'][j] + (0 if beta is None else beta[j]),
               np.arange(n)) for j in range(4)]
    q_quad, k_quad, q_lin, k_lin = qk
    scale = s ** -0.5 if attention_scale else 1.0
    out = np.zeros((b, n, e))
    for bi in range(b):
        for i in range(n):
            g = i // chunk_size
            # local, quadratic attention inside chunk g
            local_keys = [j for j in range(g * chunk_size,
                                           min((g + 1) * chunk_size, n))
                          if mask[bi, j] and (not causal or j <= i)]
            local = np.zeros(e)
            if local_keys:
                a = np.array([q_quad[bi, i] @ k_quad[bi, j] * scale
                              for j in local_keys])
                m = (len(local_keys) if local_normalizer == 'visible'
                     else chunk_size)
                w = local_weights(a, m, normalization)
                for wj, j in zip(w, local_keys):
                    local += wj * v[bi, j]
            # global, linear attention
            if causal:
                keys = [j for j in range(g * chunk_size) if mask[bi, j]]
            else:
                keys = [j for j in range(n) if mask[bi, j]]
            glob = np.zeros(e)
            for j in keys:
                glob += (q_lin[bi, i] @ k_lin[bi, j]) * v[bi, j]
            glob /= max(len(keys), 1)
            out[bi, i] = u[bi, i] * (local + glob)
    y = out @ weights['o_kernel']
    if weights.get('o_bias') is not None:
        y = y + weights['o_bias']
    return y


RMS_EPS = 1e-7   # tf-keras K.epsilon(), bert4keras LayerNormalization's ε


def rms_norm(x):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS)


def flash_model(checkpoint, token_ids, segment_ids, num_blocks, chunk_size,
                causal=False):
    """Linear MLM logits of a FLASH model from its checkpoint {name: array}.

    emb(token) + emb(segment) → RMS norm → blocks × 2 ×
    [mixed-chunk attention → Add → RMS norm] → h Eᵀ (tied embeddings);
    token id 0 is padding (masked).
    """
    words = checkpoint['bert/embeddings/word_embeddings'].astype(np.float64)
    segments = checkpoint['bert/embeddings/token_type_embeddings']
    h = rms_norm(words[token_ids] + segments[segment_ids])
    mask = np.asarray(token_ids) != 0
    for i in range(num_blocks):
        for j in range(2):
            prefix = 'FLASH/encoder/layer_%d/mca_%d/' % (i, j)
            weights = dict(
                i_kernel=checkpoint[prefix + 'i_dense/kernel'],
                o_kernel=checkpoint[prefix + 'o_dense/kernel'],
                gamma=checkpoint[prefix + 'qk_scaleoffset/gamma'])
            y = mixed_chunk_attention(h, weights, chunk_size, causal, mask)
            h = rms_norm(h + y)
    return h @ words.T
