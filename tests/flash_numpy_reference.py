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


def rope(x, positions, layout='interleaved'):
    """RoPE: pairs (x_a, x_b) rotated by p·10000^(-2i/d).

    'interleaved' pairs (x_2i, x_2i+1), 'half' pairs (x_i, x_i+d/2).
    x [b, n, d]; positions [n] or [b, n].
    """
    d = x.shape[-1]
    theta = 10000.0 ** (-2.0 * np.arange(d // 2) / d)
    angle = np.asarray(positions, dtype=np.float64)[..., None] * theta
    cos, sin = np.cos(angle), np.sin(angle)
    if layout == 'interleaved':
        a, b = np.arange(0, d, 2), np.arange(1, d, 2)
    elif layout == 'half':
        a, b = np.arange(d // 2), np.arange(d // 2, d)
    else:
        raise ValueError(layout)
    out = np.empty_like(x)
    out[..., a] = x[..., a] * cos - x[..., b] * sin
    out[..., b] = x[..., b] * cos + x[..., a] * sin
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
                          normalization='squared_relu', attention_scale=True,
                          local_normalizer='visible', positions=None,
                          rope_layout='interleaved', global_divisor='summed'):
    """Output [b, n, d] of the mixed-chunk attention layer, in float64.

    weights: dict with 'i_kernel' [d, 2e+s], 'i_bias' (or None), 'o_kernel'
    [e, d], 'o_bias' (or None), 'gamma' [4, s], 'beta' [4, s] (or None).
    mask: bool [b, n], False on padding tokens.  positions: RoPE positions
    [n] or [b, n] (default 0 … n-1).  global_divisor: 'summed' divides the
    global part by the number of tokens it sums (the code's rule);
    'length' by the sample's real length n also when causal (the paper's
    pseudo-code, kept to show that the tests can tell them apart).
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
    positions = np.arange(n) if positions is None else positions
    qk = [rope(z * weights['gamma'][j] + (0 if beta is None else beta[j]),
               positions, rope_layout) for j in range(4)]
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
            divisor = (len(keys) if global_divisor == 'summed'
                       else mask[bi].sum())
            glob /= max(divisor, 1)
            out[bi, i] = u[bi, i] * (local + glob)
    y = out @ weights['o_kernel']
    if weights.get('o_bias') is not None:
        y = y + weights['o_bias']
    return y


RMS_EPS = 1e-7   # tf-keras K.epsilon(), bert4keras LayerNormalization's ε


def rms_norm(x):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS)


def embed(checkpoint, token_ids, segment_ids):
    """emb(token) + emb(segment) → RMS norm (→ Embedding-Mapping, when the
    checkpoint holds one: embedding_size ≠ hidden_size)."""
    words = checkpoint['bert/embeddings/word_embeddings'].astype(np.float64)
    segments = checkpoint['bert/embeddings/token_type_embeddings']
    h = rms_norm(words[token_ids] + segments[segment_ids])
    mapping = checkpoint.get('bert/encoder/embedding_hidden_mapping_in/kernel')
    return h if mapping is None else h @ mapping


def mlm_logits(checkpoint, h):
    """(Output-Mapping →) tied logits h Eᵀ."""
    mapping = checkpoint.get('cls/predictions/transform/dense/kernel')
    if mapping is not None:
        h = h @ mapping
    return h @ checkpoint['bert/embeddings/word_embeddings'].T


def flash_model(checkpoint, token_ids, segment_ids, num_blocks, chunk_size,
                causal=False, normalization='squared_relu',
                local_normalizer='visible'):
    """Linear MLM logits of a FLASH model from its checkpoint {name: array}.

    ``embed`` → blocks × 2 × [mixed-chunk attention → Add → RMS norm] →
    ``mlm_logits`` (tied embeddings); token id 0 is padding (masked).
    """
    h = embed(checkpoint, token_ids, segment_ids)
    mask = np.asarray(token_ids) != 0
    for i in range(num_blocks):
        for j in range(2):
            prefix = 'FLASH/encoder/layer_%d/mca_%d/' % (i, j)
            weights = dict(
                i_kernel=checkpoint[prefix + 'i_dense/kernel'],
                o_kernel=checkpoint[prefix + 'o_dense/kernel'],
                gamma=checkpoint[prefix + 'qk_scaleoffset/gamma'])
            y = mixed_chunk_attention(h, weights, chunk_size, causal, mask,
                                      normalization,
                                      local_normalizer=local_normalizer)
            h = rms_norm(h + y)
    return mlm_logits(checkpoint, h)


def flash_quad_model(checkpoint, token_ids, segment_ids, num_blocks,
                     causal=False, normalization='squared_relu'):
    """Linear MLM logits of a FLASH-Quad model from its checkpoint.

    ``embed`` → blocks × 2 × [GAU (relu²(QKᵀ/√s)/n over the visible keys)
    → Add → RMS norm] → ``mlm_logits``; the GAU reads
    FLASH_Quad/encoder/layer_i/gau_j/{i_dense,o_dense}/kernel and
    {q,k}_scaleoffset/gamma (numpy_reference.gau).
    """
    import numpy_reference
    h = embed(checkpoint, token_ids, segment_ids)
    mask = np.asarray(token_ids) != 0
    for i in range(num_blocks):
        for j in range(2):
            prefix = 'FLASH_Quad/encoder/layer_%d/gau_%d/' % (i, j)
            p = {'i_kernel': checkpoint[prefix + 'i_dense/kernel'],
                 'o_kernel': checkpoint[prefix + 'o_dense/kernel'],
                 'q_gamma': checkpoint[prefix + 'q_scaleoffset/gamma'],
                 'k_gamma': checkpoint[prefix + 'k_scaleoffset/gamma']}
            e = p['o_kernel'].shape[0]
            s = p['q_gamma'].shape[0]
            y = numpy_reference.gau(h, p, e, s, key_mask=mask,
                                    is_causal=causal,
                                    normalization=normalization)
            h = rms_norm(h + y)
    return mlm_logits(checkpoint, h)
