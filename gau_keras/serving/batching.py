"""A dynamic batcher: concurrent requests share one model call.

Each request hands over a list of items and waits for its results.  A
worker thread takes the oldest waiting items, keeps collecting for at most
``max_wait_ms`` (or until ``max_batch_size`` items are there), calls
``predict(items)`` once and routes each result back to its request.  A
request larger than ``max_batch_size`` is cut across several model calls;
its results come back whole and in order.

If a model call raises and the batch mixed several requests, each request
is run again on its own, so only the request that causes the error gets
it.  The worker survives any exception.

Example::

    batcher = DynamicBatcher(lambda texts: [len(t) for t in texts],
                             max_batch_size=32, max_wait_ms=5)
    batcher.submit(['a', 'bc'])      # -> [1, 2]  (from any thread)
    batcher.close()
"""
import collections
import threading
import time


class BatcherClosed(RuntimeError):
    """The batcher was closed before the request was answered."""


class _Request(object):
    """One ``submit`` call: its items, results and completion."""

    def __init__(self, items):
        self.items = list(items)
        self.results = [None] * len(self.items)
        self.pending = len(self.items)
        self.error = None
        self.done = threading.Event()

    def fail(self, error):
        if not self.done.is_set():
            self.error = error
            self.done.set()

    def put(self, index, result):
        self.results[index] = result
        self.pending -= 1
        if self.pending == 0:
            self.done.set()


class DynamicBatcher(object):
    """Collects items from concurrent ``submit`` calls into model batches.

    ``predict(items) -> results`` (a list of the same length) runs on the
    batcher's own thread, one call at a time.  Counters ``batches`` and
    ``items`` tell how many calls and items went through (for tests and
    logs).

    Example::

        batcher = DynamicBatcher(model_fn, max_batch_size=32, max_wait_ms=5)
        results = batcher.submit(instances, timeout=30)
    """

    def __init__(self, predict, max_batch_size=32, max_wait_ms=5.0):
        if int(max_batch_size) < 1:
            raise ValueError('max_batch_size must be >= 1, got %r'
                             % (max_batch_size,))
        if float(max_wait_ms) < 0:
            raise ValueError('max_wait_ms must be >= 0, got %r'
                             % (max_wait_ms,))
        self.predict = predict
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.batches = 0
        self.items = 0
        self._queue = collections.deque()   # (request, index) per item
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='DynamicBatcher')
        self._thread.start()

    def submit(self, items, timeout=None):
        """Results of ``predict`` for ``items`` (a list), in order.

        Raises what ``predict`` raised for these items, ``TimeoutError``
        after ``timeout`` seconds, or ``BatcherClosed``.
        """
        request = _Request(items)
        if not request.items:
            return []
        with self._cond:
            if self._closed:
                raise BatcherClosed('the batcher is closed')
            self._queue.extend((request, i)
                               for i in range(len(request.items)))
            self._cond.notify()
        if not request.done.wait(timeout):
            request.fail(TimeoutError('no answer within %.1f s' % timeout))
        if request.error is not None:
            raise request.error
        return request.results

    def close(self):
        """Stop the worker; waiting requests get ``BatcherClosed``."""
        with self._cond:
            self._closed = True
            left = [request for request, _ in self._queue]
            self._queue.clear()
            self._cond.notify_all()
        for request in left:
            request.fail(BatcherClosed('the batcher was closed'))
        self._thread.join(timeout=5)

    # ---- the worker ----------------------------------------------------

    def _take_batch(self):
        """Wait for items, then up to ``max_wait`` for a full batch."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self.max_wait
            while len(self._queue) < self.max_batch_size:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            count = min(len(self._queue), self.max_batch_size)
            return [self._queue.popleft() for _ in range(count)]

    def _run(self):
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            live = [(r, i) for r, i in batch if not r.done.is_set()]
            if live:
                self._answer(live)

    def _call(self, batch):
        """``predict`` on the batch's items; results routed back."""
        results = self.predict([r.items[i] for r, i in batch])
        if len(results) != len(batch):
            raise RuntimeError('predict returned %d results for %d items'
                               % (len(results), len(batch)))
        self.batches += 1
        self.items += len(batch)
        for (request, index), result in zip(batch, results):
            request.put(index, result)

    def _answer(self, batch):
        try:
            self._call(batch)
            return
        except Exception as error:        # noqa: BLE001  (routed back)
            first_error = error
        requests = list(collections.OrderedDict.fromkeys(r for r, _ in batch))
        if len(requests) == 1:
            requests[0].fail(first_error)
            return
        for request in requests:          # isolate the faulty request
            own = [(r, i) for r, i in batch if r is request]
            try:
                self._call(own)
            except Exception as error:    # noqa: BLE001
                request.fail(error)
