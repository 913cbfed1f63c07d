"""``sensor_msgs/Image`` and ``CameraInfo`` <-> numpy, without slow paths.

A ROS image is ``height`` rows of ``step`` bytes each; a row holds ``width`` pixels of
``bytes_per_pixel`` bytes followed by optional padding. :func:`image_array` returns a zero-copy
view of the pixels (padding skipped through the row stride) and checks every field first, so
nodes can reject malformed messages with a clear reason instead of crashing; it reads the raw
fields (any object with them, e.g. a deserialized bag message). Publishing goes through
:mod:`.data_field` (one memcpy).
"""
import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from ..layouts import ENCODINGS, bytes_per_pixel
from .data_field import set_data


class ImageError(ValueError):
    """An image that cannot be read; ``reason`` is a short key (bad_encoding, empty_image,
    too_large, bad_step) that nodes count dropped frames by."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def image_array(data, width, height, step, encoding, is_bigendian=False, *,
                allowed_encodings=None, max_bytes=None):
    """View the pixels of a raw image as a numpy array.

    data: the bytes-like ``data`` field (bytes, array('B'), memoryview, uint8 ndarray).
    width, height: pixels; step: bytes per row including padding; encoding: see ``ENCODINGS``.
    is_bigendian: multi-byte pixels in big-endian order are byte-swapped into a new array.
    allowed_encodings: encodings the caller accepts (default: all of ``ENCODINGS``).
    max_bytes: reject images whose ``data`` is larger (protects against absurd sizes).

    Returns an ``height x width`` array (``height x width x channels`` for multi-channel
    encodings) in native byte order; a view of ``data`` (row stride ``step``) whenever possible.
    Raises :class:`ImageError` (a ValueError) naming the inconsistent field.
    """
    allowed = ENCODINGS if allowed_encodings is None else allowed_encodings
    if encoding not in allowed or encoding not in ENCODINGS:
        raise ImageError('bad_encoding', f'unsupported image encoding {encoding!r} (expected '
                                         f'one of {", ".join(allowed)})')
    pixel_bytes = bytes_per_pixel(encoding)
    layout = ENCODINGS[encoding]
    if width <= 0 or height <= 0:
        raise ImageError('empty_image', f'empty image: width={width}, height={height}')
    buffer = np.frombuffer(data, dtype=np.uint8)
    if max_bytes is not None and buffer.size > max_bytes:
        raise ImageError('too_large',
                         f'image of {buffer.size} bytes exceeds the {max_bytes}-byte limit')
    if step < width * pixel_bytes:
        raise ImageError('bad_step', f'step {step} is smaller than width {width} x '
                                     f'{pixel_bytes} bytes per pixel ({encoding})')
    if buffer.size != step * height:
        raise ImageError('bad_step', f'data has {buffer.size} bytes but step x height = '
                                     f'{step} x {height} = {step * height}')
    itemsize = layout.dtype.itemsize
    swap = bool(is_bigendian) and itemsize > 1
    dtype = layout.dtype.newbyteorder('>') if swap else layout.dtype
    if step % itemsize:
        # Rows of multi-byte pixels that do not start on an element boundary: copy them out.
        rows = buffer.reshape(height, step)[:, :width * pixel_bytes]
        pixels = np.ascontiguousarray(rows).view(dtype)
    else:
        pixels = np.ndarray(shape=(height, width * layout.channels), dtype=dtype,
                            buffer=buffer, strides=(step, itemsize))
    if swap:
        pixels = pixels.astype(layout.dtype)  # native byte order, new array
    if layout.channels > 1:
        pixels = pixels.reshape(height, width, layout.channels)
    return pixels

def image_to_array(msg, allowed_encodings=None, max_bytes=None):
    """Zero-copy numpy view of a ``sensor_msgs/Image`` (see :func:`image_array`).

    Raises ValueError with the reason when the message is inconsistent or unsupported.
    """
    return image_array(msg.data, msg.width, msg.height, msg.step, msg.encoding,
                       bool(msg.is_bigendian), allowed_encodings=allowed_encodings,
                       max_bytes=max_bytes)


def array_to_image(pixels, encoding, header=None):
    """A ``sensor_msgs/Image`` holding ``pixels`` (H x W or H x W x C) in ``encoding``.

    The array's dtype and channel count must match the encoding; rows are packed without
    padding, little-endian.
    """
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ValueError(f'unsupported image encoding {encoding!r}')
    pixels = np.asarray(pixels)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2] if pixels.ndim == 3 else -1
    if pixels.dtype != layout.dtype or channels != layout.channels:
        raise ValueError(f'{encoding} needs {layout.channels}-channel {layout.dtype} pixels, '
                         f'got shape {pixels.shape} {pixels.dtype}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * layout.dtype.itemsize * layout.channels
    set_data(msg, np.ascontiguousarray(pixels, dtype=layout.dtype.newbyteorder('<')))
    return msg


def make_camera_info(header, width, height, k, p, distortion_model='plumb_bob', d=None):
    """A ``sensor_msgs/CameraInfo`` of a pinhole camera: ``k`` 9 and ``p`` 12 row-major floats,
    no rectification (identity ``r``), distortion ``d`` (default: 5 zeros)."""
    info = CameraInfo()
    info.header = header
    info.width, info.height = int(width), int(height)
    info.distortion_model = distortion_model
    info.d = [0.0] * 5 if d is None else [float(x) for x in d]
    info.k = [float(x) for x in k]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [float(x) for x in p]
    return info


def pixels_to_image(pixels, encoding, header, buffer=None):
    """Like :func:`array_to_image` for a C-contiguous ``pixels`` array that may live in
    ``buffer`` (a :class:`MessageBuffer` view reshaped to the image): one copy in that case."""
    layout = ENCODINGS[encoding]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2] if pixels.ndim == 3 else -1
    if (pixels.dtype != layout.dtype or channels != layout.channels or
            not pixels.flags.c_contiguous):
        return array_to_image(pixels, encoding, header)  # checks and converts
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * layout.dtype.itemsize * layout.channels
    flat = pixels.reshape(-1).view(np.uint8)
    if buffer is not None:
        buffer.assign(msg, flat)
    else:
        set_data(msg, flat)
    return msg
