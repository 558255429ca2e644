"""Training targets of a packed sequence: whole-word-masked MLM or causal LM.

Both return ``(inputs, labels, chosen)``: the model's input ids, the ids to
predict (0 where nothing is predicted) and the positions that carry loss.

Example::

    rng = np.random.default_rng([seed, number])
    inputs, labels, chosen = whole_word_mask(ids, words, rng, mask_id, ok_ids)
    inputs, labels, chosen = lm_targets(ids)
"""
import numpy as np

OBJECTIVES = ('mlm', 'lm')
MASK_RATE = 0.15


def whole_word_mask(token_ids, word_ids, rng, mask_id, random_ids,
                    rate=MASK_RATE):
    """Whole-word masking (BERT-wwm, GAU-α's release): each word is chosen
    with probability ``rate``; a chosen word has ALL its tokens replaced by
    [MASK] (80 %), by random tokens (10 %) or kept (10 %), decided once per
    word: with r ~ U(0, 1) per word,

        r < 0.8·rate → [MASK];  r < 0.9·rate → kept;  r < rate → random.

    Positions with ``word_ids < 0`` ([CLS], [SEP]) are never chosen.
    Returns ``(inputs, labels, chosen)``: labels are the original ids at
    chosen positions and 0 elsewhere.  Example::

        inputs, labels, chosen = whole_word_mask(ids, words, rng, 4, ids_ok)
    """
    token_ids = np.asarray(token_ids, np.int32)
    word_ids = np.asarray(word_ids, np.int64)
    n_words = int(word_ids.max()) + 1 if word_ids.size else 0
    r = rng.random(n_words)
    real = word_ids >= 0
    r_tok = np.where(real, r[np.maximum(word_ids, 0)] if n_words else 1.0,
                     1.0)
    chosen = r_tok < rate
    masked = r_tok < 0.8 * rate
    randomised = chosen & (r_tok >= 0.9 * rate)
    inputs = token_ids.copy()
    inputs[masked] = mask_id
    if randomised.any():
        inputs[randomised] = rng.choice(random_ids, int(randomised.sum()))
    labels = np.where(chosen, token_ids, 0).astype(np.int32)
    return inputs, labels, chosen


def lm_targets(token_ids):
    """Causal LM: position t predicts token t+1; the last has no target.
    Returns ``(inputs, labels, chosen)``.  Example::

        lm_targets([2, 7, 8, 3])  # labels [7, 8, 3, 0], chosen [1, 1, 1, 0]
    """
    token_ids = np.asarray(token_ids, np.int32)
    labels = np.zeros_like(token_ids)
    labels[:-1] = token_ids[1:]
    chosen = np.zeros(len(token_ids), bool)
    chosen[:-1] = True
    return token_ids, labels, chosen
