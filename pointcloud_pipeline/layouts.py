"""Byte layouts shared by the kernels' public modules and the ROS plumbing (no ROS imports).

- Image encodings: the pixel layout of each ``sensor_msgs/Image`` encoding this package reads
  or writes (:data:`ENCODINGS`), with the position of red, green and blue in a colour pixel.
- Point fields: ``sensor_msgs/PointField`` datatypes and their numpy dtypes, and
  :class:`PointFieldSpec` (a field without the message type).
- Caller-provided output buffers (``out=``) of the kernels: :func:`writable_bytes`, one check
  with one set of messages.
"""
from typing import NamedTuple

import numpy as np


class Encoding(NamedTuple):
    """Pixel layout of a ``sensor_msgs/Image`` encoding.

    rgb_index: channel index of red, green and blue in a pixel (mono8: (0, 0, 0), grey is
    r = g = b); None for depth encodings.
    """

    dtype: np.dtype
    channels: int
    rgb_index: tuple[int, int, int] | None = None


ENCODINGS = {
    # depth: uint16 in device units (usually mm) or float32 metres
    '16UC1': Encoding(np.dtype(np.uint16), 1),
    'mono16': Encoding(np.dtype(np.uint16), 1),
    '32FC1': Encoding(np.dtype(np.float32), 1),
    # colour: 8 bits per channel (alpha ignored)
    'rgb8': Encoding(np.dtype(np.uint8), 3, (0, 1, 2)),
    'bgr8': Encoding(np.dtype(np.uint8), 3, (2, 1, 0)),
    'rgba8': Encoding(np.dtype(np.uint8), 4, (0, 1, 2)),
    'bgra8': Encoding(np.dtype(np.uint8), 4, (2, 1, 0)),
    'mono8': Encoding(np.dtype(np.uint8), 1, (0, 0, 0)),
}
DEPTH_ENCODINGS = ('16UC1', 'mono16', '32FC1')
COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')
INTENSITY_ENCODINGS = ('mono8', 'mono16', '16UC1', '32FC1')  # infrared / amplitude images


def bytes_per_pixel(encoding):
    """Bytes of one pixel in ``encoding``; ValueError for an encoding this package does not read."""
    if encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r} '
                         f'(supported: {", ".join(ENCODINGS)})')
    layout = ENCODINGS[encoding]
    return layout.dtype.itemsize * layout.channels


def color_encoding(encoding):
    """The :class:`Encoding` of a colour encoding; ValueError naming the supported ones."""
    if encoding not in COLOR_ENCODINGS:
        raise ValueError(f'unsupported colour encoding {encoding!r} '
                         f'(expected one of {", ".join(COLOR_ENCODINGS)})')
    return ENCODINGS[encoding]


# sensor_msgs/PointField datatypes -> numpy dtype (little-endian)
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
POINT_FIELD_DTYPES = {INT8: np.dtype('i1'), UINT8: np.dtype('u1'), INT16: np.dtype('<i2'),
                      UINT16: np.dtype('<u2'), INT32: np.dtype('<i4'), UINT32: np.dtype('<u4'),
                      FLOAT32: np.dtype('<f4'), FLOAT64: np.dtype('<f8')}


class PointFieldSpec(NamedTuple):
    """One ``sensor_msgs/PointField``: name, byte offset in the point, datatype, count."""

    name: str
    offset: int
    datatype: int
    count: int


def writable_bytes(out, nbytes, *, exact=False, what='output', alignment=1):
    """The first ``nbytes`` of ``out`` as a 1-D uint8 numpy view (no copy).

    out: a writable, contiguous buffer-protocol object (numpy array, bytearray, array('B'),
        memoryview); any element type.
    exact: require exactly ``nbytes`` (else at least ``nbytes``).
    what: the output's name in the messages ('cloud', 'image').
    alignment: bytes the buffer's first address must be a multiple of (4 for a kernel that
        stores float32 or uint32 values: a misaligned store is undefined behaviour in C).
    Raises ValueError saying what is wrong (not a buffer, read-only, not contiguous, size,
    alignment).
    """
    try:
        view = memoryview(out)
    except TypeError:
        raise ValueError(f'out must be a writable buffer (numpy array, bytearray, '
                         f"array('B')), got {type(out).__name__}") from None
    if view.readonly:
        raise ValueError(f'out buffer ({type(out).__name__}) is read-only')
    if not view.c_contiguous:
        raise ValueError('out buffer must be contiguous')
    if exact and view.nbytes != nbytes:
        raise ValueError(f'out buffer has {view.nbytes} bytes, the {what} needs exactly {nbytes}')
    if view.nbytes < nbytes:
        raise ValueError(f'out buffer too small: {view.nbytes} bytes, the {what} needs {nbytes}')
    data = np.frombuffer(view.cast('B') if view.format != 'B' or view.ndim != 1 else view,
                         dtype=np.uint8, count=nbytes)
    misalignment = data.ctypes.data % alignment
    if misalignment and nbytes:  # nothing is stored into an empty output
        raise ValueError(f'out buffer is not aligned for the {what}: its address is '
                         f'{misalignment} bytes past a multiple of {alignment} (pass a numpy '
                         f'array, bytearray or array(\'B\'), or a slice of one at a multiple '
                         f'of {alignment} bytes)')
    return data


def point_buffer(buffer, point_step, num_points):
    """``buffer`` (any contiguous bytes-like object) as 1-D uint8, read in place, checked to
    hold ``num_points`` points of ``point_step`` bytes; ValueError otherwise."""
    try:
        data = np.frombuffer(buffer, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as error:
        raise ValueError(f'buffer must be a contiguous bytes-like object ({error})') from None
    needed = point_step * num_points
    if data.size < needed:
        raise ValueError(f'buffer has {data.size} bytes, but {num_points} points of '
                         f'{point_step} bytes need {needed}')
    return data
