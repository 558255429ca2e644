"""Subprocess worker of tests/training/test_distributed.py (not a test
module): Keras ``model.fit`` on one device and under MirroredStrategy over
2 logical CPUs (set before TensorFlow starts, hence a process of its own).

    python tests/_mirrored_worker.py classifier:flash:mixed_float16 optimizer

``classifier:MODEL:POLICY`` fits the bert4keras-style classifier
(b4k_classifier.py) for 2 steps on both, from the same weights, and prints
``case <case> replicas 2 losses <single> <mirrored> diff <max |Δw|>``.
``optimizer`` fits a Dense layer with the composed bert4keras optimizer
(accumulation, piecewise lr, lookahead, EMA) and prints ``RESULT <json>``.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gau_keras  # noqa: E402  (before tensorflow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gau_keras import optimizers as gk, training  # noqa: E402


def classifier_case(case, strategy):
    from b4k_classifier import SentimentGenerator, classifier, toy_data
    _, name, precision = case.split(':')
    gau_keras.set_precision(precision)
    single = classifier(name)
    with strategy.scope():
        mirrored = classifier(name)
    mirrored.set_weights(single.get_weights())
    train = SentimentGenerator(toy_data(8), batch_size=4)
    losses = []
    for model in (single, mirrored):
        np.random.seed(1)
        losses.append(model.fit(train.forfit(), steps_per_epoch=2,
                                epochs=1, verbose=0).history['loss'][0])
    diff = max(np.abs(a - b).max() for a, b in
               zip(single.get_weights(), mirrored.get_weights()))
    gau_keras.set_precision('fp32')
    print('case %s replicas %d losses %.7f %.7f diff %.3g' % (
        case, strategy.num_replicas_in_sync, losses[0], losses[1], diff),
        flush=True)


def optimizer_case(mirrored):
    rs = np.random.RandomState(0)
    x = rs.randn(16, 5).astype('float32')
    y = rs.randn(16, 3).astype('float32')
    out = {}
    for name, strategy in (('default', tf.distribute.get_strategy()),
                           ('mirrored', mirrored)):
        with strategy.scope():
            tf.keras.utils.set_random_seed(1)
            inputs = tf.keras.Input((5,))
            model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))
            cls = gk.extend_with_exponential_moving_average(
                gk.extend_with_lookahead(gk.extend_with_piecewise_linear_lr(
                    gk.extend_with_gradient_accumulation(gk.AdaFactor))))
            opt = cls(0.2, beta1=0.9, grad_accum_steps=2, lr_schedule={2: 1},
                      steps_per_slow_update=2, ema_momentum=0.5)
            model.compile(opt, 'mse')
        out['init'] = [w.tolist() for w in model.get_weights()]
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        opt.apply_ema_weights()
        out[name] = [w.tolist() for w in model.get_weights()]
        out[name + '_iterations'] = int(opt.iterations.numpy())
    print('RESULT' + json.dumps(out), flush=True)


def main(cases):
    """One MirroredStrategy for every case (a second instance in the same
    process would reuse its collective instance keys)."""
    training.use_logical_cpus(2)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    for case in cases:
        if case == 'optimizer':
            optimizer_case(strategy)
        else:
            classifier_case(case, strategy)


if __name__ == '__main__':
    main(sys.argv[1:])
