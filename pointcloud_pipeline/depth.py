"""Depth image -> ``sensor_msgs/PointCloud2`` point buffer, multi-threaded and GIL-free.

Frame and units: the cloud is in the camera optical frame (x right, y down, z forward), metres.
A depth pixel at column ``u``, row ``v`` of the ORIGINAL image (pixel centres at integer
coordinates, as in depth_image_proc and image_geometry) with depth ``Z`` becomes::

    X = (u - cx) * Z / fx        Y = (v - cy) * Z / fy        Z = Z

(the rectified pinhole path: two separable coefficient vectors). With a ray table
(``rays=``, :mod:`.rays`: radial depth, unrectified depth with lens distortion) the pixel's value
d becomes ``(X, Y, Z) = ray[v, u] * d`` instead.

Point layouts (little-endian float32 fields, ``cloud_fields``, ``point_step``)::

    XYZ      16 bytes: 0 x | 4 y | 8 z | 12 padding 0
    XYZRGB   16 bytes: 0 x | 4 y | 8 z | 12 rgb (packed colour)
    XYZI     16 bytes: 0 x | 4 y | 8 z | 12 intensity      (depth_image_proc point_cloud_xyzi)
    XYZRGBI  20 bytes: 0 x | 4 y | 8 z | 12 rgb | 16 intensity

``POINT_STEP`` (16) is the step of XYZ, XYZRGB and XYZI; XYZRGBI's is 20.

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
from .rays import RayTable
from .threads import checked_threads

POINT_STEP = 16  # bytes per point of XYZ, XYZRGB and XYZI clouds (XYZRGBI: 20)
XYZRGBI_POINT_STEP = 20

DEPTH_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))
INTENSITY_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_OUT_ALIGNMENT = 4  # the kernel stores float32 x, y, z and the uint32 rgb bits

_XYZ_FIELDS = (PointFieldSpec('x', 0, FLOAT32, 1), PointFieldSpec('y', 4, FLOAT32, 1),
               PointFieldSpec('z', 8, FLOAT32, 1))
_XYZRGB_FIELDS = _XYZ_FIELDS + (PointFieldSpec('rgb', 12, FLOAT32, 1),)
_XYZI_FIELDS = _XYZ_FIELDS + (PointFieldSpec('intensity', 12, FLOAT32, 1),)
_XYZRGBI_FIELDS = _XYZRGB_FIELDS + (PointFieldSpec('intensity', 16, FLOAT32, 1),)


def cloud_fields(with_color: bool, with_intensity: bool = False) -> tuple[PointFieldSpec, ...]:
    """Fields of the clouds :func:`depth_to_cloud` writes: x, y, z float32 at 0, 4, 8; with
    colour also ``rgb`` at 12, the ROS/PCL packed colour (uint32 ``0x00RRGGBB`` stored
    little-endian as the float32's bits; the alpha byte is 0 so the float is never NaN);
    with intensity also ``intensity`` float32 (the raw pixel value) at 12 (XYZI) or, with
    colour too, at 16 (XYZRGBI). Without either, bytes 12..15 are zero padding."""
    if with_intensity:
        return _XYZRGBI_FIELDS if with_color else _XYZI_FIELDS
    return _XYZRGB_FIELDS if with_color else _XYZ_FIELDS


def point_step(with_color: bool, with_intensity: bool = False) -> int:
    """Bytes per point: 16 (XYZ, XYZRGB, XYZI) or 20 (XYZRGBI)."""
    return XYZRGBI_POINT_STEP if with_color and with_intensity else POINT_STEP


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

    def _field_offset(self, name):
        return next((field.offset for field in self.fields if field.name == name), None)

    def xyz(self) -> np.ndarray:
        """(height, width, 3) float32 view of x, y, z in metres (NaN for invalid points);
        for a dense cloud (height 1) use ``.xyz()[0]`` or ``.reshape(-1, 3)`` for (N, 3)."""
        return self._points()[:, :, :12].view(np.float32)

    def rgb(self) -> np.ndarray | None:
        """(height, width, 3) uint8 view of r, g, b unpacked from the rgb field, or None
        without colour."""
        offset = self._field_offset('rgb')
        if offset is None:
            return None
        # uint32 0x00RRGGBB little-endian: bytes offset, +1, +2 are b, g, r
        return self._points()[:, :, offset + 2:offset - 1:-1]

    def intensity(self) -> np.ndarray | None:
        """(height, width) float32 view of the intensity field, or None without intensity."""
        offset = self._field_offset('intensity')
        if offset is None:
            return None
        return self._points()[:, :, offset:offset + 4].view(np.float32)[:, :, 0]


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


def max_cloud_bytes(depth_shape, decimation_x: int = 1, decimation_y: int = 1, *,
                    with_color: bool = False, with_intensity: bool = False) -> int:
    """Bytes of the organized cloud; an upper bound for the dense one (size ``out`` with it).
    The defaults give the 16-byte point (XYZ, XYZRGB, XYZI); colour and intensity both: 20."""
    rows, columns = organized_shape(depth_shape, decimation_x, decimation_y)
    return rows * columns * point_step(with_color, with_intensity)


@lru_cache(maxsize=32)
def _ray_coefficients(intrinsics, height, width, dx, dy):
    """Per-output-column (u - cx) / fx and per-output-row (v - cy) / fy, float32, read-only."""
    fx, fy, cx, cy = intrinsics
    x_coef = ((np.arange(0, width, dx, dtype=np.float64) - cx) / fx).astype(np.float32)
    y_coef = ((np.arange(0, height, dy, dtype=np.float64) - cy) / fy).astype(np.float32)
    x_coef.flags.writeable = False
    y_coef.flags.writeable = False
    return x_coef, y_coef


def _checked_2d(image, name):
    if not isinstance(image, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(image).__name__}')
    if image.ndim != 2:
        raise ValueError(f'{name} must be a 2-D (H x W) array, got shape {image.shape}')


def _native_aligned(image, name, dtypes, expected):
    """``image`` in native byte order and aligned, as the kernels read it (a byte-swapped or
    aligned copy only when needed); ValueError unless its dtype is one of ``dtypes`` in some
    byte order (``expected`` names them)."""
    dtype = image.dtype
    if dtype not in dtypes:
        native = dtype.newbyteorder('=')
        if native not in dtypes:
            raise ValueError(f'{name} dtype must be {expected}, got {dtype}')
        return image.astype(native)  # non-native byte order: byte-swapped copy
    return image if image.flags.aligned else image.copy()


def checked_depth(depth):
    """``depth`` as the kernels read it: a 2-D uint16 or float32 array in native byte order and
    aligned (a byte-swapped or aligned copy when needed; any strides otherwise, no copy).
    ValueError naming the problem for anything else."""
    _checked_2d(depth, 'depth')
    if depth.shape[0] == 0 or depth.shape[1] == 0:
        raise ValueError(f'depth image is empty: shape {depth.shape}')
    return _native_aligned(depth, 'depth', DEPTH_DTYPES,
                           'uint16 (16UC1/mono16) or float32 (32FC1)')


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


def _checked_intensity(intensity, height, width):
    """(uint8, uint16, float32) views for the kernel, exactly one of them not None."""
    _checked_2d(intensity, 'intensity')
    if intensity.shape != (height, width):
        raise ValueError(f'intensity size {intensity.shape[1]}x{intensity.shape[0]} differs from '
                         f'depth size {width}x{height}')
    intensity = _native_aligned(intensity, 'intensity', INTENSITY_DTYPES,
                                'uint8 (mono8), uint16 (mono16/16UC1) or float32 (32FC1)')
    kind = INTENSITY_DTYPES.index(intensity.dtype)
    return tuple(intensity if index == kind else None for index in range(3))


def _checked_rays(rays, height, width, dx, dy):
    """The ray table's array after checking that it is for this image and decimation."""
    if not isinstance(rays, RayTable):
        raise ValueError(f'rays must be a rays.RayTable (rays.ray_table), got '
                         f'{type(rays).__name__}')
    if (rays.width, rays.height) != (width, height):
        raise ValueError(f'ray table is for a {rays.width}x{rays.height} image, the depth image '
                         f'is {width}x{height}')
    table_dx, table_dy = min(rays.decimation_x, width), min(rays.decimation_y, height)
    if (table_dx, table_dy) != (dx, dy):
        raise ValueError(f'ray table is for decimation {rays.decimation_x}x{rays.decimation_y}, '
                         f'the call uses {dx}x{dy}')
    return rays.rays


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
                   color_encoding: str = 'rgb8', resize_color: bool = False,
                   intensity: np.ndarray | None = None, rays=None, out=None,
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
    intensity: optional H x W image of the same size as depth (a different size is a
        ValueError naming both): uint8 (mono8), uint16 (mono16/16UC1) or float32 (32FC1), any
        strides (read in place; non-native byte order: byte-swapped copy). Adds the float32
        ``intensity`` field holding the raw value (no scaling, as depth_image_proc's
        point_cloud_xyzi): XYZI (16 bytes) without colour, XYZRGBI (20 bytes) with it. With
        ``organized`` it is written for invalid points too.
    rays: optional :class:`.rays.RayTable` (from :func:`.rays.ray_table`) for this image size
        and decimation (else ValueError): each point is ``ray[v, u] * d`` (float32) with d the
        pixel's depth value in metres, z for z-depth tables, the range along the ray for radial
        ones; ``intrinsics`` is still checked but not used. ``min_range``, ``max_range`` and
        ``invalid_depth`` apply to d (so to the range for radial depth).
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
    intrinsics, colour, intensity, ray table, decimation, ranges, buffer size or alignment,
    encoding, threads).
    """
    depth = checked_depth(depth)
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
    if intensity is not None or rays is not None:
        return _extended_cloud(depth, dx, dy, x_coef, y_coef, scale, min_range, max_range,
                               invalid_depth, color, r, g, b, intensity, rays, organized, out,
                               threads)

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


def _extended_cloud(depth, dx, dy, x_coef, y_coef, scale, min_range, max_range, invalid_depth,
                    color, r, g, b, intensity, rays, organized, out, threads):
    """:func:`depth_to_cloud` with intensity and/or a ray table (the arguments checked but for
    these two): the extended kernels; the pinhole path above stays as it was."""
    height, width = depth.shape
    rows, columns = y_coef.shape[0], x_coef.shape[0]
    with_intensity = intensity is not None
    intensity_views = ((None, None, None) if intensity is None
                       else _checked_intensity(intensity, height, width))
    table = _checked_rays(rays, height, width, dx, dy) if rays is not None else None
    step = point_step(color is not None, with_intensity)
    floats = step // 4
    fields = cloud_fields(color is not None, with_intensity)
    is_float = depth.dtype == np.float32
    if organized:
        data = _output_buffer(out, rows * columns * step)
        points = data.view(np.float32).reshape(rows * columns, floats)
        kernel = _depth.organized_ext_f32 if is_float else _depth.organized_ext_u16
        finite = kernel(depth, dx, dy, x_coef, y_coef, scale, min_range, max_range, invalid_depth,
                        color, r, g, b, table, *intensity_views, points, threads)
        return Cloud(data, columns, rows, step, columns * step, finite == rows * columns, fields,
                     finite)
    row_offsets = np.zeros(rows + 1, dtype=np.int64)
    count_rows = _depth.count_rows_f32 if is_float else _depth.count_rows_u16
    count_rows(depth, dx, dy, scale, min_range, max_range, invalid_depth, row_offsets[1:], threads)
    np.cumsum(row_offsets, out=row_offsets)
    finite = int(row_offsets[-1])
    data = _output_buffer(out, finite * step)
    points = data.view(np.float32).reshape(finite, floats)
    write_dense = _depth.dense_ext_f32 if is_float else _depth.dense_ext_u16
    write_dense(depth, dx, dy, x_coef, y_coef, scale, min_range, max_range, invalid_depth,
                color, r, g, b, table, *intensity_views, row_offsets, points, threads)
    return Cloud(data, finite, 1, step, finite * step, True, fields, finite)
