"""Point cloud -> raster statistics with PDAL ``writers.gdal`` semantics, GIL-free.

Frame and units: the points' own CRS (LAS: the file's, metres or feet); x east, y north.
``resolution``, ``radius`` and margins are in those units. Rasters are float64 arrays of shape
(height, width), rows top-down (row 0 = the northernmost row, as in a GeoTIFF), north-up and
pixel-is-area (:attr:`RasterGrid.transform` is the GDAL geotransform).

Statistics (PDAL's band order :data:`OUTPUT_TYPES`: min, max, mean, idw, count, stdev)
    Every point with value ``val`` contributing to a cell at distance ``dist`` from the cell
    centre updates, in input order, exactly as PDAL's ``GDALGrid::update``:
    ``count += 1``; ``min = std::min(val, min)``; ``max = std::max(val, max)``; Welford
    ``delta = val - mean; mean += delta / count; m2 += delta * (val - mean)``; IDW: until a
    point lies exactly on the centre (dist == 0, which sets ``idw = val`` and ends the
    accumulation), ``idw += val / dist**power; weight += 1 / dist**power``. Finalize:
    ``stdev = sqrt(m2 / count)`` (population), ``idw /= weight`` unless an exact hit set it.
    The per-cell order of the points is the input order, so the numbers are PDAL's bit for bit
    on a grid of the same origin.
    - radius mode (default): a point contributes to every grid cell whose centre is at
      ``d = sqrt((cx - x)**2 + (cy - y)**2) < radius`` (strict); default radius
      ``resolution * sqrt(2)``. Points outside the grid contribute to the grid cells within
      the radius (PDAL does the same).
    - bin mode: a point contributes only to the cell that contains it (column
      ``floor((x - x0) / res)``, row from the bottom ``floor((y - y0) / res)``), with dist = 0:
      so the idw of a cell in bin mode is the value of its first point (PDAL does exactly
      that). Points outside the grid contribute nothing.
    - empty cells (count 0): NaN in min, max, mean, idw and stdev (a writer maps NaN to its
      nodata); 0 in count (PDAL writes 0 there, never nodata).
    - window fill (``window_size`` N > 0, PDAL's windowFill): after finalize every empty cell
      gets, for each of min, max, mean, idw and stdev, ``sum(src / d) / sum(1 / d)`` over the
      non-empty cells of the (2N+1)^2 window around it clipped to the grid, d = max(|di|, |dj|)
      in cells, summed in PDAL's order (column outer, row from the bottom inner); filled cells
      are never donors, count is not filled, no donor leaves NaN.
    - NaN values are accepted and propagate as in PDAL: mean, stdev and idw become NaN, while
      min and max follow std::min / std::max (a NaN replaces the running value and the next
      number replaces the NaN). A cell whose values are all +inf has min = DBL_MAX (all -inf:
      max = -DBL_MAX), PDAL's initial values.

The grid (:class:`RasterGrid`)
    Cell centres and cells of points come from a global lattice: column c's centre is
    ``base_x + (offset_x + c + 0.5) * res`` and a point's column is
    ``floor((x - base_x) / res) - offset_x`` (rows likewise, counted from the bottom). With
    base = PDAL's origin and offsets 0 (:meth:`RasterGrid.from_bounds`,
    :meth:`RasterGrid.from_origin`) this is PDAL's arithmetic exactly. :meth:`RasterGrid.snapped`
    puts base at 0 and the cells on multiples of ``res``: a cell's centre is computed from its
    global index whatever the raster's extent, so rasters of adjacent files line up and agree
    bit for bit on shared cells (given the same points).

Where this deliberately differs from PDAL
    - float64 throughout (PDAL casts to its ``data_type`` when writing; that is the writer's
      job here);
    - the snapped lattice above (PDAL's grid origin is the data's minimum, or origin_x/origin_y);
    - percentiles (``p<n>``) are not supported;
    - no grid growth while streaming: the grid is fixed before the points are added (PDAL's
      result is the same, its standard mode sizes the grid from the bounds first);
    - the cells a point reaches are found by scanning conservatively chosen candidate cells
      with PDAL's exact distance test instead of PDAL's quadrant walk: the same set of cells;
    - NaN or infinite x / y are rejected (ValueError; PDAL casts their cell to int).

Parallelism and memory: :func:`rasterize` cuts the grid into blocks, buckets the points per
block (:func:`bucket_points`, a point near a block edge is in every block it can change) and
computes the blocks ``threads`` at a time with :func:`rasterize_window`, whose kernel holds the
GIL for no part of its work and keeps accumulators for its window and window-fill halo only.
Every cell's value depends only on its own points in input order (and its donors), so the
bytes do not depend on threads, block size or windows.

Speed (2-core x86-64, 9.9 M real airborne points, a 2528 x 2635 grid at 1 m, max only): about
0.37 s on one thread, about 0.2 s on two; a numpy version (np.maximum.at / np.bincount over
the 3 x 3 candidate offsets) takes about 4.3-4.9 s. count / min / max alone use a branch-free
scatter (and, for the default radius, an unrolled 3 x 3 one); the other statistics PDAL's
branching update.
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import functools
import math
from numbers import Integral, Real
import threading

import numpy as np

from . import _raster
from .threads import checked_threads

OUTPUT_TYPES = ('min', 'max', 'mean', 'idw', 'count', 'stdev')
"""The statistics, in PDAL's band order."""
DEFAULT_BLOCK_SIZE = 256
"""Cells per block side in :func:`rasterize` (speed only: the bytes do not depend on it)."""
MAX_CELLS = 2 ** 31 - 1
"""Largest width or height (PDAL's limit)."""
MAX_LATTICE_INDEX = 2 ** 40
"""Largest |global cell index| (offset + size): float64 cell coordinates stay far more precise
than the slack of the candidate cells."""
MAX_RADIUS_CELLS = 4096
MAX_WINDOW_SIZE = 4096
MAX_BLOCKS = 2 ** 26  # block codes are int32
CANDIDATE_SLACK = 1e-3
"""Cells added to the reach of the candidate cells and to :meth:`RasterSettings.point_margin`,
far more than the rounding of float64 cell coordinates below MAX_LATTICE_INDEX; the exact test
decides, so the slack only adds cells that are tested and rejected."""


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def _is_integer(value):
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _checked_resolution(resolution, name='resolution'):
    if not _is_number(resolution) or not math.isfinite(resolution) or resolution <= 0:
        raise ValueError(f'{name} must be a finite number > 0 (CRS units), got {resolution!r}')
    return float(resolution)


def _checked_finite(value, name):
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f'{name} must be a finite number, got {value!r}')
    return float(value)


def _checked_size(value, name):
    if not _is_integer(value) or not 1 <= value <= MAX_CELLS:
        raise ValueError(f'{name} must be an integer from 1 to {MAX_CELLS} (cells), '
                         f'got {value!r}')
    return int(value)


def _checked_bounds(min_x, min_y, max_x, max_y):
    bounds = tuple(_checked_finite(v, name) for v, name in
                   ((min_x, 'min_x'), (min_y, 'min_y'), (max_x, 'max_x'), (max_y, 'max_y')))
    if bounds[2] < bounds[0]:
        raise ValueError(f'max_x must be >= min_x, got min_x={min_x!r}, max_x={max_x!r}')
    if bounds[3] < bounds[1]:
        raise ValueError(f'max_y must be >= min_y, got min_y={min_y!r}, max_y={max_y!r}')
    return bounds


def _cell_count(low, high, name):
    """Cells from lattice index low to high inclusive, checked like a width or height."""
    if not (math.isfinite(low) and math.isfinite(high)) or high - low + 1 > MAX_CELLS:
        raise ValueError(f'{name} would be {high - low + 1:g} cells, more than {MAX_CELLS}: '
                         f'increase the resolution or reduce the bounds')
    return int(high - low + 1)


@dataclass(frozen=True)
class RasterGrid:
    """A north-up raster grid on a global cell lattice (module docstring).

    resolution: cell edge, CRS units. width, height: columns and rows (1..2**31 - 1).
    Column c (from the left) has its centre at ``base_x + (offset_x + c + 0.5) * resolution``;
    row j counted from the bottom at ``base_y + (offset_y + j + 0.5) * resolution``; array row
    ``height - 1 - j`` (arrays are top-down). A point's column is
    ``floor((x - base_x) / resolution) - offset_x``, its row from the bottom
    ``floor((y - base_y) / resolution) - offset_y``.
    """

    resolution: float
    width: int
    height: int
    base_x: float = 0.0
    base_y: float = 0.0
    offset_x: int = 0
    offset_y: int = 0

    def __post_init__(self):
        set_field = functools.partial(object.__setattr__, self)  # frozen: normalise once
        set_field('resolution', _checked_resolution(self.resolution))
        set_field('width', _checked_size(self.width, 'width'))
        set_field('height', _checked_size(self.height, 'height'))
        set_field('base_x', _checked_finite(self.base_x, 'base_x'))
        set_field('base_y', _checked_finite(self.base_y, 'base_y'))
        for name, size in (('offset_x', self.width), ('offset_y', self.height)):
            offset = getattr(self, name)
            if not _is_integer(offset) or abs(offset) + size > MAX_LATTICE_INDEX:
                raise ValueError(f'{name} must be an integer with |{name}| + size <= '
                                 f'{MAX_LATTICE_INDEX}, got {offset!r}')
            set_field(name, int(offset))

    @classmethod
    def snapped(cls, min_x, min_y, max_x, max_y, resolution):
        """The cells of the global lattice of multiples of ``resolution`` that hold the bounds:
        base 0, ``offset_x = floor(min_x / res)``, ``width = floor(max_x / res) - offset_x + 1``
        (y likewise). Rasters of adjacent files on such grids line up exactly."""
        min_x, min_y, max_x, max_y = _checked_bounds(min_x, min_y, max_x, max_y)
        resolution = _checked_resolution(resolution)
        indices = [v / resolution for v in (min_x, max_x, min_y, max_y)]
        if not all(abs(v) < MAX_LATTICE_INDEX for v in indices):
            raise ValueError(f'the bounds are more than {MAX_LATTICE_INDEX} cells of '
                             f'{resolution!r} from 0: increase the resolution')
        first_col, last_col, first_row, last_row = (math.floor(v) for v in indices)
        return cls(resolution, _cell_count(first_col, last_col, 'width'),
                   _cell_count(first_row, last_row, 'height'), 0.0, 0.0,
                   int(first_col), int(first_row))

    @classmethod
    def from_bounds(cls, min_x, min_y, max_x, max_y, resolution):
        """PDAL's grid for data bounds: origin (min_x, min_y), offsets 0,
        ``width = floor((max_x - min_x) / res) + 1`` (height likewise)."""
        min_x, min_y, max_x, max_y = _checked_bounds(min_x, min_y, max_x, max_y)
        resolution = _checked_resolution(resolution)
        width = _cell_count(0, math.floor((max_x - min_x) / resolution), 'width')
        height = _cell_count(0, math.floor((max_y - min_y) / resolution), 'height')
        return cls(resolution, width, height, min_x, min_y)

    @classmethod
    def from_origin(cls, x, y, width, height, resolution):
        """PDAL's origin_x / origin_y / width / height: (x, y) is the lower-left corner."""
        return cls(resolution, width, height, x, y)

    @property
    def transform(self):
        """GDAL geotransform (x_left, res, 0, y_top, 0, -res): north-up, pixel-is-area."""
        res = self.resolution
        return (self.base_x + self.offset_x * res, res, 0.0,
                self.base_y + (self.offset_y + self.height) * res, 0.0, -res)

    def cell_centre(self, row, col):
        """(x, y) centre of array row ``row`` (top-down) and column ``col`` (numbers or integer
        arrays, which may be outside the grid), exactly as the rasteriser computes it."""
        row, col = np.asarray(row, dtype=np.int64), np.asarray(col, dtype=np.int64)
        row_from_bottom = self.height - 1 - row
        x = self.base_x + ((self.offset_x + col).astype(np.float64) + 0.5) * self.resolution
        y = self.base_y + ((self.offset_y + row_from_bottom).astype(np.float64) + 0.5) \
            * self.resolution
        return (float(x), float(y)) if x.ndim == 0 else (x, y)

    def cell_of(self, x, y):
        """(row top-down, col) int64 arrays of the cells holding the points (x, y) (may be
        outside the grid: rows < 0 are north of it, rows >= height south)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        limit = float(2 ** 62)
        col = np.clip(np.floor((x - self.base_x) / self.resolution), -limit, limit)
        row = np.clip(np.floor((y - self.base_y) / self.resolution), -limit, limit)
        col = col.astype(np.int64) - self.offset_x
        row = self.height - 1 - (row.astype(np.int64) - self.offset_y)
        return row, col


@dataclass(frozen=True)
class RasterSettings:
    """What to compute (module docstring: PDAL's writers.gdal options of the same names).

    output_types: any non-empty subset of :data:`OUTPUT_TYPES` (a name or names), stored in
        PDAL's band order. radius: CRS units, > 0; None = ``resolution * sqrt(2)``; ignored in
        bin mode. power: IDW exponent (finite). binmode: cells take only their own points.
    window_size: PDAL's window fill of empty cells, 0 = off (cells).
    """

    output_types: tuple = OUTPUT_TYPES
    radius: float | None = None
    power: float = 1.0
    binmode: bool = False
    window_size: int = 0

    def __post_init__(self):
        set_field = functools.partial(object.__setattr__, self)  # frozen: normalise once
        names = self.output_types
        if isinstance(names, str):
            names = (names,)
        try:
            names = tuple(names)
        except TypeError:
            raise ValueError(f'output_types must be names from {OUTPUT_TYPES}, '
                             f'got {self.output_types!r}') from None
        unknown = [n for n in names if not isinstance(n, str) or n not in OUTPUT_TYPES]
        if unknown or not names:
            raise ValueError(f'output_types must be a non-empty subset of {OUTPUT_TYPES} '
                             f'(percentiles are not supported), got {self.output_types!r}')
        set_field('output_types', tuple(n for n in OUTPUT_TYPES if n in names))
        if self.radius is not None:
            set_field('radius', _checked_resolution(self.radius, 'radius'))
        set_field('power', _checked_finite(self.power, 'power'))
        if not isinstance(self.binmode, (bool, np.bool_)):
            raise ValueError(f'binmode must be True or False, got {self.binmode!r}')
        set_field('binmode', bool(self.binmode))
        if not _is_integer(self.window_size) or not 0 <= self.window_size <= MAX_WINDOW_SIZE:
            raise ValueError(f'window_size must be an integer from 0 (off) to '
                             f'{MAX_WINDOW_SIZE} (cells), got {self.window_size!r}')
        set_field('window_size', int(self.window_size))

    def radius_for(self, resolution):
        """The radius used at ``resolution``: the set one, or PDAL's resolution * sqrt(2)."""
        resolution = _checked_resolution(resolution)
        return self.radius if self.radius is not None else resolution * math.sqrt(2.0)

    def point_margin(self, resolution):
        """How far (CRS units) outside a window's cell rectangle a point may lie and still
        change the window's cells: the radius (bin mode: one cell) plus window_size cells plus
        a slack of CANDIDATE_SLACK cells for rounding."""
        resolution = _checked_resolution(resolution)
        reach = resolution if self.binmode else self.radius_for(resolution)
        return reach + (self.window_size + CANDIDATE_SLACK) * resolution


@dataclass(frozen=True)
class _Plan:
    """Kernel arguments derived from a grid and settings."""
    stats: int
    band_of: np.ndarray
    d2_threshold: float
    column_reach: np.ndarray
    own_cell_inside: bool


def _d2_threshold(radius):
    """The smallest float64 t with sqrt(t) >= radius: ``d2 < t`` iff ``sqrt(d2) < radius``
    (sqrt is correctly rounded and monotonic), so the kernel tests PDAL's condition exactly
    without a square root."""
    t = radius * radius
    if math.isinf(t):
        return t
    while math.sqrt(t) < radius:
        t = math.nextafter(t, math.inf)
    while t > 0 and math.sqrt(math.nextafter(t, 0.0)) >= radius:
        t = math.nextafter(t, 0.0)
    return t


def _column_reach(radius_cells):
    """For row offsets b = -R..R of a candidate cell from the point's cell: the largest
    |column offset| whose centre can be closer than the radius (-1: none). A point lies
    anywhere in its cell, so a cell k cells away is at least |k| - 0.5 cells from it on that
    axis; CANDIDATE_SLACK covers the rounding of the point's cell."""
    limit = radius_cells * (1 + 1e-9) + CANDIDATE_SLACK

    def gap(k):
        return max(0.0, abs(k) - 0.5 - CANDIDATE_SLACK)

    reach = int(limit + 0.5 + CANDIDATE_SLACK) + 1
    while reach > 0 and gap(reach) >= limit:
        reach -= 1
    columns = []
    for b in range(-reach, reach + 1):
        rest = limit * limit - gap(b) ** 2
        if rest <= 0:
            columns.append(-1)
            continue
        a = min(reach, int(math.sqrt(rest) + 0.5 + CANDIDATE_SLACK) + 1)
        while a > 0 and gap(a) ** 2 >= rest:
            a -= 1
        columns.append(a)
    return np.array(columns, dtype=np.int64)


def _plan(grid, settings):
    stats = 0
    for name in settings.output_types:
        stats |= _raster.STAT_BITS[name]
    band_of = np.full(len(OUTPUT_TYPES), -1, dtype=np.int64)
    for band, name in enumerate(settings.output_types):
        band_of[OUTPUT_TYPES.index(name)] = band
    if settings.binmode:
        return _Plan(stats, band_of, 0.0, np.zeros(1, dtype=np.int64), True)
    radius = settings.radius_for(grid.resolution)
    radius_cells = radius / grid.resolution
    if radius_cells > MAX_RADIUS_CELLS:
        raise ValueError(f'radius must be at most {MAX_RADIUS_CELLS} cells '
                         f'({MAX_RADIUS_CELLS * grid.resolution:g} CRS units at resolution '
                         f'{grid.resolution:g}), got {radius!r}')
    # the farthest a point can be from its own cell's centre: half a diagonal, plus the slack
    own_cell_inside = (0.5 + CANDIDATE_SLACK) * math.sqrt(2.0) < radius_cells * (1 - 1e-6)
    return _Plan(stats, band_of, _d2_threshold(radius), _column_reach(radius_cells),
                 own_cell_inside)


def _checked_grid(grid):
    if not isinstance(grid, RasterGrid):
        raise ValueError(f'grid must be a RasterGrid, got {type(grid).__name__}')
    return grid


def _checked_settings(settings):
    if not isinstance(settings, RasterSettings):
        raise ValueError(f'settings must be a RasterSettings, got {type(settings).__name__}')
    return settings




def _checked_array(values, name):
    array = np.asarray(values)
    if array.dtype.kind not in 'iuf':
        raise ValueError(f'{name} must be an array of real numbers (float64-convertible), '
                         f'got dtype {array.dtype}')
    if array.ndim != 1:
        raise ValueError(f'{name} must be a 1-D array, got shape {array.shape}')
    return np.ascontiguousarray(array, dtype=np.float64)


def _raise_non_finite(x, y, positions=None):
    """ValueError naming the first NaN or infinite coordinate among all points, or among the
    points at ``positions`` (an integer or an index array)."""
    for name, array in (('x', x), ('y', y)):
        if positions is None:
            bad = _raster.first_non_finite(array)
        else:
            subset = np.atleast_1d(positions)
            bad = _raster.first_non_finite(np.ascontiguousarray(array[subset]))
            bad = int(subset[bad]) if bad >= 0 else -1
        if bad >= 0:
            raise ValueError(f'{name} must be finite (CRS coordinates), got {array[bad]} at '
                             f'index {bad} (NaN values are allowed, NaN coordinates are not)')


def _checked_points(x, y, values, check_finite=True):
    """float64 contiguous x, y, values; the finite test of x and y is left to the bucketing
    pass (which reads them anyway) when ``check_finite`` is False."""
    x, y = _checked_array(x, 'x'), _checked_array(y, 'y')
    values = _checked_array(values, 'values')
    if not len(x) == len(y) == len(values):
        raise ValueError(f'x, y and values must have the same length, got {len(x)}, {len(y)} '
                         f'and {len(values)}')
    if check_finite:
        _raise_non_finite(x, y)
    return x, y, values


def _checked_window(window, grid):
    if all(hasattr(window, name) for name in ('col_off', 'row_off', 'width', 'height')):
        window = (window.col_off, window.row_off, window.width, window.height)  # rasterio
    try:
        col_off, row_off, width, height = window
    except (TypeError, ValueError):
        raise ValueError(f'window must be (col_off, row_off, width, height), '
                         f'got {window!r}') from None
    if not all(_is_integer(v) for v in (col_off, row_off, width, height)):
        raise ValueError(f'window must be four integers (col_off, row_off, width, height), '
                         f'got {window!r}')
    if (col_off < 0 or row_off < 0 or width < 1 or height < 1
            or col_off + width > grid.width or row_off + height > grid.height):
        raise ValueError(f'window {tuple(window)!r} must be non-empty and inside the '
                         f'{grid.width} x {grid.height} grid')
    return int(col_off), int(row_off), int(width), int(height)


def _checked_block_size(block_size):
    if not _is_integer(block_size) or not 1 <= block_size <= MAX_CELLS:
        raise ValueError(f'block_size must be an integer from 1 to {MAX_CELLS} (cells), '
                         f'got {block_size!r}')
    return int(block_size)


def _block_counts(grid, block_size):
    across = -(-grid.width // block_size)
    down = -(-grid.height // block_size)
    if across * down > MAX_BLOCKS:
        raise ValueError(f'block_size {block_size} cuts the {grid.width} x {grid.height} grid '
                         f'into {across * down} blocks, more than {MAX_BLOCKS}')
    return across, down


def _region(grid, window, window_size):
    """(col0, row0 from the bottom, cols, rows): the window and its window-fill halo, clipped
    to the grid, in grid cells."""
    col_off, row_off, width, height = window
    bottom = grid.height - (row_off + height)
    col0, row0 = max(col_off - window_size, 0), max(bottom - window_size, 0)
    return (col0, row0, min(grid.width, col_off + width + window_size) - col0,
            min(grid.height, grid.height - row_off + window_size) - row0)


def _workspace(plan, grid, window, settings):
    """Workspace for the region of a window, or of any block of side ``window`` (an int)."""
    if isinstance(window, int):
        halo = 2 * settings.window_size
        cols, rows = min(grid.width, window + halo), min(grid.height, window + halo)
    else:
        _, _, cols, rows = _region(grid, window, settings.window_size)
    reach = (len(plan.column_reach) - 1) // 2
    return np.empty(_raster.workspace_size(plan.stats, cols, rows, reach), np.float64)


def _run_window(x, y, values, index, grid, window, settings, plan, workspace, out, out_row0,
                out_col0):
    col_off, row_off, width, height = window
    col0, row0, cols, rows = _region(grid, window, settings.window_size)
    _raster.rasterize_window(
        x, y, values, index if index is not None else np.empty(0, np.int64),
        index is not None, grid.resolution, grid.base_x, grid.base_y, grid.offset_x,
        grid.offset_y, grid.width, grid.height, col_off, row_off, width, height, col0, row0,
        cols, rows, plan.stats, settings.binmode, plan.d2_threshold, settings.power,
        settings.window_size, plan.column_reach, plan.own_cell_inside, workspace, out,
        out_row0, out_col0, plan.band_of)


def _as_bands(out, settings):
    return {name: out[band] for band, name in enumerate(settings.output_types)}


def rasterize(x, y, values, grid, settings=RasterSettings(), threads=0, *,
              block_size=DEFAULT_BLOCK_SIZE) -> dict:
    """The statistics of ``settings`` over the whole ``grid`` (module docstring: semantics).

    x, y: 1-D point coordinates (CRS units, finite), values: the value of each point (e.g. z
    or intensity; NaN allowed), float64-convertible, equal lengths, any order: the order is
    the accumulation order. threads: blocks computed at once, 0 = all cores. block_size: cells
    per block side (speed only).
    Returns ``{name: float64 array (height, width)}`` for ``settings.output_types``, rows
    top-down: NaN for empty (and unfilled) cells, 0 in count. Bit-identical for any threads
    and block_size. Raises ValueError saying what is wrong for any bad argument.
    """
    grid, settings = _checked_grid(grid), _checked_settings(settings)
    threads = (checked_threads(threads) or _raster.default_threads())
    block_size = _checked_block_size(block_size)
    windows = blocks(grid, block_size)
    x, y, values = _checked_points(x, y, values, check_finite=len(windows) == 1)
    plan = _plan(grid, settings)
    out = np.empty((len(settings.output_types), grid.height, grid.width), np.float64)
    if len(windows) == 1:
        _run_window(x, y, values, None, grid, windows[0], settings, plan,
                    _workspace(plan, grid, windows[0], settings), out, 0, 0)
        return _as_bands(out, settings)
    order, starts = _bucket(x, y, grid, block_size, settings.point_margin(grid.resolution),
                            threads)
    per_thread = threading.local()  # one workspace per thread, for all its blocks

    def run(b):
        window = windows[b]
        if getattr(per_thread, 'workspace', None) is None:
            per_thread.workspace = _workspace(plan, grid, block_size, settings)
        _run_window(x, y, values, order[starts[b]:starts[b + 1]], grid, window, settings,
                    plan, per_thread.workspace, out, window[1], window[0])

    if threads == 1:
        for b in range(len(windows)):
            run(b)
    else:
        with ThreadPoolExecutor(min(threads, len(windows))) as pool:
            for _ in pool.map(run, range(len(windows))):
                pass
    return _as_bands(out, settings)


def _checked_index(index, count):
    array = np.asarray(index)
    if array.dtype.kind not in 'iu' or array.ndim != 1:
        raise ValueError(f'index must be a 1-D integer array (positions in x, y, values), '
                         f'got dtype {array.dtype}, shape {array.shape}')
    if array.size and (int(array.min()) < 0 or int(array.max()) >= count):
        raise ValueError(f'index must hold positions from 0 to {count - 1} (the points), '
                         f'got {int(array.min())}..{int(array.max())}')
    return np.ascontiguousarray(array, dtype=np.int64)


def rasterize_window(x, y, values, grid, window, settings=RasterSettings(), *,
                     index=None) -> dict:
    """The statistics of one window of ``grid``: ``window = (col_off, row_off, width, height)``
    in array cells (row_off from the top, like rasterio.windows.Window, which is accepted too).

    x, y, values as in :func:`rasterize`; they must hold at least every point within
    ``settings.point_margin(grid.resolution)`` of the window's cells (more points change
    nothing). index: optional 1-D integer positions into x, y, values: then only the points
    ``x[index]`` count, in the order of ``index`` (e.g. a block of :func:`bucket_points`, with
    no copy of its points). Window fill takes its donors from a halo of window_size cells
    around the window (clipped to the grid), computed here. Returns ``{name: float64 array
    (height, width)}``, bit-identical to the same cells of :func:`rasterize` on the whole cloud
    when the points come in the same relative order. The GIL is released for the whole
    computation; memory is O(window cells + halo), never O(grid cells).
    """
    x, y, values = _checked_points(x, y, values, check_finite=index is None)
    grid, settings = _checked_grid(grid), _checked_settings(settings)
    window = _checked_window(window, grid)
    if index is not None:
        index = _checked_index(index, len(x))
        _raise_non_finite(x, y, index)
    plan = _plan(grid, settings)
    out = np.empty((len(settings.output_types), window[3], window[2]), np.float64)
    _run_window(x, y, values, index, grid, window, settings, plan,
                _workspace(plan, grid, window, settings), out, 0, 0)
    return _as_bands(out, settings)


def blocks(grid, block_size):
    """The grid cut into blocks of block_size x block_size cells, row-major from the top-left
    (the last row and column of blocks may be partial): windows (col_off, row_off, width,
    height); block b = block_row * blocks_across + block_col."""
    grid = _checked_grid(grid)
    block_size = _checked_block_size(block_size)
    across, down = _block_counts(grid, block_size)
    return [(bc * block_size, br * block_size, min(block_size, grid.width - bc * block_size),
             min(block_size, grid.height - br * block_size))
            for br in range(down) for bc in range(across)]


def _bucket(x, y, grid, block_size, margin, threads):
    across, down = _block_counts(grid, block_size)
    n_blocks = across * down
    chunks = max(1, min(threads, len(x) // 65536, (1 << 25) // n_blocks))
    counts = np.zeros((chunks, n_blocks), np.int64)
    codes = np.empty(len(x), np.int32)  # each point's block, for pass 2
    arguments = (grid.resolution, grid.base_x, grid.base_y, grid.offset_x, grid.offset_y,
                 grid.width, grid.height, block_size, margin / grid.resolution, across, down)
    non_finite = np.full(chunks, -1, np.int64)  # stays -1 without points
    _raster.bucket_count(x, y, *arguments, counts, codes, non_finite)
    if (non_finite >= 0).any():
        _raise_non_finite(x, y, int(non_finite[non_finite >= 0].min()))
    per_block = counts.sum(axis=0)
    starts = np.zeros(n_blocks + 1, np.int64)
    np.cumsum(per_block, out=starts[1:])
    # chunk t starts, in block b, after chunks 0..t-1 of block b
    positions = np.ascontiguousarray(starts[:-1] + np.cumsum(counts, axis=0) - counts)
    order = np.empty(int(starts[-1]), np.int64)
    _raster.bucket_fill(x, y, *arguments, codes, positions, order)
    return order, starts


def bucket_points(x, y, grid, block_size, margin, threads=0):
    """Points per block of :func:`blocks` (grid, block_size): ``(order, starts)`` int64 with
    ``len(starts) == n_blocks + 1``; the points of block b are
    ``x[order[starts[b]:starts[b + 1]]]``, in increasing index (input order). They are every
    point whose (x, y) lies within ``margin`` (CRS units, >= 0; Chebyshev, so a few more than
    the Euclidean margin) of the block's cell rectangle, plus possibly points a rounding slack
    farther; a point near block edges is in several blocks, a point whose margin rectangle
    misses the grid in none. GIL-free two-pass counting sort, ``threads`` chunks in parallel.
    """
    x, y = _checked_array(x, 'x'), _checked_array(y, 'y')
    if len(x) != len(y):
        raise ValueError(f'x and y must have the same length, got {len(x)} and {len(y)}')
    grid = _checked_grid(grid)
    block_size = _checked_block_size(block_size)
    if (not _is_number(margin) or not math.isfinite(margin) or margin < 0
            or margin / grid.resolution > MAX_LATTICE_INDEX):
        raise ValueError(f'margin must be a finite number >= 0 (CRS units), got {margin!r}')
    threads = (checked_threads(threads) or _raster.default_threads())
    return _bucket(x, y, grid, block_size, float(margin), threads)


def fill_nodata(array, empty, window_size, threads=0) -> np.ndarray:
    """PDAL's window fill on a 2-D raster (rows top-down): every cell where ``empty`` is True
    gets ``sum(v / d) / sum(1 / d)`` over the non-empty cells of the (2N+1)^2 window around it
    clipped to the array (N = window_size >= 1, cells), ``d = max(|dr|, |dc|)``, summed in the
    rasteriser's donor order (column outer, row from the bottom inner); filled cells are never
    donors; no donor gives NaN. Non-empty cells are copied unchanged (NaN donors propagate).

    array: 2-D, float64-convertible. empty: boolean, the same shape. threads: 0 = all cores.
    Returns a new float64 array; ``rasterize(..., window_size=N)`` equals this applied to the
    unfilled bands with ``empty = count == 0``, bit for bit.
    """
    values = np.asarray(array)
    if values.dtype.kind not in 'iuf':
        raise ValueError(f'array must be real numbers (float64-convertible), '
                         f'got dtype {values.dtype}')
    if values.ndim != 2:
        raise ValueError(f'array must be 2-D (rows, columns), got shape {values.shape}')
    values = values.astype(np.float64, copy=False)
    mask = np.asarray(empty)
    if mask.dtype != np.bool_:
        raise ValueError(f'empty must be a boolean array, got dtype {mask.dtype}')
    if mask.shape != values.shape:
        raise ValueError(f'empty must have the shape of array {values.shape}, '
                         f'got {mask.shape}')
    if not _is_integer(window_size) or not 1 <= window_size <= MAX_WINDOW_SIZE:
        raise ValueError(f'window_size must be an integer from 1 to {MAX_WINDOW_SIZE} (cells), '
                         f'got {window_size!r}')
    threads = (checked_threads(threads) or _raster.default_threads())
    if not values.flags.aligned:
        values = values.copy()
    out = np.empty(values.shape, np.float64)
    if values.size:
        _raster.fill_nodata(values, mask.view(np.uint8), int(window_size), out, threads)
    return out
