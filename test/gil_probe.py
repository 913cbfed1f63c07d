"""Does a call release the GIL? A background Python thread counts while the call runs."""
import contextlib
import sys
import threading
import time


@contextlib.contextmanager
def gil_probe():
    """Yields ``ticks_during(work)``: how often a background Python thread ran while ``work()``
    ran in this thread. The switch interval is raised to 30 s meanwhile, so this thread keeps
    the GIL unless ``work`` releases it: a GIL-holding call gives 0."""
    ticks = 0
    stop = threading.Event()

    def count():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0)  # hands the GIL back at once: the main thread never waits for it

    def ticks_during(work):
        before = ticks
        work()
        return ticks - before

    previous = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    try:
        time.sleep(0.05)
        yield ticks_during
    finally:
        stop.set()
        sys.setswitchinterval(previous)
        counter.join()
