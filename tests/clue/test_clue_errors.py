"""Bad CLUE input: a ClueDataError naming file / line / field, or a
documented skip with a printed count."""
import json
import os
import shutil

import pytest

from gau_keras import clue
from gau_keras.clue import ClueDataError

from conftest import FIXTURES as _FIXTURES  # noqa: E402
FIXTURES = os.path.join(_FIXTURES, 'clue')


def copy_task(tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), folder)
    return folder


def rewrite_line(path, number, text):
    lines = path.read_text(encoding='utf-8').splitlines()
    lines[number - 1] = text
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')


def test_malformed_json_line_names_file_and_line(tmp_path):
    folder = copy_task(tmp_path, 'afqmc')
    rewrite_line(folder / 'train.json', 3, '{"sentence1": "花呗", "label": ')
    with pytest.raises(ClueDataError, match=r'train\.json:3: malformed JSON'
                       ) as e:
        clue.get_task('afqmc', folder).load('train')
    assert (e.value.line, os.path.basename(e.value.path)) == (3,
                                                              'train.json')


def test_malformed_whole_file_json_names_the_line(tmp_path):
    folder = copy_task(tmp_path, 'c3')
    text = (folder / 'm-dev.json').read_text(encoding='utf-8')
    (folder / 'm-dev.json').write_text(text.replace('"answer"', 'answer', 1),
                                       encoding='utf-8')
    with pytest.raises(ClueDataError, match=r'm-dev\.json:\d+: malformed'):
        clue.get_task('c3', folder).load('dev')


def test_missing_field_is_named(tmp_path):
    folder = copy_task(tmp_path, 'tnews')
    rewrite_line(folder / 'dev.json', 2, json.dumps({'label': '102'}))
    with pytest.raises(ClueDataError, match=r"dev\.json:2 field 'sentence'"
                       ": missing field"):
        clue.get_task('tnews', folder).load('dev')
    folder = copy_task(tmp_path, 'cmrc2018')
    data = json.loads((folder / 'test.json').read_text(encoding='utf-8'))
    del data['data'][1]['paragraphs'][0]['qas'][0]['id']
    (folder / 'test.json').write_text(json.dumps(data), encoding='utf-8')
    with pytest.raises(ClueDataError, match=r"data\[1\]\.paragraphs\[0\]\."
                       r"qas\[0\].*missing field") as e:
        clue.get_task('cmrc2018', folder).test_sets()
    assert e.value.field == 'id'


def test_test_item_without_id(tmp_path):
    folder = copy_task(tmp_path, 'csl')
    rewrite_line(folder / 'test.json', 2, json.dumps(
        {'abst': '摘要', 'keyword': ['关键词']}, ensure_ascii=False))
    with pytest.raises(ClueDataError, match=r"test\.json:2 field 'id'"):
        clue.get_task('csl', folder).test_sets()


def test_label_not_in_labels_json(tmp_path):
    folder = copy_task(tmp_path, 'tnews')
    rewrite_line(folder / 'train.json', 4, json.dumps(
        {'label': '116', 'sentence': '某条新闻'}, ensure_ascii=False))
    with pytest.raises(ClueDataError, match=r"train\.json:4 field 'label': "
                       r"label '116' is not one of"):
        clue.get_task('tnews', folder).load('train')


def test_c3_answer_not_among_choices_and_chid_blank_without_answer(
        tmp_path):
    folder = copy_task(tmp_path, 'c3')
    docs = json.loads((folder / 'd-dev.json').read_text(encoding='utf-8'))
    docs[0][1][0]['answer'] = '石头'
    (folder / 'd-dev.json').write_text(json.dumps(docs, ensure_ascii=False),
                                       encoding='utf-8')
    with pytest.raises(ClueDataError, match="answer '石头' is not one of"):
        clue.get_task('c3', folder).load('dev')
    folder = copy_task(tmp_path, 'chid')
    (folder / 'dev_answer.json').write_text('{"#idiom000100#": 2}')
    with pytest.raises(ClueDataError, match=r'#idiom000101# has no answer '
                       r'in dev_answer\.json'):
        clue.get_task('chid', folder).load('dev')


def test_empty_text_is_skipped_in_training_and_kept_in_test(tmp_path,
                                                             capsys):
    folder = copy_task(tmp_path, 'iflytek')
    rewrite_line(folder / 'train.json', 2, json.dumps(
        {'label': '1', 'sentence': '  '}))
    rewrite_line(folder / 'test.json', 1, json.dumps({'id': 3,
                                                      'sentence': ''}))
    t = clue.get_task('iflytek', folder)
    assert len(t.load('train')) == 3
    assert 'train.json: 1 x skipped: empty text' in capsys.readouterr().out
    (_, items, _), = t.test_sets()
    assert [e.uid for e in items] == [3, 1, 2]
    assert 'test.json: 1 x kept: empty test text' in capsys.readouterr().out


def test_missing_split_file_names_file_and_task(tmp_path):
    folder = copy_task(tmp_path, 'ocnli')
    os.remove(folder / 'train.50k.json')
    with pytest.raises(ClueDataError, match=r"missing file train\.50k\.json:"
                       r" task 'ocnli' expects it for its train split"):
        clue.get_task('ocnli', folder).load('train')
    folder = copy_task(tmp_path, 'chid')
    os.remove(folder / 'test1.1.json')
    with pytest.raises(ClueDataError, match=r'missing file test1\.1\.json'):
        clue.get_task('chid', folder).test_sets()
    folder = copy_task(tmp_path, 'tnews')
    os.remove(folder / 'labels.json')
    with pytest.raises(ClueDataError, match=r'missing file labels\.json'):
        clue.get_task('tnews', folder).load('train')


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ClueDataError, match="unknown CLUE task 'tnew'.*"
                       "tnews, iflytek.*cluener"):
        clue.get_task('tnew', FIXTURES)


def test_duplicate_test_ids_are_refused(tmp_path):
    folder = copy_task(tmp_path, 'afqmc')
    rewrite_line(folder / 'test.json', 2, json.dumps(
        {'id': 10, 'sentence1': '一', 'sentence2': '二'},
        ensure_ascii=False))
    with pytest.raises(ClueDataError, match='test ids occur more than once'):
        clue.get_task('afqmc', folder).test_sets()


def test_cmrc2018_dev_keeps_references_not_in_context(tmp_path, capsys):
    folder = copy_task(tmp_path, 'cmrc2018')
    data = json.loads((folder / 'dev.json').read_text(encoding='utf-8'))
    data['data'][0]['paragraphs'][0]['qas'][1]['answers'][0]['text'] = '太学'
    (folder / 'dev.json').write_text(json.dumps(data, ensure_ascii=False),
                                     encoding='utf-8')
    dev = clue.get_task('cmrc2018', folder).load('dev')
    assert dev[1].answers == [('太学', None)]     # still scored against
    assert 'dev.json: 1 x answer not in its context (kept as a reference' \
        in capsys.readouterr().out


def test_wsc_span_text_absent_from_text(tmp_path):
    folder = copy_task(tmp_path, 'wsc')
    row = json.loads((folder / 'dev.json').read_text(
        encoding='utf-8').splitlines()[0])
    row['target']['span1_text'] = '狗'
    rewrite_line(folder / 'dev.json', 1, json.dumps(row, ensure_ascii=False))
    with pytest.raises(ClueDataError, match=r"dev\.json:1 field "
                       r"'target\.span1_text'"):
        clue.get_task('cluewsc2020', folder).load('dev')
