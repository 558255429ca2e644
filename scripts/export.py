"""Export a fine-tuned CLUE run folder for serving.

    python scripts/export.py RUN_DIR --format saved_model --out DIR

``saved_model``: a TensorFlow SavedModel for TF Serving whose
``serving_default`` signature takes raw text (tf.string ``text``, and
``text_b`` for sentence pairs; tokenization runs in the graph) and returns
``label``, ``label_id``, ``probabilities`` (classification) or entity spans
(cluener); a second signature ``ids`` takes int32 ``token_ids`` /
``segment_ids``.  TF Serving expects DIR to be a version folder such as
``export/tnews/1``.  See ``gau_keras.serving.saved_model``.

    python scripts/export.py RUN_DIR --format onnx --out FILE.onnx

``onnx``: the token-id model (int32 ``token_ids`` / ``segment_ids`` in, the
task head's float32 outputs out), for onnxruntime.  See
``gau_keras.serving.onnx``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import gau_keras  # noqa: E402,F401  (before tensorflow)


def export_saved_model(args):
    from gau_keras.clue import load_predictor
    from gau_keras.serving import saved_model
    predictor = load_predictor(args.run_dir, args.mixed_precision)
    out = saved_model.export_saved_model(predictor, args.out)
    print('SavedModel -> %s (signatures: serving_default, ids)' % out)
    return out


def export_onnx(args):
    from gau_keras.serving import onnx
    if args.mixed_precision != 'fp32':
        raise SystemExit('--format onnx exports the float32 model; '
                         'onnxruntime picks its own kernels')
    out = onnx.export_run_onnx(args.run_dir, args.out)
    print('ONNX (opset %d, int32 token_ids / segment_ids in) -> %s'
          % (onnx.DEFAULT_OPSET, out))
    return out


#: --format value → function(args) writing the export; returns its path
FORMATS = {'saved_model': export_saved_model, 'onnx': export_onnx}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('run_dir', help='a finetune_clue.py --output_dir folder')
    p.add_argument('--format', required=True, choices=sorted(FORMATS))
    p.add_argument('--out', required=True,
                   help='output folder (saved_model) or file (onnx)')
    p.add_argument('--mixed_precision', default='fp32',
                   choices=['fp32', 'fp16', 'bf16', 'auto'],
                   help="compute precision of the exported SavedModel "
                   "(outputs stay float32); 'auto' measures the faster here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return FORMATS[args.format](args)


if __name__ == '__main__':
    main()
