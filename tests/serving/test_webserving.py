"""bert4keras's WebServing API on TF2 (gau_keras.snippets.WebServing).

Real requests on 127.0.0.1 to a route that runs a tiny GAU-α encoder, as
bert4keras's ``basic_simple_web_serving_simbert.py`` serves its model.
"""
import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from conftest import TINY_GAU

CHARS = list('你好世界今天天气很')


@pytest.fixture(scope='module')
def encoder(tmp_path_factory):
    import gau_keras
    from gau_keras.tokenizers import Tokenizer
    path = tmp_path_factory.mktemp('web') / 'config.json'
    path.write_text(json.dumps(TINY_GAU))
    model = gau_keras.build_transformer_model(str(path), model='gau_alpha')
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]'] + CHARS
    tokenizer = Tokenizer({t: i for i, t in enumerate(vocab)})
    return model, tokenizer


def first_vector(model, tokenizer, text):
    token_ids, segment_ids = tokenizer.encode(text)
    out = model.predict([np.array([token_ids]), np.array([segment_ids])],
                        verbose=0)
    return out[0, 0]


@pytest.fixture(scope='module')
def web(encoder):
    from gau_keras.snippets import WebServing
    model, tokenizer = encoder

    def vector(text, scale=1.0):
        return (first_vector(model, tokenizer, text) * scale).tolist()

    def broken(text):
        raise RuntimeError('cannot do %s' % text)

    web = WebServing(host='127.0.0.1', port=0, server='paste')
    web.route('/vector', vector, {'text': (None, True),
                                  'scale': (float, False)})
    web.route('/vector', vector, {'text': (None, True)}, method='POST')
    web.route('/broken', broken, {'text': (None, True)})
    thread = threading.Thread(target=web.start, daemon=True)
    thread.start()
    assert web.ready.wait(30)
    yield web
    web.stop()
    thread.join(10)


def call(web, path, query=None, form=None, json_body=None):
    url = 'http://127.0.0.1:%d%s' % (web.port, path)
    if query:
        url += '?' + urllib.parse.urlencode(query)
    data, headers = None, {}
    if form is not None:
        data = urllib.parse.urlencode(form).encode('utf-8')
    if json_body is not None:
        data = json.dumps(json_body).encode('utf-8')
        headers['Content-Type'] = 'application/json'
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as answer:
            return answer.status, json.loads(answer.read().decode('utf-8'))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode('utf-8'))


def test_it_is_not_bert4keras_tf1_class():
    from bert4keras.snippets import WebServing as B4K
    from gau_keras.snippets import WebServing
    assert WebServing is not B4K
    web = WebServing(port=8864)
    assert (web.host, web.port, web.server) == ('0.0.0.0', 8864, 'paste')


def test_get_runs_the_model(web, encoder):
    status, answer = call(web, '/vector', {'text': '你好世界'})
    assert status == 200 and answer['code'] == 0, answer
    assert answer['desc'] == 'succeeded'
    want = first_vector(*encoder, '你好世界')
    np.testing.assert_allclose(answer['data'], want, rtol=1e-5, atol=1e-6)
    status, answer = call(web, '/vector', {'text': '你好世界', 'scale': '2'})
    np.testing.assert_allclose(answer['data'], 2 * want, rtol=1e-5,
                               atol=1e-6)


def test_post_form_and_json(web, encoder):
    want = first_vector(*encoder, '今天天气很好')
    for kwargs in ({'form': {'text': '今天天气很好'}},
                   {'json_body': {'text': '今天天气很好'}}):
        status, answer = call(web, '/vector', **kwargs)
        assert status == 200 and answer['code'] == 0, answer
        np.testing.assert_allclose(answer['data'], want, rtol=1e-5,
                                   atol=1e-6)


def test_bert4keras_error_codes(web):
    status, answer = call(web, '/vector')
    assert status == 200
    assert answer['code'] == 1 and answer['desc'] == 'lack of "text" argument'
    status, answer = call(web, '/vector', {'text': '你', 'scale': 'x'})
    assert answer['code'] == 1 and '"scale"' in answer['desc']
    status, answer = call(web, '/broken', {'text': 'this'})
    assert answer['code'] == 2 and answer['desc'] == 'cannot do this'


def test_unknown_path_and_method(web):
    status, answer = call(web, '/nowhere', {'text': 'a'})
    assert status == 404 and 'error' in answer
    status, answer = call(web, '/broken', form={'text': 'a'})
    assert status == 405 and 'GET' in answer['error']
    status, answer = call(web, '/vector', {'text': '好'})
    assert answer['code'] == 0                       # still serving


def test_concurrent_requests(web, encoder):
    texts = ['你好', '世界', '天气', '很好'] * 3
    answers = [None] * len(texts)

    def ask(i):
        answers[i] = call(web, '/vector', {'text': texts[i]})

    threads = [threading.Thread(target=ask, args=(i,))
               for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for text, (status, answer) in zip(texts, answers):
        assert status == 200 and answer['code'] == 0
        np.testing.assert_allclose(answer['data'],
                                   first_vector(*encoder, text),
                                   rtol=1e-5, atol=1e-6)
