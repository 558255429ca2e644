"""Benchmarks of the seeds' claims on this machine (logic: scripts/bench/,
``bench.suite`` and ``bench.quality``; results: docs/benchmarks.md).

    python scripts/benchmark.py speed --out runs/bench      # the full grid
    python scripts/benchmark.py speed --lengths 512,2048 --precisions fp32
    python scripts/benchmark.py maxbatch --maxbatch_budget_mb 16000
    python scripts/benchmark.py quality --seeds 3 --pretrain_cpu_s 120
    python scripts/benchmark.py length --pretrain_cpu_s 300
    python scripts/benchmark.py quick                       # make bench
    python scripts/benchmark.py plot --out runs/bench       # re-plot a JSON

Every speed point runs in a fresh subprocess (peak memory = its
ru_maxrss); the machine's CPU flags and library versions are printed first.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # the checkout's gau_keras
sys.path.insert(0, HERE)                    # the bench package
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import gau_keras  # noqa: E402,F401  (before tensorflow)
from bench import suite  # noqa: E402


def log(text):
    print(text, flush=True)


if __name__ == '__main__':
    suite.main(log=log)
