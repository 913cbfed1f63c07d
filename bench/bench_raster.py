"""Raster benchmark: LAS file -> GeoTIFF surface model (DSM: max Z of first returns, PDAL
writers.gdal radius mode, radius = resolution x sqrt(2)), 10 M real points.

Input, generated in a temporary directory: a real airborne scan (Megaplot.laz of lidR's tests,
81 590 points over forest, UTM metres) replicated side by side (offsets in X and Y) to 10 M
points, written as LAS (uncompressed). Measured here, one run each (the machine is shared:
repeat for noise), at 1 m and at 0.25 m (16 times the cells):
- the ``raster`` command (a fresh process, as a user runs it) with --workers 1 and all cores:
  wall seconds, Mpts/s (points read per second), its phases, and its peak RSS (ru_maxrss, from
  its summary line): the peak must not grow with the raster;
- the I/O floor: laspy reading X, Y, Z (scaled, as float64 arrays) and the classification of the
  same file, chunk by chunk: what any LAS -> raster tool must do;
- the compute alone, on the first returns in memory: the kernel
  (``pointcloud_pipeline.raster.rasterize``, max only) on 1 and all threads, and the numpy
  reference: per candidate cell offset, the distances to the cell centres and np.maximum.at.

Usage: python bench/run.py --only raster [--quick]   (quick: 2 M points, 1 m only)
       python bench/bench_raster.py [--points 10]
"""
import argparse
import math
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
SUMMARY = re.compile(r'; (\d+) points, (\d+) used, (\d+) cells \((\d+) x (\d+)\), (\d+) windows, '
                     r'([\d.]+) s, ([\d.]+) Mpts/s, peak RSS (\d+) MB \(read ([\d.]+) s, bucket '
                     r'([\d.]+) s, rasterise and write ([\d.]+) s\)')


def source_file():
    configured = os.environ.get('POINTCLOUD_PIPELINE_DATA')
    data = Path(configured) if configured else REPO.parent / 'shared' / 'data'
    return data / 'las' / 'lidr' / 'Megaplot.laz'


def replicated_las(source, points, path):
    """``source`` replicated side by side (a square-ish grid of copies) to ``points`` points, as
    LAS."""
    import laspy
    original = laspy.read(source)
    array = original.points.array
    width = int(array['X'].max() - array['X'].min()) + 100
    depth = int(array['Y'].max() - array['Y'].min()) + 100
    copies = -(-points // len(array))
    columns = int(np.ceil(np.sqrt(copies)))
    header = original.header
    with laspy.open(path, mode='w', header=header) as writer:
        written = 0
        for copy in range(copies):
            count = min(len(array), points - written)
            shifted = array[:count].copy()
            shifted['X'] += (copy % columns) * width
            shifted['Y'] += (copy // columns) * depth
            writer.write_points(laspy.PackedPointRecord(shifted, header.point_format))
            written += count


def io_floor_seconds(path, chunk_points=1_000_000):
    """laspy reading X, Y, Z (scaled float64 arrays) and the classification, chunk by chunk."""
    import laspy
    start = time.perf_counter()
    with laspy.open(path) as reader:
        for chunk in reader.chunk_iterator(chunk_points):
            x, y, z = np.asarray(chunk.x), np.asarray(chunk.y), np.asarray(chunk.z)
            classification = np.asarray(chunk.classification)
            del x, y, z, classification
    return time.perf_counter() - start


def first_returns(path):
    import laspy
    las = laspy.read(path)
    first = np.asarray(las.return_number) == 1
    return np.asarray(las.x)[first], np.asarray(las.y)[first], np.asarray(las.z)[first]


def numpy_dsm(x, y, z, grid, radius):
    """The numpy reference of a radius-mode max: for every cell offset that can hold a cell
    centre within ``radius`` of a point, the distances and np.maximum.at."""
    res = grid.resolution
    col = np.floor((x - grid.base_x) / res).astype(np.int64) - grid.offset_x
    row = np.floor((y - grid.base_y) / res).astype(np.int64) - grid.offset_y
    band = np.full(grid.width * grid.height, -np.inf)
    reach = int(math.ceil(radius / res))
    for a in range(-reach, reach + 1):
        for b in range(-reach, reach + 1):
            gap = math.hypot(max(abs(a) - 1, 0), max(abs(b) - 1, 0)) * res
            if gap >= radius:  # no point of the offset cell can be that close
                continue
            c, r = col + a, row + b
            inside = (c >= 0) & (c < grid.width) & (r >= 0) & (r < grid.height)
            cx = grid.base_x + ((grid.offset_x + c[inside]) + 0.5) * res
            cy = grid.base_y + ((grid.offset_y + r[inside]) + 0.5) * res
            near = np.sqrt((cx - x[inside]) ** 2 + (cy - y[inside]) ** 2) < radius
            np.maximum.at(band, (r[inside][near] * grid.width + c[inside][near]), z[inside][near])
    band[band == -np.inf] = np.nan
    return band.reshape(grid.height, grid.width)[::-1]


def run_command(path, out, workers, resolution):
    """(wall seconds, summary numbers) of ``python -m pointcloud_pipeline raster``."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, '-m', 'pointcloud_pipeline', 'raster', str(path), '-o', str(out),
         '--resolution', str(resolution), '--preset', 'dsm', '--workers', str(workers),
         '--overwrite', '--no-progress'], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = SUMMARY.search(result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f'raster failed ({result.returncode}): {result.stdout}'
                           f'{result.stderr}')
    numbers = match.groups()
    return wall, dict(points=int(numbers[0]), width=int(numbers[3]), height=int(numbers[4]),
                      windows=int(numbers[5]), seconds=float(numbers[6]),
                      rss_mb=int(numbers[8]), read=float(numbers[9]),
                      bucket=float(numbers[10]), raster=float(numbers[11]))


def main(quick=False, points_millions=None):
    from pointcloud_pipeline import raster
    source = source_file()
    if not source.is_file():
        print(f'\n## raster: skipped ({source} is missing)')
        return
    points = int((points_millions or (2 if quick else 10)) * 1_000_000)
    resolutions = (1.0,) if quick else (1.0, 0.25)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix='bench_raster.', dir=REPO.parent
                                     if os.access(REPO.parent, os.W_OK) else None) as temp:
        path = Path(temp) / 'replicated.las'
        replicated_las(source, points, path)
        io_floor_seconds(path)  # warm the page cache: every run reads from memory
        floor = min(io_floor_seconds(path) for _ in range(3))
        rows = []
        for resolution in resolutions:
            for workers in sorted({1, cores}):
                wall, numbers = run_command(path, Path(temp) / 'dsm.tif', workers, resolution)
                rows.append([f'{resolution:g} m', f'{numbers["width"]} x {numbers["height"]}',
                             str(workers), f'{numbers["seconds"]:.2f}',
                             f'{numbers["points"] / numbers["seconds"] / 1e6:.1f}',
                             f'{floor / numbers["seconds"]:.2f}x',
                             f'{numbers["read"]:.2f} / {numbers["bucket"]:.2f} / '
                             f'{numbers["raster"]:.2f}', str(numbers['rss_mb']),
                             f'{wall:.2f}'])
        print_table(f'raster: {points / 1e6:g} M points LAS -> DSM GeoTIFF (the command; I/O '
                    f'floor {floor:.2f} s = {points / floor / 1e6:.1f} Mpts/s)',
                    ['resolution', 'raster', 'workers', 'seconds', 'Mpts/s', 'vs floor',
                     'read / bucket / rasterise+write s', 'peak RSS MB', 'wall s'], rows)

        x, y, z = first_returns(path)
        rows = []
        for resolution in resolutions:
            grid = raster.RasterGrid.snapped(x.min(), y.min(), x.max(), y.max(), resolution)
            settings = raster.RasterSettings(output_types=('max',))
            timings = {}
            for threads in sorted({1, cores}):
                raster.rasterize(x, y, z, grid, settings, threads=threads)  # warm-up
                start = time.perf_counter()
                ours = raster.rasterize(x, y, z, grid, settings, threads=threads)['max']
                timings[threads] = time.perf_counter() - start
            start = time.perf_counter()
            reference = numpy_dsm(x, y, z, grid, settings.radius_for(resolution))
            numpy_s = time.perf_counter() - start
            np.testing.assert_array_equal(ours, reference)  # the same numbers, or no ratio
            one, many = timings[1], timings[max(timings)]
            rows.append([f'{resolution:g} m', str(len(x)), f'{one:.3f}', f'{many:.3f}',
                         f'{one / many:.2f}x', f'{numpy_s:.2f}', f'{numpy_s / one:.1f}x',
                         f'{numpy_s / many:.1f}x'])
        print_table('raster: the compute alone (first returns in memory, max, radius mode)',
                    ['resolution', 'points', '1 thread s', f'{cores} threads s', 'scaling',
                     'numpy s', 'vs numpy (1 thread)', f'vs numpy ({cores} threads)'], rows)
        print('For context, lasR reports about 1.5 M points per second per core for a DSM '
              'including LAZ reading.')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--points', type=float, default=10, help='millions of points')
    parser.add_argument('--quick', action='store_true')
    arguments = parser.parse_args()
    main(quick=arguments.quick, points_millions=arguments.points)
