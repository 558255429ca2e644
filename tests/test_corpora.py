"""gau_keras.corpora: decontamination of training text against held-out
text (known answers)."""
from gau_keras import corpora


def test_without_overlap_drops_texts_sharing_an_ngram():
    held = ['今天天气很好，我们去公园散步吧。', '短句']
    texts = [
        '今天天气很好，',             # a piece of a held-out text, shorter
        '他说今天天气很好，我们去公园。',  # shares a 6-gram across the split
        '完全无关的一句话。',
        '短句',                       # equal to a short held-out text
        '短句子不同',                  # contains it, but shares no 6-gram
    ]
    kept, removed = corpora.without_overlap(texts, held, ngram=6)
    # the first two hold the 6-gram '今天天气很好'; the fourth is the short one
    assert kept == ['完全无关的一句话。', '短句子不同']
    assert removed == 3
    assert corpora.without_overlap(texts, [], ngram=6) == (texts, 0)


def test_without_overlap_on_real_peoples_daily_lines():
    lines = corpora.peoples_daily_sentences(limit=200)
    held = lines[:20]
    kept, removed = corpora.without_overlap(lines, held)
    assert removed >= 20 and not set(held) & set(kept)
    assert len(kept) == len(lines) - removed
