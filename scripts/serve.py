"""Serve a model over HTTP with TF Serving's REST predict API.

    python scripts/serve.py export/sentiment --port 8501 \\
        --model_name sentiment
    curl -d '{"instances": [{"text": "这家餐厅很好吃"}]}' \\
         http://127.0.0.1:8501/v1/models/sentiment:predict

DIR is an exported SavedModel (``scripts/export.py --format saved_model``),
a TF Serving base path with numbered versions, or a fine-tuning run folder
(served through ``gau_keras.clue.load_predictor``).  Concurrent requests
are batched (--max_batch_size, --max_wait_ms).  Binds 127.0.0.1 unless
--host says otherwise.  See ``gau_keras.serving.http``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gau_keras  # noqa: E402,F401  (selects tf-keras before TensorFlow)
import flags  # noqa: E402
from gau_keras.serving import http  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('model_dir', help='SavedModel folder or run folder')
    p.add_argument('--port', type=int, default=8501)
    p.add_argument('--model_name', required=True,
                   help='NAME in /v1/models/NAME:predict')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--max_batch_size', type=flags.positive_int, default=32)
    p.add_argument('--max_wait_ms', type=flags.non_negative_float,
                   default=5.0)
    p.add_argument('--max_text_chars', type=flags.positive_int,
                   default=http.MAX_TEXT_CHARS,
                   help='longer texts are refused with 400')
    p.add_argument('--max_body_bytes', type=flags.positive_int,
                   default=http.MAX_BODY_BYTES,
                   help='larger request bodies are refused with 413')
    p.add_argument('--verbose', action='store_true', help='log requests')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    servable = http.load_servable(args.model_dir)
    server = http.ModelServer(
        servable, args.model_name, host=args.host, port=args.port,
        max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        max_text_chars=args.max_text_chars,
        max_body_bytes=args.max_body_bytes, verbose=args.verbose)
    print('serving %s (inputs %s) at %s:predict' % (
        args.model_dir, ', '.join(servable.inputs), server.url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
