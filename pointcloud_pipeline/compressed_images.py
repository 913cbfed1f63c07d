"""``sensor_msgs/CompressedImage`` payloads -> numpy images, as image_transport's plugins decode
them (ROS-free: bytes and format strings in, arrays out).

compressedDepth (``compressed_depth_image_transport``, ``codec.cpp``): ``format`` is
``'<encoding>; compressedDepth <codec>'`` with codec ``png`` or ``rvl`` (``'<encoding>;
compressedDepth'`` and a bare ``'<encoding>'`` are the older writers' png). ``data`` is a
12-byte ``ConfigHeader`` (int32 compression format, always INV_DEPTH = 0; float32
``depthParam[2]`` = the inverse-depth quantisation A, B), native = little-endian, then the
payload: a 16-bit single-channel PNG, or RVL (uint32 cols, uint32 rows, then RVL words, see
``_compressed_images.pyx``). 16UC1 / mono16 is the raw depth units (lossless); 32FC1 was
quantised by the publisher as ``v = uint16(A / depth + B)`` (truncated; 0 for NaN or depth >=
depth_max) and is
reconstructed exactly as the plugin does, in float32: ``depth = A / (float(v) - B)``, NaN where
``v == 0``. The reconstruction is within one quantisation step of the original:
``depth <= decoded < A / (A / depth - 1)`` (about ``depth**2 / A`` metres).

compressed (``compressed_image_transport``, ``compressed_subscriber.cpp``): ``format`` is
``'<encoding>; <jpeg|png|tiff> compressed <target>'``; the payload is decoded with
``cv2.imdecode(IMREAD_UNCHANGED)`` (the subscriber's default mode) and its channel order
converted to ``<encoding>`` by the subscriber's rule: ``compressed bgr`` in the format means
the payload is BGR(A), otherwise RGB(A). A format without ``;`` (older writers, some drivers'
plain ``'jpeg'``) is mono8 for one channel and bgr8 for three.

Every problem raises :class:`CompressedImageError` (a ValueError) with a ``reason``:
``bad_format`` (format string), ``bad_encoding`` (an encoding this package does not read),
``bad_header`` (ConfigHeader, RVL size), ``bad_payload`` (PNG/JPEG/RVL data that does not decode
to the stated image), ``too_large`` (compressed or decoded bytes above ``max_bytes``, checked
from the PNG/JPEG/RVL header before anything is allocated where the header says the size).

Decoding releases the GIL (OpenCV's codecs, the RVL kernel, numpy's ufuncs). Buffers: a
:class:`CompressedDepthDecoder` / :class:`CompressedImageDecoder` reuses its output buffers
from one call to the next (RVL output, the 32FC1 reconstruction, the colour conversion), so the
array a call returns is valid until the next call; ``cv2.imdecode`` cannot write into a given
array (its Python binding has no ``dst``), so a PNG/JPEG decode allocates its image each call.
"""
import struct
from typing import NamedTuple

import cv2
import numpy as np

from . import _compressed_images
from .layouts import COLOR_ENCODINGS, DEPTH_ENCODINGS, ENCODINGS, bytes_per_pixel

CONFIG_HEADER = struct.Struct('<iff')  # compressionFormat format; float depthParam[2]
INV_DEPTH = 0  # compression_common.h: enum compressionFormat { UNDEFINED = -1, INV_DEPTH }
RVL_SIZE = struct.Struct('<II')  # cols, rows
_RVL_ERRORS = {1: 'the RVL stream ends before every pixel is decoded (overrun)',
               2: 'an RVL run is longer than the pixels left (overrun)',
               3: 'an RVL value has more than 10 nibbles'}
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15
_COLOR_FROM_BGR = {'rgb8': cv2.COLOR_BGR2RGB, 'rgba8': cv2.COLOR_BGR2RGBA,
                   'bgra8': cv2.COLOR_BGR2BGRA}
_COLOR_FROM_RGB = {'bgr8': cv2.COLOR_RGB2BGR, 'bgra8': cv2.COLOR_RGB2BGRA,
                   'rgba8': cv2.COLOR_RGB2RGBA}
_IS_COLOR = ('rgb8', 'rgba8', 'rgb16', 'rgba16', 'bgr8', 'bgra8', 'bgr16', 'bgra16')


class CompressedImageError(ValueError):
    """A compressed image that cannot be decoded; ``reason`` is a short key (bad_format,
    bad_encoding, bad_header, bad_payload, too_large)."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class DepthFormat(NamedTuple):
    """A parsed compressedDepth format string: the image encoding and the payload codec."""

    encoding: str  # '16UC1', 'mono16' or '32FC1'
    codec: str  # 'png' or 'rvl'


class ConfigHeader(NamedTuple):
    """compressed_depth_image_transport's ConfigHeader: format (0 = INV_DEPTH) and the
    inverse-depth quantisation (A = depthParam[0], B = depthParam[1]; 32FC1 only)."""

    format: int
    depth_quant_a: float
    depth_quant_b: float


class ColorFormat(NamedTuple):
    """A parsed compressed format string: the stated encoding and whether the payload's
    channels are in BGR order (else RGB; ignored for one channel)."""

    encoding: str
    payload_bgr: bool


def parse_depth_format(format):
    """:class:`DepthFormat` of a compressedDepth ``format`` string, by the plugin's rules
    (``codec.cpp``: the encoding is everything before ``;``; the codec is png when the rest
    holds ``compressedDepth png`` or a bare ``compressedDepth``, rvl for ``compressedDepth
    rvl``; no ``;`` at all is png). Reasons: bad_format, bad_encoding."""
    if not isinstance(format, str):
        raise CompressedImageError('bad_format', f'format must be a string, got '
                                                 f'{type(format).__name__}')
    split = format.find(';')
    if split < 0:
        encoding, codec = format, 'png'
    else:
        encoding, ending = format[:split], format[split:]
        if 'compressedDepth png' in ending:
            codec = 'png'
        elif 'compressedDepth rvl' in ending:
            codec = 'rvl'
        elif 'compressedDepth' in ending and 'compressedDepth ' not in ending:
            codec = 'png'
        else:
            raise CompressedImageError('bad_format', f'unsupported compressedDepth format '
                                                     f'{format!r} (expected "<encoding>; '
                                                     f'compressedDepth png|rvl")')
    if encoding not in DEPTH_ENCODINGS:
        raise CompressedImageError('bad_encoding', f'unsupported compressedDepth encoding '
                                                   f'{encoding!r} in format {format!r} (expected'
                                                   f' one of {", ".join(DEPTH_ENCODINGS)})')
    return DepthFormat(encoding, codec)


def parse_config_header(data):
    """(:class:`ConfigHeader`, payload) of compressedDepth ``data`` (bytes-like). The plugin
    needs more than the 12 header bytes; the format must be INV_DEPTH (what every writer sets).
    Reason bad_header."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size <= CONFIG_HEADER.size:
        raise CompressedImageError('bad_header', f'compressedDepth data has {buffer.size} '
                                                 f'bytes: no payload after the '
                                                 f'{CONFIG_HEADER.size}-byte ConfigHeader')
    header = ConfigHeader(*CONFIG_HEADER.unpack_from(buffer))
    if header.format != INV_DEPTH:
        raise CompressedImageError('bad_header', f'ConfigHeader format {header.format} is not '
                                                 f'INV_DEPTH ({INV_DEPTH})')
    return header, buffer[CONFIG_HEADER.size:]


def declared_size(payload):
    """(width, height) that a PNG's IHDR or a JPEG's frame header declares, else None (other
    formats, or a header this short scan cannot read: the decoder then judges the data)."""
    data = memoryview(payload).cast('B')
    if bytes(data[:8]) == _PNG_SIGNATURE and len(data) >= 24 and bytes(data[12:16]) == b'IHDR':
        width, height = struct.unpack_from('>II', data, 16)
        return width, height
    if bytes(data[:2]) != b'\xff\xd8':
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        if marker in _JPEG_FRAME_MARKERS:
            if position + 9 > len(data):
                return None
            height, width = struct.unpack_from('>HH', data, position + 5)
            return width, height
        position += 2 + struct.unpack_from('>H', data, position + 2)[0]
    return None


def _check_size(nbytes, max_bytes, what):
    if max_bytes is not None and nbytes > max_bytes:
        raise CompressedImageError('too_large', f'{what} of {nbytes} bytes exceeds the '
                                                f'{max_bytes}-byte limit')


def _check_declared_size(payload, bytes_per_pixel, max_bytes):
    size = declared_size(payload) if max_bytes is not None else None
    if size is not None:
        _check_size(size[0] * size[1] * bytes_per_pixel, max_bytes,
                    f'decoded {size[0]}x{size[1]} image')


def _imdecode(payload, what):
    try:
        image = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise CompressedImageError('bad_payload', f'{what} does not decode: '
                                                  f'{str(error).strip()}') from None
    if image is None or image.size == 0:
        raise CompressedImageError('bad_payload', f'{what} does not decode (corrupt or not '
                                                  f'{what.split()[0]})')
    return image


def _reused(buffers, key, shape, dtype):
    """A buffer from ``buffers`` of this shape and dtype, allocated when it changes."""
    buffer = buffers.get(key)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = buffers[key] = np.empty(shape, dtype)
    return buffer


class CompressedDepthDecoder:
    """Decodes compressedDepth messages, reusing its output buffers between calls: the array a
    call returns is valid until the next call (copy it to keep it)."""

    def __init__(self):
        self._buffers = {}

    def decode(self, data, format, max_bytes=None):
        """(depth, :class:`DepthFormat`) of one message's ``data`` and ``format``: a 2-D uint16
        array (16UC1 / mono16, the raw units) or float32 (32FC1 metres, NaN = no reading),
        C-contiguous, native byte order. max_bytes: limit on the compressed data and on the
        decoded image. Raises :class:`CompressedImageError`."""
        depth_format = parse_depth_format(format)
        _check_size(np.frombuffer(data, dtype=np.uint8).size, max_bytes, 'compressedDepth data')
        header, payload = parse_config_header(data)
        is_float = depth_format.encoding == '32FC1'
        pixel_bytes = 4 if is_float else 2
        if depth_format.codec == 'png':
            _check_declared_size(payload, pixel_bytes, max_bytes)
            values = _imdecode(payload, 'PNG payload')
            if values.dtype != np.uint16 or values.ndim != 2:
                channels = 1 if values.ndim == 2 else values.shape[2]
                raise CompressedImageError('bad_payload', f'PNG payload is {values.dtype} with '
                                                          f'{channels} channel(s), not 16-bit '
                                                          f'single-channel')
        else:
            values = self._decode_rvl(payload, pixel_bytes, max_bytes)
        if not is_float:
            return values, depth_format
        return self._inverse_depth(values, header), depth_format

    def _decode_rvl(self, payload, pixel_bytes, max_bytes):
        if payload.size < RVL_SIZE.size:
            raise CompressedImageError('bad_header', f'RVL payload has {payload.size} bytes, '
                                                     f'less than its {RVL_SIZE.size}-byte size')
        cols, rows = RVL_SIZE.unpack_from(payload)
        if rows == 0 or cols == 0:
            raise CompressedImageError('bad_header', f'RVL image size {cols}x{rows} contains '
                                                     f'zero')
        _check_size(rows * cols * pixel_bytes, max_bytes, f'decoded {cols}x{rows} image')
        values = _reused(self._buffers, 'rvl', (rows, cols), np.uint16)
        status = _compressed_images.decode_rvl(payload[RVL_SIZE.size:], values.reshape(-1))
        if status:
            raise CompressedImageError('bad_payload', f'{_RVL_ERRORS[status]} ({cols}x{rows} '
                                                      f'pixels, {payload.size} bytes)')
        return values

    def _inverse_depth(self, values, header):
        """The plugin's 32FC1 reconstruction, in float32: A / (float(v) - B), NaN where v = 0."""
        a, b = np.float32(header.depth_quant_a), np.float32(header.depth_quant_b)
        if not (np.isfinite(a) and np.isfinite(b)):
            raise CompressedImageError('bad_header', f'ConfigHeader depth quantisation is not '
                                                     f'finite: A={a}, B={b}')
        depth = _reused(self._buffers, 'metres', values.shape, np.float32)
        invalid = _reused(self._buffers, 'invalid', values.shape, np.bool_)
        np.subtract(values, b, out=depth, dtype=np.float32)
        with np.errstate(divide='ignore', over='ignore', invalid='ignore'):  # inf / NaN as C++
            np.divide(a, depth, out=depth)
        np.equal(values, 0, out=invalid)
        np.copyto(depth, np.float32(np.nan), where=invalid)
        return depth


class CompressedImageDecoder:
    """Decodes ``compressed`` colour messages, reusing the colour-conversion buffer between
    calls: the array a call returns is valid until the next call."""

    def __init__(self, allowed_encodings=COLOR_ENCODINGS):
        self.allowed_encodings = tuple(allowed_encodings)
        self._buffers = {}

    def decode(self, data, format, max_bytes=None):
        """(pixels, encoding) of one message: HxWxC uint8 (HxW for mono8) in ``encoding`` (the
        format's, or mono8/bgr8 for a format without ``;``). Raises
        :class:`CompressedImageError`."""
        color_format = parse_color_format(format)
        payload = np.frombuffer(data, dtype=np.uint8)
        _check_size(payload.size, max_bytes, 'compressed image data')
        encoding = color_format.encoding
        if encoding is not None:
            self._check_encoding(encoding, format)
            _check_declared_size(payload, bytes_per_pixel(encoding), max_bytes)
        else:
            _check_declared_size(payload, 3, max_bytes)
        image = _imdecode(payload, 'compressed image')
        channels = 1 if image.ndim == 2 else image.shape[2]
        if encoding is None:  # older writers: the channels say it
            encoding = {1: 'mono8', 3: 'bgr8'}.get(channels)
            if encoding is None:
                raise CompressedImageError('bad_payload', f'a format without an encoding '
                                                          f'({format!r}) needs 1 or 3 channels, '
                                                          f'the image has {channels}')
            self._check_encoding(encoding, format)
        elif encoding in _IS_COLOR:
            conversion = (_COLOR_FROM_BGR if color_format.payload_bgr else
                          _COLOR_FROM_RGB).get(encoding)
            if conversion is not None:
                if image.dtype != np.uint8 or channels not in (3, 4):
                    raise CompressedImageError('bad_payload', self._mismatch(image, encoding))
                out_channels = ENCODINGS[encoding].channels
                out = _reused(self._buffers, 'color', image.shape[:2] + (out_channels,),
                              np.uint8)
                image = cv2.cvtColor(image, conversion, dst=out)
        layout = ENCODINGS[encoding]
        expected_shape = image.shape[:2] + ((layout.channels,) if layout.channels > 1 else ())
        if image.dtype != layout.dtype or image.shape != expected_shape:
            raise CompressedImageError('bad_payload', self._mismatch(image, encoding))
        _check_size(image.nbytes, max_bytes, 'decoded image')
        return image, encoding

    def _check_encoding(self, encoding, format):
        if encoding not in self.allowed_encodings or encoding not in ENCODINGS:
            raise CompressedImageError('bad_encoding', f'unsupported encoding {encoding!r} in '
                                                       f'format {format!r} (expected one of '
                                                       f'{", ".join(self.allowed_encodings)})')

    @staticmethod
    def _mismatch(image, encoding):
        channels = 1 if image.ndim == 2 else image.shape[2]
        return (f'decoded image is {image.dtype} with {channels} channel(s), which is not '
                f'{encoding}')


def parse_color_format(format):
    """:class:`ColorFormat` of a compressed ``format`` string (``compressed_subscriber.cpp``):
    the encoding is everything before ``;`` (None without ``;``: the decoded channels decide);
    the payload is BGR when the rest holds ``compressed bgr``. Reason bad_format."""
    if not isinstance(format, str):
        raise CompressedImageError('bad_format', f'format must be a string, got '
                                                 f'{type(format).__name__}')
    split = format.find(';')
    if split < 0:
        return ColorFormat(None, True)
    return ColorFormat(format[:split], 'compressed bgr' in format[split:])


def decode_compressed_depth(data, format, max_bytes=None):
    """Depth of one compressedDepth message into new arrays: (depth, :class:`DepthFormat`);
    see :meth:`CompressedDepthDecoder.decode`."""
    depth, depth_format = CompressedDepthDecoder().decode(data, format, max_bytes)
    return depth, depth_format


def decode_compressed_image(data, format, max_bytes=None, allowed_encodings=COLOR_ENCODINGS):
    """Pixels of one ``compressed`` colour message into new arrays: (pixels, encoding); see
    :meth:`CompressedImageDecoder.decode`."""
    return CompressedImageDecoder(allowed_encodings).decode(data, format, max_bytes)
