"""Occupancy grids of point clouds: occupied / free / unknown ground cells, nav_msgs layout.

Frame and grid
    The grid of :mod:`pointcloud_pipeline.bev` (:class:`~pointcloud_pipeline.bev.BevGrid`):
    a z-up frame with x forward and y left, ``x_range`` x ``y_range`` metres in square cells of
    ``resolution`` metres, after the same optional rigid ``transform`` (e.g. a camera optical
    frame -> the body frame) and the same cell rule, bit for bit (float64 ``R @ p + t`` term by
    term, the height rounded to float32, ``floor((x - x_min) / resolution)`` with the
    reciprocal, half-open cells). The grid's ``z_range`` and ``intensity_range`` are not used:
    the heights that count are those of :class:`OccupancyBands`.

Layout (nav_msgs/OccupancyGrid)
    An int8 array of ``height x width`` cells, row-major, starting with cell (0, 0) at the
    grid's corner (x_min, y_min): ``width`` cells along x (``grid.rows``), ``height`` along y
    (``grid.cols``); a point at (x, y) is in column ``floor((x - x_min) / resolution)`` and row
    ``floor((y - y_min) / resolution)``, index ``row * width + col``. This is not the BEV
    image's top-down order (forward up): cell ``[row, col]`` here is the BEV image's pixel
    ``[rows - 1 - col, cols - 1 - row]`` (``bev[::-1, ::-1].transpose(1, 0, 2)``).

Cell values (``ground_z`` is the ground's z in the grid frame: 0 in a body frame at the ground)
    OCCUPIED (100): the cell holds a point with ``min_height <= z - ground_z <= max_height``
        (an obstacle the robot cannot pass).
    FREE (0): no such point, but one with ``|z - ground_z| <= ground_tolerance`` (ground seen).
    UNKNOWN (-1): neither: an empty cell, or one whose points are all outside both bands.
    So points outside both bands neither occupy nor free a cell: below the ground (a hole, a
    step down, a reflection), between ``ground_tolerance`` and ``min_height`` (low clutter the
    robot drives over), above ``max_height`` (a ceiling or an overhang it passes under). A
    cell with ground and such points is FREE; one with only such points is UNKNOWN. Points with
    a NaN or infinite coordinate and points outside the grid are skipped.

Speed: the computation releases the GIL, runs on ``threads`` cores (the caller and the worker
threads of ``_workers.h``; a late worker never stalls a call) and, with ``out``, allocates
nothing per call after the first (a per-thread 2-byte-per-cell workspace grows to the largest
grid seen). Any thread count gives the same bytes.
"""
from dataclasses import dataclass
import math
import operator
import threading

import numpy as np

from pointcloud_pipeline import _occupancy

from .bev import DEFAULT_GRID, BevGrid, kernel_transform
from .layouts import point_buffer, writable_bytes
from .threads import checked_threads

OCCUPIED = _occupancy.OCCUPIED
FREE = _occupancy.FREE
UNKNOWN = _occupancy.UNKNOWN


@dataclass(frozen=True)
class OccupancyBands:
    """Which heights make a cell occupied or free (metres, z up, relative to ``ground_z``).

    min_height, max_height: a point with ``min_height <= z - ground_z <= max_height`` occupies
        its cell (from the lowest obstacle that matters to the robot's height).
    ground_tolerance: a point with ``|z - ground_z| <= ground_tolerance`` is ground.
    ground_z: z of the ground in the grid's frame (0 in a body frame whose origin is on the
        ground; about -1.73 in KITTI's velodyne frame).
    Requires finite values with ``0 <= ground_tolerance < min_height <= max_height``, so the
    two bands never overlap.
    """

    min_height: float = 0.1
    max_height: float = 2.0
    ground_tolerance: float = 0.05
    ground_z: float = 0.0

    def __post_init__(self):
        for name in ('min_height', 'max_height', 'ground_tolerance', 'ground_z'):
            try:
                value = float(getattr(self, name))
            except (TypeError, ValueError):
                raise ValueError(f'{name} must be a number of metres, got '
                                 f'{getattr(self, name)!r}') from None
            if not math.isfinite(value):
                raise ValueError(f'{name} must be finite, got {value}')
            object.__setattr__(self, name, value)
        if self.ground_tolerance < 0:
            raise ValueError(f'ground_tolerance must be >= 0, got {self.ground_tolerance}')
        if not self.ground_tolerance < self.min_height:
            raise ValueError(f'ground_tolerance ({self.ground_tolerance}) must be smaller than '
                             f'min_height ({self.min_height}): the ground and obstacle bands '
                             f'would overlap')
        if not self.min_height <= self.max_height:
            raise ValueError(f'min_height ({self.min_height}) must be <= max_height '
                             f'({self.max_height})')

    @property
    def obstacle_z(self):
        """(low, high) z of the obstacle band in the grid frame, metres (inclusive)."""
        return self.ground_z + self.min_height, self.ground_z + self.max_height

    @property
    def ground_band_z(self):
        """(low, high) z of the ground band in the grid frame, metres (inclusive)."""
        return self.ground_z - self.ground_tolerance, self.ground_z + self.ground_tolerance


DEFAULT_BANDS = OccupancyBands()


def occupancy_shape(grid):
    """(height, width) of the occupancy grid of ``grid``: (cells along y, cells along x)."""
    return grid.cols, grid.rows


def occupancy_origin(grid, bands=DEFAULT_BANDS):
    """(x, y, z) metres of cell (0, 0)'s outer corner in the grid frame: (x_min, y_min,
    ground_z), the position of ``info.origin`` (its orientation is the identity)."""
    return grid.x_range[0], grid.y_range[0], bands.ground_z


_local = threading.local()


def _marks(cells):
    """This Python thread's ground + obstacle planes and spare byte, all zero (the kernel
    leaves them zero); grown, never shrunk."""
    marks = getattr(_local, 'marks', None)
    if marks is None or marks.size < 2 * cells + 1:
        marks = _local.marks = np.zeros(2 * cells + 1, np.uint8)
    return marks


def _check_out(out, shape):
    """The int8 output: a new array, or a ``height x width`` view of the caller's buffer."""
    if out is None:
        return np.empty(shape, np.int8)  # the kernel writes every cell
    if isinstance(out, np.ndarray) and out.dtype != np.int8:
        raise ValueError(f'out has dtype {out.dtype}, expected int8')
    if isinstance(out, np.ndarray) and out.shape != shape:
        raise ValueError(f'out has shape {out.shape}, expected {shape} (height, width) for '
                         f'this grid')
    data = writable_bytes(out, shape[0] * shape[1], exact=True, what='occupancy grid')
    return data.view(np.int8).reshape(shape)


def _classify(data, num_points, point_step, x_offset, y_offset, z_offset, grid, bands,
              transform, out, threads):
    if not isinstance(grid, BevGrid):
        raise ValueError(f'grid must be a BevGrid, got {type(grid).__name__}')
    if not isinstance(bands, OccupancyBands):
        raise ValueError(f'bands must be OccupancyBands, got {type(bands).__name__}')
    threads = checked_threads(threads) or _occupancy.default_threads()
    matrix = kernel_transform(transform)
    shape = occupancy_shape(grid)
    cells = _check_out(out, shape)
    obstacle_low, obstacle_high = bands.obstacle_z
    ground_low, ground_high = bands.ground_band_z
    _occupancy.classify(
        data, num_points, point_step, x_offset, y_offset, z_offset, matrix,
        grid.x_range[0], grid.y_range[0], 1.0 / grid.resolution, shape[1], shape[0],
        obstacle_low, obstacle_high, ground_low, ground_high,
        _marks(shape[0] * shape[1]), cells.reshape(-1), threads)
    return cells


def occupancy_grid(points, grid=DEFAULT_GRID, bands=DEFAULT_BANDS, *, transform=None,
                   out=None, threads=0):
    """Occupancy grid of an N x C float32 array whose first three columns are x, y, z (C >= 3;
    other columns, e.g. intensity, are ignored).

    points: metres in the grid's frame (x forward, y left, z up), or in the frame that
        ``transform`` maps from. A C-contiguous array is read in place; others are copied.
    grid: :class:`~pointcloud_pipeline.bev.BevGrid` (x_range, y_range, resolution are used).
    bands: :class:`OccupancyBands` (default: obstacles 0.1 to 2 m above the ground at z = 0,
        ground within 5 cm).
    transform: optional rigid 4x4 (float64) applied to x, y, z first; None or identity: none.
    out: optional writable buffer for the result: a C-contiguous ``height x width`` int8
        array, or an array('b') / bytearray / other buffer of exactly that many bytes.
    threads: kernel threads; 0 = all cores (OMP_NUM_THREADS if set). Same result for any value.

    Returns the ``height x width`` int8 grid (:data:`OCCUPIED`, :data:`FREE`, :data:`UNKNOWN`;
    row along y, column along x, see the module doc), a view of ``out`` when given.
    Raises ValueError for a wrong shape or dtype, a bad grid, bands, transform or ``out``.
    """
    if not isinstance(points, np.ndarray):
        raise ValueError(f'points must be a numpy array, got {type(points).__name__}')
    if points.dtype != np.float32:
        raise ValueError(f'points must be float32, got {points.dtype} '
                         f'(convert with points.astype(np.float32))')
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f'points must be N x C with C >= 3 (x, y, z first), got shape '
                         f'{points.shape}')
    data = np.ascontiguousarray(points).reshape(-1).view(np.uint8)
    return _classify(data, points.shape[0], 4 * points.shape[1], 0, 4, 8, grid, bands,
                     transform, out, threads)


def occupancy_grid_from_buffer(buffer, point_step, num_points, *, x_offset=0, y_offset=4,
                               z_offset=8, grid=DEFAULT_GRID, bands=DEFAULT_BANDS,
                               transform=None, out=None, threads=0):
    """Occupancy grid of points stored ``point_step`` bytes apart in a byte buffer, read in
    place (a PointCloud2's ``msg.data``, a cloud from ``depth.depth_to_cloud``, a file map).

    Point i starts at byte ``i * point_step``; x, y, z are native-endian float32 at the byte
    offsets. grid, bands, transform, out, threads: as in :func:`occupancy_grid`.

    Raises ValueError when an offset (plus 4 bytes) does not fit in ``point_step`` or the
    buffer holds fewer than ``point_step * num_points`` bytes.
    """
    try:
        point_step = operator.index(point_step)
        num_points = operator.index(num_points)
        offsets = {name: operator.index(value) for name, value in (
            ('x_offset', x_offset), ('y_offset', y_offset), ('z_offset', z_offset))}
    except TypeError as error:
        raise ValueError(f'point_step, num_points and offsets must be integers ({error})') \
            from None
    if point_step < 4:
        raise ValueError(f'point_step must be at least 4 bytes, got {point_step}')
    if num_points < 0:
        raise ValueError(f'num_points must be >= 0, got {num_points}')
    for name, offset in offsets.items():
        if not 0 <= offset <= point_step - 4:
            raise ValueError(f'{name} {offset} does not fit a float32 in point_step '
                             f'{point_step} (must be 0..{point_step - 4})')
    data = point_buffer(buffer, point_step, num_points)
    return _classify(data, num_points, point_step, offsets['x_offset'], offsets['y_offset'],
                     offsets['z_offset'], grid, bands, transform, out, threads)
