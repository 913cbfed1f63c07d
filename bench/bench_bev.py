"""BEV benchmark: the kernel vs the numpy reference and the memcpy floor on real KITTI scans, and
the batch command (100 scans -> PNG) vs the classic per-point Python loop, threads vs processes.

All ratios come from one run on this machine. Targets (issue 3): kernel <= 1 ms and >= 10x the
numpy reference at 1600 x 1600; batch >= 50x the single-process per-point loop, >= 1.8x with
2 workers than with 1.
"""
import contextlib
import io
import os
from pathlib import Path
import shutil
import tempfile
import time

import cv2
import numpy as np

from pointcloud_pipeline.batch import bev as batch_bev, runner
from pointcloud_pipeline.bev import BevGrid, bev_image
from reference_bev import maps_to_image, python_loop_maps, reference_bev_points
from timing import best_and_median_seconds, median_seconds, memcpy_floor_seconds, ms, print_table

REPO = Path(__file__).resolve().parents[1]


def kitti_dir():
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    data = Path(configured) if configured else REPO.parent / 'shared' / 'data'
    return data / 'kitti' / 'velodyne'


def bench_kernel(scans, quick):
    grid = BevGrid()
    out = np.empty(grid.shape, np.uint8)
    floor = memcpy_floor_seconds(out.nbytes)
    cores = os.cpu_count() or 1
    rows = []
    for path, points in scans.items():
        numpy_time = median_seconds(lambda: reference_bev_points(points, grid),
                                    repeat=5 if quick else 15, warmup=1)
        for threads in sorted({1, cores}):
            best, median = best_and_median_seconds(
                lambda: bev_image(points, grid, out=out, threads=threads),
                repeat=50 if quick else 300)
            rows.append([path.name, f'{len(points)}', f'{threads}', ms(median), ms(best),
                         ms(numpy_time), f'{numpy_time / median:6.1f}x',
                         f'{median / floor:5.1f}x'])
    print_table(f'BEV kernel, KITTI scans, 1600 x 1600 uint8 with out= (memcpy floor of the '
                f'{out.nbytes / 1e6:.2f} MB output: {floor * 1e3:.3f} ms)',
                ['scan', 'points', 'threads', 'kernel ms', 'best ms', 'numpy ms',
                 'vs numpy', 'vs memcpy'], rows)


def python_loop_seconds(points, grid, subset=30000):
    """Classic per-scan time without I/O: the per-point loop timed on a random subset and
    extrapolated to the whole scan, plus its vectorised normalisation of the full maps."""
    sample = points[np.random.default_rng(0).choice(len(points), subset, replace=False)]
    loop = min(median_seconds(lambda: python_loop_maps(sample, grid), 1, 0) for _ in range(3))
    maps = python_loop_maps(points[:0], grid)
    normalise = min(median_seconds(lambda: maps_to_image(*maps, grid), 1, 0) for _ in range(3))
    per_point = loop / subset
    return per_point * len(points) + normalise, per_point


def run_batch(scan_dir, out_dir, workers, executor):
    shutil.rmtree(out_dir, ignore_errors=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        code = batch_bev.main([str(scan_dir), '-o', str(out_dir), '--workers', str(workers),
                               '--executor', executor, '--no-progress'])
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f'batch failed: {summary.getvalue()}')
    return elapsed


def bench_batch(scans, quick):
    count = 20 if quick else 100
    grid = BevGrid()
    sources = list(scans)
    cores = os.cpu_count() or 1
    first = scans[sources[0]]
    image = bev_image(first, grid)
    encode_ours = best_and_median_seconds(
        lambda: cv2.imencode('.png', image, batch_bev.PNG_PARAMS), 20)[0]
    encode_default = best_and_median_seconds(lambda: cv2.imencode('.png', image), 20)[0]
    read = best_and_median_seconds(lambda: batch_bev.read_kitti_scan(sources[0]), 20)[0]
    loop, per_point = python_loop_seconds(first, grid)
    seed_per_scan = read + loop + encode_default  # classic script: load, loop, cv2.imwrite
    seed_batch = count * seed_per_scan

    with tempfile.TemporaryDirectory(prefix='bench_bev_') as temp:
        scan_dir = Path(temp) / 'velodyne'
        scan_dir.mkdir()
        for i in range(count):
            shutil.copy(sources[i % len(sources)], scan_dir / f'{i:06d}.bin')
        out_dir = Path(temp) / 'bev'
        run_batch(scan_dir, out_dir, 1, 'threads')  # warm the page cache and the imports
        results = {}
        for executor in runner.EXECUTORS:
            for workers in sorted({1, cores}):
                results[executor, workers] = min(
                    run_batch(scan_dir, out_dir, workers, executor) for _ in range(2))

    rows = []
    for (executor, workers), seconds in results.items():
        single = results[executor, 1]
        rows.append([f'{executor}{" (default)" if executor == runner.DEFAULT_EXECUTOR else ""}',
                     f'{workers}', f'{seconds:7.2f}', f'{count / seconds:6.1f}',
                     f'{single / seconds:4.2f}x', f'{seed_batch / seconds:6.1f}x',
                     f'{100 * count * encode_ours / (seconds * workers):4.0f}%'])
    print_table(f'BEV batch: {count} KITTI scans -> 1600 x 1600 PNG (best of 2 runs, process '
                f'start-up included)',
                ['executor', 'workers', 'seconds', 'scans/s', 'vs 1 worker', 'vs seed loop',
                 'PNG share'], rows)
    print(f'seed: per-point Python loop {loop * 1e3:.0f} ms/scan ({per_point * 1e6:.2f} us/point,'
          f' 30000 random points extrapolated, + map normalisation) + read {read * 1e3:.1f} ms'
          f' + cv2 default PNG {encode_default * 1e3:.1f} ms = {seed_per_scan * 1e3:.0f} ms/scan, '
          f'{seed_batch:.1f} s for {count} scans single-process')
    print(f'PNG encoding (no filter, RLE) {encode_ours * 1e3:.1f} ms/scan (best of 20); PNG share'
          f' = {count} x encode / (batch seconds x workers)')
    threads_best = min(v for (e, _), v in results.items() if e == 'threads')
    processes_best = min(v for (e, _), v in results.items() if e == 'processes')
    print(f'fastest executor here: {"threads" if threads_best <= processes_best else "processes"}'
          f' ({threads_best:.2f} s threads vs {processes_best:.2f} s processes)')


def main(quick=False):
    sources = sorted(kitti_dir().glob('*.bin'))
    if not sources:
        print(f'\n## BEV: skipped, no KITTI scans in {kitti_dir()}')
        return
    scans = {path: batch_bev.read_kitti_scan(path) for path in sources}
    bench_kernel(scans, quick)
    bench_batch(scans, quick)

