"""Background CPU load for the contention benchmarks: busy processes, bounded in time."""
import contextlib
import subprocess
import sys
import time

# Each process spins in Python until its deadline, so none outlives the benchmark by more than
# ``seconds`` even if the benchmark is killed before it can stop them.
_BUSY_LOOP = ('import sys, time\n'
              'end = time.time() + float(sys.argv[1])\n'
              'while time.time() < end: pass')


@contextlib.contextmanager
def busy_processes(count, seconds=600.0, settle=0.3):
    """Run ``count`` processes that keep a core busy each (at most ``seconds``), for the body of
    the ``with``; they are killed on exit. ``settle``: seconds to let them start."""
    processes = [subprocess.Popen([sys.executable, '-c', _BUSY_LOOP, str(seconds)])
                 for _ in range(count)]
    try:
        if processes:
            time.sleep(settle)
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()
