"""Depth registration: a depth image reprojected into a colour camera (depth_image_proc's
``register``), multi-threaded and GIL-free.

Frames and units: both cameras' optical frames (x right, y down, z forward), metres; pixel
centres at integer coordinates (pixel (0, 0) covers [-0.5, 0.5]^2), as in depth_image_proc and
:mod:`.depth`. ``depth_to_color`` is the 4x4 rigid transform with ``p_color = T @ p_depth``
(TF's transform of the colour frame <- depth frame, i.e. ``lookup_transform(color_frame,
depth_frame, stamp)``).

Each valid depth pixel (u, v) at depth z becomes the point ``((u - cx) z / fx, (v - cy) z / fy,
z)`` of the depth camera, is moved into the colour frame and projected with the colour
intrinsics to the nearest colour pixel (``floor(x + 0.5)``; depth_image_proc's ``int(x + 0.5)``
truncates towards zero, which puts columns in (-1.5, -0.5) on column 0: here they fall
outside). The value stored there is the point's z in the COLOUR frame; where several points
land on one pixel the nearest (smallest z) wins (a z-buffer). Pixels nothing lands on hold 0
(uint16) or NaN (float32). Points behind the colour camera (z <= 0) are left out.

``fill_upsampling_holes`` (for a colour image of higher resolution than the depth image, which
leaves holes between the projected pixels): each depth pixel instead fills the rectangle of
colour pixels spanned by the projections of its four corners (``u +- 0.5, v +- 0.5`` at its
depth; the nearest pixel of each corner, inclusive, clipped to the image), with the same
z-buffer and the same value (the pixel centre's colour-frame z). depth_image_proc projects two
opposite corners, uses their mean z, and drops a rectangle reaching past the image border.

P's Tx / Ty (the stereo baseline column of a CameraInfo's P) are not used, as in
:func:`.camera.intrinsics_from_camera_info`; depth_image_proc adds them. They are non-zero only
for the second camera of a rectified stereo pair: put that offset into ``depth_to_color``.

uint16 output: colour-frame z in units of ``depth_scale`` rounded to nearest, halves up
(``floor(z / depth_scale + 0.5)``, depth_image_proc's ``DepthTraits<uint16_t>::fromMeters``
for millimetres); a value that rounds to 0 or to 65535 or more is left out (65535 would not
fit: it marks empty pixels inside the kernel). The z-buffer compares these rounded values;
rounding is monotonic, so that is the rounded minimum.

Kernel: ``_register.pyx`` on the worker threads of ``_workers.h``; the bytes do not depend on
the thread count (an atomic minimum on the values' integer bits: see the kernel's docstring).
"""
import math
from numbers import Integral

import numpy as np

from . import _register
from .camera import CameraIntrinsics, checked_intrinsics
from .depth import checked_depth
from .layouts import writable_bytes
from .threads import checked_threads
from .transforms import validated_transform

TRANSFORM_TOLERANCE = 1e-4  # rotation orthonormality / last row, absolute
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)
_MAX_COLOR_PIXELS = 2**31 - 1


def _intrinsics(value, name):
    if not isinstance(value, CameraIntrinsics):
        if not (isinstance(value, tuple) and len(value) == 4):
            raise ValueError(f'{name} must be CameraIntrinsics(fx, fy, cx, cy), got {value!r}')
        value = CameraIntrinsics(*value)
    try:
        return checked_intrinsics(*value)
    except (TypeError, ValueError) as error:
        raise ValueError(f'{name}: {error}') from None


def _color_size(color_size):
    try:
        width, height = color_size
    except (TypeError, ValueError):
        raise ValueError(f'color_size must be (width, height), got {color_size!r}') from None
    for name, value in (('width', width), ('height', height)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f'color_size {name} must be a positive integer, got {value!r}')
    if int(width) * int(height) > _MAX_COLOR_PIXELS:
        raise ValueError(f'color_size {width}x{height} has more than {_MAX_COLOR_PIXELS} '
                         f'pixels (the kernel indexes them with 32-bit integers)')
    return int(width), int(height)


def depth_to_color_transform(matrix) -> np.ndarray:
    """``matrix`` (4x4 or 16 numbers row-major) as a float64 C-contiguous rigid transform;
    ValueError unless finite, last row ``0 0 0 1`` and the rotation orthonormal with
    determinant +1 (within :data:`TRANSFORM_TOLERANCE`)."""
    try:
        return np.ascontiguousarray(validated_transform(matrix, TRANSFORM_TOLERANCE))
    except (TypeError, ValueError) as error:
        raise ValueError(f'depth_to_color: {error}') from None


def _output(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype)
    nbytes = shape[0] * shape[1] * dtype.itemsize
    data = writable_bytes(out, nbytes, what='registered depth image', alignment=dtype.itemsize)
    return data.view(dtype).reshape(shape)


def register_depth(depth: np.ndarray, depth_intrinsics: CameraIntrinsics,
                   color_intrinsics: CameraIntrinsics, color_size, depth_to_color, *,
                   depth_scale: float = 0.001, fill_upsampling_holes: bool = False, out=None,
                   threads: int = 0) -> np.ndarray:
    """Reproject ``depth`` into the colour camera; returns the registered depth image.

    depth: 2-D numpy array, H x W, any strides. uint16 (16UC1/mono16): metres = value *
        ``depth_scale``, 0 = invalid. float32 (32FC1): metres, non-finite or <= 0 = invalid.
        Non-native byte order is byte-swapped into a copy, unaligned arrays are copied.
    depth_intrinsics, color_intrinsics: :class:`CameraIntrinsics` (pixels) of the depth image
        and of the colour image (binning and ROI applied, as ``ros.message_checks.camera_model``
        gives them).
    color_size: (width, height) of the colour image = of the output.
    depth_to_color: 4x4 rigid transform (or 16 numbers row-major), metres, ``p_color = T @
        p_depth``.
    depth_scale: metres per uint16 unit (> 0), for the input and the uint16 output; ignored for
        float32.
    fill_upsampling_holes: fill each depth pixel's projected footprint (see the module
        docstring) instead of only its centre's nearest pixel.
    out: optional writable contiguous buffer of at least ``width * height`` pixels of the
        output dtype (numpy array, bytearray, array('B'), a ``MessageBuffer`` view), its
        address a multiple of the pixel size; the result is a (height, width) view of it.
    threads: 0 = all cores (or OMP_NUM_THREADS), n > 0 = n threads; the bytes do not depend
        on it.

    Returns a C-contiguous (height, width) array of the input's dtype: uint16 in the same units
    (0 = no data) or float32 metres (NaN = no data), in the colour camera's optical frame.
    Raises ValueError saying what is wrong for any bad argument.
    """
    depth = checked_depth(depth)
    depth_k = _intrinsics(depth_intrinsics, 'depth_intrinsics')
    color_k = _intrinsics(color_intrinsics, 'color_intrinsics')
    width, height = _color_size(color_size)
    transform = depth_to_color_transform(depth_to_color)
    numeric = isinstance(depth_scale, (Integral, float, np.floating))
    if isinstance(depth_scale, bool) or not numeric or not (
            math.isfinite(depth_scale) and depth_scale >= _FLOAT32_TINY):
        raise ValueError(f'depth_scale must be finite and > 0 (metres per uint16 unit), got '
                         f'{depth_scale!r}')
    threads = checked_threads(threads)
    result = _output(out, (height, width), depth.dtype)
    fill = bool(fill_upsampling_holes)
    if depth.dtype == np.float32:
        _register.register_f32(depth, transform, *depth_k, *color_k, fill, result, threads)
    else:
        _register.register_u16(depth, transform, *depth_k, *color_k, float(depth_scale), fill,
                               result, threads)
    return result


def transform_from_translation_rotation(translation, quaternion) -> np.ndarray:
    """4x4 float64 rigid transform of a translation (x, y, z metres) and a unit quaternion
    (x, y, z, w: geometry_msgs/Transform's order), e.g. from a TF lookup. ValueError for a
    non-finite translation or a quaternion whose norm is not 1 within 1e-3."""
    t = np.asarray(translation, dtype=np.float64).reshape(-1)
    q = np.asarray(quaternion, dtype=np.float64).reshape(-1)
    if t.size != 3 or q.size != 4 or not (np.isfinite(t).all() and np.isfinite(q).all()):
        raise ValueError(f'need a finite translation (3) and quaternion (4), got {t} {q}')
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 1e-3:
        raise ValueError(f'the quaternion must have norm 1, got {norm}')
    x, y, z, w = q / norm
    matrix = np.eye(4)
    matrix[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    matrix[:3, 3] = t
    return matrix
