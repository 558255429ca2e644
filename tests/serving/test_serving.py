"""The TF Serving REST server (gau_keras.serving.http) and its batcher.

Real HTTP requests on 127.0.0.1 (a free port) against a tiny SavedModel
with the exported models' contract: tf.string ``text`` in; ``label``,
``label_id``, ``probabilities`` out.  Its answers are known in closed
form: label_id = 1 when the text has >= 5 characters, p(1) = n / (n + 5).
"""
import http.client
import json
import threading
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from gau_keras.serving import http as serving_http
from gau_keras.serving.batching import DynamicBatcher

LABELS = ['short', 'long']


def expected(text):
    n = len(text)
    p = n / (n + 5.0)
    return {'label': LABELS[int(n >= 5)], 'label_id': int(n >= 5),
            'probabilities': [1 - p, p]}


class LengthModel(tf.Module):
    """label by character count: the exported models' signature contract."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name='text')])
    def serve(self, text):
        n = tf.cast(tf.strings.length(text, unit='UTF8_CHAR'), tf.float32)
        p = n / (n + 5.0)
        label_id = tf.cast(n >= 5.0, tf.int32)
        return {'label': tf.gather(tf.constant(LABELS), label_id),
                'label_id': label_id,
                'probabilities': tf.stack([1.0 - p, p], axis=1)}


@pytest.fixture(scope='module')
def saved_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('exported') / 'length')
    module = LengthModel()
    tf.saved_model.save(module, path,
                        signatures={'serving_default': module.serve})
    return path


@pytest.fixture(scope='module')
def server(saved_model):
    servable = serving_http.load_servable(saved_model)
    srv = serving_http.ModelServer(servable, 'length', port=0,
                                   max_batch_size=8, max_wait_ms=20,
                                   max_text_chars=1000,
                                   max_body_bytes=64 * 1024).start()
    yield srv
    srv.stop()


def request(server, method, path, body=None, headers=None, raw=False):
    """(status, parsed JSON answer) of one request on a new connection."""
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
    try:
        if body is not None and not isinstance(body, bytes):
            body = (body if raw else json.dumps(body)).encode('utf-8')
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        data = answer.read()
        assert answer.getheader('Content-Type').startswith(
            'application/json')
        return answer.status, json.loads(data.decode('utf-8'))
    finally:
        conn.close()


def predict(server, body, name='length', raw=False):
    return request(server, 'POST', '/v1/models/%s:predict' % name, body,
                   raw=raw)


def assert_rows(rows, texts):
    assert len(rows) == len(texts)
    for row, text in zip(rows, texts):
        want = expected(text)
        assert row['label'] == want['label'], text
        assert row['label_id'] == want['label_id']
        np.testing.assert_allclose(row['probabilities'],
                                   want['probabilities'], rtol=1e-6)


# ---- good requests ----------------------------------------------------------


def test_predict_row_form(server):
    texts = ['好', '今天天气很好', 'hello world', '😀😀😀😀😀']
    status, answer = predict(server, {'instances': [{'text': t}
                                                    for t in texts]})
    assert status == 200, answer
    assert_rows(answer['predictions'], texts)


def test_predict_columnar_and_bare_string_forms(server):
    texts = ['一二三', '一二三四五六']
    status, answer = predict(server, {'inputs': {'text': texts}})
    assert status == 200, answer
    outputs = answer['outputs']
    assert outputs['label'] == [expected(t)['label'] for t in texts]
    assert outputs['label_id'] == [0, 1]
    status, answer = predict(server, {'instances': texts,
                                      'signature_name': 'serving_default'})
    assert status == 200
    assert_rows(answer['predictions'], texts)


def test_a_request_larger_than_the_batch_comes_back_whole(server):
    texts = ['x' * (i % 9) for i in range(21)]      # max_batch_size is 8
    status, answer = predict(server, {'instances': [{'text': t}
                                                    for t in texts]})
    assert status == 200
    assert_rows(answer['predictions'], texts)


def test_status_and_metadata(server):
    status, answer = request(server, 'GET', '/v1/models/length')
    assert status == 200
    assert answer == {'model_version_status': [{
        'version': '1', 'state': 'AVAILABLE',
        'status': {'error_code': 'OK', 'error_message': ''}}]}
    assert request(server, 'GET', '/v1/models/length/versions/1')[0] == 200
    status, meta = request(server, 'GET', '/v1/models/length/metadata')
    assert status == 200 and meta['model_spec']['name'] == 'length'
    sig = meta['metadata']['signature_def']['signature_def']
    assert sig['serving_default']['inputs'] == {
        'text': {'dtype': 'string', 'shape': [-1]}}
    assert set(sig['serving_default']['outputs']) == {
        'label', 'label_id', 'probabilities'}


# ---- bad requests: 4xx with {"error": ...}, the server keeps serving --------

BAD_BODIES = [
    ('{"instances": [', 'JSON Parse error'),
    ('[1, 2]', 'JSON object'),
    ('{"instances": [{"txt": "a"}]}', 'unknown input'),
    ('{"instances": [{}]}', 'missing input'),
    ('{"instances": [{"text": 5}]}', 'must be a string'),
    ('{"instances": [{"text": null}]}', 'must be a string'),
    ('{"instances": [["a"]]}', 'must be an object'),
    ('{"instances": []}', 'empty'),
    ('{"instances": {"text": "a"}}', 'must be a list'),
    ('{"inputs": {"text": ["a", "b"], "x": ["c"]}}', 'differ in length'),
    ('{"instances": ["a"], "inputs": ["a"]}', 'exactly one'),
    ('{"text": "a"}', 'exactly one'),
    ('{"instances": ["a"], "signature_name": "ids"}', 'not served'),
    (b'\xff\xfe{', 'JSON Parse error'),
    ('[' * 20000 + ']' * 20000, 'JSON Parse error'),
    ('{"instances": [{"text": "a\\ud800"}]}', 'not valid Unicode'),
]


@pytest.mark.parametrize('body,message', BAD_BODIES)
def test_bad_input_is_a_400_naming_the_problem(server, body, message):
    status, answer = predict(server, body, raw=True)
    assert status == 400, answer
    assert message in answer['error'], answer


def test_limits_on_text_and_body(server):
    status, answer = predict(server, {'instances': [{'text': 'a' * 1001}]})
    assert status == 400 and 'max_text_chars' in answer['error']
    assert '1001' in answer['error'] and '1000' in answer['error']
    big = {'instances': [{'text': '中' * 40000}]}   # 240 kB of JSON > 64 KiB
    status, answer = predict(server, big)
    assert status == 413 and 'max_body_bytes' in answer['error'], answer
    huge = {'instances': [{'text': '中' * 400000}]}   # past 8 x the limit:
    try:                                           # refused unread
        assert predict(server, huge)[0] == 413
    except OSError:                                # reset while sending
        pass
    assert predict(server, {'instances': ['abc']})[0] == 200
    status, answer = request(server, 'POST', '/v1/models/length:predict',
                             b'{}', {'Transfer-Encoding': 'chunked'})
    assert status == 411


def test_unknown_model_path_and_method(server):
    ok = {'instances': [{'text': 'a'}]}
    status, answer = predict(server, ok, name='other')
    assert status == 404 and 'other' in answer['error']
    assert request(server, 'POST', '/v1/models/length/versions/2:predict',
                   ok)[0] == 404
    assert request(server, 'POST', '/v1/models/length:classify', ok)[0] == 404
    assert request(server, 'GET', '/v2/whatever')[0] == 404
    assert request(server, 'GET', '/v1/models/length:predict')[0] == 405
    assert request(server, 'POST', '/v1/models/length', ok)[0] == 405
    assert request(server, 'DELETE', '/v1/models/length')[0] == 405
    status, answer = predict(server, ok)            # still serving
    assert status == 200 and answer['predictions'][0]['label'] == 'short'


def test_keep_alive_survives_a_refused_request(server):
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
    try:
        for body in ('{"instances": []}', '{"instances": ["abcdef"]}'):
            conn.request('POST', '/v1/models/length:predict', body=body)
            answer = conn.getresponse()
            payload = json.loads(answer.read())
        assert answer.status == 200
        assert payload['predictions'][0]['label'] == 'long'
    finally:
        conn.close()


def test_binds_localhost_by_default(saved_model):
    servable = serving_http.load_servable(saved_model)
    srv = serving_http.ModelServer(servable, 'm', port=0)
    try:
        assert srv.httpd.server_address[0] == '127.0.0.1'
    finally:
        srv.stop()


# ---- faults inside the model ------------------------------------------------


class FlakyServable(object):
    """Raises for any batch that holds the text 'boom'."""
    inputs = ('text',)
    version = '1'

    def predict(self, instances):
        if any(inst['text'] == 'boom' for inst in instances):
            raise RuntimeError('the model broke on boom')
        return [expected(inst['text']) for inst in instances]

    def metadata(self):
        return {}


def test_a_model_fault_is_a_500_for_its_request_only():
    srv = serving_http.ModelServer(FlakyServable(), 'flaky', port=0,
                                   max_wait_ms=200).start()
    try:
        results = {}

        def send(key, text):
            results[key] = predict(srv, {'instances': [text]}, 'flaky')

        threads = [threading.Thread(target=send, args=(k, t))
                   for k, t in (('bad', 'boom'), ('good', 'fine text'))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status, answer = results['bad']
        assert status == 500 and 'broke on boom' in answer['error']
        status, answer = results['good']        # shared the batch, answered
        assert status == 200
        assert_rows(answer['predictions'], ['fine text'])
        status, answer = predict(srv, {'instances': ['abc']}, 'flaky')
        assert status == 200                     # the server is alive
    finally:
        srv.stop()


def test_load_servable_refuses_what_it_cannot_serve(tmp_path):
    with pytest.raises(ValueError, match='not a folder'):
        serving_http.load_servable(str(tmp_path / 'missing'))
    with pytest.raises(ValueError, match='saved_model.pb'):
        serving_http.load_servable(str(tmp_path))


def test_versioned_base_path_serves_the_highest(saved_model, tmp_path):
    import shutil
    for version in ('1', '12', '3'):
        shutil.copytree(saved_model, str(tmp_path / version))
    path, version = serving_http.resolve_version(str(tmp_path))
    assert version == '12' and path.endswith('12')


# ---- the dynamic batcher ----------------------------------------------------


def test_batcher_routes_each_result_to_its_request():
    sizes = []

    def model(items):
        sizes.append(len(items))
        time.sleep(0.005)
        return [x * 10 for x in items]

    batcher = DynamicBatcher(model, max_batch_size=4, max_wait_ms=30)
    results = {}

    def client(k):
        items = list(range(k * 100, k * 100 + k + 1))
        results[k] = (items, batcher.submit(items, timeout=30))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    for items, got in results.values():
        assert got == [x * 10 for x in items]
    assert sum(sizes) == sum(k + 1 for k in range(6)) == batcher.items
    assert max(sizes) <= 4
    assert len(sizes) < 21           # items from several requests shared calls


def test_batcher_isolates_a_failing_request_and_survives():
    def model(items):
        if 'bad' in items:
            raise ValueError('bad item')
        return [len(x) for x in items]

    batcher = DynamicBatcher(model, max_batch_size=8, max_wait_ms=100)
    out = {}

    def client(key, items):
        try:
            out[key] = batcher.submit(items, timeout=30)
        except ValueError as e:
            out[key] = e

    threads = [threading.Thread(target=client, args=a) for a in
               (('a', ['x', 'bad']), ('b', ['yy', 'zzz']))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(out['a'], ValueError) and out['b'] == [2, 3]
    assert batcher.submit(['abcd']) == [4]
    batcher.close()
    from gau_keras.serving.batching import BatcherClosed
    with pytest.raises(BatcherClosed):
        batcher.submit(['a'])


def test_batcher_checks_its_settings():
    with pytest.raises(ValueError, match='max_batch_size'):
        DynamicBatcher(len, max_batch_size=0)
    with pytest.raises(ValueError, match='max_wait_ms'):
        DynamicBatcher(len, max_wait_ms=-1)


# ---- bounded load test ------------------------------------------------------


@pytest.fixture
def default_server(saved_model):
    """A server with scripts/serve.py's defaults (batch 32, wait 5 ms)."""
    srv = serving_http.ModelServer(serving_http.load_servable(saved_model),
                                   'length', port=0).start()
    yield srv
    srv.stop()


def test_load_8_clients_x_50_requests(default_server):
    """8 keep-alive clients x 50 requests: no error; latency printed."""
    server = default_server
    latencies, errors = [], []
    lock = threading.Lock()
    batches_before = server.batcher.batches

    def client(k):
        conn = http.client.HTTPConnection('127.0.0.1', server.port,
                                          timeout=60)
        try:
            for i in range(50):
                text = '客户%d 第%d次' % (k, i)
                body = json.dumps({'instances': [{'text': text}]})
                start = time.perf_counter()
                conn.request('POST', '/v1/models/length:predict', body=body)
                answer = conn.getresponse()
                payload = json.loads(answer.read())
                took = time.perf_counter() - start
                row = payload.get('predictions', [{}])[0]
                with lock:
                    latencies.append(took)
                    if answer.status != 200 or \
                            row.get('label') != expected(text)['label']:
                        errors.append((answer.status, payload))
        finally:
            conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    assert errors == [] and len(latencies) == 400
    batches = server.batcher.batches - batches_before
    ms = np.array(latencies) * 1000
    print('\nload test: 8 clients x 50 requests: p50 %.1f ms, p99 %.1f ms, '
          '%.0f requests/s, %d model calls (mean batch %.1f), '
          'max_batch_size 32, max_wait_ms 5' % (
              np.percentile(ms, 50), np.percentile(ms, 99), 400 / wall,
              batches, 400.0 / batches))
    assert batches < 400                    # requests shared model calls


# ---- real exports: the exported SavedModel, and run folders -----


@pytest.fixture(scope='module')
def tnews_run(tmp_path_factory):
    from serving_runs import random_run
    return random_run('tnews', str(tmp_path_factory.mktemp('runs') / 'tnews'))


def served_answers(servable, name, instances):
    srv = serving_http.ModelServer(servable, name, port=0).start()
    try:
        status, answer = predict(srv, {'instances': instances}, name)
        assert status == 200, answer
        return srv, answer['predictions']
    finally:
        srv.stop()


def assert_like_predictor(rows, results, labels):
    assert [r['label'] for r in rows] == [r['label'] for r in results]
    assert [r['label_id'] for r in rows] == [r['label_id'] for r in results]
    for row, result in zip(rows, results):
        np.testing.assert_allclose(
            row['probabilities'],
            [result['probabilities'][l] for l in labels], atol=1e-5)


@pytest.mark.slow
def test_the_exported_saved_model_served_equals_the_predictor(tnews_run,
                                                             tmp_path):
    from gau_keras.clue import load_predictor
    from gau_keras.serving import saved_model
    run, texts = tnews_run
    saved_model.export_saved_model(run, str(tmp_path / 'tnews' / '1'))
    predictor = load_predictor(run)
    want = predictor.predict(texts)
    assert len(set(r['label'] for r in want)) > 1     # not a constant
    servable = serving_http.load_servable(str(tmp_path / 'tnews'))
    assert servable.inputs == ('text',) and servable.version == '1'
    _, rows = served_answers(servable, 'tnews',
                             [{'text': t} for t in texts])
    assert_like_predictor(rows, want, predictor.labels)


def test_a_run_folder_is_served_through_the_predictor(tnews_run):
    from gau_keras.clue import load_predictor
    run, texts = tnews_run
    servable = serving_http.load_servable(run)
    assert isinstance(servable, serving_http.PredictorServable)
    _, rows = served_answers(servable, 'tnews', texts)
    predictor = load_predictor(run)
    assert_like_predictor(rows, predictor.predict(texts), predictor.labels)


def test_a_sentence_pair_run_takes_text_b(tmp_path):
    from gau_keras.clue import load_predictor
    from serving_runs import random_run
    run, pairs = random_run('afqmc', str(tmp_path / 'afqmc'))
    servable = serving_http.load_servable(run)
    assert servable.inputs == ('text', 'text_b')
    srv = serving_http.ModelServer(servable, 'afqmc', port=0).start()
    try:
        instances = [{'text': a, 'text_b': b} for a, b in pairs]
        status, answer = predict(srv, {'instances': instances}, 'afqmc')
        assert status == 200
        predictor = load_predictor(run)
        assert_like_predictor(answer['predictions'], predictor.predict(pairs),
                              predictor.labels)
        status, answer = predict(srv, {'instances': [{'text': 'a'}]},
                                 'afqmc')
        assert status == 400 and "['text_b']" in answer['error']
    finally:
        srv.stop()


@pytest.mark.slow
def test_serve_script(saved_model):
    """scripts/serve.py in its own process: prints its URL, answers."""
    import os
    import re
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(root, 'scripts', 'serve.py'),
         saved_model, '--port', '0', '--model_name', 'length'],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(
            r'http://127\.0\.0\.1:(\d+)/v1/models/length:predict', line)
        assert match, line
        where = types.SimpleNamespace(port=int(match.group(1)))
        status, answer = predict(where, {'instances': ['一二三四五六']})
        assert status == 200
        assert_rows(answer['predictions'], ['一二三四五六'])
    finally:
        proc.terminate()
        proc.wait(30)
