"""KITTI velodyne scans (.bin) -> bird's-eye-view PNG images, in parallel.

Usage: ``python -m pointcloud_pipeline bev INPUT... -o OUTDIR`` (or ``bev_batch``, also as
``ros2 run pointcloud_pipeline bev_batch``). INPUT: .bin files, directories (their *.bin) or
glob patterns. Each scan becomes OUTDIR/<stem>.png (see pointcloud_pipeline.bev for channels).

- A scan that is empty, whose size is not a multiple of 16 bytes (float32 x, y, z,
  reflectance) or that holds non-finite values is reported by name and skipped; the others are
  processed; the exit code is 1 when any input failed, 130 when interrupted, else 0.
- Each PNG is written to a temporary file in OUTDIR and renamed over the final name
  (``os.replace``), so an interrupted run never leaves a partial image. Existing outputs are
  skipped unless ``--overwrite``, so a rerun resumes.
- Work is handed out in batches of files to ``--workers`` threads (default; the kernel, file
  I/O and cv2.imencode release the GIL) or processes, or to a Dask cluster
  (``--dask-scheduler``). The kernel runs single-threaded inside each worker.
"""
import argparse
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
import glob
import math
import multiprocessing
import os
from pathlib import Path
import signal
import sys
import tempfile
import threading
import time

import cv2
import numpy as np

from pointcloud_pipeline.bev import BevGrid, bev_image

KITTI_POINT_BYTES = 16  # float32 little-endian x, y, z, reflectance
# No PNG row filter + run-length zlib: measured fastest and smallest for sparse BEV images
# (1600 x 1600 BEV of KITTI scan 000000: 11 ms and 91 kB, vs 14 ms and 125 kB with OpenCV's
# defaults).
PNG_PARAMS = (cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE)
EXECUTORS = ('threads', 'processes')
DEFAULT_EXECUTOR = 'threads'  # as fast as processes here (bench/bench_bev.py), starts faster
TEMP_SUFFIX = '.bev-tmp'
WRITTEN, SKIPPED, FAILED = 'written', 'skipped', 'failed'

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp files are 0600, outputs get the usual 0666 & ~umask
_stop = threading.Event()  # set on interrupt: thread workers finish the file at hand, then stop
_buffers = threading.local()


class ScanError(ValueError):
    """A scan file that cannot be turned into an image (the message says why)."""


def read_kitti_scan(path, allocate=bytearray):
    """N x 4 float32 points of a KITTI velodyne .bin file; ScanError when it is not one.

    allocate(size) returns a writable buffer of at least ``size`` bytes to read into; the points
    are a view of it. A worker passes one that reuses its buffer (``reused_scan_buffer``) instead
    of mapping fresh pages for every scan.
    """
    with open(path, 'rb') as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise ScanError('empty file')
        if size % KITTI_POINT_BYTES:
            raise ScanError(f'size {size} bytes is not a multiple of {KITTI_POINT_BYTES} '
                            '(float32 x, y, z, reflectance per point)')
        buffer = allocate(size)
        if file.readinto(memoryview(buffer).cast('B')[:size]) != size:
            raise ScanError('file shrank while being read')
    points = np.frombuffer(buffer, dtype='<f4', count=size // 4).reshape(-1, 4)
    if not np.isfinite(points).all():
        bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
        raise ScanError(f'{bad.size} of {len(points)} points have non-finite values '
                        f'(first at point {bad[0]})')
    return points


def reused_scan_buffer(size):
    """This thread's read buffer, at least ``size`` bytes. A larger scan gets a new buffer rather
    than growing the old one in place: a view of the previous scan may still be alive (a Dask
    worker's profiler samples thread frames, and a kept frame keeps its locals), and a bytearray
    with live views cannot be resized."""
    buffer = getattr(_buffers, 'scan', None)
    if buffer is None or len(buffer) < size:
        buffer = _buffers.scan = bytearray(size)
    return buffer


def write_atomically(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same directory + os.replace:
    readers see the old file or the complete new one, never a partial one."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.',
                                             suffix=TEMP_SUFFIX)
    try:
        os.fchmod(descriptor, 0o666 & ~_UMASK)
        with os.fdopen(descriptor, 'wb') as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


@dataclass(frozen=True)
class BevJob:
    """What every worker needs (picklable for processes and Dask)."""

    grid: BevGrid
    output_dir: Path
    overwrite: bool = False

    def output_path(self, scan):
        return Path(self.output_dir) / (Path(scan).stem + '.png')


def render_scan(job, scan):
    """Render one scan to its PNG. Returns (scan, status, message)."""
    target = job.output_path(scan)
    if not job.overwrite and target.exists():
        return str(scan), SKIPPED, 'output exists'
    try:
        points = read_kitti_scan(scan, reused_scan_buffer)
        image = getattr(_buffers, 'image', None)
        if image is None or image.shape != job.grid.shape:
            image = _buffers.image = np.empty(job.grid.shape, np.uint8)
        bev_image(points, job.grid, out=image, threads=1)
        encoded, png = cv2.imencode('.png', image, PNG_PARAMS)
        if not encoded:
            raise ScanError('PNG encoding failed')
        write_atomically(target, png)
    except (ScanError, OSError) as error:
        return str(scan), FAILED, str(error) if isinstance(error, ScanError) else (
            f'{type(error).__name__}: {error.strerror or error}')
    return str(scan), WRITTEN, str(target)


def render_batch(job, scans):
    """Render a batch of scans (one task). Returns a list of (scan, status, message); stops
    early (leaving the rest out) when the run is being interrupted."""
    results = []
    for scan in scans:
        if _stop.is_set():
            break
        results.append(render_scan(job, scan))
    return results


def find_scans(inputs):
    """Expand files, directories (their *.bin) and glob patterns, in order, without duplicates.
    Returns (scans, problems) with problems a list of (input, reason)."""
    scans, problems, seen = [], [], set()
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.glob('*.bin') if p.is_file())
            if not found:
                problems.append((entry, 'directory holds no .bin files'))
        elif path.is_file():
            found = [path]
        elif glob.has_magic(entry):
            found = sorted(Path(p) for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append((entry, 'pattern matches no files'))
        else:
            found = []
            problems.append((entry, 'no such file or directory'))
        for scan in found:
            key = scan.resolve()
            if key not in seen:
                seen.add(key)
                scans.append(scan)
    return scans, problems


def batches_of(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def default_batch_size(count, workers):
    """About four batches per worker (load balance), at most 16 files per batch."""
    return max(1, min(16, math.ceil(count / (4 * workers))))


def grid_from_args(args):
    """BevGrid from --preset and the explicit range options (which override the preset)."""
    base = BevGrid.complex_yolo() if args.preset == 'complex-yolo' else BevGrid()
    if args.preset == 'complex-yolo' and args.resolution is None and (args.x_range or args.y_range):
        raise ValueError('with --preset complex-yolo and a new --x-range/--y-range, '
                         'give --resolution too')
    return BevGrid(
        x_range=tuple(args.x_range) if args.x_range else base.x_range,
        y_range=tuple(args.y_range) if args.y_range else base.y_range,
        z_range=tuple(args.z_range) if args.z_range else base.z_range,
        resolution=args.resolution if args.resolution is not None else base.resolution,
        intensity_range=(tuple(args.intensity_range) if args.intensity_range
                         else base.intensity_range))


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def add_arguments(parser):
    """The ``bev`` command's options (shared by the CLI subcommand and ``bev_batch``)."""
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='KITTI .bin scans: files, directories or glob patterns')
    parser.add_argument('-o', '--output-dir', required=True, type=Path,
                        help='directory for the PNG images (created if missing)')
    parser.add_argument('--overwrite', action='store_true',
                        help='re-render scans whose PNG exists (default: skip them, resume)')
    parser.add_argument('--workers', type=positive_int, default=os.cpu_count() or 1,
                        help='parallel workers (default: all cores, %(default)s here)')
    parser.add_argument('--executor', choices=EXECUTORS, default=DEFAULT_EXECUTOR,
                        help='worker kind (default: %(default)s)')
    parser.add_argument('--batch-size', type=positive_int, default=None,
                        help='files per task (default: about 4 tasks per worker, <= 16)')
    parser.add_argument('--dask-scheduler', metavar='ADDRESS', default=None,
                        help='run the batches on this Dask cluster (e.g. tcp://127.0.0.1:8786); '
                             'OUTDIR must be reachable by its workers')
    grid = parser.add_argument_group('grid (metres, velodyne frame: x forward, y left, z up)')
    grid.add_argument('--preset', choices=('default', 'complex-yolo'), default='default',
                      help='default: 1600 x 1600 cells of 0.1 m, x and y in [-80, 80]; '
                           'complex-yolo: 608 x 608, x [0, 50], y [-25, 25]')
    grid.add_argument('--x-range', nargs=2, type=float, metavar=('MIN', 'MAX'))
    grid.add_argument('--y-range', nargs=2, type=float, metavar=('MIN', 'MAX'))
    grid.add_argument('--z-range', nargs=2, type=float, metavar=('MIN', 'MAX'),
                      help='points outside are dropped; the height channel spans it '
                           '(default -2.73 1.27)')
    grid.add_argument('--resolution', type=float, help='metres per cell (default 0.1)')
    grid.add_argument('--intensity-range', nargs=2, type=float, metavar=('MIN', 'MAX'),
                      help='reflectance mapped to 0..255 (default 0 1)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar (it is shown only on a terminal anyway)')


def _executor(kind, workers):
    if kind == 'processes':
        # forkserver: workers start from a clean process, not a fork of this (threaded) one
        context = multiprocessing.get_context('forkserver')
        context.set_forkserver_preload(['pointcloud_pipeline.batch.bev'])
        return ProcessPoolExecutor(workers, mp_context=context)
    return ThreadPoolExecutor(workers, thread_name_prefix='bev')


def _run_local(job, batches, args, on_done):
    executor = _executor(args.executor, args.workers)
    futures = set()
    try:
        futures = {executor.submit(render_batch, job, batch) for batch in batches}
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                on_done(future.result())
    except KeyboardInterrupt:
        _stop.set()  # thread workers stop after the file at hand; queued batches are cancelled
        executor.shutdown(wait=True, cancel_futures=True)
        for future in futures:  # count what finished while shutting down
            if not future.cancelled() and future.exception() is None:
                on_done(future.result())
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        _stop.clear()


def _run_dask(job, batches, address, on_done):
    from dask.distributed import Client, as_completed
    with Client(address, set_as_default=False, timeout='30s') as client:
        futures = client.map(render_batch, [job] * len(batches), batches, pure=False)
        try:
            for _, results in as_completed(futures, loop=client.loop, with_results=True):
                on_done(results)
        finally:
            client.cancel(futures)


def run(args):
    """Run the ``bev`` command; returns the exit code (0 ok, 1 some input failed, 130
    interrupted). Prints failures as they happen and a final summary line."""
    from tqdm import tqdm
    start = time.perf_counter()
    job = BevJob(grid_from_args(args), args.output_dir, args.overwrite)
    scans, problems = find_scans(args.inputs)
    counts = {WRITTEN: 0, SKIPPED: 0, FAILED: 0, 'processed': 0}

    def report(scan, reason):
        counts[FAILED] += 1
        tqdm.write(f'error: {scan}: {reason}', file=sys.stderr)

    for entry, reason in problems:
        report(entry, reason)
    pending, owner = [], {}
    for scan in scans:
        target = job.output_path(scan)
        if target in owner:
            report(scan, f'same output name as {owner[target]} ({target.name})')
            continue
        owner[target] = scan
        if not args.overwrite and target.exists():
            counts[SKIPPED] += 1
        else:
            pending.append(scan)

    if pending:
        try:
            args.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            for scan in pending:
                report(scan, f'cannot create {args.output_dir}: {error.strerror or error}')
            pending = []

    interrupted = False
    progress = tqdm(total=len(pending), unit='file', desc='bev', file=sys.stderr,
                    disable=True if args.no_progress else None,  # None: only on a terminal
                    dynamic_ncols=True)

    def on_done(results):
        counts['processed'] += len(results)
        for scan, status, message in results:
            if status == FAILED:
                report(scan, message)
            else:
                counts[status] += 1
        progress.update(len(results))

    if pending:
        batch_size = args.batch_size or default_batch_size(len(pending), args.workers)
        batches = batches_of(pending, batch_size)
        try:
            if args.dask_scheduler:
                _run_dask(job, batches, args.dask_scheduler, on_done)
            else:
                _run_local(job, batches, args, on_done)
        except KeyboardInterrupt:
            interrupted = True
    progress.close()

    elapsed = time.perf_counter() - start
    total = len(scans) + len(problems)
    not_done = len(pending) - counts['processed']
    where = (f'dask {args.dask_scheduler}' if args.dask_scheduler
             else f'{args.workers} {args.executor}')
    print(f'bev: {total} files: {counts[WRITTEN]} written, {counts[SKIPPED]} skipped '
          f'(output exists), {counts[FAILED]} failed'
          + (f', {not_done} not done (interrupted)' if interrupted else '')
          + f' in {elapsed:.2f} s ({counts[WRITTEN] / elapsed:.1f} written/s, {where})'
          + f' -> {args.output_dir}', flush=True)
    if interrupted:
        return 130
    return 1 if counts[FAILED] else 0


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def checked_run(parser, args):
    """Validate the grid options (usage error, exit 2), handle SIGTERM like Ctrl-C, run."""
    try:
        grid_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if threading.current_thread() is not threading.main_thread():
        return run(args)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    """Console script ``bev_batch``: the ``bev`` command on its own."""
    parser = argparse.ArgumentParser(prog='bev_batch', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_intermixed_args(argv)  # INPUT... may come before and after -o
    return checked_run(parser, args)


if __name__ == '__main__':
    sys.exit(main())
