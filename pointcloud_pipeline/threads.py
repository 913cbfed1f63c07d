"""The ``threads`` argument of the kernels: how many threads (or windows at once) a call uses;
0 means all cores (OpenMP's default team size, which ``OMP_NUM_THREADS`` sets). The depth and
BEV kernels run on their own worker threads (``_workers.h``), the batch kernels on OpenMP."""
from numbers import Integral

MAX_THREADS = 1024


def checked_threads(threads):
    """``threads`` as an int from 0 (all cores) to MAX_THREADS; ValueError otherwise."""
    if (isinstance(threads, bool) or not isinstance(threads, Integral)
            or not 0 <= threads <= MAX_THREADS):
        raise ValueError(f'threads must be an integer from 0 (all cores) to {MAX_THREADS}, '
                         f'got {threads!r}')
    return int(threads)
