"""Marked points where a test can SIGKILL a subprocess worker
(tests/_train_worker.py, tests/_run_fault_worker.py).

``windows(spec)`` returns ``window(stage, fn)``: a wrapper of ``fn`` that
prints ``window STAGE`` at every call and, at the N-th call of the STAGE
named by ``spec`` ('STAGE:N'; None: never), stalls until the test kills
the process.
"""
import time


def windows(spec):
    target, n = (spec or 'none:0').split(':')
    left = [int(n)]

    def window(stage, fn):
        def paused(*args, **kwargs):
            print('window %s' % stage, flush=True)
            if stage == target:
                left[0] -= 1
                if left[0] == 0:
                    time.sleep(600)     # until the test kills us
            return fn(*args, **kwargs)
        return paused
    return window
