"""Normals file -> file benchmark: LAZ in, LAZ with normals out, out of core.

Inputs are generated in a temporary directory: a real file (autzen_trim.laz of laspy's tests,
110 000 aerial points) replicated side by side (offsets in X and Y) to 1 M, 10 M and 50 M points.
Measured here, one run each (the machine is shared: repeat for noise):
- throughput of the ``normals`` command (a fresh process, as a user runs it) in Mpts/s with 1 and
  2 workers, against the I/O floor: laspy reading the same file and writing it with the four new
  dimensions (zeros), chunk by chunk, no computation (the command decompresses a LAZ input once:
  pass 1 keeps its records, uncompressed, in a temporary file that the writer reads back);
- the two ways to use 2 threads on the tiles: 2 tiles at once with 1 kernel thread each (the
  default) or 1 tile at a time with 2 kernel threads;
- peak RSS of the command (its own ru_maxrss, printed in its summary line) at every size, with
  the default --memory-limit of 500 MB.

Usage: python bench/run.py --only normals_files [--quick]   (quick: 1 M points only)
       python bench/bench_normals_files.py --sizes 1 10 50
"""
import argparse
from concurrent.futures import ThreadPoolExecutor
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from timing import print_table

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r'; (\d+) points, (\d+) NaN normals, (\d+) tiles, (\d+) halo re-queries, '
                     r'([\d.]+) s, ([\d.]+) Mpts/s, peak RSS (\d+) MB')
BLOCK_COPIES = 4  # copies of the source per write_points call while generating


def source_file():
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    data = Path(configured) if configured else REPO.parent / 'shared' / 'data'
    return data / 'las' / 'laspy' / 'autzen_trim.laz'


def replicated_laz(source, points, path):
    """Write ``source`` replicated side by side (a square-ish grid of copies) until ``points``
    points, as LAZ; returns the seconds it took."""
    import laspy
    start = time.perf_counter()
    original = laspy.read(source)
    array = original.points.array
    width = int(array['X'].max() - array['X'].min()) + 100
    depth = int(array['Y'].max() - array['Y'].min()) + 100
    copies = -(-points // len(array))
    columns = int(np.ceil(np.sqrt(copies)))
    header = original.header
    with laspy.open(path, mode='w', header=header, do_compress=True,
                    laz_backend=laspy.LazBackend.LazrsParallel) as writer:
        written = 0
        for first in range(0, copies, BLOCK_COPIES):
            block = []
            for copy in range(first, min(copies, first + BLOCK_COPIES)):
                count = min(len(array), points - written)
                shifted = array[:count].copy()
                shifted['X'] += (copy % columns) * width
                shifted['Y'] += (copy // columns) * depth
                block.append(shifted)
                written += count
            record = laspy.PackedPointRecord(np.concatenate(block), header.point_format)
            writer.write_points(record)
    return time.perf_counter() - start


def io_floor_seconds(path, out, chunk_points=1_000_000, parallel=True):
    """laspy reading ``path`` and writing it with the four new float32 dimensions (zeros) as
    LAZ, chunk by chunk: the I/O the command cannot avoid (once)."""
    import laspy
    from pointcloud_pipeline.batch.normals import DIMENSIONS
    backend = laspy.LazBackend.LazrsParallel if parallel else laspy.LazBackend.Lazrs
    start = time.perf_counter()
    with laspy.open(path, laz_backend=backend) as reader:
        header = reader.header.copy()
        header.add_extra_dims([laspy.ExtraBytesParams(name, 'f4') for name in DIMENSIONS])
        with laspy.open(out, mode='w', header=header, do_compress=True,
                        laz_backend=backend) as writer:
            for chunk in reader.chunk_iterator(chunk_points):
                points = laspy.PackedPointRecord.zeros(len(chunk), writer.header.point_format)
                for field in chunk.array.dtype.names:
                    points.array[field] = chunk.array[field]
                writer.write_points(points)
    return time.perf_counter() - start


def run_command(path, out_dir, workers, *options):
    """(wall seconds, summary numbers) of ``python -m pointcloud_pipeline normals``."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, '-m', 'pointcloud_pipeline', 'normals', str(path), '-o', str(out_dir),
         '--workers', str(workers), '--overwrite', '--no-progress', *options],
        cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = SUMMARY.search(result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f'normals failed ({result.returncode}): {result.stdout}'
                           f'{result.stderr}')
    points, nans, tiles, requeries, seconds, _, rss = match.groups()
    return wall, dict(points=int(points), nan=int(nans), tiles=int(tiles),
                      requeries=int(requeries), seconds=float(seconds), rss_mb=int(rss))


def thread_modes(path, temp):
    """Seconds to compute every tile of ``path`` with 2 tiles at once x 1 kernel thread, and
    1 tile at a time x 2 kernel threads (tiles of the default plan for 2 workers)."""
    import laspy
    from pointcloud_pipeline import tiling
    from pointcloud_pipeline.batch import normals
    with laspy.open(path, laz_backend=laspy.LazBackend.LazrsParallel) as reader:
        plan = normals.memory_plan(normals.DEFAULT_MEMORY_LIMIT_MB << 20, 2,
                                   reader.header.point_format.size)
        directory = Path(temp) / 'modes'
        directory.mkdir()

        class Quiet:
            def update(self, points):
                pass
        tileset = normals._tiles_of(reader, directory, plan, None, lambda: False, Quiet())
    kernel = normals.KernelSettings()
    margin = normals._margin(tileset, kernel)
    results = tiling.ResultsFile(directory / 'results.bin', tileset.point_count, 4,
                                 np.float32).create()
    numbers = range(len(tileset.tiles))
    times = {}
    for tasks, threads in ((2, 1), (1, 2)):
        context = normals.TileContext(tileset, results, kernel, margin, threads)
        start = time.perf_counter()
        with ThreadPoolExecutor(tasks) as pool:
            list(pool.map(lambda number: normals.normals_of_tile(context, number), numbers))
        times[tasks, threads] = time.perf_counter() - start
    return times, len(tileset.tiles)


def main(quick=False, sizes=None):
    source = source_file()
    if not source.is_file():
        print(f'\n## normals file -> file: skipped, {source} not found')
        return
    sizes = sizes or ([1] if quick else [1, 10, 50])
    with tempfile.TemporaryDirectory(prefix='bench_normals_', dir=os.environ.get('TMPDIR')) \
            as temp:
        inputs = {}
        for millions in sizes:
            path = Path(temp) / f'autzen_{millions}M.laz'
            made = replicated_laz(source, millions * 1_000_000, path)
            inputs[millions] = path
            print(f'generated {path.name}: {millions} M points, '
                  f'{path.stat().st_size / 1e6:.0f} MB LAZ in {made:.1f} s')
        one = inputs[sizes[0]]
        points = sizes[0] * 1_000_000
        floor = {parallel: io_floor_seconds(one, Path(temp) / 'floor.laz', parallel=parallel)
                 for parallel in (False, True)}
        rows = []
        for workers in (1, 2):
            wall, numbers = run_command(one, Path(temp) / 'out', workers)
            io = floor[workers > 1]
            rows.append([f'{workers}', f'{wall:6.1f}', f'{numbers["seconds"]:6.1f}',
                         f'{points / numbers["seconds"] / 1e6:5.2f}', f'{io:5.1f}',
                         f'{points / io / 1e6:5.2f}', f'{numbers["seconds"] / io:4.1f}x',
                         f'{numbers["tiles"]}', f'{numbers["requeries"]}',
                         f'{numbers["rss_mb"]}'])
        one_worker, two_workers = float(rows[0][2]), float(rows[1][2])
        print_table(f'normals LAZ -> LAZ, {sizes[0]} M points (k = 8, default --memory-limit)',
                    ['workers', 'wall s', 'tool s', 'Mpts/s', 'I/O floor s', 'floor Mpts/s',
                     'vs floor', 'tiles', 're-queries', 'peak RSS MB'], rows)
        print(f'1 -> 2 workers: {one_worker / two_workers:.2f}x; I/O floor = laspy read + LAZ '
              f'write with the 4 dims, no computation (Lazrs for 1 worker, LazrsParallel for 2)')

        times, tiles = thread_modes(one, temp)
        print(f'tiles on 2 threads ({tiles} tiles): 2 tiles at once x 1 kernel thread '
              f'{times[2, 1]:.2f} s, 1 tile at a time x 2 kernel threads {times[1, 2]:.2f} s')

        rows = []
        for millions, path in inputs.items():
            wall, numbers = run_command(path, Path(temp) / 'out', 2)
            rows.append([f'{millions}', f'{wall:7.1f}',
                         f'{numbers["points"] / numbers["seconds"] / 1e6:5.2f}',
                         f'{numbers["tiles"]}', f'{numbers["requeries"]}',
                         f'{numbers["rss_mb"]}'])
            (Path(temp) / 'out' / path.name).unlink()
        print_table('peak RSS of the command (2 workers, threads, default --memory-limit 500 MB)',
                    ['M points', 'wall s', 'Mpts/s', 'tiles', 're-queries', 'peak RSS MB'], rows)


if __name__ == '__main__':
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', nargs='+', type=int, default=[1, 10, 50],
                        help='input sizes in millions of points (default 1 10 50)')
    main(sizes=parser.parse_args().sizes)
