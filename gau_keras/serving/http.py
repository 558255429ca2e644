"""An HTTP server speaking TF Serving's REST predict API, and ``WebServing``.

``ModelServer`` serves one model (an exported SavedModel, or a fine-tuning
run folder through ``gau_keras.clue.load_predictor``) on the routes of TF
Serving's REST API, so one client works against it and a real TF Serving:

- ``POST /v1/models/NAME:predict`` (also ``.../versions/V:predict``) with
  ``{"instances": [{"text": ...}, ...]}`` (row form) or
  ``{"inputs": {"text": [...]}}`` (columnar form) →
  ``{"predictions": [{"label": ..., "label_id": ..., "probabilities":
  [...]}, ...]}`` or ``{"outputs": {"label": [...], ...}}``.
- ``GET /v1/models/NAME`` (and ``.../versions/V``): the version status.
- ``GET /v1/models/NAME/metadata``: inputs and outputs of the signature.

Concurrent requests share model calls through a ``DynamicBatcher``.  Client
errors answer 4xx with ``{"error": message}`` (TF Serving's shape): invalid
JSON or shape 400, a text above ``max_text_chars`` 400, a body above
``max_body_bytes`` 413, an unknown model or path 404, a wrong method 405.
A fault inside the model answers 500 for the requests it hit; the server
keeps serving.  The server is the standard library's
``ThreadingHTTPServer``: one thread per connection, HTTP/1.1 keep-alive,
and nothing to install.

Example::

    servable = load_servable('exported/sentiment')
    server = ModelServer(servable, 'sentiment', port=8501).start()
    # curl -d '{"instances": [{"text": "很好"}]}' \\
    #      localhost:8501/v1/models/sentiment:predict
    server.stop()

``WebServing`` is bert4keras's ``snippets.WebServing`` on the same
standard-library server (no bottle, no TF1 graph or session).
"""
import json
import os
import re
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from gau_keras.serving.batching import BatcherClosed, DynamicBatcher

#: Defaults of ``ModelServer``'s limits.
MAX_TEXT_CHARS = 10000
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Bodies up to this many times ``max_body_bytes`` are read and dropped
#: before a 413 (so the client reads the answer); larger ones close the
#: connection.
_DRAIN_FACTOR = 8


class ClientError(ValueError):
    """A request the server refuses: answered with ``status``."""

    def __init__(self, message, status=400):
        super(ClientError, self).__init__(message)
        self.status = status


# ---- servables: what the server calls ----------------------------------


def _plain(value):
    """A numpy / bytes value as JSON-ready Python data."""
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    if hasattr(value, 'tolist'):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class SavedModelServable(object):
    """The ``serving_default`` signature of an exported SavedModel.

    ``path`` is the SavedModel folder, or a TF Serving base path holding
    numbered version folders (the highest is served).  The signature must
    take tf.string inputs (``text``, and ``text_b`` for sentence pairs).

    Example::

        servable = SavedModelServable('exported/sentiment')
        servable.predict([{'text': '很好'}])  # -> [{'label': ..., ...}]
    """

    signature_name = 'serving_default'

    def __init__(self, path):
        import tensorflow as tf
        try:                       # registers the tokenizer ops, if used
            import tensorflow_text  # noqa: F401
        except ImportError:
            pass
        self.path, self.version = resolve_version(path)
        self._tf = tf
        loaded = tf.saved_model.load(self.path)
        if self.signature_name not in loaded.signatures:
            raise ValueError('%s has no %r signature (it has %s)' % (
                self.path, self.signature_name, sorted(loaded.signatures)))
        self._loaded = loaded       # keeps the signature's variables alive
        self.signature = loaded.signatures[self.signature_name]
        specs = self.signature.structured_input_signature[1]
        bad = [n for n, s in specs.items() if s.dtype != tf.string]
        if bad:
            raise ValueError('%s: serving_default input(s) %s are not '
                             'tf.string; serve a text signature' % (
                                 self.path, bad))
        self.inputs = tuple(n for n in ('text', 'text_b') if n in specs) + \
            tuple(sorted(n for n in specs if n not in ('text', 'text_b')))
        self.outputs = tuple(sorted(self.signature.structured_outputs))

    def predict(self, instances):
        """One dict of outputs per instance (a dict of input strings)."""
        tf = self._tf
        feed = {name: tf.constant([inst[name] for inst in instances],
                                  tf.string) for name in self.inputs}
        outputs = {k: v.numpy() for k, v in self.signature(**feed).items()}
        return [{k: _plain(v[i]) for k, v in outputs.items()}
                for i in range(len(instances))]

    def metadata(self):
        """TF Serving's metadata record of the signature (simplified)."""
        def spec(s):
            return {'dtype': s.dtype.name,
                    'shape': [-1 if d is None else d for d in s.shape]}
        ins = self.signature.structured_input_signature[1]
        outs = self.signature.structured_outputs
        return {'signature_def': {'signature_def': {self.signature_name: {
            'inputs': {k: spec(v) for k, v in ins.items()},
            'outputs': {k: spec(v) for k, v in outs.items()},
            'method_name': 'tensorflow/serving/predict'}}}}


class PredictorServable(object):
    """A fine-tuning run folder served through ``load_predictor``.

    Classification runs take ``text`` (and ``text_b`` for sentence-pair
    tasks) and answer ``label``, ``label_id`` and ``probabilities`` (a list
    in label-id order, as the exported SavedModel); cluener runs take
    ``text`` and answer ``entities``.

    Example: ``PredictorServable('runs/tnews').predict([{'text': ...}])``.
    """

    version = '1'

    def __init__(self, run_dir):
        from gau_keras.clue import load_predictor, tasks
        self.path = run_dir
        self.predictor = load_predictor(run_dir)
        task = self.predictor.task
        if task.head not in ('classification', 'global_pointer'):
            raise ValueError('%s: a %s run (head %r) is not served over '
                             'HTTP; classification and cluener runs are'
                             % (run_dir, task.name, task.head))
        pairs = isinstance(task, (tasks.PairTask, tasks.Csl))
        self.inputs = ('text', 'text_b') if pairs else ('text',)
        self.labels = self.predictor.labels

    def predict(self, instances):
        if len(self.inputs) == 2:
            texts = [(inst['text'], inst['text_b']) for inst in instances]
        else:
            texts = [inst['text'] for inst in instances]
        return [self._row(row) for row in self.predictor.predict(texts)]

    def _row(self, row):
        probs = row.get('probabilities')
        if isinstance(probs, dict):
            row = dict(row, probabilities=[probs[l] for l in self.labels])
        return _plain(row)

    def metadata(self):
        return {'inputs': list(self.inputs), 'labels': self.labels}


def resolve_version(path):
    """(SavedModel folder, version string) for a folder or a base path.

    A base path (TF Serving's layout ``BASE/1/saved_model.pb``) serves its
    highest numbered version; a plain SavedModel folder is version '1'.
    """
    if os.path.exists(os.path.join(path, 'saved_model.pb')):
        return path, '1'
    versions = [d for d in os.listdir(path) if d.isdigit() and
                os.path.exists(os.path.join(path, d, 'saved_model.pb'))]
    if not versions:
        raise ValueError('%s holds no saved_model.pb (nor numbered version '
                         'folders with one)' % (path,))
    best = max(versions, key=int)
    return os.path.join(path, best), best


def load_servable(path):
    """A servable for an exported SavedModel or a run folder.

    Example: ``load_servable('runs/tnews')`` (has run.json) or
    ``load_servable('exported/tnews')`` (has saved_model.pb).
    """
    if not os.path.isdir(path):
        raise ValueError('%s is not a folder (give an exported SavedModel '
                         'or a fine-tuning run folder)' % (path,))
    if os.path.exists(os.path.join(path, 'run.json')):
        return PredictorServable(path)
    return SavedModelServable(path)


# ---- request parsing ------------------------------------------------------


def _check_text(name, value, index, max_chars):
    if not isinstance(value, str):
        raise ClientError('instance %d: %r must be a string, got %s' % (
            index, name, type(value).__name__))
    if len(value) > max_chars:
        raise ClientError('instance %d: %r has %d characters; the limit is '
                          '%d (max_text_chars)' % (index, name, len(value),
                                                   max_chars))
    try:
        value.encode('utf-8')
    except UnicodeEncodeError as e:       # a lone surrogate such as \ud800
        raise ClientError('instance %d: %r is not valid Unicode: %s'
                          % (index, name, e))
    return value


def _instance(raw, index, inputs, max_chars):
    """One row-form instance as {input name: text}."""
    if isinstance(raw, str) and len(inputs) == 1:
        raw = {inputs[0]: raw}
    if not isinstance(raw, dict):
        raise ClientError('instance %d must be an object with %s, got %s' % (
            index, ' and '.join('"%s"' % n for n in inputs),
            type(raw).__name__))
    unknown = sorted(set(raw) - set(inputs))
    if unknown:
        raise ClientError('instance %d: unknown input(s) %s; this model '
                          'takes %s' % (index, unknown, list(inputs)))
    missing = [n for n in inputs if n not in raw]
    if missing:
        raise ClientError('instance %d: missing input(s) %s' % (
            index, missing))
    return {n: _check_text(n, raw[n], index, max_chars) for n in inputs}


def _columns(raw, inputs):
    """Columnar ``inputs`` as a list of instances."""
    if isinstance(raw, list) and len(inputs) == 1:
        raw = {inputs[0]: raw}
    if not isinstance(raw, dict):
        raise ClientError('"inputs" must be an object {input name: list}')
    lists = [raw.get(n) for n in raw]
    if not all(isinstance(v, list) for v in lists):
        raise ClientError('every input in "inputs" must be a list')
    sizes = set(len(v) for v in lists)
    if len(sizes) > 1:
        raise ClientError('the lists in "inputs" differ in length: %s'
                          % sorted(sizes))
    size = sizes.pop() if sizes else 0
    return [{n: raw[n][i] for n in raw} for i in range(size)]


def parse_predict_request(body, inputs, max_chars=MAX_TEXT_CHARS):
    """(instances, columnar) from a predict request's JSON body.

    Raises ``ClientError`` (400) naming what is wrong.

    Example::

        parse_predict_request(b'{"instances": [{"text": "hi"}]}', ('text',))
        # -> ([{'text': 'hi'}], False)
    """
    try:
        request = json.loads(body.decode('utf-8'))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ClientError('JSON Parse error: %s' % (e,))
    if not isinstance(request, dict):
        raise ClientError('the request must be a JSON object with '
                          '"instances" or "inputs"')
    signature = request.get('signature_name', 'serving_default')
    if signature != 'serving_default':
        raise ClientError('signature %r is not served; this server serves '
                          '"serving_default"' % (signature,))
    if ('instances' in request) == ('inputs' in request):
        raise ClientError('the request needs exactly one of "instances" '
                          'and "inputs"')
    columnar = 'inputs' in request
    raw = (_columns(request['inputs'], inputs) if columnar
           else request['instances'])
    if not isinstance(raw, list):
        raise ClientError('"instances" must be a list')
    if not raw:
        raise ClientError('no instances: the list is empty')
    return ([_instance(r, i, inputs, max_chars) for i, r in enumerate(raw)],
            columnar)


def format_predictions(rows, columnar):
    """TF Serving's response: row form or columnar form."""
    if not columnar:
        return {'predictions': rows}
    keys = list(rows[0]) if rows else []
    return {'outputs': {k: [row.get(k) for row in rows] for k in keys}}


# ---- the shared JSON handler ------------------------------------------------


class JSONHandler(BaseHTTPRequestHandler):
    """Base handler: JSON answers, body limits, quiet logs, timeouts."""

    protocol_version = 'HTTP/1.1'
    server_version = 'gau_keras'
    timeout = 60                   # seconds a silent client may hold a thread
    max_body_bytes = MAX_BODY_BYTES
    verbose = False

    def log_message(self, format, *args):   # noqa: A002 (stdlib name)
        if self.verbose:
            sys.stderr.write('%s - %s\n' % (self.address_string(),
                                             format % args))

    def send_json(self, status, obj):
        """Answer ``obj`` as JSON (a str is sent as it is: JSON already)."""
        if not isinstance(obj, str):
            obj = json.dumps(obj, ensure_ascii=False)
        data = obj.encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'application/json; charset=utf-8')
        self.send_header('Content-Length', str(len(data)))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def send_error(self, code, message=None, explain=None):
        """The stdlib's own errors (bad request line, ...) as JSON."""
        self.close_connection = True
        try:
            self.send_json(code, {'error': message or explain or
                                  'error %d' % code})
        except OSError:
            pass

    def read_body(self):
        """The request body; ``ClientError`` if missing or too large."""
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            self.close_connection = True
            raise ClientError('chunked bodies are not accepted; send a '
                              'Content-Length', 411)
        length = self.headers.get('Content-Length')
        if length is None:
            length = '0'
        if not length.isdigit():
            self.close_connection = True
            raise ClientError('bad Content-Length %r' % (length,))
        length = int(length)
        if length > self.max_body_bytes:
            self._drop_body(length)
            raise ClientError('the body has %d bytes; the limit is %d '
                              '(max_body_bytes)' % (length,
                                                    self.max_body_bytes), 413)
        body = self.rfile.read(length)
        self.body_read = True
        return body

    def _drop_body(self, length):
        if length > _DRAIN_FACTOR * self.max_body_bytes:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)
        self.body_read = True

    def answer(self, method):
        """Run ``self.route(method)`` → (status, obj); never raises.

        A body left unread (a refused POST) closes the connection, so the
        next request on it does not start inside that body.
        """
        self.body_read = False
        try:
            status, obj = self.route(method)
        except ClientError as e:
            status, obj = e.status, {'error': str(e)}
        except Exception as e:             # noqa: BLE001  (a server fault)
            if self.verbose:
                traceback.print_exc()
            status, obj = 500, {'error': 'internal error: %s: %s' % (
                type(e).__name__, e)}
        if method == 'POST' and not self.body_read and \
                self.headers.get('Content-Length', '0') != '0':
            self.close_connection = True
        self.send_json(status, obj)

    def route(self, method):
        raise NotImplementedError

    def do_GET(self):
        self.answer('GET')

    def do_POST(self):
        self.answer('POST')

    def _not_allowed(self):
        self.close_connection = True
        self.send_json(405, {'error': 'method %s is not allowed'
                             % self.command})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed


# ---- the TF Serving REST server ---------------------------------------------

_MODEL_PATH = re.compile(
    r'^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?'
    r'(?:/(?P<metadata>metadata)|:(?P<verb>[a-z]+))?$')


class _RESTHandler(JSONHandler):
    """TF Serving's REST routes for one ``ModelServer``."""

    app = None                     # the ModelServer, set per server class

    def route(self, method):
        app = self.app
        match = _MODEL_PATH.match(urlsplit(self.path).path)
        if not match:
            raise ClientError('no such path: %s (use /v1/models/%s:predict)'
                              % (self.path, app.model_name), 404)
        if match.group('name') != app.model_name:
            raise ClientError('Servable not found for request: Latest(%s)'
                              % match.group('name'), 404)
        version = match.group('version')
        if version is not None and version != app.version:
            raise ClientError('Servable not found for request: Specific(%s, '
                              '%s)' % (app.model_name, version), 404)
        verb = match.group('verb')
        if verb is not None and verb != 'predict':
            raise ClientError('%s is not served; use :predict' % verb, 404)
        want = 'POST' if verb else 'GET'
        if method != want:
            self.close_connection = True
            raise ClientError('%s %s: use %s' % (method, self.path, want),
                              405)
        if verb:
            return 200, app.handle_predict(self.read_body())
        if match.group('metadata'):
            return 200, app.metadata()
        return 200, app.status()


class ModelServer(object):
    """TF Serving's REST predict API over a servable, with dynamic batching.

    ``servable`` has ``inputs`` (names), ``predict(instances)`` and
    ``metadata()`` (see ``SavedModelServable``).  ``port=0`` picks a free
    port (read ``server.port``).

    Example::

        server = ModelServer(load_servable('exported/tnews'), 'tnews',
                             port=8501).start()   # background thread
        print(server.url)    # http://127.0.0.1:8501/v1/models/tnews
        server.stop()
    """

    def __init__(self, servable, model_name, host='127.0.0.1', port=8501,
                 max_batch_size=32, max_wait_ms=5.0,
                 max_text_chars=MAX_TEXT_CHARS, max_body_bytes=MAX_BODY_BYTES,
                 request_timeout=120.0, verbose=False):
        if not re.match(r'^[^/:?#\s]+$', model_name or ''):
            raise ValueError('model_name %r must be a non-empty name '
                             'without / : ? # or spaces' % (model_name,))
        self.servable = servable
        self.model_name = model_name
        self.version = str(getattr(servable, 'version', '1'))
        self.max_text_chars = int(max_text_chars)
        self.request_timeout = request_timeout
        self.batcher = DynamicBatcher(servable.predict, max_batch_size,
                                      max_wait_ms)
        handler = type('RESTHandler', (_RESTHandler,), {
            'app': self, 'max_body_bytes': int(max_body_bytes),
            'verbose': verbose})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = None

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        host = self.httpd.server_address[0]
        return 'http://%s:%d/v1/models/%s' % (host, self.port,
                                              self.model_name)

    def handle_predict(self, body):
        instances, columnar = parse_predict_request(
            body, self.servable.inputs, self.max_text_chars)
        try:
            rows = self.batcher.submit(instances, self.request_timeout)
        except BatcherClosed as e:
            raise ClientError('the server is shutting down: %s' % e, 503)
        except TimeoutError as e:
            raise ClientError('the model did not answer: %s' % e, 503)
        except Exception as e:             # noqa: BLE001
            if type(e).__name__ == 'InvalidArgumentError':
                raise ClientError('the model refused the input: %s'
                                  % (getattr(e, 'message', None) or e,))
            raise
        return format_predictions(rows, columnar)

    def status(self):
        return {'model_version_status': [{
            'version': self.version, 'state': 'AVAILABLE',
            'status': {'error_code': 'OK', 'error_message': ''}}]}

    def metadata(self):
        meta = {'model_spec': {'name': self.model_name,
                               'signature_name': '',
                               'version': self.version},
                'metadata': self.servable.metadata()}
        return meta

    def serve_forever(self):
        """Serve until ``stop()`` (or Ctrl-C) in this thread."""
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()
            self.batcher.close()

    def start(self):
        """Serve on a background thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever,
                                        daemon=True, name='ModelServer')
        self._thread.start()
        return self

    def stop(self):
        """Stop serving (a server never started just releases its port)."""
        if self._thread is None:
            self.httpd.server_close()
            self.batcher.close()
            return
        self.httpd.shutdown()
        self._thread.join(timeout=10)


# ---- bert4keras's WebServing ------------------------------------------------


class _WebHandler(JSONHandler):
    """Routes of one ``WebServing``: path → (method, wrapped function)."""

    routes = None

    def route(self, method):
        url = urlsplit(self.path)
        entry = self.routes.get(url.path)
        if entry is None:
            raise ClientError('no such path: %s' % url.path, 404)
        if method not in entry:
            self.close_connection = True
            raise ClientError('%s %s: use %s' % (
                method, url.path, ' or '.join(sorted(entry))), 405)
        if method == 'GET':
            params = parse_qs(url.query, keep_blank_values=True)
        else:
            params = self._form(self.read_body())
        values = {k: v[-1] for k, v in params.items()}
        return 200, entry[method](values)

    def _form(self, body):
        """A POST body: urlencoded form (as bottle reads it) or JSON."""
        kind = self.headers.get('Content-Type', '').split(';')[0].strip()
        if kind == 'application/json':
            try:
                data = json.loads(body.decode('utf-8'))
            except (UnicodeDecodeError, ValueError) as e:
                raise ClientError('JSON Parse error: %s' % (e,))
            if not isinstance(data, dict):
                raise ClientError('a JSON body must be an object')
            return {k: [v if isinstance(v, str) else json.dumps(v)]
                    for k, v in data.items()}
        try:
            return parse_qs(body.decode('utf-8'), keep_blank_values=True)
        except UnicodeDecodeError as e:
            raise ClientError('the form is not UTF-8: %s' % (e,))


class WebServing(object):
    """bert4keras's ``WebServing`` on the standard library, for TF2.

    Same API and answers as bert4keras 0.11.5: ``route(path, func,
    arguments, method='GET')`` exposes ``func(**kwargs)``; ``arguments`` is
    ``{name: (converter or None, required)}``; the answer is JSON
    ``{"code": 0, "desc": "succeeded", "data": func(...)}``, ``code`` 1 for
    a missing (or unconvertible) argument and 2 when ``func`` raises (its
    message in ``desc``).  GET reads the query string; POST reads a
    urlencoded form (as bottle's ``request.POST``) or a JSON object.
    ``server`` is accepted and ignored (bottle / paste are not needed); the
    server is threaded.  ``start()`` blocks like bottle's ``run``;
    ``stop()`` ends it from another thread.  bert4keras's default host
    '0.0.0.0' listens on every interface: pass host='127.0.0.1' for local
    use only.

    Example::

        arguments = {'text': (None, True), 'n': (int, False)}
        web = WebServing(port=8864)
        web.route('/gen_synonyms', gen_synonyms, arguments)
        web.start()
        # http://127.0.0.1:8864/gen_synonyms?text=你好
    """

    def __init__(self, host='0.0.0.0', port=8000, server='paste'):
        self.host = host
        self.port = port
        self.server = server
        self.routes = {}
        self.httpd = None
        self.ready = threading.Event()

    def wraps(self, func, arguments, method='GET'):
        """``func`` as a handler: {name: string value} → the JSON answer
        (a string, as bert4keras's)."""
        def new_func(params):
            outputs = {'code': 0, 'desc': u'succeeded', 'data': {}}
            kwargs = {}
            for key, (convert, required) in arguments.items():
                result = params.get(key)
                if result is None:
                    if required:
                        outputs['code'] = 1
                        outputs['desc'] = 'lack of "%s" argument' % key
                        return json.dumps(outputs, ensure_ascii=False)
                    continue
                if convert is not None:
                    try:
                        result = convert(result)
                    except Exception as e:     # noqa: BLE001
                        outputs['code'] = 1
                        outputs['desc'] = 'bad "%s" argument: %s' % (key, e)
                        return json.dumps(outputs, ensure_ascii=False)
                kwargs[key] = result
            try:
                outputs['data'] = _plain(func(**kwargs))
                return json.dumps(outputs, ensure_ascii=False)
            except Exception as e:             # noqa: BLE001
                outputs = {'code': 2, 'desc': str(e), 'data': {}}
            return json.dumps(outputs, ensure_ascii=False)

        return new_func

    def route(self, path, func, arguments, method='GET'):
        """Expose ``func`` at ``path`` for ``method`` ('GET' or 'POST')."""
        method = method.upper()
        if method not in ('GET', 'POST'):
            raise ValueError('method must be GET or POST, got %r' % method)
        self.routes.setdefault(path, {})[method] = self.wraps(
            func, arguments, method)

    def start(self):
        """Serve until ``stop()`` (blocks, as bottle's ``run``)."""
        handler = type('WebHandler', (_WebHandler,), {'routes': self.routes})
        self.httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.ready.set()
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def stop(self):
        """End a ``start()`` running on another thread."""
        if self.httpd is not None:
            self.httpd.shutdown()
