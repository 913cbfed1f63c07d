"""Checking incoming ROS messages before any conversion (duck-typed: any object with the fields).

Every check raises :class:`FrameError` with a short ``reason`` (the nodes count drops per
reason) and a message naming the bad field. Nothing here copies pixel or point data except
where noted.
"""
import collections
import threading
from typing import NamedTuple

import numpy as np

from ..camera import (CameraIntrinsics, image_region, intrinsics_from_camera_info,
                      reduced_intrinsics)
from ..layouts import FLOAT32
from .camera_messages import ImageError, image_array
from .cloud_messages import field_named
from .compat import publication_key


class FrameError(ValueError):
    """A message that cannot be converted; ``reason`` is a short counter key."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def image_pixels(msg, allowed_encodings, max_bytes, prefix=''):
    """Zero-copy pixels of a ``sensor_msgs/Image`` (big-endian 16-bit data is byte-swapped into
    a copy). Reasons (with ``prefix``, e.g. 'rgb_'): bad_encoding, empty_image, too_large,
    bad_step (see :func:`.camera_messages.image_array`)."""
    try:
        return image_array(msg.data, int(msg.width), int(msg.height), int(msg.step),
                           msg.encoding, bool(msg.is_bigendian),
                           allowed_encodings=allowed_encodings, max_bytes=max_bytes)
    except ImageError as error:
        raise FrameError(prefix + error.reason, f'{prefix}{error}') from None


class CameraModel(NamedTuple):
    """What the conversion needs from a ``sensor_msgs/CameraInfo``: the intrinsics and size of
    the published image (binning and ROI applied, see :func:`camera_model`).

    ``intrinsics`` come from P (or K, as asked); ``raw_intrinsics`` always from K, with
    ``distortion_model`` and ``distortion`` (D) the lens model of the unrectified image (for
    ray tables, :mod:`..rays`). ``raw_intrinsics`` is None when K is unusable (P-only info)."""

    intrinsics: CameraIntrinsics
    width: int
    height: int
    fallback: str | None = None  # why the other matrix than asked for was used, if it was
    raw_intrinsics: CameraIntrinsics | None = None
    distortion_model: str = ''
    distortion: tuple = ()


def _roi_fields(info):
    roi = getattr(info, 'roi', None)
    if roi is None:
        return 0, 0, 0, 0
    return (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))


def camera_model(info, use_projection_matrix=True):
    """:class:`CameraModel` of a CameraInfo; reason 'bad_camera_info' for zero sizes, zero or
    non-finite intrinsics, an invalid binning/ROI.

    Binning and ROI (REP 104; binning 0 means 1, an all-zero ROI the full resolution): K and P
    are full-resolution calibration, so the intrinsics become those of the cropped and binned
    image (:func:`..camera.reduced_intrinsics`, image_geometry's formulas) and the expected
    image size is the ROI size divided by the binning.
    A valid K with an all-zero P (some drivers) while ``use_projection_matrix`` falls back to
    K; ``fallback`` then says so (the node warns once).
    """
    try:
        region = image_region(int(info.width), int(info.height),
                              int(getattr(info, 'binning_x', 0)),
                              int(getattr(info, 'binning_y', 0)), *_roi_fields(info))
    except ValueError as error:
        raise FrameError('bad_camera_info', str(error)) from None
    k = np.asarray(info.k, dtype=np.float64)
    p = np.asarray(info.p, dtype=np.float64)
    fallback = None
    try:
        if use_projection_matrix and p.size == 12 and not p.any() and k.any():
            intrinsics = intrinsics_from_camera_info(k, None, use_projection_matrix=False)
            fallback = 'camera_info P is all zeros: using K (not rectified intrinsics)'
        else:
            intrinsics = intrinsics_from_camera_info(k, p,
                                                     use_projection_matrix=use_projection_matrix)
    except ValueError as error:
        raise FrameError('bad_camera_info', str(error)) from None
    try:
        raw = reduced_intrinsics(intrinsics_from_camera_info(k, None, False), region)
    except ValueError:
        raw = None
    try:
        distortion = tuple(float(value) for value in getattr(info, 'd', ()))
    except (TypeError, ValueError) as error:
        raise FrameError('bad_camera_info', f'camera_info D is not numeric: {error}') from None
    width, height = region.image_size
    return CameraModel(reduced_intrinsics(intrinsics, region), width, height, fallback, raw,
                       str(getattr(info, 'distortion_model', '')), distortion)


def check_camera_matches(model, depth_shape):
    """Reason 'camera_info_mismatch' when the depth image is not the camera_info's size."""
    height, width = depth_shape[:2]
    if (width, height) != (model.width, model.height):
        raise FrameError('camera_info_mismatch',
                         f'depth image is {width}x{height} but camera_info is '
                         f'{model.width}x{model.height} (after its binning and roi)')


def check_intensity_matches(intensity_shape, depth_shape):
    """Reason 'intensity_size_mismatch' when intensity and depth sizes differ (an intensity
    image is registered to depth by the sensor: it is never resized)."""
    if tuple(intensity_shape[:2]) != tuple(depth_shape[:2]):
        raise FrameError('intensity_size_mismatch',
                         f'intensity image is {intensity_shape[1]}x{intensity_shape[0]} but '
                         f'depth is {depth_shape[1]}x{depth_shape[0]}')


def check_color_matches(color_shape, depth_shape, resize):
    """Reason 'rgb_size_mismatch' when colour and depth sizes differ and ``resize`` is off."""
    if tuple(color_shape[:2]) != tuple(depth_shape[:2]) and not resize:
        raise FrameError('rgb_size_mismatch',
                         f'colour image is {color_shape[1]}x{color_shape[0]} but depth is '
                         f'{depth_shape[1]}x{depth_shape[0]} (set resize_rgb to resize it)')


class CloudLayout(NamedTuple):
    """Where the coordinates are in a ``PointCloud2``'s data (byte offsets in a point)."""

    buffer: object          # contiguous points (msg.data, or a copy without row padding)
    num_points: int
    point_step: int
    x_offset: int
    y_offset: int
    z_offset: int
    intensity_offset: int | None


def cloud_layout(msg, max_bytes):
    """:class:`CloudLayout` of a ``sensor_msgs/PointCloud2`` with float32 x, y, z (required)
    and the offset of a float32 intensity (None for any other type: bev_node reads intensities
    of every numeric type with ``cloud_messages.scalar_field``). Reasons: big_endian,
    too_large, bad_size, missing_field, bad_field. Rows padded beyond ``width * point_step``
    are copied together; otherwise ``buffer`` is ``msg.data`` itself."""
    if msg.is_bigendian:
        raise FrameError('big_endian', 'big-endian point clouds are not supported')
    width, height = int(msg.width), int(msg.height)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    size = len(msg.data)
    if size > max_bytes:
        raise FrameError('too_large', f'cloud data of {size} bytes exceeds max_cloud_bytes '
                                      f'{max_bytes}')
    offsets = {}
    for name in ('x', 'y', 'z', 'intensity'):
        field = field_named(msg.fields, name)
        if field is None:
            if name != 'intensity':
                raise FrameError('missing_field', f'the cloud has no {name!r} field')
            continue
        if field.datatype != FLOAT32 or field.count != 1:
            if name == 'intensity':
                continue  # e.g. uint16 intensities: not at a float32 offset
            raise FrameError('bad_field', f'field {name!r} must be one FLOAT32 (datatype 7), '
                                          f'got datatype {field.datatype} count {field.count}')
        if not 0 <= field.offset <= point_step - 4:
            raise FrameError('bad_field', f'field {name!r} at offset {field.offset} does not '
                                          f'fit in point_step {point_step}')
        offsets[name] = int(field.offset)
    if width * height == 0:
        if size:
            raise FrameError('bad_size', f'{width}x{height} cloud with {size} data bytes')
    elif row_step < width * point_step or row_step * height != size:
        raise FrameError('bad_size', f'{width}x{height} points of {point_step} bytes, '
                                     f'row_step {row_step}: expected {row_step * height} data '
                                     f'bytes (row_step >= {width * point_step}), got {size}')
    buffer = msg.data
    if height > 1 and row_step != width * point_step:
        rows = np.frombuffer(msg.data, np.uint8).reshape(height, row_step)
        buffer = np.ascontiguousarray(rows[:, :width * point_step])
    return CloudLayout(buffer, width * height, point_step, offsets['x'], offsets['y'],
                       offsets['z'], offsets.get('intensity'))


class DuplicateDeliveries:
    """Recognise one publication delivered more than once to a node, e.g. through two
    subscriptions of one topic (a best-effort volatile one and a transient-local one, which also
    replays the publisher's history when it is created).

    A publication is identified from the rclpy ``MessageInfo`` by
    :func:`pointcloud_pipeline.ros.compat.publication_key` (publisher gid and sequence number on
    Kilted, source timestamp and sequence number on Jazzy); the last ``remember`` are kept.
    Thread-safe.
    """

    def __init__(self, remember=256):
        self._seen = collections.OrderedDict()
        self._remember = int(remember)
        self._lock = threading.Lock()
        self.duplicates = 0

    def is_duplicate(self, message_info):
        """True when this publication was already seen (counted in ``duplicates``)."""
        key = publication_key(message_info)
        if key is None:  # cannot tell publications apart: treat each delivery as new
            return False
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                self.duplicates += 1
                return True
            self._seen[key] = None
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)
            return False


__all__ = ['FrameError', 'image_pixels', 'CameraModel', 'camera_model', 'check_camera_matches',
           'check_color_matches', 'CloudLayout', 'cloud_layout', 'DuplicateDeliveries']
