"""Images as laid out in ``sensor_msgs/Image``, without ROS: raw fields <-> numpy arrays.

A ROS image is ``height`` rows of ``step`` bytes each; a row holds ``width`` pixels of
``bytes_per_pixel`` bytes followed by optional padding. :func:`image_array` returns a zero-copy
view of the pixels (padding skipped through the row stride) and checks every field first, so
nodes can reject malformed messages with a clear reason instead of crashing.
"""
from typing import NamedTuple

import numpy as np


class Encoding(NamedTuple):
    """Pixel layout of a ``sensor_msgs/Image`` encoding."""

    dtype: np.dtype
    channels: int


ENCODINGS = {
    # depth: uint16 in device units (usually mm) or float32 metres
    '16UC1': Encoding(np.dtype(np.uint16), 1),
    'mono16': Encoding(np.dtype(np.uint16), 1),
    '32FC1': Encoding(np.dtype(np.float32), 1),
    # colour: 8 bits per channel
    'rgb8': Encoding(np.dtype(np.uint8), 3),
    'bgr8': Encoding(np.dtype(np.uint8), 3),
    'rgba8': Encoding(np.dtype(np.uint8), 4),
    'bgra8': Encoding(np.dtype(np.uint8), 4),
    'mono8': Encoding(np.dtype(np.uint8), 1),
}
DEPTH_ENCODINGS = ('16UC1', 'mono16', '32FC1')
COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')


class ImageError(ValueError):
    """An image that cannot be read; ``reason`` is a short key (bad_encoding, empty_image,
    too_large, bad_step) that nodes count dropped frames by."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def bytes_per_pixel(encoding):
    """Bytes of one pixel in ``encoding``; ValueError for an encoding this package does not read."""
    if encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r} '
                         f'(supported: {", ".join(ENCODINGS)})')
    layout = ENCODINGS[encoding]
    return layout.dtype.itemsize * layout.channels


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
