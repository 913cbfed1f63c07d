"""Pinhole camera intrinsics: from and to ``sensor_msgs/CameraInfo`` matrices, binning and
region of interest (REP 104), and resizing.

Units and convention: pixels; pixel centres at integer coordinates (pixel (0, 0) covers
[-0.5, 0.5]^2), as in depth_image_proc, image_geometry and OpenCV. Matrices are row-major:
K is 3x3 (9 numbers), P is 3x4 (12 numbers), as in CameraInfo ``k`` and ``p``.
"""
import math
from typing import NamedTuple

import numpy as np


class CameraIntrinsics(NamedTuple):
    """Pinhole intrinsics in pixels: focal lengths ``fx``, ``fy``; principal point ``cx``, ``cy``."""

    fx: float
    fy: float
    cx: float
    cy: float

    def camera_matrix(self):
        """Row-major 3x3 K as 9 floats (CameraInfo ``k``)."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def projection_matrix(self):
        """Row-major 3x4 P as 12 floats (CameraInfo ``p`` of a monocular camera: no
        rectification, no stereo baseline)."""
        return [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]


def checked_intrinsics(fx, fy, cx, cy):
    """:class:`CameraIntrinsics` of floats; ValueError unless fx, fy are finite and > 0 and
    cx, cy finite."""
    for name, value in (('fx', fx), ('fy', fy)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f'intrinsics: {name} must be finite and > 0, got {value!r}')
    for name, value in (('cx', cx), ('cy', cy)):
        if not math.isfinite(value):
            raise ValueError(f'intrinsics: {name} must be finite, got {value!r}')
    return CameraIntrinsics(float(fx), float(fy), float(cx), float(cy))


def _matrix(values, name, length):
    if values is None:
        raise ValueError(f'camera_info {name} is missing')
    try:
        matrix = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise ValueError(f'camera_info {name} is not numeric: {error}') from None
    if matrix.size != length:
        raise ValueError(f'camera_info {name} must have {length} values, got {matrix.size}')
    return matrix


def intrinsics_from_camera_info(k, p, use_projection_matrix: bool = True) -> CameraIntrinsics:
    """Intrinsics from a ``sensor_msgs/CameraInfo``'s ``k`` (3x3) and ``p`` (3x4), row-major.

    By default from the projection matrix P (fx=P[0], fy=P[5], cx=P[2], cy=P[6]), as
    depth_image_proc does: that is right for rectified depth images. ``use_projection_matrix=
    False`` uses K (fx=K[0], fy=K[4], cx=K[2], cy=K[5]). The matrix not used may be None.
    P's translation column (stereo baseline) is ignored.
    Raises ValueError for a wrong length, an all-zero (uncalibrated) matrix, non-finite or
    non-positive fx/fy, non-finite cx/cy.
    """
    if use_projection_matrix:
        matrix = _matrix(p, 'P', 12)
        if k is not None:
            _matrix(k, 'K', 9)
        fx, fy, cx, cy = matrix[0], matrix[5], matrix[2], matrix[6]
        name = 'P'
    else:
        matrix = _matrix(k, 'K', 9)
        if p is not None:
            _matrix(p, 'P', 12)
        fx, fy, cx, cy = matrix[0], matrix[4], matrix[2], matrix[5]
        name = 'K'
    if not matrix.any():
        raise ValueError(f'camera_info {name} is all zeros (camera not calibrated)')
    try:
        return checked_intrinsics(fx, fy, cx, cy)
    except ValueError as error:
        raise ValueError(f'camera_info {name}: {error}') from None


class ImageRegion(NamedTuple):
    """The part of the full-resolution calibration an image covers (REP 104), in full-resolution
    pixels: ``x_offset, y_offset, width, height`` of the region of interest, then binned by
    ``binning_x, binning_y`` (>= 1)."""

    x_offset: int
    y_offset: int
    width: int
    height: int
    binning_x: int
    binning_y: int

    @property
    def image_size(self):
        """(width, height) of the published image: the ROI size divided by the binning, rounded
        down, as image_geometry's ``reducedResolution``."""
        return self.width // self.binning_x, self.height // self.binning_y


def image_region(full_width, full_height, binning_x=0, binning_y=0, roi_x_offset=0,
                 roi_y_offset=0, roi_width=0, roi_height=0) -> ImageRegion:
    """:class:`ImageRegion` of a CameraInfo whose calibration (K, P, ``full_width`` x
    ``full_height``) is at full resolution, as REP 104 defines it: binning 0 means 1 (no
    binning); an ROI of zero width and height means the full resolution.

    Raises ValueError for a non-positive full size, an ROI with only one of width and height
    zero, a zero-sized ROI at a non-zero offset, an ROI reaching beyond the full resolution, or
    a binning larger than the ROI (an empty image).
    """
    full_width, full_height = int(full_width), int(full_height)
    if full_width <= 0 or full_height <= 0:
        raise ValueError(f'camera_info has an empty size {full_width}x{full_height}')
    bx, by = max(1, int(binning_x)), max(1, int(binning_y))
    x, y, width, height = (int(roi_x_offset), int(roi_y_offset), int(roi_width),
                           int(roi_height))
    if width == 0 and height == 0:
        if x or y:
            raise ValueError(f'camera_info roi has a zero size at offset ({x}, {y})')
        width, height = full_width, full_height
    elif width == 0 or height == 0:
        raise ValueError(f'camera_info roi {width}x{height} has a zero side')
    if x < 0 or y < 0 or x + width > full_width or y + height > full_height:
        raise ValueError(f'camera_info roi {width}x{height} at ({x}, {y}) reaches beyond the '
                         f'full resolution {full_width}x{full_height}')
    if width < bx or height < by:
        raise ValueError(f'camera_info binning {bx}x{by} is larger than the roi '
                         f'{width}x{height}')
    return ImageRegion(x, y, width, height, bx, by)


def reduced_intrinsics(intrinsics, region) -> CameraIntrinsics:
    """Intrinsics of the image ``region`` covers (cropped by its ROI, then binned), from the
    full-resolution ``intrinsics``, as image_geometry's PinholeCameraModel does:
    ``fx' = fx / binning_x``, ``cx' = (cx - roi.x_offset) / binning_x`` (same along y)."""
    bx, by = region.binning_x, region.binning_y
    return CameraIntrinsics(intrinsics.fx / bx, intrinsics.fy / by,
                            (intrinsics.cx - region.x_offset) / bx,
                            (intrinsics.cy - region.y_offset) / by)


def scale_intrinsics(k, p, from_size, to_size):
    """K and P of an image resized from ``from_size`` to ``to_size`` (height, width).

    k: 3x3 camera matrix (row-major, 9 values ok); p: 3x4 projection matrix (12 values ok) or None.
    The resize maps pixel centres like cv2.resize: ``u' = (u + 0.5) * sx - 0.5``, so
    ``fx' = fx * sx`` and ``cx' = (cx + 0.5) * sx - 0.5`` (same along y). P's translation column
    (``-fx * baseline``) scales with ``sx``. Returns ``(k', p')`` as float64 arrays (``p'`` is
    None when ``p`` is). (image_geometry's binning uses ``cx / binning``, which differs by
    ``0.5 * (sx - 1)`` pixels.)
    """
    from_h, from_w = from_size
    to_h, to_w = to_size
    if min(from_h, from_w, to_h, to_w) <= 0:
        raise ValueError(f'sizes must be positive, got {from_size} -> {to_size}')
    sx, sy = to_w / from_w, to_h / from_h
    rows = np.diag([sx, sy, 1.0])
    offset = np.array([[0.0, 0.0, 0.5 * (sx - 1.0)], [0.0, 0.0, 0.5 * (sy - 1.0)], [0.0, 0.0, 0.0]])
    transform = rows + offset  # [u', v', 1]^T = transform @ [u, v, 1]^T
    k_scaled = transform @ np.asarray(k, np.float64).reshape(3, 3)
    if p is None:
        return k_scaled, None
    return k_scaled, transform @ np.asarray(p, np.float64).reshape(3, 4)
