"""Bird's-eye-view (BEV) images of point clouds: height, intensity and density per ground cell.

Frame and grid
    Points are binned in a z-up frame with x forward and y left (the KITTI velodyne frame; a
    ``transform`` brings other frames there, e.g. a camera optical frame). The grid covers
    ``x_range`` x ``y_range`` metres in square cells of ``resolution`` metres; a point is binned
    when its cell is inside the grid and ``z_min <= z <= z_max``. Points with a NaN or infinite
    coordinate (organized clouds) and points outside the grid are skipped.

Image orientation
    Forward is up, left is left: row 0 is the far edge (x near ``x_max``), column 0 the left
    edge (y near ``y_max``). The image is ``rows x cols x 3`` with ``rows`` along x and
    ``cols`` along y.

Cell rule (the same in the kernel and in test/reference_bev.py, bit for bit)
    Coordinates are converted to float64; the optional transform is ``R @ p + t`` evaluated
    term by term as ``((r0 * x + r1 * y) + r2 * z) + t`` (no fused multiply-add). The height
    is then ``z = float32(z) + 0.0`` (exact without a transform; -0.0 becomes +0.0). Index
    arithmetic is float64: in float32, 918 points of KITTI scan 000000 land in another cell,
    changing about 1,600 of its 26,653 occupied cells::

        qx = (x - x_min) * (1.0 / resolution)
        qy = (y - y_min) * (1.0 / resolution)
        inside  <=>  0 <= qx < rows  and  0 <= qy < cols  and  z_min <= z <= z_max
        row = rows - 1 - floor(qx)        col = cols - 1 - floor(qy)

    Cells are half-open: a point exactly on a cell border belongs to the cell with the larger x
    (or y); a point at exactly ``x_max`` or ``y_max`` is outside, one at ``x_min`` is inside.

Channels (``CHANNELS``, in output order), each a value in [0, 1] per occupied cell, 0 elsewhere
    intensity: intensity of the highest point in the cell (largest z; among points sharing that z
        the largest intensity; a NaN intensity counts as -inf), mapped by
        ``clip((i - intensity_min) * (1 / (intensity_max - intensity_min)), 0, 1)``. KITTI
        reflectance is 0..1 (the ``intensity_range`` default); 8-bit intensities want (0, 255).
    height: ``min(1, (z_top - z_min) * (1 / (z_max - z_min)))`` for the highest point z_top.
    density: ``min(1, log(N + 1) / log(64))`` for the N points in the cell (MV3D, Complex-YOLO).

    uint8 output stores ``floor(value * 255 + 0.5)``; float32 output stores ``float32(value)``.
    As a ``bgr8`` image (and in a PNG written by OpenCV) that is blue = intensity, green =
    height, red = density: Complex-YOLO's RGB map.

Speed: :func:`bev_image` releases the GIL for the whole computation, runs on ``threads`` cores
(the caller and worker threads; a late or preempted worker never stalls the call) and, when
``out`` is given, allocates nothing per call after the first (a per-thread workspace grows to
the largest cloud seen). Any thread count gives the same bytes.
"""
from dataclasses import dataclass
import math
import operator
import threading

import numpy as np

from pointcloud_pipeline import _bev

from .layouts import point_buffer, writable_bytes
from .threads import checked_threads

CHANNELS = ('intensity', 'height', 'density')
"""Order of the 3 output channels (bgr8: blue = intensity, green = height, red = density)."""

OUTPUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))

_MAX_CELLS = 2 ** 31 // 3 // 4  # keeps every byte offset of a float32 image within int32 rows


def _pair(name, value):
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f'{name} must be a pair of numbers (min, max), got {value!r}') from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f'{name} must be finite with min < max, got ({low}, {high})')
    return low, high


def _cell_count(name, span, resolution):
    cells = span / resolution
    count = round(cells)
    if count < 1 or abs(cells - count) > 1e-6 * max(1.0, cells):
        raise ValueError(f'{name} spans {span:g} m, which is not a whole number of '
                         f'{resolution:g} m cells ({cells:.6f})')
    return count


@dataclass(frozen=True)
class BevGrid:
    """The ground area, cell size and value ranges of a BEV image (metres, z-up body frame).

    x_range: (min, max) metres forward; image rows, row 0 at ``max``.
    y_range: (min, max) metres left; image columns, column 0 at ``max``.
    z_range: (min, max) metres up; points outside are skipped, the height channel maps it to
        [0, 1]. The default (-2.73, 1.27) is Complex-YOLO's: KITTI's lidar is 1.73 m above the
        road, so this keeps the road (-1.73) up to about 3 m above it.
    resolution: metres per cell (square cells); each range must span a whole number of cells.
    intensity_range: (min, max) raw intensity mapped to [0, 1] (KITTI reflectance: 0..1).
    """

    x_range: tuple[float, float] = (-80.0, 80.0)
    y_range: tuple[float, float] = (-80.0, 80.0)
    z_range: tuple[float, float] = (-2.73, 1.27)
    resolution: float = 0.1
    intensity_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        for name in ('x_range', 'y_range', 'z_range', 'intensity_range'):
            object.__setattr__(self, name, _pair(name, getattr(self, name)))
        try:
            resolution = float(self.resolution)
        except (TypeError, ValueError):
            raise ValueError(f'resolution must be a number, got {self.resolution!r}') from None
        if not (math.isfinite(resolution) and resolution > 0):
            raise ValueError(f'resolution must be a positive number of metres, got {resolution}')
        object.__setattr__(self, 'resolution', resolution)
        rows = _cell_count('x_range', self.x_range[1] - self.x_range[0], resolution)
        cols = _cell_count('y_range', self.y_range[1] - self.y_range[0], resolution)
        if rows * cols > _MAX_CELLS:
            raise ValueError(f'grid of {rows} x {cols} cells is too large '
                             f'(at most {_MAX_CELLS} cells)')
        object.__setattr__(self, '_rows', rows)
        object.__setattr__(self, '_cols', cols)

    @property
    def rows(self):
        """Image rows: cells along x (forward)."""
        return self._rows

    @property
    def cols(self):
        """Image columns: cells along y (left)."""
        return self._cols

    @property
    def shape(self):
        """Shape of the output image: (rows, cols, 3)."""
        return (self._rows, self._cols, 3)

    @classmethod
    def complex_yolo(cls):
        """Complex-YOLO's grid: 608 x 608 cells over x [0, 50] m and y [-25, 25] m, z
        [-2.73, 1.27] m (cells of 50/608 m, about 8.2 cm). Same area and cell size as
        Complex-YOLO; the orientation follows this module (forward up)."""
        return cls(x_range=(0.0, 50.0), y_range=(-25.0, 25.0), z_range=(-2.73, 1.27),
                   resolution=50.0 / 608)


DEFAULT_GRID = BevGrid()


def density_values():
    """Density channel value for cell counts 0..63: ``min(1, log(N + 1) / log(64))`` (float64);
    counts of 63 and more give 1."""
    counts = np.arange(_bev.DENSITY_SATURATION_COUNT + 1, dtype=np.float64)
    return np.minimum(1.0, np.log(counts + 1.0) / np.log(64.0))


_DENSITY = density_values()
_local = threading.local()


def _workspace(num_points, rows, cols, threads):
    """Scratch arrays of this Python thread, grown (never shrunk) to fit this call."""
    need = (max(num_points, 1), rows, cols, threads)
    have = getattr(_local, 'capacity', None)
    if have is None or any(n > h for n, h in zip(need, have)):
        capacity = tuple(max(n, h) for n, h in zip(need, have or need))
        points, rows_cap, cols_cap, threads_cap = capacity
        _local.capacity = capacity
        _local.arrays = (
            np.empty(points, np.uint64),                   # (z, intensity) key of each point
            np.empty(points, np.int32),                    # column of each point
            np.empty(points, np.int32),                    # row of each point (rows: outside)
            np.empty(points, np.uint64),                   # keys bucketed by row
            np.empty(points, np.int32),                    # columns bucketed by row
            np.empty(_bev.point_chunks(threads_cap) * (rows_cap + 1), np.int64),  # per chunk
            np.empty(rows_cap + 2, np.int64),              # bucket start of each row
            np.empty(2 * threads_cap * cols_cap, np.int64),    # per-thread row of cells
            np.empty(threads_cap * (cols_cap + 1), np.int32),  # per-thread occupied columns
        )
    return _local.arrays


def _check_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f'dtype must be uint8 or float32, got {dtype!r}') from None
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f'dtype must be uint8 or float32, got {dtype}')
    return dtype


def kernel_transform(transform):
    """None or a rigid 4x4 transform -> the 12 float64 the kernels take ([R | t] row-major),
    empty for identity (shared by the BEV and occupancy kernels)."""
    if transform is None:
        return np.empty(0, np.float64)
    matrix = np.asarray(transform, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f'transform must be a 4x4 matrix, got shape {matrix.shape}')
    if not np.isfinite(matrix).all():
        raise ValueError('transform has non-finite values')
    if not np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f'transform bottom row must be [0, 0, 0, 1], got {matrix[3].tolist()}')
    rotation = matrix[:3, :3]
    if (not np.allclose(rotation @ rotation.T, np.eye(3), rtol=0, atol=1e-6)
            or np.linalg.det(rotation) <= 0):
        raise ValueError('transform must be rigid: its 3x3 block must be a rotation matrix')
    if np.array_equal(matrix, np.eye(4)):
        return np.empty(0, np.float64)
    return np.ascontiguousarray(matrix[:3].reshape(12))


def _check_out(out, grid, dtype):
    """The output image: a new array, or a rows x cols x 3 array over the caller's buffer."""
    shape = grid.shape
    if out is None:
        return np.empty(shape, dtype)  # the kernel writes every element
    if isinstance(out, np.ndarray):
        if out.dtype != dtype:
            raise ValueError(f'out has dtype {out.dtype}, expected {dtype}')
        if out.shape != shape:
            raise ValueError(f'out has shape {out.shape}, expected {shape} for this grid')
        if not out.flags.c_contiguous:
            raise ValueError('out must be C-contiguous')
        if not out.flags.writeable:
            raise ValueError('out is read-only')
        array = out
    else:
        size = math.prod(shape) * dtype.itemsize
        array = writable_bytes(out, size, exact=True, what='image').view(dtype).reshape(shape)
    if array.ctypes.data % dtype.itemsize:
        raise ValueError(f'out is not aligned for {dtype}')
    return array


def _render(data, num_points, point_step, x_offset, y_offset, z_offset, intensity_offset,
            grid, transform, out, dtype, threads):
    if not isinstance(grid, BevGrid):
        raise ValueError(f'grid must be a BevGrid, got {type(grid).__name__}')
    dtype = _check_dtype(dtype)
    threads = checked_threads(threads) or _bev.default_threads()
    matrix = kernel_transform(transform)
    image = _check_out(out, grid, dtype)
    workspace = _workspace(num_points, grid.rows, grid.cols, threads)
    (x_min, _), (y_min, _), (z_min, z_max) = grid.x_range, grid.y_range, grid.z_range
    intensity_min, intensity_max = grid.intensity_range
    _bev.render(
        data, num_points, point_step, x_offset, y_offset, z_offset, intensity_offset, matrix,
        x_min, y_min, 1.0 / grid.resolution, grid.rows, grid.cols,
        z_min, z_max, 1.0 / (z_max - z_min),
        intensity_min, 1.0 / (intensity_max - intensity_min),
        _DENSITY, image.reshape(-1).view(np.uint8), dtype == np.float32,
        *workspace, threads)
    return image


def bev_image(points, grid=DEFAULT_GRID, *, transform=None, out=None, dtype=np.uint8,
              threads=0):
    """BEV image of an N x 4 (x, y, z, intensity) or N x 3 (x, y, z; intensity 0) float32 array.

    points: metres in the grid's frame (x forward, y left, z up), or in the frame that
        ``transform`` maps from. A C-contiguous array is read in place; others are copied.
    grid: :class:`BevGrid` (default 1600 x 1600 cells of 0.1 m, x and y in [-80, 80] m).
    transform: optional rigid 4x4 (float64) applied to x, y, z before binning (e.g. camera
        optical frame -> body frame); None or identity: none.
    out: optional writable buffer for the result: a C-contiguous ``rows x cols x 3`` array of
        ``dtype``, or a bytearray / array('B') / other buffer of exactly that many bytes.
    dtype: np.uint8 (0..255) or np.float32 (0..1).
    threads: kernel threads; 0 = all cores (OMP_NUM_THREADS if set). Same result for any value.

    Returns the ``rows x cols x 3`` image (channels ``CHANNELS``), a view of ``out`` when given.
    Raises ValueError for a wrong shape or dtype, a bad grid, transform or ``out``.
    """
    if not isinstance(points, np.ndarray):
        raise ValueError(f'points must be a numpy array, got {type(points).__name__}')
    if points.dtype != np.float32:
        raise ValueError(f'points must be float32, got {points.dtype} '
                         f'(convert with points.astype(np.float32))')
    if points.ndim != 2 or points.shape[1] not in (3, 4):
        raise ValueError(f'points must be N x 4 (x, y, z, intensity) or N x 3 (x, y, z), '
                         f'got shape {points.shape}')
    columns = points.shape[1]
    data = np.ascontiguousarray(points).reshape(-1).view(np.uint8)
    return _render(data, points.shape[0], 4 * columns, 0, 4, 8, 12 if columns == 4 else -1,
                   grid, transform, out, dtype, threads)


def _intensity_dtype(value):
    """The numpy dtype of the intensity field: any integer or floating type of 1 to 8 bytes."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise ValueError(f'intensity_dtype must be a numeric numpy dtype, got {value!r}') \
            from None
    if dtype.kind not in 'iuf' or dtype.itemsize > 8:
        raise ValueError(f'intensity_dtype must be an integer or floating type of at most 8 '
                         f'bytes (a PointField datatype), got {dtype}')
    return dtype


def _packed_points(num_points):
    """This Python thread's N x 4 float32 scratch array (grown, never shrunk)."""
    packed = getattr(_local, 'packed', None)
    if packed is None or len(packed) < num_points:
        packed = _local.packed = np.empty((max(num_points, 1), 4), np.float32)
    return packed[:num_points]


def _pack_with_float32_intensity(data, num_points, point_step, offsets, intensity_dtype):
    """x, y, z (float32) and the intensity converted to float32, as an N x 4 array (one copy
    of 16 bytes per point)."""
    packed = _packed_points(num_points)
    if num_points:
        for column, (name, dtype) in enumerate((('x_offset', np.float32),
                                                ('y_offset', np.float32),
                                                ('z_offset', np.float32),
                                                ('intensity_offset', intensity_dtype))):
            packed[:, column] = np.ndarray((num_points,), dtype, buffer=data,
                                           offset=offsets[name], strides=(point_step,))
    return packed


def bev_image_from_buffer(buffer, point_step, num_points, *, x_offset=0, y_offset=4, z_offset=8,
                          intensity_offset=None, intensity_dtype=np.float32, grid=DEFAULT_GRID,
                          transform=None, out=None, dtype=np.uint8, threads=0):
    """BEV image of points stored ``point_step`` bytes apart in a byte buffer, read in place.

    buffer: any contiguous bytes-like object: a PointCloud2's data (``msg.data`` or
        ``np.frombuffer(msg.data, np.uint8)``), a memory-mapped file, bytes, a numpy array.
        Point i starts at byte ``i * point_step`` (a dense cloud: row_step == width * point_step).
    point_step: bytes per point. num_points: points to read (width * height for PointCloud2).
    x_offset, y_offset, z_offset, intensity_offset: byte offsets in a point of native-endian
        float32 x, y, z (PointCloud2 FLOAT32) and of the intensity; intensity_offset None: no
        intensity (0).
    intensity_dtype: numpy dtype of the intensity: float32 (read in place) or any other
        integer or floating type of a PointField (``layouts.POINT_FIELD_DTYPES``: int8 ..
        float64, byte order as the dtype says; e.g. a driver's uint8 or uint16 intensity).
        Other types are converted to float32 (exact for 8- and 16-bit integers, rounded to
        the nearest float32 otherwise) before the cell rule, at the cost of one copy of
        x, y, z and intensity (16 bytes per point, into a per-thread scratch array).
    grid, transform, out, dtype, threads: as in :func:`bev_image`.

    Raises ValueError when an offset (plus 4 bytes, or the intensity's size) does not fit in
    ``point_step``, ``intensity_dtype`` is not numeric or the buffer holds fewer than
    ``point_step * num_points`` bytes.
    """
    try:
        point_step = operator.index(point_step)
        num_points = operator.index(num_points)
        offsets = {name: operator.index(value) for name, value in (
            ('x_offset', x_offset), ('y_offset', y_offset), ('z_offset', z_offset),
            ('intensity_offset', -1 if intensity_offset is None else intensity_offset))}
    except TypeError as error:
        raise ValueError(f'point_step, num_points and offsets must be integers ({error})') \
            from None
    if point_step < 4:
        raise ValueError(f'point_step must be at least 4 bytes, got {point_step}')
    if num_points < 0:
        raise ValueError(f'num_points must be >= 0, got {num_points}')
    intensity_dtype = _intensity_dtype(intensity_dtype)
    for name, offset in offsets.items():
        if name == 'intensity_offset':
            if intensity_offset is None:
                continue
            size, what = intensity_dtype.itemsize, intensity_dtype.name
        else:
            size, what = 4, 'float32'
        if not 0 <= offset <= point_step - size:
            raise ValueError(f'{name} {offset} does not fit a {what} in point_step '
                             f'{point_step} (must be 0..{point_step - size})')
    data = point_buffer(buffer, point_step, num_points)
    if intensity_offset is not None and intensity_dtype != np.dtype(np.float32):
        packed = _pack_with_float32_intensity(data, num_points, point_step, offsets,
                                              intensity_dtype)
        return _render(packed.reshape(-1).view(np.uint8), num_points, 16, 0, 4, 8, 12, grid,
                       transform, out, dtype, threads)
    return _render(data, num_points, point_step, offsets['x_offset'], offsets['y_offset'],
                   offsets['z_offset'], offsets['intensity_offset'], grid, transform, out,
                   dtype, threads)
