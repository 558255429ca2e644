"""gau_keras: GAU-α and FLASH for Keras 2 (tf-keras) in the bert4keras style.

bert4keras 0.11.5 declares keras<=2.3.1, which conflicts with TensorFlow 2.21,
so it is not listed here: `make setup` installs it with --no-deps.
"""
from setuptools import find_packages, setup

setup(
    name='gau_keras',
    version='0.1.0',
    description='GAU-alpha and FLASH (gated attention units) for Keras 2',
    packages=find_packages(include=['gau_keras', 'gau_keras.*']),
    python_requires='>=3.9,<3.12',
    install_requires=[
        'tensorflow-cpu==2.21.*; platform_machine=="x86_64"',
        'tf-keras==2.21.*',
        'numpy',
        'jieba',
    ],
    extras_require={'test': ['pytest', 'snownlp']},
)
