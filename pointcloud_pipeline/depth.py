"""Depth image -> ``sensor_msgs/PointCloud2`` point buffer, multi-threaded and GIL-free.

Frame and units: the cloud is in the camera optical frame (x right, y down, z forward), metres.
A depth pixel at column ``u``, row ``v`` of the ORIGINAL image (pixel centres at integer
coordinates, as in depth_image_proc and image_geometry) with depth ``Z`` becomes::

    X = (u - cx) * Z / fx        Y = (v - cy) * Z / fy        Z = Z

Point layout (``POINT_STEP`` = 16 bytes, little-endian, ``cloud_fields``)::

    offset 0: x float32 | 4: y float32 | 8: z float32 | 12: rgb (packed colour) or padding 0

The conversion runs in a multi-threaded Cython kernel (``_depth.pyx``) that holds no Python
object and releases the GIL for the whole call, so other Python threads (ROS executors, I/O)
keep running. It is deterministic: the same bytes for any thread count.
"""
from dataclasses import dataclass
from functools import lru_cache
import math
from numbers import Integral

import numpy as np

from . import _depth, layouts
from .camera import CameraIntrinsics, checked_intrinsics
from .layouts import FLOAT32, PointFieldSpec, writable_bytes
from .threads import checked_threads

POINT_STEP = 16

DEPTH_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_OUT_ALIGNMENT = 4  # the kernel stores float32 x, y, z and the uint32 rgb bits

_XYZ_FIELDS = (PointFieldSpec('x', 0, FLOAT32, 1), PointFieldSpec('y', 4, FLOAT32, 1),
               PointFieldSpec('z', 8, FLOAT32, 1))
_XYZRGB_FIELDS = _XYZ_FIELDS + (PointFieldSpec('rgb', 12, FLOAT32, 1),)


def cloud_fields(with_color: bool) -> tuple[PointFieldSpec, ...]:
    """Fields of the clouds :func:`depth_to_cloud` writes: x, y, z float32 at 0, 4, 8; with
    colour also ``rgb`` at 12, the ROS/PCL packed colour (uint32 ``0x00RRGGBB`` stored
    little-endian as the float32's bits; the alpha byte is 0 so the float is never NaN).
    Without colour, bytes 12..15 are zero padding (the point step stays 16)."""
    return _XYZRGB_FIELDS if with_color else _XYZ_FIELDS


@dataclass(frozen=True)
class Cloud:
    """A point cloud laid out as ``sensor_msgs/PointCloud2`` data (``is_bigendian`` False: the
    kernel writes in native byte order, and every ROS 2 tier-1 platform is little-endian).

    data: 1-D uint8 of exactly ``height * row_step`` bytes (a view into ``out`` when given);
    organized clouds are ``height x width`` (image rows/columns after decimation), dense ones
    have height 1. ``is_dense``: no NaN point. ``valid_points``: finite points written.
    """

    data: np.ndarray
    width: int
    height: int
    point_step: int
    row_step: int
    is_dense: bool
    fields: tuple[PointFieldSpec, ...]
    valid_points: int = -1

    def _points(self):
        return self.data.reshape(self.height, self.width, self.point_step)

    def xyz(self) -> np.ndarray:
        """(height, width, 3) float32 view of x, y, z in metres (NaN for invalid points);
        for a dense cloud (height 1) use ``.xyz()[0]`` or ``.reshape(-1, 3)`` for (N, 3)."""
        return self._points()[:, :, :12].view(np.float32)

    def rgb(self) -> np.ndarray | None:
        """(height, width, 3) uint8 view of r, g, b unpacked from the rgb field, or None
        without colour."""
        if not any(field.name == 'rgb' for field in self.fields):
            return None
        # uint32 0x00RRGGBB little-endian: bytes 12, 13, 14 are b, g, r
        return self._points()[:, :, 14:11:-1]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


def organized_shape(depth_shape, decimation_x: int = 1, decimation_y: int = 1) -> tuple[int, int]:
    """(rows, columns) of the organized cloud: (ceil(H / decimation_y), ceil(W / decimation_x))."""
    if len(depth_shape) < 2:
        raise ValueError(f'depth shape must be (H, W), got {tuple(depth_shape)}')
    height, width = int(depth_shape[0]), int(depth_shape[1])
    dx = _positive_int(decimation_x, 'decimation_x')
    dy = _positive_int(decimation_y, 'decimation_y')
    return -(-height // dy), -(-width // dx)


def max_cloud_bytes(depth_shape, decimation_x: int = 1, decimation_y: int = 1) -> int:
    """Bytes of the organized cloud; an upper bound for the dense one (size ``out`` with it)."""
    rows, columns = organized_shape(depth_shape, decimation_x, decimation_y)
    return rows * columns * POINT_STEP


@lru_cache(maxsize=32)
def _ray_coefficients(intrinsics, height, width, dx, dy):
    """Per-output-column (u - cx) / fx and per-output-row (v - cy) / fy, float32, read-only."""
    fx, fy, cx, cy = intrinsics
    x_coef = ((np.arange(0, width, dx, dtype=np.float64) - cx) / fx).astype(np.float32)
    y_coef = ((np.arange(0, height, dy, dtype=np.float64) - cy) / fy).astype(np.float32)
    x_coef.flags.writeable = False
    y_coef.flags.writeable = False
    return x_coef, y_coef


def _checked_depth(depth):
    if not isinstance(depth, np.ndarray):
        raise ValueError(f'depth must be a numpy array, got {type(depth).__name__}')
    if depth.ndim != 2:
        raise ValueError(f'depth must be a 2-D (H x W) array, got shape {depth.shape}')
    if depth.shape[0] == 0 or depth.shape[1] == 0:
        raise ValueError(f'depth image is empty: shape {depth.shape}')
    dtype = depth.dtype
    if dtype not in DEPTH_DTYPES:
        native = dtype.newbyteorder('=')
        if native not in DEPTH_DTYPES:
            raise ValueError(f'depth dtype must be uint16 (16UC1/mono16) or float32 (32FC1), '
                             f'got {dtype}')
        return depth.astype(native)  # non-native byte order: byte-swapped copy
    if not depth.flags.aligned:
        return depth.copy()
    return depth


def _checked_color(color, encoding, height, width, resize):
    layout = layouts.color_encoding(encoding)
    channels, (r, g, b) = layout.channels, layout.rgb_index
    if not isinstance(color, np.ndarray):
        raise ValueError(f'color must be a numpy array, got {type(color).__name__}')
    if color.dtype != np.uint8:
        raise ValueError(f'color must be uint8 ({encoding}), got {color.dtype}')
    mono_2d = channels == 1 and color.ndim == 2
    if not mono_2d and (color.ndim != 3 or color.shape[2] != channels):
        expected = 'H x W or H x W x 1' if channels == 1 else f'H x W x {channels}'
        raise ValueError(f'color shape {color.shape} does not fit {encoding} ({expected})')
    if color.shape[:2] != (height, width):
        if not resize:
            raise ValueError(f'color size {color.shape[1]}x{color.shape[0]} differs from depth '
                             f'size {width}x{height} (pass resize_color=True to resize it)')
        if color.shape[0] == 0 or color.shape[1] == 0:
            raise ValueError(f'color image is empty: shape {color.shape}')
        import cv2
        shrink = color.shape[0] >= height and color.shape[1] >= width
        color = cv2.resize(np.ascontiguousarray(color), (width, height),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if mono_2d or color.ndim == 2:
            color = color.reshape(height, width)
            mono_2d = True
    if mono_2d:
        color = color[:, :, np.newaxis]
    if not color.flags.aligned:  # uint8 is always aligned; kept for clarity
        color = color.copy()
    return color, r, g, b


def _check_range(depth_scale, min_range, max_range, invalid_depth):
    if not (math.isfinite(depth_scale) and _FLOAT32_TINY <= depth_scale <= _FLOAT32_MAX):
        raise ValueError(f'depth_scale must be > 0 and representable as float32 (metres per '
                         f'uint16 unit), got {depth_scale!r}')
    if not (math.isfinite(min_range) and min_range >= 0):
        raise ValueError(f'min_range must be finite and >= 0 (metres), got {min_range!r}')
    if math.isnan(max_range) or max_range < 0:
        raise ValueError(f'max_range must be >= 0 (metres, inf for none), got {max_range!r}')
    if min_range > max_range:
        raise ValueError(f'min_range {min_range} is greater than max_range {max_range}')
    if not (math.isfinite(invalid_depth) and invalid_depth >= 0):
        raise ValueError(f'invalid_depth must be finite and >= 0 (0 disables), '
                         f'got {invalid_depth!r}')


def _output_buffer(out, nbytes):
    """The first ``nbytes`` of ``out`` (or a new array) as 1-D uint8, 4-byte aligned: the
    kernel stores float32 and uint32 values there (a misaligned ``out`` is a ValueError)."""
    if out is None:
        return np.empty(nbytes, dtype=np.uint8)
    return writable_bytes(out, nbytes, what='cloud', alignment=_OUT_ALIGNMENT)


def depth_to_cloud(depth: np.ndarray, intrinsics: CameraIntrinsics, *, depth_scale: float = 0.001,
                   min_range: float = 0.0, max_range: float = math.inf,
                   invalid_depth: float = 0.0, decimation_x: int = 1, decimation_y: int = 1,
                   organized: bool = True, color: np.ndarray | None = None,
                   color_encoding: str = 'rgb8', resize_color: bool = False, out=None,
                   threads: int = 0) -> Cloud:
    """Convert a depth image to a point cloud (:class:`Cloud`, ``sensor_msgs/PointCloud2`` layout).

    depth: 2-D numpy array, H x W. uint16 (16UC1/mono16): metres = value * ``depth_scale``
        (default 0.001, i.e. millimetres), 0 = invalid. float32 (32FC1): metres (``depth_scale``
        ignored), non-finite or <= 0 = invalid. Any strides are read in place (padded rows from
        ``ros.camera_messages.image_array``, negative strides, column slices); non-native byte order
        (e.g. ``'>u2'``) is byte-swapped into a copy, unaligned arrays are copied.
    intrinsics: :class:`CameraIntrinsics` of this image (pixels).
    depth_scale: metres per uint16 unit (> 0). Z is computed in float32: ``float32(value) *
        float32(depth_scale)``; range limits are compared in float32 too.
    min_range, max_range: metres; a sensor-valid pixel with Z < min_range or Z > max_range is
        invalid (NaN point / dropped). Defaults keep everything.
    invalid_depth: metres; when > 0, sensor-invalid pixels (not out-of-range ones) become
        points at Z = invalid_depth along their pixel ray (clears costmaps, like
        depth_image_proc); 0 disables.
    decimation_x, decimation_y: convert every n-th column / row, starting at 0. Points keep the
        coordinates of their original pixel.
    organized: True -> ``height x width`` = ``organized_shape(...)``, invalid pixels are NaN
        x, y, z and ``is_dense`` is True only if no NaN was written. False -> only finite
        points, row-major pixel order, ``height`` 1, ``is_dense`` True.
    color: H x W x C uint8 image of the same size as depth (C = 3 for rgb8/bgr8, 4 for
        rgba8/bgra8 (alpha ignored), 1 or 2-D for mono8 (r = g = b)), any strides. Adds the
        ``rgb`` field; with ``organized`` the colour is written for invalid points too.
        A different size is a ValueError unless ``resize_color``: then it is resized to the
        depth size with ``cv2.resize``, INTER_AREA when shrinking, INTER_LINEAR otherwise
        (a per-frame allocation).
    color_encoding: one of ``layouts.COLOR_ENCODINGS`` (rgb8, bgr8, rgba8, bgra8, mono8).
    out: optional writable contiguous buffer (numpy uint8, bytearray, array('B')) of at least
        the cloud's bytes (``max_cloud_bytes`` always suffices), starting at an address that
        is a multiple of 4 (numpy arrays, bytearray and array('B') are; a view at an odd
        offset is a ValueError, as in :mod:`.bev`). The cloud is written into its first bytes
        and ``Cloud.data`` is a view of them: no cloud allocation per frame.
    threads: 0 = all cores (or OMP_NUM_THREADS), n > 0 = n threads: the caller and n - 1
        workers that take rows as they come (a preempted worker never stalls the call; see
        ``_workers.h``). The bytes do not depend on it (dense mode counts each output row's
        points, prefix-sums the counts, then writes every row at its offset).

    Raises ValueError saying what is wrong for any bad argument (dtype, shape, empty image,
    intrinsics, colour, decimation, ranges, buffer size or alignment, encoding, threads).
    """
    depth = _checked_depth(depth)
    if not isinstance(intrinsics, CameraIntrinsics):
        if not (isinstance(intrinsics, tuple) and len(intrinsics) == 4):
            raise ValueError(f'intrinsics must be CameraIntrinsics(fx, fy, cx, cy), '
                             f'got {intrinsics!r}')
        intrinsics = CameraIntrinsics(*intrinsics)
    intrinsics = checked_intrinsics(*intrinsics)
    _check_range(depth_scale, min_range, max_range, invalid_depth)
    dx = _positive_int(decimation_x, 'decimation_x')
    dy = _positive_int(decimation_y, 'decimation_y')
    threads = checked_threads(threads)
    height, width = depth.shape
    dx, dy = min(dx, width), min(dy, height)  # same output; keeps the steps in C range
    rows, columns = -(-height // dy), -(-width // dx)
    if color is not None:
        color, r, g, b = _checked_color(color, color_encoding, height, width, resize_color)
    else:
        layouts.color_encoding(color_encoding)
        r = g = b = 0
    x_coef, y_coef = _ray_coefficients(intrinsics, height, width, dx, dy)
    is_float = depth.dtype == np.float32
    scale = float(depth_scale)

    if organized:
        data = _output_buffer(out, rows * columns * POINT_STEP)
        points = data.view(np.float32).reshape(rows * columns, 4)
        kernel = _depth.organized_f32 if is_float else _depth.organized_u16
        finite = kernel(depth, dx, dy, x_coef, y_coef, scale, min_range, max_range, invalid_depth,
                        color, r, g, b, points, threads)
        return Cloud(data, columns, rows, POINT_STEP, columns * POINT_STEP,
                     finite == rows * columns, cloud_fields(color is not None), finite)

    row_offsets = np.zeros(rows + 1, dtype=np.int64)
    count_rows = _depth.count_rows_f32 if is_float else _depth.count_rows_u16
    count_rows(depth, dx, dy, scale, min_range, max_range, invalid_depth, row_offsets[1:], threads)
    np.cumsum(row_offsets, out=row_offsets)
    finite = int(row_offsets[-1])
    data = _output_buffer(out, finite * POINT_STEP)
    points = data.view(np.float32).reshape(finite, 4)
    write_dense = _depth.dense_f32 if is_float else _depth.dense_u16
    write_dense(depth, dx, dy, x_coef, y_coef, scale, min_range, max_range, invalid_depth,
                color, r, g, b, row_offsets, points, threads)
    return Cloud(data, finite, 1, POINT_STEP, finite * POINT_STEP, True,
                 cloud_fields(color is not None), finite)
