"""LAS/LAZ/COPC files -> GeoTIFF rasters (surface and terrain models, intensity, density, any
statistic of any dimension) with PDAL ``writers.gdal`` semantics, window by window in parallel.

Usage: ``python -m pointcloud_pipeline raster INPUT... -o OUTDIR --resolution R`` (or ``raster``,
also as ``ros2 run pointcloud_pipeline raster``). INPUT: .las/.laz files (COPC too), directories
(their *.las, *.laz) or glob patterns; one ``NAME.tif`` per input, or ``-o FILE.tif`` for one
input file.

Statistics (:mod:`pointcloud_pipeline.raster`, PDAL's definitions and band order): ``min``,
``max``, ``mean``, ``idw``, ``count``, ``stdev`` (population) or ``all``, one band each, of the
``--dimension`` (Z by default; any dimension of the file: Intensity, Classification, an extra
bytes dimension ...). Radius mode (default): a point contributes to every cell whose centre is
closer than ``--radius`` (default resolution x sqrt(2)); IDW weights 1/d^power (``--power``, 1);
a point on a cell centre sets that cell's IDW. ``--binmode``: only the cell that holds the point.
``--window-size N``: empty cells are filled from the non-empty cells of the (2N+1)^2 window around
them, weighted by 1/d (d in cells, Chebyshev), as PDAL does; the count band is not filled.
Empty cells are ``--nodata`` (-9999), the count band 0 there (as PDAL).

Presets: ``dsm`` (max of first returns), ``dtm`` (idw of class 2, --window-size 5),
``intensity`` (mean Intensity), ``density`` (points per square CRS unit in each cell: bin-mode
count / resolution^2). Options given with a preset override it.

Filters: ``--classes 2,9``, ``--returns first|last|all``, ``--z-range MIN MAX`` (inclusive,
scaled Z), applied before anything else (the default grid covers the points that pass).

Grid: by default the origin is snapped to a multiple of the resolution (the cells are those of
the global lattice of multiples of the resolution, their centres computed from their global
index), so that rasters of adjacent files mosaic without resampling (gdalbuildvrt). ``--bounds
MINX MINY MAXX MAXY`` or ``--origin X Y --size W H`` fix the grid exactly as PDAL does (origin at
the given minimum, width = floor((max - min) / resolution) + 1); ``--bounds`` with the data's
own minimum and maximum reproduces PDAL's default grid. North-up, pixel-is-area geotransform.

Output: a tiled (``--block-size``, 256), compressed (``--compress deflate|zstd|lzw|none``,
floating-point predictor) GeoTIFF of float32 (``--data-type float64``), nodata set, band
descriptions the statistics' names, the CRS of the LAS file (WKT or GeoTIFF keys) or ``--crs``;
``--cog`` writes a Cloud Optimized GeoTIFF with overviews instead. The file's bytes do not
depend on ``--workers``, the executor or ``--memory-limit``.

How (bounded memory, every core): pass 1 streams the file in chunks (1 M points) and keeps the
points that pass the filters as x, y, value (float64); they are bucketed to the raster's block
windows plus the halo that can reach them (the radius and the window fill); each window is
computed by the GIL-free kernel from its points, ``--workers`` windows at once (threads by
default, processes, or the workers of a Dask cluster with ``--dask-scheduler``), and written in
window order through one GeoTIFF writer (GDAL's block cache held at 64 MB). When the file's
points fit in ``--memory-limit`` (default 1000 MB: about 34 bytes a point plus 230 MB), they
stay in memory and each window reads its points in place; beyond, they go to temporary files
beside the output (a third of the limit stays in memory) and the summary says how many MB.
Memory never depends on the raster's size: a window's cells only (window + halo).

Bad inputs (not a LAS file, corrupt or truncated LAZ, no point passing the filters or reaching
the grid, an unknown dimension, a class the point format cannot hold, a raster of more than
MAX_CELLS cells) are reported by name; no partial output is left; the other inputs go on; the
exit code is 1. Ctrl-C stops at once, leaving nothing (exit 130).
"""
import argparse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import importlib.util
import math
import os
from pathlib import Path
import resource
import sys
import time
from typing import ClassVar

import numpy as np

from pointcloud_pipeline import tiling
from pointcloud_pipeline.batch import las_files, runner
from pointcloud_pipeline.batch.cli import run_command

RECORD = np.dtype([('x', '<f8'), ('y', '<f8'), ('value', '<f8')])  # out-of-core points
IN_MEMORY_BYTES_PER_POINT = 24 + 8 * 1.2  # x, y, value; block indices with the halo copies
OUTPUT_TYPES = ('min', 'max', 'mean', 'idw', 'count', 'stdev')  # PDAL's band order
DATA_TYPES = ('float32', 'float64')
RETURNS = ('all', 'first', 'last')
DEFAULT_NODATA = -9999.0
DEFAULT_BLOCK_SIZE = 256
DEFAULT_MEMORY_LIMIT_MB = 1000
MAX_CELLS = 10 ** 10  # 100000 x 100000: beyond, a resolution or bounds mistake
TEMPORARY_LABEL = 'raster'
CHUNK_POINTS = 1_000_000
BASELINE_BYTES = 160 << 20  # interpreter, numpy, laspy, lazrs, rasterio + GDAL, tqdm
GDAL_CACHE_MB = 64
PRESETS = {
    'dsm': {'output_types': ('max',), 'returns': 'first'},
    'dtm': {'output_types': ('idw',), 'classes': (2,), 'window_size': 5},
    'intensity': {'output_types': ('mean',), 'dimension': 'Intensity'},
    'density': {'output_types': ('count',), 'binmode': True, 'density': True},
}


class RasterError(runner.InputError):
    """An input that cannot be turned into a raster."""


@dataclass(frozen=True)
class Filters:
    """Which points count: classification in ``classes`` (all when empty), the first/last
    returns, scaled Z in ``z_range`` (inclusive)."""

    classes: tuple = ()
    returns: str = 'all'
    z_range: tuple | None = None

    def describe(self):
        parts = ([f'classes {",".join(map(str, self.classes))}'] if self.classes else [])
        parts += [f'{self.returns} returns'] if self.returns != 'all' else []
        parts += [f'z in [{self.z_range[0]:g}, {self.z_range[1]:g}]'] if self.z_range else []
        return ', '.join(parts)

    def mask(self, chunk):
        """Boolean mask of the points of a laspy chunk that pass (None: all pass)."""
        mask = None

        def both(a, b):
            return b if a is None else a & b

        if self.classes:
            mask = both(mask, np.isin(np.asarray(chunk.classification), self.classes))
        if self.returns == 'first':
            mask = both(mask, np.asarray(chunk.return_number) == 1)
        elif self.returns == 'last':
            mask = both(mask, np.asarray(chunk.return_number)
                        == np.asarray(chunk.number_of_returns))
        if self.z_range is not None:
            z = np.asarray(chunk.z)
            mask = both(mask, (z >= self.z_range[0]) & (z <= self.z_range[1]))
        return mask


@dataclass(frozen=True)
class GridOption:
    """The grid asked for: snapped (default), ``bounds`` (min x, min y, max x, max y) or
    ``origin`` (x, y) with ``size`` (width, height)."""

    bounds: tuple | None = None
    origin: tuple | None = None
    size: tuple | None = None

    @property
    def fixed(self):
        return self.bounds is not None or self.origin is not None

    def grid(self, resolution, data_bounds=None):
        from pointcloud_pipeline.raster import RasterGrid
        if self.bounds is not None:
            return RasterGrid.from_bounds(*self.bounds, resolution)
        if self.origin is not None:
            return RasterGrid.from_origin(*self.origin, *self.size, resolution)
        return RasterGrid.snapped(*data_bounds, resolution)


@dataclass(frozen=True)
class RasterTool:
    """The runner's tool: one LAS/LAZ file -> one GeoTIFF (module docstring)."""

    resolution: float
    output_types: tuple = OUTPUT_TYPES
    dimension: str = 'Z'
    radius: float | None = None
    power: float = 1.0
    binmode: bool = False
    window_size: int = 0
    density: bool = False
    nodata: float = DEFAULT_NODATA
    data_type: str = 'float32'
    grid_option: GridOption = field(default_factory=GridOption)
    filters: Filters = field(default_factory=Filters)
    crs: str | None = None  # WKT of --crs; None: the file's
    compress: str = 'deflate'
    block_size: int = DEFAULT_BLOCK_SIZE
    cog: bool = False
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB
    output_file: str | None = None
    name: ClassVar[str] = 'raster'
    input_suffixes: ClassVar[tuple[str, ...]] = las_files.LAS_SUFFIXES
    format_version: ClassVar[int] = 1
    parallel_inside: ClassVar[bool] = True
    requires: ClassVar[dict] = {
        'laspy': 'pip install laspy==2.7.0 lazrs==0.8.2',
        'rasterio': 'pip install rasterio==1.4.4', 'pyproj': 'pip install pyproj==3.7.2'}

    def output_name(self, input_path):
        if self.output_file:
            return self.output_file
        name = Path(input_path).name
        for suffix in ('.copc.laz', '.laz', '.las'):
            if name.lower().endswith(suffix):
                return name[:-len(suffix)] + '.tif'
        return name + '.tif'

    def settings(self):
        """Everything that changes the output bytes (workers, executor, memory do not)."""
        return {'resolution': self.resolution, 'output_types': list(self.output_types),
                'dimension': self.dimension, 'radius': self.radius, 'power': self.power,
                'binmode': self.binmode, 'window_size': self.window_size,
                'density': self.density, 'nodata': self.nodata, 'data_type': self.data_type,
                'bounds': _listed(self.grid_option.bounds),
                'origin': _listed(self.grid_option.origin),
                'size': _listed(self.grid_option.size), 'classes': list(self.filters.classes),
                'returns': self.filters.returns, 'z_range': _listed(self.filters.z_range),
                'crs': self.crs, 'compress': self.compress, 'block_size': self.block_size,
                'cog': self.cog, 'output_file': self.output_file}

    @property
    def kernel_settings(self):
        from pointcloud_pipeline.raster import RasterSettings
        return RasterSettings(output_types=self.output_types, radius=self.radius,
                              power=self.power, binmode=self.binmode,
                              window_size=self.window_size)

    @property
    def band_names(self):
        return tuple('density' if self.density and name == 'count' else name
                     for name in self.output_types)

    def process(self, input_path, output_path, parallelism):
        """Write the raster of ``input_path`` to ``output_path`` (the runner's temporary path);
        returns the counters of the summary line."""
        start = time.perf_counter()
        out_dir = os.path.dirname(os.path.abspath(output_path))
        tiling.remove_stale_tile_directories(out_dir, TEMPORARY_LABEL)
        backend = las_files.laz_backend(parallelism.workers)
        settings = self.kernel_settings
        with las_files.opened(input_path, backend, RasterError) as reader, \
                tiling.TileDirectory(out_dir, TEMPORARY_LABEL) as temporary:
            temporary.own(output_path)
            header = reader.header
            dimension = resolve_dimension(header.point_format, self.dimension)
            self._check_classes(header.point_format)
            crs = self.crs if self.crs is not None else _crs_of(header, input_path)
            available = (self.memory_limit_mb << 20) - BASELINE_BYTES - (GDAL_CACHE_MB << 20)
            if header.point_count * IN_MEMORY_BYTES_PER_POINT <= available:
                points = PointArrays(header.point_count)
            else:  # out of core: records in temporary files beyond a third of the budget
                points = SpilledPoints(temporary.path, max(1 << 20, available // 3))
            with las_files.PhaseProgress('raster', header.point_count,
                                         parallelism.show_progress, 'reading') as progress:
                pre_grid = (self.grid_option.grid(self.resolution)
                            if self.grid_option.fixed else None)
                used, bounds = read_points(reader, dimension, self.filters, points,
                                           pre_grid, settings, parallelism.should_stop,
                                           progress.update)
                read_s = time.perf_counter() - start
                grid = self._grid(used, bounds, pre_grid)
                blocks = block_windows(grid, self.block_size)
                progress.phase('bucketing', total=used)
                points.bucket(grid, self.block_size, settings.point_margin(grid.resolution),
                              parallelism, progress.update)
                bucket_s = time.perf_counter() - start - read_s
                progress.phase('rasterising', total=len(blocks))
                target = (os.path.join(temporary.path, 'tiled.tif') if self.cog
                          else output_path)
                counters = self._write(target, grid, crs, blocks, points, parallelism,
                                       progress.update)
                counters.update(read_s=read_s, bucket_s=bucket_s,
                                raster_s=time.perf_counter() - start - read_s - bucket_s)
                if self.cog:
                    from pointcloud_pipeline import geotiff
                    progress.phase('cog', total=1)
                    geotiff.copy_to_cog(target, output_path, compress=self.compress,
                                        block_size=self.block_size)
        counters.update(points=header.point_count, used=used, cells=grid.width * grid.height,
                        width=grid.width, height=grid.height,
                        spilled_mb=points.spilled_bytes / 2**20,
                        seconds=time.perf_counter() - start)
        return counters

    def _check_classes(self, point_format):
        highest = 255 if point_format.id >= 6 else 31
        beyond = [c for c in self.filters.classes if c > highest]
        if beyond:
            raise RasterError(f'point format {point_format.id} holds classes 0-{highest}: '
                              f'class {beyond[0]} cannot occur')

    def _grid(self, used, bounds, pre_grid):
        if not used:
            what = self.filters.describe()
            where = ' near the grid of --bounds/--origin' if pre_grid is not None else ''
            raise RasterError(f'no point{" with " + what if what else ""}{where}')
        try:
            grid = pre_grid or self.grid_option.grid(self.resolution, bounds)
        except ValueError as error:
            raise RasterError(f'--resolution {self.resolution:g}: {error}') from None
        cells = grid.width * grid.height
        if cells > MAX_CELLS:
            raise RasterError(f'--resolution {self.resolution:g} makes a {grid.width} x '
                              f'{grid.height} raster ({cells:.3g} cells, more than '
                              f'{MAX_CELLS:.0e}): give a coarser resolution or --bounds')
        return grid

    def _write(self, path, grid, crs, blocks, points, parallelism, progress):
        from pointcloud_pipeline import geotiff
        profile = geotiff.creation_profile(
            width=grid.width, height=grid.height, count=len(self.output_types),
            dtype=self.data_type, nodata=self.nodata, transform=grid.transform, crs=crs,
            block_size=self.block_size, compress=self.compress)
        job = BlockJob(grid, self.kernel_settings, self.data_type, self.nodata,
                       self.density)
        check_stop = las_files.stop_check(parallelism.should_stop)
        empty = job.empty_block
        computed = 0
        with geotiff.WindowWriter(path, profile, descriptions=self.band_names,
                                  cache_mb=GDAL_CACHE_MB) as writer, \
                _BlockExecutor(parallelism) as executor:
            # windows in block order: the file's bytes do not depend on the workers
            in_flight = deque()
            limit = 2 * parallelism.workers + 1

            def write_next():
                window, result = in_flight.popleft()
                array = result() if callable(result) else result
                writer.write(window, array)
                progress(1)

            for number, window in enumerate(blocks):
                check_stop()
                if points.block_count(number):
                    in_flight.append((window, executor.submit(job, points, number, window)))
                    computed += 1
                else:
                    in_flight.append((window, empty(window)))
                while len(in_flight) > limit:
                    write_next()
            while in_flight:
                check_stop()
                write_next()
        return {'windows': len(blocks), 'computed_windows': computed}

    @staticmethod
    def summary_details(counters, seconds):
        """points read and used, raster size, windows, seconds, Mpts/s, peak RSS."""
        points = sum(c['points'] for c in counters)
        compute_s = sum(c['seconds'] for c in counters)
        rate = points / compute_s / 1e6 if compute_s else 0.0
        own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sizes = ', '.join(f'{c["width"]} x {c["height"]}' for c in counters[:3])
        sizes += ', ...' if len(counters) > 3 else ''
        phases = {name: sum(c[f'{name}_s'] for c in counters)
                  for name in ('read', 'bucket', 'raster')}
        spilled = sum(c['spilled_mb'] for c in counters)
        return (f'{points} points, {sum(c["used"] for c in counters)} used, '
                f'{sum(c["cells"] for c in counters)} cells ({sizes or "none"}), '
                f'{sum(c["windows"] for c in counters)} windows, {compute_s:.2f} s, '
                f'{rate:.2f} Mpts/s, peak RSS {own_mb:.0f} MB (read {phases["read"]:.2f} s, '
                f'bucket {phases["bucket"]:.2f} s, rasterise and write '
                f'{phases["raster"]:.2f} s)'
                + (f', {spilled:.0f} MB of points in temporary files' if spilled else ''))


def _listed(value):
    return list(value) if value is not None else None


# --- reading ------------------------------------------------------------------------------------

def _normalised(name):
    return name.replace('_', '').replace(' ', '').lower()


def resolve_dimension(point_format, name):
    """The laspy name of the dimension ``name`` (PDAL's ``Intensity``, ``ReturnNumber`` or
    laspy's ``intensity``, ``return_number``: any case, with or without underscores)."""
    for dimension in point_format.dimension_names:
        if _normalised(dimension) == _normalised(name):
            return dimension
    raise RasterError(f'has no dimension {name} (point format {point_format.id}: '
                      f'{", ".join(point_format.dimension_names)})')


def _values(chunk, dimension, scaling, out):
    """float64 values of ``dimension`` into ``out``: X, Y, Z scaled (``scaling``: the header's
    scales and offsets), as laspy computes them; any other dimension as laspy reads it (extra
    bytes scaled)."""
    if dimension in ('X', 'Y', 'Z'):
        axis = 'XYZ'.index(dimension)
        np.multiply(chunk.array[dimension], scaling[0][axis], out=out)
        out += scaling[1][axis]
    else:
        out[:] = np.asarray(chunk[dimension], dtype=np.float64)


def read_points(reader, dimension, filters, points, pre_grid, settings, should_stop, progress):
    """Pass 1: the x, y, value (float64) of the points that pass ``filters`` (and, with a fixed
    grid ``pre_grid``, can reach it) stored in ``points`` (reserve, commit) in file order;
    returns (their number, their bounds (min x, min y, max x, max y) or None). x and y are
    the LAS scaled coordinates, computed as laspy does (int32 * scale + offset in float64)."""
    check_stop = las_files.stop_check(should_stop)
    header = reader.header
    expected = header.point_count
    scaling = ([float(v) for v in header.scales], [float(v) for v in header.offsets])
    (scale_x, scale_y, _), (offset_x, offset_y, _) = scaling
    reach = None
    if pre_grid is not None:
        margin = settings.point_margin(pre_grid.resolution)
        left, top, res = pre_grid.transform[0], pre_grid.transform[3], pre_grid.resolution
        reach = (left - margin, top - pre_grid.height * res - margin,
                 left + pre_grid.width * res + margin, top + margin)
    low, high = [math.inf, math.inf], [-math.inf, -math.inf]
    used = read = 0
    scratch = [np.empty(0)] * 3  # reused: fresh pages per chunk cost more than the work
    try:
        for chunk in reader.chunk_iterator(CHUNK_POINTS):
            check_stop()
            count = len(chunk)
            read += count
            raw = chunk.array
            mask = filters.mask(chunk)
            if mask is None and reach is None:  # straight into the store: no copy
                x, y, values = points.reserve(count)
            else:
                if len(scratch[0]) < count:
                    scratch = [np.empty(count) for _ in range(3)]
                x, y, values = (buffer[:count] for buffer in scratch)
            np.multiply(raw['X'], scale_x, out=x)
            x += offset_x
            np.multiply(raw['Y'], scale_y, out=y)
            y += offset_y
            _values(chunk, dimension, scaling, out=values)
            if reach is not None:
                near = (x >= reach[0]) & (y >= reach[1]) & (x <= reach[2]) & (y <= reach[3])
                mask = near if mask is None else mask & near
            del chunk, raw
            if mask is not None:
                kept = int(np.count_nonzero(mask))
                target = points.reserve(kept)
                for source, into in zip((x, y, values), target):
                    into[:] = np.compress(mask, source)  # (out= is slower here)
                x, y, values = target
            if len(x):
                low = [min(low[0], float(x.min())), min(low[1], float(y.min()))]
                high = [max(high[0], float(x.max())), max(high[1], float(y.max()))]
                if not all(math.isfinite(v) for v in low + high):
                    raise RasterError('holds points with non-finite X or Y')
                points.commit(len(x))
                used += len(x)
            progress(count)
    except (RasterError, InterruptedError, MemoryError, tiling.TilingError):
        raise
    except OSError:
        raise
    except Exception as error:  # lazrs, numpy on a short buffer: the point data is damaged
        raise RasterError(f'point data cannot be read, corrupt or truncated '
                          f'({runner.failure_reason(error)})') from None
    if read < expected:
        raise RasterError(f'holds {read} of the {expected} points its header says '
                          '(truncated?)')
    points.finish()
    bounds = (low[0], low[1], high[0], high[1]) if used else None
    return used, bounds


class PointArrays:
    """The points in memory: contiguous x, y, value float64 arrays (room for ``capacity``
    points), then per block the indices of the points that can reach it (the kernel reads
    them in place: no copy per block)."""

    spilled_bytes = 0

    def __init__(self, capacity):
        self.x, self.y, self.values = (np.empty(capacity) for _ in range(3))
        self.count = 0
        self.order = self.starts = None

    def reserve(self, count):
        """Views (x, y, values) of the next ``count`` free places (see commit)."""
        end = self.count + count
        return self.x[self.count:end], self.y[self.count:end], self.values[self.count:end]

    def commit(self, count):
        """The ``count`` places last reserved now hold points."""
        self.count += count

    def finish(self):
        self.x, self.y, self.values = (a[:self.count] for a in (self.x, self.y, self.values))

    def bucket(self, grid, block_size, margin, parallelism, progress):
        from pointcloud_pipeline import raster
        self.order, self.starts = raster.bucket_points(self.x, self.y, grid, block_size,
                                                       margin, threads=parallelism.workers)
        progress(self.count)

    def block_count(self, number):
        return int(self.starts[number + 1] - self.starts[number])

    def block(self, number, gather):
        """(x, y, values, index) of block ``number``: the whole arrays and the block's indices,
        or (``gather``) copies of the block's points and None (for other processes)."""
        index = self.order[self.starts[number]:self.starts[number + 1]]
        if gather:
            return self.x[index], self.y[index], self.values[index], None
        return self.x, self.y, self.values, index


class SpilledPoints:
    """The points out of core: (x, y, value) records in :class:`tiling.RecordBuckets` (memory
    up to ``memory_bytes``, then temporary files in ``directory``), first in file order, then
    copied to the bucket of each block they can reach."""

    def __init__(self, directory, memory_bytes):
        self.reserved = None
        self.points = tiling.RecordBuckets(RECORD, directory, memory_bytes, 'points')
        self.blocks = tiling.RecordBuckets(RECORD, directory, memory_bytes, 'block')

    @property
    def spilled_bytes(self):
        return self.points.spilled_bytes + self.blocks.spilled_bytes

    def reserve(self, count):
        self.reserved = [np.empty(count) for _ in range(3)]
        return self.reserved

    def commit(self, count):
        records = np.empty(count, RECORD)
        for name, values in zip(RECORD.names, self.reserved):
            records[name] = values[:count]
        self.points.add(0, records)

    def finish(self):
        pass

    def bucket(self, grid, block_size, margin, parallelism, progress):
        """Every record into the bucket of each block it can reach, chunk by chunk, in file
        order; frees the records held in memory as it goes."""
        from pointcloud_pipeline import raster
        check_stop = las_files.stop_check(parallelism.should_stop)
        for records in self.points.chunks(0, CHUNK_POINTS, consume=True):
            check_stop()
            order, starts = raster.bucket_points(records['x'], records['y'], grid, block_size,
                                                 margin, threads=parallelism.workers)
            for block in np.flatnonzero(np.diff(starts)):
                self.blocks.add(int(block), records[order[starts[block]:starts[block + 1]]])
            progress(len(records))

    def block_count(self, number):
        return self.blocks.count(number)

    def block(self, number, gather):
        records = self.blocks.read(number)
        return records['x'], records['y'], records['value'], None


def _crs_of(header, input_path):
    """WKT of the file's CRS (WKT VLR or GeoTIFF keys), or None (with a warning) when it has
    none."""
    try:
        crs = header.parse_crs()
    except Exception as error:
        raise RasterError(f'its CRS cannot be read ({runner.failure_reason(error)}): give '
                          '--crs') from None
    if crs is None:
        print(f'warning: {input_path}: no CRS in the file, the raster has none (give --crs)',
              file=sys.stderr)
        return None
    return crs.to_wkt()


# --- windows ----------------------------------------------------------------------------------

def block_windows(grid, block_size):
    """The raster's block windows (col_off, row_off, width, height), row-major from the top."""
    from pointcloud_pipeline.raster import blocks
    return blocks(grid, block_size)


@dataclass(frozen=True)
class BlockJob:
    """One window's bands from its bucket's records (picklable: runs in any worker)."""

    grid: object
    settings: object
    data_type: str
    nodata: float
    density: bool

    def __call__(self, x, y, values, index, window):
        from pointcloud_pipeline.raster import rasterize_window
        bands = rasterize_window(x, y, values, self.grid, window, self.settings, index=index)
        return self.pack(bands, window)

    def pack(self, bands, window):
        """(bands, height, width) array of the data type, NaN -> nodata, count / cell area for
        density."""
        width, height = window[2], window[3]
        array = np.empty((len(self.settings.output_types), height, width), self.data_type)
        for index, name in enumerate(self.settings.output_types):
            values = bands[name]
            if name == 'count' and self.density:
                values = values / (self.grid.resolution * self.grid.resolution)
            array[index] = np.where(np.isnan(values), self.nodata, values)
        return array

    def empty_block(self, window):
        """The bands of a window that no point reaches: nodata, 0 in the count band."""
        shape = (window[3], window[2])
        bands = {name: np.zeros(shape) if name == 'count' else np.full(shape, np.nan)
                 for name in self.settings.output_types}
        return self.pack(bands, window)


class _BlockExecutor:
    """``submit(job, records, window)`` -> a function returning the window's array: on
    ``--workers`` threads, processes or a Dask cluster."""

    def __init__(self, parallelism):
        self.parallelism = parallelism
        self.pool = self.client = None

    def __enter__(self):
        parallelism = self.parallelism
        if parallelism.dask_scheduler:
            from dask.distributed import Client
            try:
                self.client = Client(parallelism.dask_scheduler, set_as_default=False,
                                     timeout='30s')
            except Exception as error:
                raise RasterError(f'cannot connect to the Dask scheduler '
                                  f'{parallelism.dask_scheduler}: '
                                  f'{runner.failure_reason(error)}') from None
        elif parallelism.executor == 'processes':
            self.pool, _ = runner.start_pool('processes', parallelism.workers, RasterTool)
        else:
            self.pool = ThreadPoolExecutor(parallelism.workers, thread_name_prefix='raster')
        return self

    def submit(self, job, points, number, window):
        """Compute block ``number`` of ``points``; returns the function giving its array."""
        gather = self.client is not None or self.parallelism.executor == 'processes'
        arguments = (*points.block(number, gather), window)
        if self.client is not None:
            return self.client.submit(job, *arguments, pure=False).result
        return self.pool.submit(job, *arguments).result

    def __exit__(self, *exc_info):
        if self.client is not None:
            self.client.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# --- command line -----------------------------------------------------------------------------





def output_types(text):
    """``all`` or a comma-separated list of statistics, in PDAL's band order."""
    names = [name.strip().lower() for name in text.split(',') if name.strip()]
    if names == ['all']:
        return OUTPUT_TYPES
    unknown = [name for name in names if name not in OUTPUT_TYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f'unknown output type {unknown[0] if unknown else text!r} (choose from '
            f'{", ".join(OUTPUT_TYPES)} or all)')
    return tuple(name for name in OUTPUT_TYPES if name in names)


def classes(text):
    values = []
    for part in text.split(','):
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f'not a class number: {part!r}') from None
        if not 0 <= value <= 255:
            raise argparse.ArgumentTypeError(f'classes are 0-255, got {value}')
        values.append(value)
    return tuple(sorted(set(values)))


def _crs_wkt(text):
    if importlib.util.find_spec('pyproj') is None:
        raise ValueError('--crs needs the Python package pyproj: pip install pyproj==3.7.2')
    from pyproj import CRS
    from pyproj.exceptions import CRSError
    try:
        return CRS.from_user_input(text).to_wkt()
    except CRSError as error:
        raise ValueError(f'--crs {text}: {error}') from None


def tool_from_args(args):
    """The RasterTool of the parsed options (and -o FILE.tif: args.output_dir becomes its
    directory); ValueError for options that cannot be."""
    output_file = None
    if args.output_dir.suffix.lower() in ('.tif', '.tiff') and not args.output_dir.is_dir():
        if len(args.inputs) != 1 or not os.path.isfile(args.inputs[0]):
            raise ValueError('-o FILE.tif needs exactly one input file (give a directory for '
                             'several: one raster per file, on grids that mosaic)')
        output_file = args.output_dir.name
        args.output_dir = args.output_dir.parent
    chosen = dict(PRESETS[args.preset]) if args.preset else {}
    for option in ('output_types', 'dimension', 'radius', 'power', 'window_size', 'returns'):
        if getattr(args, option) is not None:
            chosen[option] = getattr(args, option)
    if args.binmode:
        chosen['binmode'] = True
    if args.classes is not None:
        chosen['classes'] = args.classes
    if args.origin is not None and args.size is None or args.size is not None and not args.origin:
        raise ValueError('--origin and --size go together')
    if args.origin is not None and args.bounds is not None:
        raise ValueError('give --bounds or --origin/--size, not both')
    if args.bounds is not None and not (args.bounds[0] <= args.bounds[2]
                                        and args.bounds[1] <= args.bounds[3]):
        raise ValueError('--bounds MINX MINY MAXX MAXY needs MINX <= MAXX and MINY <= MAXY')
    if args.z_range is not None and args.z_range[0] > args.z_range[1]:
        raise ValueError('--z-range MIN MAX needs MIN <= MAX')
    if args.size is not None and min(args.size) < 1:
        raise ValueError('--size W H must be >= 1')
    if args.block_size % 16:
        raise ValueError(f'--block-size must be a multiple of 16, got {args.block_size}')
    if chosen.get('window_size', 0) < 0:
        raise ValueError('--window-size must be >= 0')
    grid_option = GridOption(bounds=tuple(args.bounds) if args.bounds else None,
                             origin=tuple(args.origin) if args.origin else None,
                             size=tuple(args.size) if args.size else None)
    filters = Filters(classes=tuple(chosen.get('classes', ())),
                      returns=chosen.get('returns', 'all'),
                      z_range=tuple(args.z_range) if args.z_range else None)
    tool = RasterTool(
        resolution=args.resolution, output_types=tuple(chosen.get('output_types',
                                                                  OUTPUT_TYPES)),
        dimension=chosen.get('dimension', 'Z'), radius=chosen.get('radius'),
        power=chosen.get('power', 1.0), binmode=chosen.get('binmode', False),
        window_size=chosen.get('window_size', 0), density=chosen.get('density', False),
        nodata=args.nodata, data_type=args.data_type, grid_option=grid_option,
        filters=filters, crs=_crs_wkt(args.crs) if args.crs else None,
        compress=args.compress, block_size=args.block_size, cog=args.cog,
        memory_limit_mb=args.memory_limit, output_file=output_file)
    tool.kernel_settings  # ValueError for settings the kernel refuses
    if grid_option.fixed:
        grid_option.grid(tool.resolution)  # ValueError for a grid that cannot be
    return tool


def add_raster_arguments(parser):
    """The raster tool's own options."""
    from pointcloud_pipeline.geotiff import COMPRESSIONS
    statistics = parser.add_argument_group('statistics (PDAL writers.gdal)')
    statistics.add_argument('--resolution', type=runner.positive_float, required=True, metavar='R',
                            help='cell size in the CRS units of X and Y (metres, feet)')
    statistics.add_argument('--preset', choices=sorted(PRESETS),
                            help='dsm: max of first returns; dtm: idw of class 2 with '
                                 '--window-size 5; intensity: mean Intensity; density: '
                                 'points per square unit (bin mode)')
    statistics.add_argument('--output-type', dest='output_types', type=output_types,
                            metavar='TYPES',
                            help='min,max,mean,idw,count,stdev or all (default all)')
    statistics.add_argument('--dimension', help='dimension rasterised (default Z)')
    statistics.add_argument('--radius', type=runner.positive_float,
                            help='radius around cell centres (default resolution x sqrt 2)')
    statistics.add_argument('--power', type=runner.positive_float, help='IDW power (default 1)')
    statistics.add_argument('--binmode', action='store_true',
                            help='only the cell that holds a point gets it')
    statistics.add_argument('--window-size', type=int, metavar='N',
                            help='fill empty cells from the (2N+1)^2 window (default 0: off)')
    filters = parser.add_argument_group('filters')
    filters.add_argument('--classes', type=classes, metavar='C,C',
                         help='only these classifications (e.g. 2,9: ground and water)')
    filters.add_argument('--returns', choices=RETURNS, help='first, last or all (default)')
    filters.add_argument('--z-range', nargs=2, type=runner.finite_float, metavar=('MIN', 'MAX'),
                         help='only points with MIN <= Z <= MAX')
    grid = parser.add_argument_group('grid (default: snapped to multiples of the resolution)')
    grid.add_argument('--bounds', nargs=4, type=runner.finite_float,
                      metavar=('MINX', 'MINY', 'MAXX', 'MAXY'),
                      help="PDAL's grid: origin at MINX MINY, floor((MAX - MIN) / R) + 1 cells")
    grid.add_argument('--origin', nargs=2, type=runner.finite_float, metavar=('X', 'Y'),
                      help='lower-left corner of the grid (with --size)')
    grid.add_argument('--size', nargs=2, type=int, metavar=('W', 'H'),
                      help='columns and rows (with --origin)')
    output = parser.add_argument_group('output and resources')
    output.add_argument('--nodata', type=runner.finite_float, default=DEFAULT_NODATA,
                        help='value of empty cells (default %(default)g)')
    output.add_argument('--data-type', choices=DATA_TYPES, default='float32',
                        help='band type (default %(default)s)')
    output.add_argument('--crs', help='CRS of the raster (EPSG:26917, WKT, PROJ string); '
                                      "default: the LAS file's")
    output.add_argument('--compress', choices=COMPRESSIONS, default='deflate',
                        help='GeoTIFF compression (default %(default)s)')
    output.add_argument('--block-size', type=runner.positive_int, default=DEFAULT_BLOCK_SIZE,
                        help='GeoTIFF tile and window side in cells (default %(default)s)')
    output.add_argument('--cog', action='store_true',
                        help='write a Cloud Optimized GeoTIFF with overviews')
    output.add_argument('--memory-limit', type=runner.positive_int,
                        default=DEFAULT_MEMORY_LIMIT_MB, metavar='MB',
                        help='points beyond about a third of this go to temporary files '
                             '(default %(default)s)')


def add_arguments(parser):
    """All options of the ``raster`` command: the runner's and the tool's."""
    runner.add_runner_arguments(
        parser, inputs_help='LAS/LAZ/COPC files, directories or glob patterns',
        output_help='directory for the rasters (created if missing), or FILE.tif for one '
                    'input file')
    add_raster_arguments(parser)


def checked_run(parser, args):
    """Run the ``raster`` command (usage errors exit 2); returns the exit code."""
    return runner.checked_run(parser, args, tool_from_args)


def main(argv=None):
    """Console script ``raster``: the ``raster`` command on its own."""
    return run_command(sys.modules[__name__], 'raster', argv)


if __name__ == '__main__':
    sys.exit(main())
