"""Timing helpers shared by the benchmarks: medians of repeated runs and the memcpy floor."""
import time

import numpy as np


def best_and_median_seconds(fn, repeat=25, warmup=3):
    """(best, median) wall time of ``fn()`` over ``repeat`` calls after ``warmup`` untimed
    calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def median_seconds(fn, repeat=25, warmup=3):
    """Median wall time of ``fn()`` over ``repeat`` calls after ``warmup`` untimed calls."""
    return best_and_median_seconds(fn, repeat, warmup)[1]


def memcpy_floor_seconds(nbytes, repeat=25):
    """Median time to copy ``nbytes`` between two preallocated buffers: the physical floor for
    any kernel that must write that many output bytes."""
    source = np.ones(nbytes, dtype=np.uint8)
    target = np.empty_like(source)
    return median_seconds(lambda: np.copyto(target, source), repeat=repeat)


def ms(seconds):
    return f'{seconds * 1e3:8.3f}'


def print_table(title, header, rows):
    """Print a fixed-width table: header is a list of column names, rows lists of str."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    print(f'\n## {title}')
    print('  '.join(str(h).rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print('  '.join(str(c).rjust(w) for c, w in zip(row, widths)))
