"""LAS/LAZ/COPC files of any size -> the same files with per-point normals and curvature.

Usage: ``python -m pointcloud_pipeline normals INPUT... -o OUTDIR`` (or ``normals``, also as
``ros2 run pointcloud_pipeline normals``). INPUT: .las/.laz files (COPC too), directories (their
*.las, *.laz) or glob patterns. ``-o FILE.las`` or ``-o FILE.laz`` with one input file names the
output (and its format) instead of a directory.

Output: every input dimension, header field, VLR, EVLR and the CRS kept, the points in input order,
plus the extra-bytes dimensions ``NormalX``, ``NormalY``, ``NormalZ`` and ``Curvature`` (PDAL's
names; float32, or ``--dtype float64``). Same format as the input (LAS -> LAS, LAZ -> LAZ) unless
``-o FILE`` says otherwise; a COPC input is read like any LAZ and written as plain LAZ (its COPC
VLR and hierarchy EVLR are dropped: the result is not a COPC file). An input that already has one
of these dimensions is refused unless ``--overwrite-dims`` (then they are replaced). LAS 1.4 files
keep 0 in the legacy point counts (laspy writes the 64-bit ones).

Normals (:mod:`pointcloud_pipeline.normals`, PDAL's ``filters.normal``): per point, its k nearest
neighbours (``--knn``, default 8) or the points within ``--radius`` metres (LAS scaled
coordinates, the file's CRS units) give the covariance whose smallest eigenvector is the normal,
oriented up (nz >= 0), towards ``--viewpoint X Y Z``, or as solved (``--no-always-up``);
curvature = l0 / (l0 + l1 + l2). NaN where the neighbourhood is degenerate.

Any size (:mod:`pointcloud_pipeline.tiling`): the file is cut into square XY tiles in a temporary
directory beside the output; each tile is computed with a halo of its neighbours, and every point
whose farthest neighbour lies beyond the halo is redone with a larger one (halo re-queries), so
the bytes equal a computation on the whole cloud at once, whatever ``--tile-size``,
``--memory-limit``, ``--workers`` or executor. Ties between equal distances are broken by a fixed
order of the points (a hash of their coordinates, then the file index), so the normals of a point
do not depend on the order of the points in the file either. ``--memory-limit`` (default 500 MB)
bounds the peak memory of the process by sizing the read chunks, the spill buffers and the tiles.
A LAZ input is decompressed once: its point records are also kept, uncompressed, in the temporary
directory for the writer (points x record size bytes of temporary disk, besides the tiles' 20
bytes a point; a LAS input is read again instead).

Parallelism is over the tiles of one file (files are done one after another): ``--workers``
threads (default; the kernel releases the GIL), processes, or the workers of a Dask cluster
(``--dask-scheduler``; OUTDIR must be reachable from them). LAZ is (de)compressed with laz-rs's
parallel backend when there is more than one worker.

Bad inputs (not a LAS file, truncated or corrupt LAZ, no points, all points at one position,
fewer than k + 1 points) and errors such as a full disk are reported by name; no output and no
temporary file is left; the other inputs are processed; the exit code is 1. Ctrl-C or SIGTERM
stops the file at hand at once (exit 130), leaving no partial output and no temporary files.
After ``kill -9`` the temporary tile directory (``OUTDIR/.normals-tiles.HOST.PID-...``) and the
hidden partial output stay; the next run into the same OUTDIR removes those of dead processes.

The end is the runner's summary line plus points, NaN normals, tiles, halo re-queries, seconds,
Mpts/s and the peak RSS of this process (and of the worker processes).
"""
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
import copy
from dataclasses import dataclass
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

DIMENSIONS = ('NormalX', 'NormalY', 'NormalZ', 'Curvature')  # PDAL's names
DTYPES = ('float32', 'float64')
DEFAULT_MEMORY_LIMIT_MB = 500
TEMPORARY_LABEL = 'normals'
COPC_USER_ID = 'copc'

# Memory model of the process (see memory_plan; bench/bench_normals_files.py measures the peak)
BASELINE_BYTES = 100 << 20  # interpreter, numpy, laspy, lazrs, scipy, tqdm, kernel: 74 MB here
TILE_BYTES_PER_POINT = 320  # per point of a tile with its halo, while computed
HALO_ALLOWANCE = 1.3  # points of tile + halo per tile point, allowed for in the tile size
MIN_CHUNK_POINTS, MAX_CHUNK_POINTS = 10_000, 1_000_000
MIN_TILE_POINTS = 1_000
PILOT_POINTS = 2048  # points of the largest tile whose neighbour distances choose the margin
MARGIN_QUANTILE, MARGIN_FACTOR = 0.99, 1.5
POLL_S = 0.05


class NormalsError(runner.InputError):
    """An input (or its temporary files) that cannot be turned into an output."""


@dataclass(frozen=True)
class MemoryPlan:
    """Sizes derived from ``--memory-limit``: points per read/write chunk, bytes of spill
    buffers, points per tile (split above ``max_tile_points``; the grid aims at half)."""

    chunk_points: int
    buffer_bytes: int
    max_tile_points: int

    @property
    def target_tile_points(self):
        return max(MIN_TILE_POINTS, self.max_tile_points // 2)


def memory_plan(memory_limit, concurrent_tiles, record_bytes, chunk_points=None):
    """The MemoryPlan that keeps the process under ``memory_limit`` bytes with
    ``concurrent_tiles`` tiles computed at once and input records of ``record_bytes``. The
    phases come one after another; of what the baseline leaves, the tiles get 60 % (the rest
    is headroom for halos denser than allowed for), the writer's chunk 30 % (input and output
    records, the compressed bytes, the results slice), pass 1 the same chunk plus spill buffers
    of 10 %."""
    available = memory_limit - BASELINE_BYTES
    if available < 32 << 20:
        raise ValueError(f'--memory-limit must be at least {(BASELINE_BYTES >> 20) + 32} MB')
    chunk_bytes_per_point = 3 * record_bytes + 128
    if chunk_points is None:
        chunk_points = int(min(MAX_CHUNK_POINTS, max(
            MIN_CHUNK_POINTS, available * 3 // 10 // chunk_bytes_per_point)))
    buffer_bytes = int(min(64 << 20, max(1 << 20, available // 10)))
    max_tile_points = int(max(2 * MIN_TILE_POINTS, available * 6 // 10 // (
        concurrent_tiles * TILE_BYTES_PER_POINT * HALO_ALLOWANCE)))
    return MemoryPlan(chunk_points, buffer_bytes, max_tile_points)


@dataclass(frozen=True)
class KernelSettings:
    """The options of :func:`pointcloud_pipeline.normals.estimate_normals` (threads aside)."""

    knn: int | None = 8
    radius: float | None = None
    always_up: bool = True
    viewpoint: tuple | None = None


@dataclass(frozen=True)
class TileContext:
    """What a tile task needs (picklable: sent to process and Dask workers)."""

    tileset: tiling.TileSet
    results: tiling.ResultsFile
    kernel: KernelSettings
    margin: float  # metres
    kernel_threads: int


def normals_of_records(tileset, kernel, records, core_count, threads):
    """(values: core_count x 4 float64 (nx, ny, nz, curvature), neighbour distance: core_count,
    metres) of the first ``core_count`` records, from all of them. Ties between equal distances
    are broken by the fixed order of :func:`pointcloud_pipeline.tiling.tie_break_order` (ids =
    ranks in it). The kernel gets the records in that order, so that the ids are increasing
    (0, 1, ...: it need not sort them to check that they are unique), and the core as a mask."""
    from pointcloud_pipeline.normals import estimate_normals
    order = tiling.tie_break_order(records)
    core = order < core_count
    result = estimate_normals(tileset.scaled(records[order]), k=kernel.knn,
                              radius=kernel.radius, ids=np.arange(len(records), dtype=np.int64),
                              core=core, always_up=kernel.always_up,
                              viewpoint=kernel.viewpoint, threads=threads)
    rows = order[core]  # the record of each result row (rows follow the sorted records)
    values = np.empty((core_count, 4))
    values[rows, :3] = result.normals
    values[rows, 3] = result.curvature
    reach = np.empty(core_count)
    reach[rows] = result.neighbour_distance
    return values, reach


def normals_of_tile(context, tile_number):
    """Compute one tile (with its halo) and store its rows in the results file; returns
    (points, NaN normals, halo re-queries, this process's peak RSS in kB). Runs in any
    worker."""
    tileset = context.tileset
    tile = tileset.tiles[tile_number]

    def compute(records, core_count):
        return normals_of_records(tileset, context.kernel, records, core_count,
                                  context.kernel_threads)

    positions, values, requeries = tiling.compute_with_halo(tileset, tile, context.margin,
                                                            compute)
    context.results.write(positions, values)
    nan_count = int(np.isnan(values[:, 0]).sum())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return len(positions), nan_count, requeries, peak_kb


@dataclass(frozen=True)
class NormalsTool:
    """The runner's tool: one LAS/LAZ file -> the same with normals (module docstring)."""

    kernel: KernelSettings = KernelSettings()
    dtype: str = 'float32'
    tile_size: float | None = None  # metres; None: from the memory limit
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB
    overwrite_dims: bool = False
    output_file: str | None = None  # -o FILE.las|FILE.laz: the output's name
    chunk_points: int | None = None  # None: from the memory limit
    name: ClassVar[str] = 'normals'
    input_suffixes: ClassVar[tuple[str, ...]] = las_files.LAS_SUFFIXES
    format_version: ClassVar[int] = 1
    parallel_inside: ClassVar[bool] = True
    requires: ClassVar[dict] = {
        'laspy': 'pip install laspy==2.7.0 lazrs==0.8.2'}

    def output_name(self, input_path):
        if self.output_file:
            return self.output_file
        name = Path(input_path).name
        if name.lower().endswith('.copc.laz'):  # written as plain LAZ: not a COPC name
            return name[:-len('.copc.laz')] + name[-len('.laz'):]
        return name

    def compress_output(self, input_path):
        """Whether the output is LAZ: the -o FILE's suffix, else the input's."""
        return (self.output_file or str(input_path)).lower().endswith('.laz')

    def settings(self):
        """What changes the output bytes (tiling, memory, workers and chunks do not)."""
        return {'knn': self.kernel.knn, 'radius': self.kernel.radius,
                'always_up': self.kernel.always_up,
                'viewpoint': list(self.kernel.viewpoint) if self.kernel.viewpoint else None,
                'dtype': self.dtype, 'overwrite_dims': self.overwrite_dims,
                'output_file': self.output_file}

    def process(self, input_path, output_path, parallelism):
        """Write ``input_path`` with normals to ``output_path`` (the runner's temporary path);
        returns the counters of the summary line."""
        start = time.perf_counter()
        out_dir = os.path.dirname(os.path.abspath(output_path))
        final = os.path.join(out_dir, self.output_name(input_path))
        if os.path.exists(final) and os.path.samefile(final, input_path):
            raise NormalsError(f'the output {final} would replace the input')
        tiling.remove_stale_tile_directories(out_dir, TEMPORARY_LABEL)
        backend = las_files.laz_backend(parallelism.workers)
        with las_files.opened(input_path, backend, NormalsError) as reader:
            header = reader.header
            self._check_header(header)
            tasks, kernel_threads = _schedule(parallelism)
            try:
                plan = memory_plan(self.memory_limit_mb << 20, tasks, header.point_format.size,
                                   self.chunk_points)
            except ValueError as error:
                raise NormalsError(str(error)) from None
            with las_files.PhaseProgress('normals', header.point_count,
                                          parallelism.show_progress, 'tiling') as progress, \
                    tiling.TileDirectory(out_dir, TEMPORARY_LABEL) as temporary:
                temporary.own(output_path)
                # LAZ: pass 1 keeps the decompressed records for the writer (read once)
                points_file = (tiling.PointsFile(temporary.path / 'points.bin')
                               if header.are_points_compressed else None)
                tileset = _tiles_of(reader, temporary.path, plan, self.tile_size,
                                    parallelism.should_stop, progress, points_file)
                _check_points(tileset)
                margin = _margin(tileset, self.kernel)
                results = tiling.ResultsFile(temporary.path / 'results.bin',
                                             tileset.point_count, len(DIMENSIONS), self.dtype)
                try:
                    results.create()
                except tiling.TilingError as error:
                    raise NormalsError(f'cannot create the temporary results in {out_dir}: '
                                       f'{error.strerror or error}') from None
                context = TileContext(tileset, results, self.kernel, margin, kernel_threads)
                counters = _run_tiles(self, context, parallelism, tasks, progress)
                progress.phase('writing')
                write_with_normals(input_path, output_path, results, self.dtype,
                                   self.overwrite_dims, self.compress_output(input_path),
                                   plan.chunk_points, backend, parallelism.should_stop,
                                   progress.update, points_file)
        counters.update(points=tileset.point_count, tiles=len(tileset.tiles),
                        seconds=time.perf_counter() - start)
        return counters

    def _check_header(self, header):
        count = header.point_count
        if count == 0:
            raise NormalsError('holds no points')
        if self.kernel.knn is not None and count < self.kernel.knn + 1:
            raise NormalsError(f'holds {count} points: --knn {self.kernel.knn} needs at least '
                               f'{self.kernel.knn + 1} (the point and its neighbours)')
        present = existing_dimensions(header)
        if present and not self.overwrite_dims:
            raise NormalsError(f'already has the dimensions {", ".join(present)} '
                               '(--overwrite-dims replaces them)')

    @staticmethod
    def summary_details(counters, seconds):
        """points, NaN normals, tiles, halo re-queries, seconds, Mpts/s, peak RSS."""
        points = sum(c['points'] for c in counters)
        compute_s = sum(c['seconds'] for c in counters)
        own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        workers_mb = max((c['worker_peak_rss_kb'] for c in counters), default=0) / 1024
        rate = points / compute_s / 1e6 if compute_s else 0.0
        return (f'{points} points, {sum(c["nan_normals"] for c in counters)} NaN normals, '
                f'{sum(c["tiles"] for c in counters)} tiles, '
                f'{sum(c["halo_requeries"] for c in counters)} halo re-queries, '
                f'{compute_s:.2f} s, {rate:.2f} Mpts/s, peak RSS {own_mb:.0f} MB'
                + (f' (worker processes {workers_mb:.0f} MB)' if workers_mb else ''))


def existing_dimensions(header):
    """The names of DIMENSIONS (any case) that the header's point format already has."""
    wanted = {name.lower() for name in DIMENSIONS}
    return [name for name in header.point_format.dimension_names if name.lower() in wanted]


def _schedule(parallelism):
    """(tiles computed at once, kernel threads per tile): one tile per worker, the kernel on
    one thread. With 2 threads on 1 M points that was as fast as one tile at a time on 2 kernel
    threads (0.94 s vs 0.99 s, bench/bench_normals_files.py), and it is the one way that also
    fits processes and Dask workers."""
    return parallelism.workers, 1


def _tiles_of(reader, directory, plan, tile_size, should_stop, progress, points_file=None):
    """Pass 1 and the splitting of overfull tiles: the TileSet of the file (and the records in
    ``points_file``, a tiling.PointsFile, when given)."""
    header = reader.header
    grid, side = tiling.plan_grid(header, plan.target_tile_points, tile_size)
    try:
        tiles, bounds = tiling.spill_las(reader, str(directory), grid, plan.chunk_points,
                                         plan.buffer_bytes, should_stop, progress.update,
                                         points_file)
    except tiling.TilingError as error:
        raise NormalsError(f'cannot write the temporary tiles in {os.path.dirname(directory)}: '
                           f'{error.strerror or error}') from None
    except EOFError as error:
        raise NormalsError(str(error)) from None
    except (InterruptedError, MemoryError):
        raise
    except Exception as error:  # lazrs, numpy on a short buffer: the point data is damaged
        raise NormalsError(f'point data cannot be read, corrupt or truncated '
                           f'({runner.failure_reason(error)})') from None
    tileset = tiling.TileSet(str(directory), tuple(map(float, header.scales)),
                             tuple(map(float, header.offsets)), bounds, header.point_count,
                             grid, side, tuple(tiles))
    try:
        return tiling.split_overfull(tileset, plan.max_tile_points, plan.chunk_points,
                                     plan.buffer_bytes)
    except tiling.TilingError as error:
        raise NormalsError(f'cannot write the temporary tiles in {os.path.dirname(directory)}: '
                           f'{error.strerror or error}') from None


def _check_points(tileset):
    low, high = tileset.bounds[0::2], tileset.bounds[1::2]
    if low == high:
        position = [low[axis] * tileset.scales[axis] + tileset.offsets[axis] for axis in range(3)]
        raise NormalsError(f'all {tileset.point_count} points are at one position '
                           f'({", ".join(f"{v:g}" for v in position)}): normals are undefined')


def _margin(tileset, kernel):
    """Halo margin, metres: the radius; else from the neighbour distances of PILOT_POINTS
    points of the largest tile (the first in the fixed tie-break order: the same for any point
    order), computed within that tile alone (an overestimate near its edges, which only makes
    the halo wider): MARGIN_FACTOR x their MARGIN_QUANTILE quantile."""
    floor = 4 * tileset.slack
    if kernel.radius is not None:
        return kernel.radius + floor
    largest = max(tileset.tiles, key=lambda tile: (tile.count, tile.name))
    records = tileset.read(largest)
    records = records[tiling.tie_break_order(records)]  # the pilot points first
    _, reach = normals_of_records(tileset, kernel, records, min(PILOT_POINTS, len(records)), 1)
    finite = reach[np.isfinite(reach)]
    if not finite.size:  # the largest tile has fewer than k + 1 points: the re-queries grow it
        return max(floor, tileset.tile_size)
    return max(floor, MARGIN_FACTOR * float(np.quantile(finite, MARGIN_QUANTILE)))


def _run_tiles(tool, context, parallelism, concurrent, progress):
    """Compute every tile on the executor of ``parallelism``; returns the counters."""
    progress.phase('normals')
    counters = {'nan_normals': 0, 'halo_requeries': 0, 'worker_peak_rss_kb': 0}
    check_stop = las_files.stop_check(parallelism.should_stop)
    numbers = [n for n, tile in enumerate(context.tileset.tiles) if tile.count]

    def account(result):
        points, nan_count, requeries, peak_kb = result
        counters['nan_normals'] += nan_count
        counters['halo_requeries'] += requeries
        if parallelism.executor == 'processes' or parallelism.dask_scheduler:
            counters['worker_peak_rss_kb'] = max(counters['worker_peak_rss_kb'], peak_kb)
        progress.update(points)

    if parallelism.dask_scheduler:
        _run_tiles_on_dask(context, numbers, parallelism.dask_scheduler, account, check_stop)
        return counters
    if parallelism.executor == 'processes':
        executor, _ = runner.start_pool('processes', parallelism.workers, tool)
    else:
        executor = ThreadPoolExecutor(parallelism.workers, thread_name_prefix='normals')
    waiting, in_flight = list(reversed(numbers)), set()
    try:
        while waiting or in_flight:
            check_stop()
            while waiting and len(in_flight) < 2 * concurrent:
                in_flight.add(executor.submit(normals_of_tile, context, waiting.pop()))
            done, in_flight = wait(in_flight, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                account(_tile_result(future.result))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return counters


def _tile_result(get):
    try:
        return get()
    except tiling.TilingError as error:
        raise NormalsError(f'temporary tiles: {error.strerror or error}') from None


def _run_tiles_on_dask(context, numbers, address, account, check_stop):
    from dask.distributed import Client, as_completed
    try:
        client = Client(address, set_as_default=False, timeout='30s')
    except Exception as error:
        raise NormalsError(f'cannot connect to the Dask scheduler {address}: '
                           f'{runner.failure_reason(error)}') from None
    with client:
        futures = [client.submit(normals_of_tile, context, number, pure=False)
                   for number in numbers]
        finished = as_completed(futures, loop=client.loop)
        try:
            while not finished.is_empty():
                check_stop()
                ready = finished.next_batch(block=False)
                if not ready:
                    time.sleep(POLL_S)
                for future in ready:
                    account(_tile_result(future.result))
        finally:
            client.cancel(futures)


# --- output ---------------------------------------------------------------------------------

def output_header(header, dtype, overwrite_dims):
    """The output's header: a copy of the input's without the COPC VLR and the LASzip VLR (laspy
    writes its own), the existing normal dimensions removed (``overwrite_dims``) and
    DIMENSIONS added as extra bytes of ``dtype``. Returns (header, the EVLRs to write)."""
    laspy = las_files.laspy()
    header = copy.deepcopy(header)
    header.vlrs = [vlr for vlr in header.vlrs if vlr.user_id != COPC_USER_ID]
    evlrs = [evlr for evlr in (header.evlrs or []) if evlr.user_id != COPC_USER_ID]
    present = existing_dimensions(header)
    if present and overwrite_dims:
        header.remove_extra_dims(present)
    header.add_extra_dims([
        laspy.ExtraBytesParams(name, dtype, description=f'{name} (filters.normal)'[:32])
        for name in DIMENSIONS])
    header.evlrs = laspy.vlrs.vlrlist.VLRList(evlrs) if header.evlrs is not None else None
    return header, evlrs


def write_with_normals(input_path, output_path, results, dtype, overwrite_dims, compress,
                       chunk_points, backend, should_stop, progress, points_file=None):
    """Write the input with the rows of ``results`` as DIMENSIONS to ``output_path``, chunk by
    chunk in input order (LAZ when ``compress``), and fsync it. Every other dimension is copied
    as raw bytes (bit-exact). The input's records come from ``points_file`` (a
    tiling.PointsFile that pass 1 filled) when given, else from the input read again."""
    laspy = las_files.laspy()
    check_stop = las_files.stop_check(should_stop)
    with las_files.opened(input_path, backend, NormalsError) as reader:
        header, evlrs = output_header(reader.header, dtype, overwrite_dims)
        replaced = {name.lower() for name in DIMENSIONS}
        with open(output_path, 'wb') as destination:
            with laspy.LasWriter(destination, header, do_compress=compress,
                                 laz_backend=backend if compress else None,
                                 closefd=False) as writer:
                point_format = writer.header.point_format
                statistics = _ExtraBytesStatistics(writer.header)
                count, start = reader.header.point_count, 0
                while start < count:
                    check_stop()
                    wanted = min(chunk_points, count - start)
                    if points_file is not None:
                        source = _stored_points(points_file, start, wanted)
                    else:
                        source = reader.read_points(wanted).array
                    if len(source) == 0:
                        raise NormalsError(f'the input shrank while being read ({start} of '
                                           f'{count} points)')
                    points = laspy.PackedPointRecord.zeros(len(source), point_format)
                    _copy_fields(source, points.array, replaced)
                    del source
                    values = results.read(start, len(points))
                    for column, name in enumerate(DIMENSIONS):
                        points.array[name] = values[:, column]
                    writer.write_points(points)
                    statistics.add(points.array)
                    start += len(points)
                    progress(len(points))
                statistics.store()
                _keep_input_bounds(writer.header, reader.header)
                if evlrs:
                    writer.write_evlrs(laspy.vlrs.vlrlist.VLRList(evlrs))
            destination.flush()
            os.fsync(destination.fileno())


def _stored_points(points_file, start, count):
    try:
        return points_file.read(start, count)
    except tiling.TilingError as error:
        raise NormalsError(f'temporary points: {error.strerror or error}') from None


def _copy_fields(source, target, replaced):
    """Copy the fields of the structured array ``source`` but ``replaced`` (lower-case names)
    into the same fields of ``target``, bit for bit: as one byte block when the fields of
    ``source`` fill its records and lie at the same offsets in ``target``'s, else by field."""
    names = [name for name in source.dtype.names if name.lower() not in replaced]
    fields, into = source.dtype.fields, target.dtype.fields
    size = source.dtype.itemsize
    if (len(names) == len(source.dtype.names) and len(source) == len(target)
            and sum(fields[name][0].itemsize for name in names) == size
            and all(name in into and into[name][:2] == fields[name][:2] for name in names)):
        count = len(source)
        target_bytes = target.view(np.uint8).reshape(count, target.dtype.itemsize)
        target_bytes[:, :size] = np.ascontiguousarray(source).view(np.uint8).reshape(count, size)
        return
    for name in names:
        target[name] = source[name]


def _keep_input_bounds(written, original):
    """Keep the input header's bounds where the ones laspy recomputed from the same points
    differ only by rounding (less than half a scale unit: laspy computes X * scale + offset,
    other writers round otherwise); bounds that were wrong stay corrected."""
    tolerance = 0.5 * np.abs(np.asarray(original.scales))
    for name in ('mins', 'maxs'):
        recomputed = np.asarray(getattr(written, name))
        stored = np.asarray(getattr(original, name))
        if (np.abs(recomputed - stored) < tolerance).all():
            setattr(written, name, stored.copy())


class _ExtraBytesStatistics:
    """The min and max of every extra-bytes dimension over all points, stored in the Extra
    Bytes VLR at the end. (laspy 2.7 tracks them per written batch from the batch's first
    point only for one-element dimensions: the VLR then depends on the chunk size.)"""

    def __init__(self, header):
        found = header.vlrs.get('ExtraBytesVlr')
        self.structs = [item for item in (found[0].extra_bytes_structs if found else [])
                        if item.data_type != 0 and item.min_is_relevant()
                        and item.max_is_relevant()]
        self.low = {item.format_name(): None for item in self.structs}
        self.high = dict(self.low)

    def add(self, array):
        for item in self.structs:
            name = item.format_name()
            values = array[name].reshape(len(array), item.num_elements())
            if item.no_data is not None:
                values = np.where(values == item.no_data, np.nan, values.astype(np.float64))
            if values.dtype.kind == 'f':
                if np.isnan(values).all(axis=0).any():
                    continue  # no value yet in some element: keep what laspy reset
                low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            else:
                low, high = values.min(axis=0), values.max(axis=0)
            self.low[name] = low if self.low[name] is None else np.minimum(self.low[name], low)
            self.high[name] = (high if self.high[name] is None
                               else np.maximum(self.high[name], high))

    def store(self):
        for item in self.structs:
            name = item.format_name()
            if self.low[name] is not None:
                item._raw_min()[:] = self.low[name]
                item._raw_max()[:] = self.high[name]


# --- command line -----------------------------------------------------------------------------



def tool_from_args(args):
    """The NormalsTool of the parsed options (and -o FILE: args.output_dir becomes its
    directory); ValueError for options that cannot be."""
    output_file = None
    if args.output_dir.suffix.lower() in ('.las', '.laz') and not args.output_dir.is_dir():
        if len(args.inputs) != 1 or not os.path.isfile(args.inputs[0]):
            raise ValueError('-o FILE.las|FILE.laz needs exactly one input file '
                             '(give a directory for several)')
        output_file = args.output_dir.name
        args.output_dir = args.output_dir.parent
    if args.radius is not None and args.knn is not None:
        raise ValueError('give --knn or --radius, not both')
    if args.viewpoint is not None and args.no_always_up:
        raise ValueError('give --viewpoint or --no-always-up, not both')
    knn = None if args.radius is not None else (args.knn if args.knn is not None else 8)
    if knn is not None and not 2 <= knn <= 1024:
        raise ValueError(f'--knn must be from 2 to 1024, got {knn}')
    kernel = KernelSettings(knn=knn, radius=args.radius, always_up=not args.no_always_up,
                            viewpoint=tuple(args.viewpoint) if args.viewpoint else None)
    tool = NormalsTool(kernel=kernel, dtype=args.dtype, tile_size=args.tile_size,
                       memory_limit_mb=args.memory_limit, overwrite_dims=args.overwrite_dims,
                       output_file=output_file, chunk_points=args.chunk_points)
    memory_plan(tool.memory_limit_mb << 20, args.workers, 64)  # ValueError when too small
    return tool


def add_normals_arguments(parser):
    """The normals tool's own options."""
    neighbours = parser.add_argument_group('neighbourhood (PDAL filters.normal)')
    neighbours.add_argument('--knn', type=runner.positive_int, default=None, metavar='K',
                            help='k nearest neighbours besides the point (default 8)')
    neighbours.add_argument('--radius', type=runner.positive_float, default=None, metavar='R',
                            help='all points within R (LAS scaled units, e.g. metres) instead')
    orientation = parser.add_argument_group('orientation')
    orientation.add_argument('--viewpoint', nargs=3, type=float, metavar=('X', 'Y', 'Z'),
                             help='orient towards this point (LAS scaled coordinates)')
    orientation.add_argument('--no-always-up', action='store_true',
                             help='keep the solver\'s sign (default: flip so that nz >= 0)')
    output = parser.add_argument_group('output and resources')
    output.add_argument('--dtype', choices=DTYPES, default='float32',
                        help='type of the new dimensions (default %(default)s)')
    output.add_argument('--overwrite-dims', action='store_true',
                        help='replace NormalX/Y/Z and Curvature if the input has them')
    output.add_argument('--tile-size', type=runner.positive_float, default=None, metavar='METRES',
                        help='side of the square tiles (default: from --memory-limit and '
                             'the point density); does not change the result')
    output.add_argument('--memory-limit', type=runner.positive_int,
                        default=DEFAULT_MEMORY_LIMIT_MB, metavar='MB',
                        help='peak memory of the process to stay under (default %(default)s)')
    output.add_argument('--chunk-points', type=runner.positive_int, default=None,
                        metavar='N', help='points per read/write chunk (default: from '
                                          '--memory-limit, <= 1000000)')


def add_arguments(parser):
    """All options of the ``normals`` command: the runner's and the tool's."""
    runner.add_runner_arguments(
        parser, inputs_help='LAS/LAZ/COPC files, directories or glob patterns',
        output_help='directory for the outputs (created if missing), or FILE.las|FILE.laz '
                    'for one input file')
    add_normals_arguments(parser)


def checked_run(parser, args):
    """Run the ``normals`` command (usage errors exit 2); returns the exit code."""
    return runner.checked_run(parser, args, tool_from_args)


def main(argv=None):
    """Console script ``normals``: the ``normals`` command on its own."""
    return run_command(sys.modules[__name__], 'normals', argv)


if __name__ == '__main__':
    sys.exit(main())
