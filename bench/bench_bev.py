"""BEV benchmark: the kernel vs the numpy reference and the memcpy floor on real KITTI scans, the
PNG encoders (fpng, cv2) on their BEVs, and the batch command (100 scans -> PNG with each encoder,
npy, npz) vs the classic per-point Python loop, threads vs processes.

All ratios come from one run on this machine. Targets (issues 3, 12): kernel <= 1 ms and >= 10x
the numpy reference at 1600 x 1600; batch -> PNG >= 50x the single-process per-point loop (read
+ loop + cv2's default PNG), >= 1.8x with 2 workers than with 1. The encoder times and the batch
runs are measured in subprocesses (fpng's malloc tuning is process-wide).
"""
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np

from pointcloud_pipeline import bev_files, memory
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


SUMMARY_SECONDS = re.compile(r' in ([\d.]+) s \(')


def run_batch(scan_dir, out_dir, workers, executor, *options):
    """Seconds the bev command's runner reports for one run in a fresh interpreter (imports and
    interpreter start-up excluded, process pool start-up included). A subprocess: a PNG run
    with fpng tunes malloc process-wide (memory.keep_large_buffers), which must not reach
    the other benchmarks of this process."""
    shutil.rmtree(out_dir, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, '-m', 'pointcloud_pipeline', 'bev', str(scan_dir), '-o', str(out_dir),
         '--workers', str(workers), '--executor', executor, '--no-progress', *options],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f'batch failed: {result.stdout}{result.stderr}')
    return float(SUMMARY_SECONDS.search(result.stdout).group(1))


def encoder_times(repeat):
    """{grid: {scan: {encoder: (median s, best s, bytes)}}} of the PNG encoders on the real
    scans, as the batch runs them: fpng before and after memory.keep_large_buffers (for a
    subprocess: the tuning is process-wide and cannot be undone)."""
    grids = {'1600 x 1600': BevGrid(), '608 x 608 (complex-yolo)': BevGrid.complex_yolo()}
    images = {(grid_name, path.name): bev_image(batch_bev.read_kitti_scan(path), grid)
              for grid_name, grid in grids.items() for path in sorted(kitti_dir().glob('*.bin'))}
    encoders = {'cv2': lambda image: bev_files.encode_png(image, 'cv2')}
    if bev_files.fpng_installed():
        encoders['fpng'] = lambda image: bev_files.encode_png(image, 'fpng')
    times = {}
    for tuned in (False, True):
        if tuned:
            memory.keep_large_buffers()
        for (grid_name, scan), image in images.items():
            for name, encode in encoders.items():
                if tuned and name != 'fpng':
                    continue
                label = f'{name} (freed buffers kept)' if tuned else name
                best, median = best_and_median_seconds(lambda: encode(image), repeat)
                times.setdefault(grid_name, {}).setdefault(scan, {})[label] = (
                    median, best, len(encode(image)))
    return times


def child_encoder_times(repeat):
    paths = [str(REPO), str(REPO / 'test'), os.environ.get('PYTHONPATH', '')]
    result = subprocess.run([sys.executable, __file__, '--encoder-times', str(repeat)],
                            cwd=REPO, capture_output=True, text=True, check=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths))))
    return json.loads(result.stdout)


def bench_encoders(quick):
    """PNG encoder times and sizes on the real scans; returns the encoder times table."""
    times = child_encoder_times(10 if quick else 30)
    rows = []
    for grid_name, scans in times.items():
        for scan, encoders in scans.items():
            for name, (median, best, size) in encoders.items():
                rows.append([grid_name, scan, name, ms(median), ms(best), f'{size / 1e3:7.1f}',
                             f'{encoders["cv2"][0] / median:5.2f}x'])
    print_table('BEV PNG encoders on the real KITTI BEVs (median of repeated calls; cv2: no row '
                'filter + RLE, the batch setting before fpng)',
                ['grid', 'scan', 'encoder', 'median ms', 'best ms', 'kB', 'vs cv2'], rows)
    return times


def bench_batch(scans, quick):
    count = 20 if quick else 100
    grid = BevGrid()
    sources = list(scans)
    cores = os.cpu_count() or 1
    first = scans[sources[0]]
    image = bev_image(first, grid)
    encode_default = best_and_median_seconds(lambda: cv2.imencode('.png', image), 20)[0]
    read = best_and_median_seconds(lambda: batch_bev.read_kitti_scan(sources[0]), 20)[0]
    loop, per_point = python_loop_seconds(first, grid)
    seed_per_scan = read + loop + encode_default  # classic script: load, loop, cv2.imwrite
    seed_batch = count * seed_per_scan
    encoders = bench_encoders(quick)
    default_encoder = bev_files.default_png_encoder()
    png_encoders = [default_encoder] + [e for e in bev_files.PNG_ENCODERS
                                        if e != default_encoder and
                                        (e != 'fpng' or bev_files.fpng_installed())]
    # (format, PNG encoder, executor, workers): every PNG case; npz, npy on all cores only
    # (npy last: its 3 GB of writes would still be flushing during the next case)
    cases = [('png', encoder, executor, workers) for encoder in png_encoders
             for executor in runner.EXECUTORS for workers in sorted({1, cores})]
    cases += [(file_format, None, 'threads', cores) for file_format in ('npz', 'npy')]

    with tempfile.TemporaryDirectory(prefix='bench_bev_') as temp:
        scan_dir = Path(temp) / 'velodyne'
        scan_dir.mkdir()
        for i in range(count):
            shutil.copy(sources[i % len(sources)], scan_dir / f'{i:06d}.bin')
        out_dir = Path(temp) / 'bev'
        run_batch(scan_dir, out_dir, 1, 'threads')  # warm the page cache
        results, sizes = {}, {}
        for case in cases:
            file_format, encoder, executor, workers = case
            options = ['--format', file_format] + (['--png-encoder', encoder] if encoder else [])
            runs = 1 if file_format != 'png' else 2
            os.sync()  # the previous case's writes reach the disk outside the timing
            results[case] = min(run_batch(scan_dir, out_dir, workers, executor, *options)
                                for _ in range(runs))
            sizes[case] = sum(p.stat().st_size for p in out_dir.glob(f'*.{file_format}'))
        shutil.rmtree(out_dir, ignore_errors=True)

    rows = []
    for case, seconds in results.items():
        file_format, encoder, executor, workers = case
        single = results.get((file_format, encoder, executor, 1))
        default = (executor == runner.DEFAULT_EXECUTOR
                   and encoder in (None, default_encoder))
        rows.append([file_format, encoder or '-',
                     f'{executor}{" (default)" if default else ""}', f'{workers}',
                     f'{seconds:7.2f}', f'{count / seconds:6.1f}',
                     f'{single / seconds:4.2f}x' if single else '-',
                     f'{seed_batch / seconds:6.1f}x', f'{sizes[case] / count / 1e6:6.3f}'])
    runs = 'best of 2 runs for png, 1 for npy and npz'
    print_table(f'BEV batch: {count} KITTI scans -> 1600 x 1600 files ({runs}; the runner\'s '
                'time, process pool start-up included)',
                ['format', 'PNG encoder', 'executor', 'workers', 'seconds', 'scans/s',
                 'vs 1 worker', 'vs seed loop', 'MB/scan'], rows)
    print(f'seed: per-point Python loop {loop * 1e3:.0f} ms/scan ({per_point * 1e6:.2f} us/point,'
          f' 30000 random points extrapolated, + map normalisation) + read {read * 1e3:.1f} ms'
          f' + cv2 default PNG {encode_default * 1e3:.1f} ms = {seed_per_scan * 1e3:.0f} ms/scan, '
          f'{seed_batch:.1f} s for {count} scans single-process')
    first_scan = encoders['1600 x 1600'][sources[0].name]
    for encoder in png_encoders:
        label = 'fpng (freed buffers kept)' if encoder == 'fpng' else encoder
        encode = first_scan[label][0]
        for executor in runner.EXECUTORS:
            seconds = results['png', encoder, executor, cores]
            print(f'PNG {encoder}, {executor}, {cores} workers: encoding {encode * 1e3:.1f} '
                  f'ms/scan = {100 * count * encode / (seconds * cores):.0f} % of the workers\' '
                  'time')
    best_case = min((case for case in results if case[0] == 'png' and case[3] == cores),
                    key=results.get)
    default_case = ('png', default_encoder, runner.DEFAULT_EXECUTOR, cores)
    for what, case in (('default executor', default_case), ('fastest', best_case)):
        ratio = seed_batch / results[case]
        print(f'target >= 50x the seed loop on {cores} workers, {what} ({case[1]}, {case[2]}): '
              f'{ratio:.1f}x: {"met" if ratio >= 50 else "missed"}')


def main(quick=False):
    sources = sorted(kitti_dir().glob('*.bin'))
    if not sources:
        print(f'\n## BEV: skipped, no KITTI scans in {kitti_dir()}')
        return
    scans = {path: batch_bev.read_kitti_scan(path) for path in sources}
    bench_kernel(scans, quick)
    bench_batch(scans, quick)


if __name__ == '__main__' and sys.argv[1:2] == ['--encoder-times']:  # bench_encoders' child
    print(json.dumps(encoder_times(int(sys.argv[2]))))
