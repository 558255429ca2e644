"""The bert4keras-style sentiment classifier the compat tests fit: a
``DataGenerator`` subclass, the model (Lambda on [CLS], Dense softmax on a
tiny GAU model) and toy data.  Shared by tests/compat/test_compat.py
(forfit, save_weights) and tests/_mirrored_worker.py (MirroredStrategy).

    model = classifier('flash')
    train = SentimentGenerator(toy_data(), batch_size=4)
    model.fit(train.forfit(), steps_per_epoch=len(train), epochs=1)
"""
import numpy as np

from gau_keras.backend import keras
from gau_keras.snippets import DataGenerator, sequence_padding

from tiny_configs import build_tiny


class SentimentGenerator(DataGenerator):
    """bert4keras-style generator: (token ids, label) → padded batches."""

    def __iter__(self, random=False):
        batch_ids, batch_labels = [], []
        for is_end, (ids, label) in self.sample(random):
            batch_ids.append(ids)
            batch_labels.append([label])
            if len(batch_ids) == self.batch_size or is_end:
                batch_ids = sequence_padding(batch_ids)
                yield ([batch_ids, np.zeros_like(batch_ids)],
                       sequence_padding(batch_labels))
                batch_ids, batch_labels = [], []


def classifier(name):
    """bert4keras's sentiment pattern: Lambda on [CLS], Dense softmax."""
    bert = build_tiny(name, return_keras_model=False)
    output = keras.layers.Lambda(lambda x: x[:, 0],
                                 name='CLS-token')(bert.model.output)
    output = keras.layers.Dense(2, activation='softmax')(output)
    model = keras.Model(bert.model.input, output)
    model.compile(loss='sparse_categorical_crossentropy',
                  optimizer=keras.optimizers.Adam(1e-2),
                  metrics=['accuracy'])
    return model


def toy_data(n=12, seed=0):
    """``n`` (token ids of length 3–8, label) pairs, labels alternating."""
    rng = np.random.RandomState(seed)
    return [(list(rng.randint(4, 40, rng.randint(3, 9))), int(i % 2))
            for i in range(n)]
