"""Out-of-core square XY tiles of a LAS/LAZ file, each processed with a halo of its neighbours.

For computations where a point's result depends on the points near it (normals, rasters): files of
any size are cut into tiles that fit in memory, and the result of every point is identical to a
computation on the whole cloud at once.

Pass 1 (:func:`spill_las`) streams the file with laspy in chunks and appends every point, as a
:data:`TILE_RECORD` (its index in the file, int64, and its raw LAS integer coordinates X, Y, Z,
int32), to the binary file of the XY tile that holds it, in a temporary directory
(:class:`TileDirectory`); with a :class:`PointsFile` it also keeps the whole point records there,
uncompressed and in file order, so that a later pass reads them back instead of decompressing
a LAZ file again (point count x record size bytes of temporary disk). Coordinates: the LAS integers; metres (LAS scaled coordinates, the
file's CRS units) are ``X * scale + offset``, computed exactly as laspy does
(:meth:`TileSet.scaled`). Tiles are the cells of a grid of square tiles (side from a target number
of points per tile, or given) anchored at the header's minimum; the outer row and column of tiles
are unbounded outwards, so a point outside stale header bounds still has a tile. A tile with more
points than the limit is split (quadtree at the median of a sample) until it fits, unless all its
points share one XY position.

A tile is processed (:func:`compute_with_halo`) with its halo: the points of the other tiles within
a margin around it (an XY prism). The computation reports per core point its reach: the 3-D
distance within which its result looks at other points (for normals, the farthest neighbour used).
A result is exact when the reach is smaller than the XY distance from the point to the edge of the
prism (a 3-D ball lies inside an XY prism iff its XY disc does; a side beyond the data bounds is
infinitely far). The few points that fail are redone with a square halo of their own sized from
their reach ("halo re-queries"), which always suffices because a point's reach in a subset of the
cloud is an upper bound of its reach in the whole cloud; a reach that is not finite (too few points
nearby) doubles the square until it holds the whole cloud.

Per-point results go to :class:`ResultsFile`, a raw on-disk array indexed by the point's position
in the file, written by runs of consecutive positions (pwrite: safe from threads, processes and
Dask workers on one machine).

Memory: the spill keeps at most ``buffer_bytes`` of records in memory; a tile task holds its tile,
its halo and one neighbouring tile file at a time; nothing grows with the file.

After ``kill -9`` the temporary directory stays; :func:`remove_stale_tile_directories` (run by the
next run into the same directory) removes the ones of dead processes of this host, and the
files they list as their own.
"""
import dataclasses
from dataclasses import dataclass
import functools
import math
import os
from pathlib import Path
import shutil
import tempfile

import numpy as np

from pointcloud_pipeline.files import host_label, owner_label, process_alive

TILE_RECORD = np.dtype([('index', '<i8'), ('X', '<i4'), ('Y', '<i4'), ('Z', '<i4')])
UNBOUNDED = 1 << 62  # a tile side at +-UNBOUNDED is open (the outer tiles of the grid)
MAX_GRID_TILES = 1 << 16  # a grid of more tiles is coarsened (tiny --tile-size, big area)
SPLIT_SAMPLE = 65536  # records sampled to place the split lines of an overfull tile
OWNED_FILES = 'owned_files'  # in a tile directory: paths it owns (removed with it when stale)


class TilingError(OSError):
    """The temporary tiles could not be written or read (disk full, file size limit, ...)."""


# --- temporary directories ----------------------------------------------------------------------

def _directory_prefix(label):
    return f'.{label}-tiles.'


class TileDirectory:
    """A temporary directory ``PARENT/.LABEL-tiles.HOST.PID-START.XXXXXXXX`` removed on exit
    (also on an exception); the name lets a later run tell that its owner died
    (:func:`remove_stale_tile_directories`). ``own(path)`` records a file outside it (e.g. the
    partial output being written) to be removed with it if its owner is killed."""

    def __init__(self, parent, label):
        self.parent = Path(parent)
        self.label = label
        self.path = None

    def __enter__(self):
        owner = owner_label() + '.'
        self.path = Path(tempfile.mkdtemp(prefix=_directory_prefix(self.label) + owner,
                                          dir=self.parent))
        return self

    def own(self, path):
        with open(self.path / OWNED_FILES, 'a') as owned:
            owned.write(os.path.abspath(path) + '\n')

    def __exit__(self, *exc_info):
        shutil.rmtree(self.path, ignore_errors=True)


def remove_stale_tile_directories(parent, label):
    """Remove the tile directories in ``parent`` left by killed processes of this host (their
    process is gone, or another process has its pid) and the files they owned; returns their
    paths. Directories of other hosts and of live processes are left alone."""
    removed = []
    prefix = _directory_prefix(label) + host_label() + '.'
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        pid_text, _, start_text = entry.name[len(prefix):].partition('.')[0].partition('-')
        try:
            pid, start = int(pid_text), int(start_text)
        except ValueError:
            continue
        if process_alive(pid, start):
            continue
        _remove_owned_files(Path(entry.path), Path(parent))
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def _remove_owned_files(directory, parent):
    """Remove the files listed in ``directory``'s OWNED_FILES that lie in ``parent`` (never
    anything elsewhere, whatever the list says)."""
    try:
        owned = (directory / OWNED_FILES).read_text().splitlines()
    except OSError:
        return
    for path in owned:
        path = Path(path)
        if path.parent == parent.resolve() or path.parent == parent.absolute():
            try:
                path.unlink()
            except OSError:
                pass


# --- tiles --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    """A tile: points with ``x_lo <= X < x_hi`` and ``y_lo <= Y < y_hi`` (LAS integers; a side at
    +-UNBOUNDED is open) in file ``<name>.bin`` of its TileSet's directory."""

    name: str
    x_lo: int
    x_hi: int
    y_lo: int
    y_hi: int
    count: int

    def overlaps(self, x_lo, x_hi, y_lo, y_hi):
        """Whether the tile meets the half-open rectangle [x_lo, x_hi) x [y_lo, y_hi)."""
        return self.x_lo < x_hi and x_lo < self.x_hi and self.y_lo < y_hi and y_lo < self.y_hi


@dataclass(frozen=True)
class TileSet:
    """The tiles of one file (picklable: handed to tile tasks).

    ``scales``/``offsets``: the LAS header's (metres per unit, metres); ``bounds``: the actual
    raw integer (X min, X max, Y min, Y max, Z min, Z max) of the points; ``point_count``: points
    in the file; ``grid``: the pass-1 grid (a split tile lies in its parent's cell);
    ``tile_size``: the grid's side in metres (split tiles are smaller).
    """

    directory: str
    scales: tuple
    offsets: tuple
    bounds: tuple
    point_count: int
    grid: 'Grid'
    tile_size: float
    tiles: tuple

    @functools.cached_property
    def _tiles_by_cell(self):
        cells = {}
        for tile in self.tiles:
            cells.setdefault(_grid_cell(tile.name), []).append(tile)
        return cells

    def path(self, tile):
        return os.path.join(self.directory, tile.name + '.bin')

    def read(self, tile, start=0, count=-1):
        """Records ``start:start + count`` of a tile (all when count < 0); TilingError when its
        file is shorter than it should be."""
        try:
            records = np.fromfile(self.path(tile), TILE_RECORD, count=count,
                                  offset=start * TILE_RECORD.itemsize)
        except OSError as error:
            raise TilingError(error.errno,
                              f'reading tile {tile.name}: {error.strerror}') from error
        expected = tile.count - start if count < 0 else min(count, tile.count - start)
        if len(records) != expected:
            raise TilingError(f'tile {tile.name} holds {len(records)} records, not {expected}')
        return records

    def scaled(self, records):
        """N x 3 float64 metres (LAS scaled coordinates) of records: ``X * scale + offset``, as
        laspy computes them (int32 * float64 + float64)."""
        xyz = np.empty((len(records), 3))
        for axis, name in enumerate('XYZ'):
            xyz[:, axis] = records[name] * self.scales[axis] + self.offsets[axis]
        return xyz

    def overlapping(self, x_lo, x_hi, y_lo, y_hi, exclude=None):
        """The tiles with points that meet the rectangle, except ``exclude``."""
        (i_lo, j_lo), (i_hi, j_hi) = self.grid.cell_of(x_lo, y_lo), self.grid.cell_of(x_hi - 1,
                                                                                      y_hi - 1)
        found = []
        for j in range(j_lo, j_hi + 1):
            for i in range(i_lo, i_hi + 1):
                found += [tile for tile in self._tiles_by_cell.get((j, i), ())
                          if tile.count and tile != exclude
                          and tile.overlaps(x_lo, x_hi, y_lo, y_hi)]
        return found

    def halo_rectangle(self, tile, margin):
        """The tile expanded by ``margin`` (raw units per axis, (mx, my)); open sides stay open."""
        mx, my = margin
        return (_expand(tile.x_lo, -mx), _expand(tile.x_hi, mx),
                _expand(tile.y_lo, -my), _expand(tile.y_hi, my))

    def region(self, rectangle, exclude=None):
        """The records of the tiles other than ``exclude`` inside the half-open ``rectangle``
        (x_lo, x_hi, y_lo, y_hi), one tile file at a time."""
        x_lo, x_hi, y_lo, y_hi = rectangle
        parts = []
        for tile in self.overlapping(x_lo, x_hi, y_lo, y_hi, exclude):
            records = self.read(tile)
            inside = ((records['X'] >= x_lo) & (records['X'] < x_hi)
                      & (records['Y'] >= y_lo) & (records['Y'] < y_hi))
            parts.append(records[inside])
        return np.concatenate(parts) if parts else np.empty(0, TILE_RECORD)

    def edge_distance(self, records, rectangle):
        """Per record, the XY distance (metres) from the point to the edge of the half-open
        ``rectangle``: a point outside it is at least this far; inf for a rectangle that holds
        the whole cloud's XY extent. (One raw unit is added to the inner side, which makes it
        conservative: a point not inside has X <= x_lo - 1 or X >= x_hi.)"""
        x_lo, x_hi, y_lo, y_hi = rectangle
        min_x, max_x, min_y, max_y = self.bounds[:4]
        sx, sy = abs(self.scales[0]), abs(self.scales[1])
        distance = np.full(len(records), np.inf)
        X, Y = records['X'].astype(np.int64), records['Y'].astype(np.int64)
        if x_lo > min_x:
            np.minimum(distance, (X - x_lo + 1) * sx, out=distance)
        if x_hi <= max_x:
            np.minimum(distance, (x_hi - X) * sx, out=distance)
        if y_lo > min_y:
            np.minimum(distance, (Y - y_lo + 1) * sy, out=distance)
        if y_hi <= max_y:
            np.minimum(distance, (y_hi - Y) * sy, out=distance)
        return distance

    def raw_margin(self, metres):
        """(mx, my) raw units covering ``metres`` along X and Y (at least one unit)."""
        return tuple(max(1, math.ceil(metres / abs(scale))) for scale in self.scales[:2])

    @property
    def slack(self):
        """Metres kept between a reach and an edge distance: half a raw unit, far above the
        rounding of scaled coordinates, so the check is safe whatever the kernel rounds."""
        return 0.5 * min(abs(self.scales[0]), abs(self.scales[1]))


def _grid_cell(name):
    """(j, i) of the pass-1 grid cell of a tile named t<j>_<i>[split letters]."""
    j, _, i = name[1:].rstrip('abcd').partition('_')
    return int(j), int(i)


def _expand(side, by):
    return side if abs(side) >= UNBOUNDED else side + by


def tie_break_order(records):
    """The permutation that sorts records into a fixed total order of the points: by a hash
    (splitmix64) of their raw X, Y, Z, then by their index in the file. A computation that
    breaks ties between equal distances by position in this order (e.g. ids = ranks in it)
    gets the same result for a point in any tile, halo and file order: two points are ordered
    alike wherever they meet, and the index only orders exact duplicates (interchangeable:
    same coordinates) and hash collisions (about N^2 / 2^64 pairs)."""
    return np.lexsort((records['index'], coordinate_hash(records)))


def coordinate_hash(records):
    """uint64 hash of each record's raw (X, Y, Z)."""
    x = records['X'].astype(np.uint32).astype(np.uint64)
    y = records['Y'].astype(np.uint32).astype(np.uint64)
    z = records['Z'].astype(np.uint32).astype(np.uint64)
    return _splitmix64(_splitmix64(x | (y << np.uint64(32))) ^ z)


def _splitmix64(value):
    value = value + np.uint64(0x9E3779B97F4A7C15)
    value = (value ^ (value >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    value = (value ^ (value >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return value ^ (value >> np.uint64(31))


# --- pass 1: spilling ---------------------------------------------------------------------------

class _TileWriter:
    """Per-tile record buffers, appended to the tile files when ``buffer_bytes`` are held."""

    def __init__(self, directory, buffer_bytes):
        self.directory = directory
        self.buffer_bytes = buffer_bytes
        self.buffers = {}
        self.held = 0
        self.counts = {}

    def add(self, name, records):
        self.buffers.setdefault(name, []).append(records)
        self.counts[name] = self.counts.get(name, 0) + len(records)
        self.held += records.nbytes
        if self.held >= self.buffer_bytes:
            self.flush()

    def flush(self):
        for name, parts in self.buffers.items():
            path = os.path.join(self.directory, name + '.bin')
            try:
                with open(path, 'ab') as file:
                    for part in parts:
                        file.write(part.data)
            except OSError as error:
                raise TilingError(error.errno, f'writing temporary tiles in {self.directory}: '
                                               f'{error.strerror}') from error
        self.buffers.clear()
        self.held = 0


@dataclass(frozen=True)
class Grid:
    """The tile grid of pass 1: ``nx`` x ``ny`` squares of ``size`` raw units (X, Y) from
    (x0, y0); the outer tiles are unbounded outwards."""

    x0: int
    y0: int
    size: tuple
    nx: int
    ny: int

    def cell_of(self, x, y):
        """(i, j) of the cell holding the raw point (x, y) (Python ints, clipped to the grid)."""
        i = min(max((x - self.x0) // self.size[0], 0), self.nx - 1)
        j = min(max((y - self.y0) // self.size[1], 0), self.ny - 1)
        return int(i), int(j)

    def tile_of(self, X, Y):
        """Flat tile number (row-major, j * nx + i) of each raw coordinate pair."""
        i = np.clip((X.astype(np.int64) - self.x0) // self.size[0], 0, self.nx - 1)
        j = np.clip((Y.astype(np.int64) - self.y0) // self.size[1], 0, self.ny - 1)
        return j * self.nx + i

    def tile(self, number, count):
        j, i = divmod(number, self.nx)
        x_lo = -UNBOUNDED if i == 0 else self.x0 + i * self.size[0]
        x_hi = UNBOUNDED if i == self.nx - 1 else self.x0 + (i + 1) * self.size[0]
        y_lo = -UNBOUNDED if j == 0 else self.y0 + j * self.size[1]
        y_hi = UNBOUNDED if j == self.ny - 1 else self.y0 + (j + 1) * self.size[1]
        return Tile(f't{j}_{i}', x_lo, x_hi, y_lo, y_hi, count)


def plan_grid(header, target_points, tile_size=None):
    """The pass-1 grid of a laspy header: square tiles of ``tile_size`` metres, else of the side
    that puts about ``target_points`` points in a tile of the header's XY bounds (uniform
    density assumed; overfull tiles are split later). Returns (Grid, side in metres)."""
    scales, offsets = header.scales, header.offsets
    raw_min = [int(round((header.mins[a] - offsets[a]) / scales[a])) for a in range(2)]
    raw_max = [int(round((header.maxs[a] - offsets[a]) / scales[a])) for a in range(2)]
    lows = [min(lo, hi) for lo, hi in zip(raw_min, raw_max)]
    spans = [abs(hi - lo) + 1 for lo, hi in zip(raw_min, raw_max)]
    extent = [span * abs(scale) for span, scale in zip(spans, scales[:2])]  # metres
    if tile_size is None:
        area = max(extent[0] * extent[1], 1e-300)
        tiles = max(1.0, header.point_count / max(1, target_points))
        tile_size = math.sqrt(area / tiles)
    while True:
        size = tuple(max(1, math.ceil(tile_size / abs(scale))) for scale in scales[:2])
        nx, ny = (max(1, math.ceil(span / side)) for span, side in zip(spans, size))
        if nx * ny <= MAX_GRID_TILES:
            return Grid(lows[0], lows[1], size, nx, ny), tile_size
        tile_size *= 2


def spill_las(reader, directory, grid, chunk_points, buffer_bytes, should_stop=None,
              progress=None, points_file=None):
    """Pass 1: append every point of the open laspy ``reader`` to its tile's file in
    ``directory``; returns (tiles with points, raw bounds (X min, X max, Y min, Y max, Z min,
    Z max)). ``progress(n)`` is called per chunk; reading stops with InterruptedError once
    ``should_stop()``. Raises EOFError when the file holds fewer points than its header says.
    With a :class:`PointsFile`, the points' whole records are also appended to it, in file
    order (a later pass reads them from there instead of decompressing the file again)."""
    if points_file is None:
        return _spill_las(reader, directory, grid, chunk_points, buffer_bytes, should_stop,
                          progress, None)
    with points_file.appending() as append:
        return _spill_las(reader, directory, grid, chunk_points, buffer_bytes, should_stop,
                          progress, append)


def _spill_las(reader, directory, grid, chunk_points, buffer_bytes, should_stop, progress,
               append_points):
    writer = _TileWriter(directory, buffer_bytes)
    expected = reader.header.point_count
    low = np.full(3, np.iinfo(np.int64).max)
    high = np.full(3, np.iinfo(np.int64).min)
    start = 0
    while start < expected:
        if should_stop is not None and should_stop():
            raise InterruptedError('interrupted')
        wanted = min(chunk_points, expected - start)
        chunk = reader.read_points(wanted)
        if len(chunk) < wanted:
            raise EOFError(f'holds {start + len(chunk)} of the {expected} points its header '
                           'says (truncated?)')
        records = np.empty(len(chunk), TILE_RECORD)
        records['index'] = np.arange(start, start + len(chunk))
        for axis, name in enumerate('XYZ'):
            values = chunk.array[name]
            records[name] = values
            low[axis] = min(low[axis], values.min())
            high[axis] = max(high[axis], values.max())
        if append_points is not None:
            append_points(chunk.array)
        del chunk
        numbers = grid.tile_of(records['X'], records['Y'])
        order = np.argsort(numbers, kind='stable')
        numbers, records = numbers[order], records[order]
        cuts = np.flatnonzero(np.diff(numbers)) + 1
        for begin, end in zip(np.r_[0, cuts], np.r_[cuts, len(numbers)]):
            writer.add(grid.tile(int(numbers[begin]), 0).name, records[begin:end])
        start += len(records)
        if progress is not None:
            progress(len(records))
    writer.flush()
    tiles = []
    for name, count in sorted(writer.counts.items()):
        j, i = (int(part) for part in name[1:].split('_'))
        tiles.append(grid.tile(j * grid.nx + i, count))
    bounds = (int(low[0]), int(high[0]), int(low[1]), int(high[1]), int(low[2]), int(high[2]))
    return tiles, bounds


def split_overfull(tileset, max_points, chunk_points, buffer_bytes):
    """Split the tiles of more than ``max_points`` points into four (at the median X and Y of a
    sample of their points; in two when all share one X or one Y) until they fit or all their
    points share one XY; returns the new TileSet. Reads and writes ``chunk_points`` at a
    time."""
    done, waiting = [], list(tileset.tiles)
    while waiting:
        tile = waiting.pop()
        if tile.count <= max_points:
            done.append(tile)
            continue
        children = _split_tile(tileset, tile, chunk_points, buffer_bytes)
        if children is None:  # one XY position: cannot be split
            done.append(tile)
            continue
        os.unlink(tileset.path(tile))
        waiting.extend(children)
    done.sort(key=lambda t: t.name)
    return dataclasses.replace(tileset, tiles=tuple(done))


def _split_tile(tileset, tile, chunk_points, buffer_bytes):
    step = max(1, tile.count // SPLIT_SAMPLE)
    sample_x, sample_y = [], []
    x_range = [np.iinfo(np.int64).max, np.iinfo(np.int64).min]
    y_range = list(x_range)
    for start in range(0, tile.count, chunk_points):
        records = tileset.read(tile, start, chunk_points)
        sample_x.append(records['X'][(-start) % step::step])
        sample_y.append(records['Y'][(-start) % step::step])
        x_range = [min(x_range[0], records['X'].min()), max(x_range[1], records['X'].max())]
        y_range = [min(y_range[0], records['Y'].min()), max(y_range[1], records['Y'].max())]
    cut_x = _cut(np.concatenate(sample_x), *x_range)
    cut_y = _cut(np.concatenate(sample_y), *y_range)
    if cut_x is None and cut_y is None:
        return None
    xs = [(tile.x_lo, tile.x_hi)] if cut_x is None else [(tile.x_lo, cut_x), (cut_x, tile.x_hi)]
    ys = [(tile.y_lo, tile.y_hi)] if cut_y is None else [(tile.y_lo, cut_y), (cut_y, tile.y_hi)]
    names = [f'{tile.name}{"abcd"[n]}' for n in range(len(xs) * len(ys))]
    writer = _TileWriter(tileset.directory, buffer_bytes)
    for start in range(0, tile.count, chunk_points):
        records = tileset.read(tile, start, chunk_points)
        column = (records['X'] >= cut_x) if cut_x is not None else np.zeros(len(records), bool)
        row = (records['Y'] >= cut_y) if cut_y is not None else np.zeros(len(records), bool)
        child = row.astype(np.int64) * len(xs) + column
        for number, name in enumerate(names):
            part = records[child == number]
            if len(part):
                writer.add(name, part)
    writer.flush()
    children = []
    for number, name in enumerate(names):
        (x_lo, x_hi), (y_lo, y_hi) = xs[number % len(xs)], ys[number // len(xs)]
        count = writer.counts.get(name, 0)
        if count:
            children.append(Tile(name, x_lo, x_hi, y_lo, y_hi, count))
    return children


def _cut(sample, low, high):
    """A split line in (low, high] near the sample's median (None when low == high): points with
    a coordinate >= the line go to the upper child; both children get points."""
    if low == high:
        return None
    return int(min(max(int(np.median(sample)) + 1, low + 1), high))


# --- one tile with its halo ---------------------------------------------------------------------

def compute_with_halo(tileset, tile, margin, compute):
    """Results of a tile's points, exact as if computed on the whole cloud.

    ``margin``: metres of halo around the tile. ``compute(records, core_count)`` computes the
    results of the first ``core_count`` records from all of them and returns (values: core_count
    x M float64, reach: core_count float64, metres, 3-D: the distance within which a point's
    result depends on other points; non-finite: not enough points). Returns (file indices of
    the tile's points, values, halo re-queries: the points that were redone with a larger halo).
    """
    core = tileset.read(tile)
    rectangle = tileset.halo_rectangle(tile, tileset.raw_margin(margin))
    records = np.concatenate([core, tileset.region(rectangle, exclude=tile)])
    values, reach = compute(records, len(core))
    failing = np.flatnonzero(~_exact(reach, tileset.edge_distance(core, rectangle), tileset))
    requeries = len(failing)
    widths = np.where(np.isfinite(reach[failing]), reach[failing], 2.0 * margin)
    while len(failing):
        redone, redone_reach, widths = _requery(tileset, tile, core, failing, widths, compute)
        values[failing] = redone
        ok = _exact(redone_reach, _square_edge(tileset, core[failing], widths), tileset)
        failing, widths = failing[~ok], np.where(np.isfinite(redone_reach[~ok]),
                                                 redone_reach[~ok], 2.0 * widths[~ok])
    return core['index'], values, requeries


def _exact(reach, edge, tileset):
    """Whether results are exact: the reach stays inside the halo (with the slack), or the
    halo holds the whole cloud (edge distance inf)."""
    return (reach < edge - tileset.slack) | np.isinf(edge)


def _requery(tileset, tile, core, failing, widths, compute):
    """Redo the core points ``failing`` with squares of half-width >= ``widths`` (metres) around
    them, in classes of similar width (a few far outliers do not inflate the others' squares).
    Returns (values, reach, the half-widths used)."""
    values = np.empty((len(failing), 0))
    reach = np.empty(len(failing))
    used = np.empty(len(failing))
    classes = np.floor(np.log2(np.maximum(widths, 1e-300)))
    for width_class in np.unique(classes):
        members = np.flatnonzero(classes == width_class)
        half_width = float(widths[members].max()) + tileset.slack * 4
        points = core[failing[members]]
        region = _squares_region(tileset, tile, core, failing[members], half_width)
        class_values, reach[members] = compute(np.concatenate([points, region]), len(points))
        if values.shape[1] != class_values.shape[1]:
            values = np.empty((len(failing), class_values.shape[1]))
        values[members] = class_values
        used[members] = half_width
    return values, reach, used


def _squares_region(tileset, tile, core, members, half_width):
    """Records within the XY squares of ``half_width`` metres around core[members], the members
    themselves excluded."""
    from scipy.spatial import cKDTree  # only the rare re-queries need it
    points = core[members]
    mx, my = tileset.raw_margin(half_width)
    rectangle = (int(points['X'].min()) - mx, int(points['X'].max()) + mx + 1,
                 int(points['Y'].min()) - my, int(points['Y'].max()) + my + 1)
    # Chebyshev distance in units of the half-width, from a nearby origin (small quotients,
    # small rounding): inside a square iff <= 1
    x0, y0 = rectangle[0], rectangle[2]

    def unit_square_coordinates(records):
        return np.column_stack([(records['X'].astype(np.int64) - x0) / mx,
                                (records['Y'].astype(np.int64) - y0) / my])

    centres = cKDTree(unit_square_coordinates(points))
    parts = []
    for other in tileset.overlapping(*rectangle):
        records = tileset.read(other) if other != tile else np.delete(core, members)
        x_lo, x_hi, y_lo, y_hi = rectangle
        records = records[(records['X'] >= x_lo) & (records['X'] < x_hi)
                          & (records['Y'] >= y_lo) & (records['Y'] < y_hi)]
        if len(records):
            distance, _ = centres.query(unit_square_coordinates(records), p=np.inf,
                                        distance_upper_bound=1.0 + 1e-9)
            parts.append(records[np.isfinite(distance)])
    return np.concatenate(parts) if parts else np.empty(0, TILE_RECORD)


def _square_edge(tileset, points, half_widths):
    """XY distance (metres) from each point to the edge of its square (as loaded by
    _squares_region: raw half-widths ceil(w / scale)); inf where the square holds the whole
    cloud's XY extent."""
    min_x, max_x, min_y, max_y = tileset.bounds[:4]
    sx, sy = abs(tileset.scales[0]), abs(tileset.scales[1])
    mx = np.maximum(1, np.ceil(half_widths / sx))
    my = np.maximum(1, np.ceil(half_widths / sy))
    X, Y = points['X'].astype(np.float64), points['Y'].astype(np.float64)
    distance = np.minimum((mx + 1) * sx, (my + 1) * sy)
    whole = (X - mx <= min_x) & (X + mx >= max_x) & (Y - my <= min_y) & (Y + my >= max_y)
    return np.where(whole, np.inf, distance)


# --- whole point records -----------------------------------------------------------------------

class PointsFile:
    """The file's point records, uncompressed, in file order (the raw bytes laspy decoded, every
    dimension and extra byte as read): appended chunk by chunk by pass 1, read back by slices
    (``point_count`` x the record size bytes of temporary disk)."""

    def __init__(self, path):
        self.path = str(path)
        self.dtype = None  # the records' numpy dtype, from the first chunk appended
        self.count = 0

    def appending(self):
        """A context manager giving ``append(array)``; TilingError when a write fails."""
        return _PointsAppender(self)

    def read(self, start, count):
        """Records ``start:start + count`` (a structured array of the records' dtype)."""
        try:
            records = np.fromfile(self.path, self.dtype, count=count,
                                  offset=start * self.dtype.itemsize)
        except OSError as error:
            raise TilingError(error.errno, f'reading {self.path}: {error.strerror}') from error
        if len(records) != count:
            raise TilingError(f'{self.path} holds fewer than {start + count} points')
        return records


class _PointsAppender:
    def __init__(self, points_file):
        self.points_file = points_file
        self.file = None

    def _fail(self, error):
        directory = os.path.dirname(self.points_file.path)
        return TilingError(error.errno, f'writing temporary tiles in {directory}: '
                                        f'{error.strerror}')

    def __enter__(self):
        try:
            self.file = open(self.points_file.path, 'wb')
        except OSError as error:
            raise self._fail(error) from error
        return self.append

    def append(self, array):
        target = self.points_file
        if target.dtype is None:
            target.dtype = array.dtype
        elif array.dtype != target.dtype:
            raise ValueError(f'point records of {array.dtype}, not {target.dtype}')
        try:
            self.file.write(np.ascontiguousarray(array).data)
        except OSError as error:
            raise self._fail(error) from error
        target.count += len(array)

    def __exit__(self, kind, *exc_info):
        try:
            self.file.close()
        except OSError as error:
            if kind is None:
                raise self._fail(error) from error


# --- results ------------------------------------------------------------------------------------

class ResultsFile:
    """A raw on-disk ``point_count`` x ``columns`` array of ``dtype``, row i = the point at
    position i of the file; written by runs of consecutive positions (os.pwrite), read by
    slices. Picklable (path and shape): tile tasks in other processes open it themselves."""

    def __init__(self, path, point_count, columns, dtype):
        self.path = str(path)
        self.point_count = point_count
        self.columns = columns
        self.dtype = np.dtype(dtype)

    @property
    def row_bytes(self):
        return self.columns * self.dtype.itemsize

    def create(self):
        """Make the file, all rows NaN-free zeros (sparse: no disk blocks until written)."""
        try:
            with open(self.path, 'wb') as file:
                file.truncate(self.point_count * self.row_bytes)
        except OSError as error:
            raise TilingError(error.errno, f'creating {self.path}: {error.strerror}') from error
        return self

    def write(self, positions, values):
        """Store ``values`` (len(positions) x columns) at rows ``positions``."""
        order = np.argsort(positions, kind='stable')
        positions = positions[order]
        rows = np.ascontiguousarray(values[order], dtype=self.dtype)
        cuts = np.flatnonzero(np.diff(positions) != 1) + 1
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for begin, end in zip(np.r_[0, cuts], np.r_[cuts, len(positions)]):
                data = rows[begin:end].data.cast('B')
                offset = int(positions[begin]) * self.row_bytes
                while data:
                    written = os.pwrite(fd, data, offset)
                    data, offset = data[written:], offset + written
        except OSError as error:
            raise TilingError(error.errno, f'writing {self.path}: {error.strerror}') from error
        finally:
            os.close(fd)

    def read(self, start, count):
        """Rows ``start:start + count`` (count x columns)."""
        rows = np.fromfile(self.path, self.dtype, count=count * self.columns,
                           offset=start * self.row_bytes)
        if len(rows) != count * self.columns:
            raise TilingError(f'{self.path} is shorter than {self.point_count} rows')
        return rows.reshape(count, self.columns)


# --- records grouped by key ---------------------------------------------------------------------

class RecordBuckets:
    """Records of one structured ``dtype`` grouped by integer key, in the order they were added:
    held in memory up to ``memory_bytes`` in all, beyond that appended to one file per key in
    ``directory`` (``<prefix><key>.bin``), so memory stays bounded whatever the input's size.
    Used from one thread."""

    def __init__(self, dtype, directory, memory_bytes, prefix='bucket'):
        self.dtype = np.dtype(dtype)
        self.directory = str(directory)
        self.memory_bytes = memory_bytes
        self.prefix = prefix
        self.held = {}  # key -> list of arrays not yet on disk (newer than the file's records)
        self.held_bytes = 0
        self.on_disk = {}  # key -> records in the key's file
        self.spilled_bytes = 0

    def path(self, key):
        return os.path.join(self.directory, f'{self.prefix}{key}.bin')

    def add(self, key, records):
        if not len(records):
            return
        if records.dtype != self.dtype:
            raise ValueError(f'records of {records.dtype}, not {self.dtype}')
        self.held.setdefault(key, []).append(records)
        self.held_bytes += records.nbytes
        if self.held_bytes > self.memory_bytes:
            self.flush()

    def flush(self):
        """Append every record held in memory to its key's file."""
        for key, parts in self.held.items():
            try:
                with open(self.path(key), 'ab') as file:
                    for part in parts:
                        file.write(np.ascontiguousarray(part).data)
            except OSError as error:
                raise TilingError(error.errno, f'writing temporary records in '
                                               f'{self.directory}: {error.strerror}') from error
            count = sum(len(part) for part in parts)
            self.on_disk[key] = self.on_disk.get(key, 0) + count
            self.spilled_bytes += count * self.dtype.itemsize
        self.held.clear()
        self.held_bytes = 0

    def keys(self):
        return sorted(set(self.held) | set(self.on_disk))

    def count(self, key):
        return self.on_disk.get(key, 0) + sum(len(part) for part in self.held.get(key, ()))

    def read(self, key):
        """All records of ``key``, in the order added."""
        return _concatenate(list(self.chunks(key, None)), self.dtype)

    def chunks(self, key, chunk_records, consume=False):
        """The records of ``key`` in the order added, ``chunk_records`` at a time from its file
        (all at once when None), then the parts held in memory; ``consume``: forget the parts
        held in memory as they are handed out (frees their memory)."""
        on_disk = self.on_disk.get(key, 0)
        step = on_disk if chunk_records is None else chunk_records
        for start in range(0, on_disk, max(1, step)):
            count = min(step, on_disk - start)
            try:
                records = np.fromfile(self.path(key), self.dtype, count=count,
                                      offset=start * self.dtype.itemsize)
            except OSError as error:
                raise TilingError(error.errno, f'reading {self.path(key)}: '
                                               f'{error.strerror}') from error
            if len(records) != count:
                raise TilingError(f'{self.path(key)} holds fewer records than written')
            yield records
        parts = self.held.get(key, [])
        while parts:
            part = parts.pop(0) if consume else parts[0]
            if consume:
                self.held_bytes -= part.nbytes
            else:
                parts = parts[1:]
            yield part


def _concatenate(parts, dtype):
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype)
