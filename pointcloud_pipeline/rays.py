"""Per-pixel ray tables for radial (range along the ray) and unrectified (lens-distorted) depth.

Frame and units: the camera optical frame (x right, y down, z forward). A table holds, for each
pixel of the OUTPUT grid (columns u = 0, dx, 2 dx, ... < width; rows v likewise; pixel centres at
integer coordinates, as in :mod:`.camera`), the ray whose multiple by the pixel's depth value d
(metres) is its point: ``(X, Y, Z) = ray * d``.

- ``depth_kind='z'``: d is the z coordinate; the ray is (x', y', 1), where (x', y') is the
  pixel's normalized (undistorted) image point, so Z = d.
- ``depth_kind='radial'``: d is the distance from the optical centre along the ray (time-of-flight
  sensors); the ray is the unit vector (x', y', 1) / |(x', y', 1)|.

(x', y') comes from the intrinsics alone when ``rectified`` (``((u - cx) / fx, (v - cy) / fy)``,
D ignored), else from undistorting the pixel centre with OpenCV: ``cv2.undistortPoints`` (with
a termination criterion that iterates to convergence) for plumb_bob (D = k1, k2, p1, p2, k3) and
rational_polynomial (k1, k2, p1, p2, k3, k4, k5, k6), ``cv2.fisheye.undistortPoints``
for equidistant (k1, k2, k3, k4). Computed in float64, stored float32.

``needs_ray_table`` is False only for rectified z-depth: that is the pinhole path of
:func:`.depth.depth_to_cloud`, two separable coefficient vectors and no table.

Compared with depth_image_proc (``initMatrix`` in conversions.cpp, used by the
``point_cloud_*_radial`` components): the same construction (undistort every pixel centre with K
and D, append 1, normalise for radial depth) and the same per-pixel product ``ray * d``. Ours
differs in that (1) depth_image_proc's radial components always undistort and always normalise,
while here radial and unrectified are independent choices (``depth_kind``, ``rectified``); (2) it
calls ``cv::undistortPoints`` with OpenCV's default criterion (5 iterations or 0.01 px), which
leaves ~0.15 px errors in the corners of a k1 = -0.3 lens (measured); we iterate to 1e-10 px
reprojection error or 100 iterations (the table's points reproject onto the pixel centres
within 1e-3 px after float32 rounding, tested). Where a model is not invertible (coefficients
fitted far beyond the calibrated field), the ray is the iteration's last estimate, as in
OpenCV; (3) it supports
only the models ``cv::undistortPoints`` takes (no equidistant fisheye); (4) decimation gives the
table of the decimated grid; (5) radial depth takes the range limits and ``invalid_depth`` of
:func:`.depth.depth_to_cloud` (applied to the range), which its radial components do not have.
The skew term K[0, 1] is ignored (:class:`.camera.CameraIntrinsics` has none), as in the
pinhole path.
"""
from dataclasses import dataclass
from functools import lru_cache
import math
from numbers import Integral, Real

import numpy as np

from .camera import CameraIntrinsics, checked_intrinsics

DEPTH_KINDS = ('z', 'radial')
DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant')
PINHOLE_MODELS = ('', 'none')  # accepted with an empty or all-zero D: no distortion
DISTORTION_LENGTHS = {'plumb_bob': 5, 'rational_polynomial': 8, 'equidistant': 4}
# Undistortion iterates until the point reprojects within this many pixels (or 100 iterations).
_UNDISTORT_CRITERIA_EPS = 1e-10
_UNDISTORT_CRITERIA_COUNT = 100


def _output_size(size, decimation):
    return -(-size // decimation)


@dataclass(frozen=True, eq=False)
class RayTable:
    """A per-pixel ray table for :func:`.depth.depth_to_cloud` (``rays=``).

    rays: float32 (rows, columns, 3), read-only, C-contiguous: the ray (x, y, z) of each output
        pixel in the camera optical frame, unitless (a point is ``ray * d`` metres); rows =
        ceil(height / decimation_y), columns = ceil(width / decimation_x). Every ray is finite
        with z > 0 (checked: a point is then NaN exactly when its depth value is).
    width, height: pixels of the depth image the table is for (before decimation).
    decimation_x, decimation_y: the table samples columns 0, dx, 2 dx, ... and rows 0, dy, ...
    depth_kind: 'z' (rays with z = 1) or 'radial' (unit rays).
    rectified: whether the rays come from the intrinsics alone (True) or undistortion.

    Equality and hash are by identity (the array is not hashable); ``ray_table`` caches tables,
    so the same arguments give the same object. A writable or borrowed ``rays`` array is copied
    into a private read-only one.
    """

    rays: np.ndarray
    width: int
    height: int
    decimation_x: int = 1
    decimation_y: int = 1
    depth_kind: str = 'z'
    rectified: bool = True

    def __post_init__(self):
        width = _positive_int(self.width, 'width')
        height = _positive_int(self.height, 'height')
        dx = _positive_int(self.decimation_x, 'decimation_x')
        dy = _positive_int(self.decimation_y, 'decimation_y')
        _check_choice(self.depth_kind, DEPTH_KINDS, 'depth_kind')
        rays = self.rays
        if not isinstance(rays, np.ndarray):
            raise ValueError(f'rays must be a numpy array, got {type(rays).__name__}')
        shape = (_output_size(height, dy), _output_size(width, dx), 3)
        if rays.shape != shape:
            raise ValueError(f'rays shape {rays.shape} does not fit a {width}x{height} image '
                             f'at decimation {dx}x{dy}: expected {shape}')
        if rays.dtype != np.float32:
            raise ValueError(f'rays must be float32, got {rays.dtype}')
        if rays.flags.writeable or rays.base is not None or not rays.flags.c_contiguous:
            rays = np.array(rays, dtype=np.float32, order='C', copy=True)
            rays.flags.writeable = False
        if not np.isfinite(rays).all():
            raise ValueError('rays must all be finite')
        if not (rays[..., 2] > 0).all():
            raise ValueError('rays must all have z > 0 (in front of the camera)')
        object.__setattr__(self, 'rays', rays)
        for name, value in (('width', width), ('height', height), ('decimation_x', dx),
                            ('decimation_y', dy), ('rectified', bool(self.rectified))):
            object.__setattr__(self, name, value)

    @property
    def shape(self):
        """(rows, columns) of the output grid."""
        return self.rays.shape[:2]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


def _check_choice(value, choices, name):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f'{name} must be one of {", ".join(map(repr, choices))}, '
                         f'got {value!r}')


def needs_ray_table(depth_kind: str, rectified: bool) -> bool:
    """Whether depth of this kind needs a ray table: False only for rectified z-depth (the
    pinhole path of :func:`.depth.depth_to_cloud`)."""
    _check_choice(depth_kind, DEPTH_KINDS, 'depth_kind')
    return depth_kind != 'z' or not rectified


def _checked_distortion(model, distortion):
    """(model, D as a tuple of floats); '' / 'none' become ('none', ()) with a zero D."""
    if not isinstance(model, str):
        raise ValueError(f'distortion_model must be a string, got {model!r}')
    try:
        values = tuple(float(value) for value in np.asarray(distortion, np.float64).ravel())
    except (TypeError, ValueError) as error:
        raise ValueError(f'distortion is not numeric: {error}') from None
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f'distortion must be finite, got {values}')
    if model in PINHOLE_MODELS:
        if any(values):
            raise ValueError(f'distortion_model {model!r} (no distortion) needs an empty or '
                             f'all-zero distortion, got {values}')
        return 'none', ()
    if model not in DISTORTION_MODELS:
        raise ValueError(f'distortion_model must be one of '
                         f'{", ".join(map(repr, DISTORTION_MODELS + PINHOLE_MODELS))}, '
                         f'got {model!r}')
    if not values:  # an empty D: no distortion, as image_geometry reads it (simulated cameras)
        return 'none', ()
    expected = DISTORTION_LENGTHS[model]
    if len(values) != expected:
        raise ValueError(f'distortion_model {model!r} needs {expected} distortion coefficients, '
                         f'got {len(values)}')
    return model, values


def _checked_intrinsics(intrinsics):
    if isinstance(intrinsics, tuple) and len(intrinsics) == 4 and all(
            isinstance(value, Real) for value in intrinsics):
        return checked_intrinsics(*intrinsics)
    raise ValueError(f'intrinsics must be CameraIntrinsics(fx, fy, cx, cy), got {intrinsics!r}')


def ray_table(intrinsics: CameraIntrinsics, width: int, height: int, *, depth_kind: str = 'z',
              rectified: bool = True, distortion_model: str = 'plumb_bob', distortion=(),
              decimation_x: int = 1, decimation_y: int = 1) -> RayTable:
    """The :class:`RayTable` of a ``width`` x ``height`` depth image (see the module docstring).

    intrinsics: K's fx, fy, cx, cy in pixels of THIS image (binning and ROI already applied,
        as :func:`.camera.reduced_intrinsics` does). rectified: True -> pinhole rays from the
        intrinsics (distortion ignored); False -> each output pixel centre is undistorted with
        ``distortion_model`` and ``distortion`` (CameraInfo ``distortion_model`` and ``d``):
        plumb_bob needs 5 coefficients, rational_polynomial 8, equidistant 4 (other lengths are
        a ValueError); an empty D, or '' / 'none' with an empty or all-zero D, means no
        distortion.
    Cached (a few recent tables): the same arguments return the same object, so calling this
    per frame costs only the argument checks until the CameraInfo changes.
    Raises ValueError for bad intrinsics, sizes, decimation, kind, model or coefficients.
    """
    intrinsics = _checked_intrinsics(intrinsics)
    width = _positive_int(width, 'width')
    height = _positive_int(height, 'height')
    dx = min(_positive_int(decimation_x, 'decimation_x'), width)
    dy = min(_positive_int(decimation_y, 'decimation_y'), height)
    _check_choice(depth_kind, DEPTH_KINDS, 'depth_kind')
    if not isinstance(rectified, (bool, np.bool_)):
        raise ValueError(f'rectified must be True or False, got {rectified!r}')
    rectified = bool(rectified)
    if rectified:
        model, values = 'none', ()
    else:
        model, values = _checked_distortion(distortion_model, distortion)
    return _cached_table(intrinsics, width, height, depth_kind, rectified, model, values, dx, dy)


@lru_cache(maxsize=8)
def _cached_table(intrinsics, width, height, depth_kind, rectified, model, distortion, dx, dy):
    u = np.arange(0, width, dx, dtype=np.float64)
    v = np.arange(0, height, dy, dtype=np.float64)
    fx, fy, cx, cy = intrinsics
    if model == 'none':
        x = np.broadcast_to(((u - cx) / fx)[np.newaxis, :], (v.size, u.size))
        y = np.broadcast_to(((v - cy) / fy)[:, np.newaxis], (v.size, u.size))
    else:
        x, y = _undistorted(intrinsics, model, distortion, u, v)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        bad = int((~(np.isfinite(x) & np.isfinite(y))).sum())
        raise ValueError(f'undistortion ({model}) gave no finite ray for {bad} pixels: the '
                         f'coefficients do not describe this image')
    rays = np.empty((v.size, u.size, 3), np.float64)
    rays[..., 0], rays[..., 1], rays[..., 2] = x, y, 1.0
    if depth_kind == 'radial':
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    table = rays.astype(np.float32)
    table.flags.writeable = False
    return RayTable(table, width, height, dx, dy, depth_kind, rectified)


def _undistorted(intrinsics, model, distortion, u, v):
    """Normalized undistorted (x', y') of the pixel centres (u, v) grid, float64 (rows, cols)."""
    import cv2
    camera_matrix = np.array(CameraIntrinsics(*intrinsics).camera_matrix(),
                             np.float64).reshape(3, 3)
    coefficients = np.array(distortion, np.float64)
    grid_u, grid_v = np.meshgrid(u, v)
    pixels = np.stack([grid_u.ravel(), grid_v.ravel()], axis=-1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _UNDISTORT_CRITERIA_COUNT,
                _UNDISTORT_CRITERIA_EPS)
    if model == 'equidistant':
        normalized = cv2.fisheye.undistortPoints(pixels, camera_matrix, coefficients,
                                                 criteria=criteria)
    else:
        normalized = cv2.undistortPoints(pixels, camera_matrix, coefficients, criteria=criteria)
    normalized = normalized.reshape(v.size, u.size, 2)
    return normalized[..., 0], normalized[..., 1]
