"""compressedDepth and compressed payloads decoded as image_transport's plugins decode them.

The messages are built by an encoder written here from the plugins' documented format
(compressed_depth_image_transport: 12-byte ConfigHeader, then a 16-bit PNG or RVL; RVL from
Wilson's paper / rvl_codec.cpp's description, vectorised with numpy rather than the codec's
loop), on real 7-Scenes frames.
"""
import struct
import warnings

import cv2
import numpy as np
import pytest

from gil_probe import gil_probe
from pointcloud_pipeline.compressed_images import (
    CompressedDepthDecoder, CompressedImageDecoder, CompressedImageError, DepthFormat,
    decode_compressed_depth, decode_compressed_image, declared_size, parse_color_format,
    parse_depth_format)

DEPTH_MAX = 10.0  # the publisher's defaults (compressed_depth_publisher.cpp; png_level 3)
DEPTH_QUANTIZATION = 100.0


# --- an independent encoder of the plugins' wire format -----------------------------------
def config_header(a=0.0, b=0.0, format=0):
    """ConfigHeader: int32 format (INV_DEPTH = 0), float32 depthParam[2], little-endian."""
    return struct.pack('<iff', format, a, b)


def vle_nibbles(values):
    """Each value as 3-bit groups, least significant first, 0x8 on all but the last."""
    values = np.asarray(values, dtype=np.int64)
    bit_length = np.zeros(values.shape, np.int64)
    remaining = values.copy()
    while remaining.any():
        bit_length += remaining > 0
        remaining >>= 1
    counts = np.maximum(1, -(-bit_length // 3))
    groups = (values[:, None] >> (3 * np.arange(11))) & 7
    continued = np.arange(11) < (counts[:, None] - 1)
    nibbles = groups | (continued * 8)
    return nibbles[np.arange(11) < counts[:, None]]  # row-major: value by value


def rvl_encode(pixels):
    """RVL words of a uint16 image: per run (zeros, non-zeros, zigzag(delta) per non-zero),
    nibbles packed into 32-bit words from the top nibble down, stored little-endian."""
    flat = np.asarray(pixels, dtype=np.int64).reshape(-1)
    nonzero = flat != 0
    edges = np.flatnonzero(np.diff(nonzero.astype(np.int8))) + 1
    runs = list(zip(np.concatenate(([0], edges)), np.concatenate((edges, [flat.size]))))
    values, previous, index = [], 0, 0
    while index < len(runs):  # a zero run (maybe empty), then a non-zero run (maybe empty)
        zeros = 0
        if not nonzero[runs[index][0]]:
            zeros = runs[index][1] - runs[index][0]
            index += 1
        values.append(zeros)
        count = 0
        if index < len(runs):
            start, end = runs[index]
            count = end - start
            index += 1
            delta = np.diff(np.concatenate(([previous], flat[start:end])))
            previous = int(flat[end - 1])
        values.append(count)
        if count:
            values.extend(((delta << 1) ^ (delta >> 63)).tolist())
    nibbles = vle_nibbles(values)
    nibbles = np.concatenate((nibbles, np.zeros(-nibbles.size % 8, np.int64)))
    words = (nibbles.reshape(-1, 8) << (28 - 4 * np.arange(8))).sum(axis=1)
    return words.astype('<u4').tobytes()


def quantise(metres, depth_max=DEPTH_MAX, depth_quantization=DEPTH_QUANTIZATION):
    """The publisher's 32FC1 inverse-depth quantisation, in float32: (A, B, uint16 v)."""
    a = np.float32(depth_quantization) * (np.float32(depth_quantization) + np.float32(1))
    b = np.float32(1) - a / np.float32(depth_max)
    with np.errstate(invalid='ignore', divide='ignore'):
        inverse = a / metres + b
        v = np.where(metres < np.float32(depth_max), np.trunc(inverse), 0).astype(np.uint16)
    return float(a), float(b), v


def compressed_depth(depth, codec):
    """(data, format) as compressed_depth_image_transport publishes ``depth`` (uint16 raw or
    float32 metres)."""
    if depth.dtype == np.float32:
        a, b, values = quantise(depth)
        encoding, header = '32FC1', config_header(a, b)
    else:
        values, encoding, header = depth, '16UC1', config_header()
    if codec == 'png':
        ok, png = cv2.imencode('.png', values, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        assert ok
        payload = png.tobytes()
    else:
        payload = struct.pack('<II', values.shape[1], values.shape[0]) + rvl_encode(values)
    return header + payload, f'{encoding}; compressedDepth {codec}'


@pytest.fixture(scope='module')
def depth_mm(seven_scenes_frame):
    return seven_scenes_frame[0]


@pytest.fixture(scope='module')
def depth_metres(depth_mm):
    metres = depth_mm.astype(np.float32) * np.float32(0.001)
    metres[depth_mm == 0] = np.nan
    return metres


# --- the encoder itself against a hand-worked stream --------------------------------------
def test_the_test_encoder_writes_the_codecs_words():
    # [0, 0, 5, 6]: zeros 2, non-zeros 2, zigzag(5) = 10 = 0o12 -> nibbles 0xA 0x1, zigzag(1) = 2
    # nibbles 2 2 A 1 2 -> word 0x22A12000, little-endian
    assert rvl_encode(np.array([0, 0, 5, 6], np.uint16)) == bytes([0x00, 0x20, 0xA1, 0x22])
    decoded, _ = decode_compressed_depth(config_header() + struct.pack('<II', 4, 1) +
                                         bytes([0x00, 0x20, 0xA1, 0x22]),
                                         '16UC1; compressedDepth rvl')
    assert decoded.tolist() == [[0, 0, 5, 6]]


# --- format strings ----------------------------------------------------------------------
@pytest.mark.parametrize('format,expected', [
    ('16UC1; compressedDepth png', ('16UC1', 'png')),
    ('32FC1; compressedDepth png', ('32FC1', 'png')),
    ('16UC1; compressedDepth rvl', ('16UC1', 'rvl')),
    ('32FC1; compressedDepth rvl', ('32FC1', 'rvl')),
    ('mono16; compressedDepth png', ('mono16', 'png')),
    ('16UC1; compressedDepth', ('16UC1', 'png')),  # older writers
    ('16UC1', ('16UC1', 'png')),  # the oldest: no ';'
])
def test_depth_format_strings(format, expected):
    assert parse_depth_format(format) == DepthFormat(*expected)


@pytest.mark.parametrize('format,reason', [
    ('16UC1; compressedDepth jpeg', 'bad_format'),
    ('16UC1; png compressed', 'bad_format'),
    ('bgr8; compressedDepth png', 'bad_encoding'),
    ('8UC1; compressedDepth rvl', 'bad_encoding'),
    (' 16UC1; compressedDepth png', 'bad_encoding'),  # the plugin does not trim either
])
def test_bad_depth_format_strings(format, reason):
    with pytest.raises(CompressedImageError) as error:
        parse_depth_format(format)
    assert error.value.reason == reason


def test_color_format_strings():
    assert parse_color_format('rgb8; jpeg compressed bgr8') == ('rgb8', True)
    assert parse_color_format('rgb8; tiff compressed ') == ('rgb8', False)
    assert parse_color_format('jpeg') == (None, True)


# --- round trips on a real frame ---------------------------------------------------------
@pytest.mark.parametrize('codec', ['png', 'rvl'])
def test_16uc1_round_trips_losslessly(depth_mm, codec):
    data, format = compressed_depth(depth_mm, codec)
    decoded, depth_format = decode_compressed_depth(data, format)
    assert depth_format == DepthFormat('16UC1', codec)
    assert decoded.dtype == np.uint16 and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, depth_mm)
    if codec == 'rvl':
        assert len(data) < depth_mm.nbytes / 2  # it is a compression


def test_mono16_and_a_legacy_format_decode_like_16uc1(depth_mm):
    data, _ = compressed_depth(depth_mm, 'png')
    for format in ('mono16; compressedDepth png', '16UC1; compressedDepth', '16UC1'):
        np.testing.assert_array_equal(decode_compressed_depth(data, format)[0], depth_mm)


@pytest.mark.parametrize('codec', ['png', 'rvl'])
def test_32fc1_round_trips_within_the_quantisation_step(depth_metres, codec):
    data, format = compressed_depth(depth_metres, codec)
    decoded, depth_format = decode_compressed_depth(data, format)
    assert depth_format == DepthFormat('32FC1', codec)
    assert decoded.dtype == np.float32 and decoded.shape == depth_metres.shape
    a, b, values = quantise(depth_metres)
    valid = np.isfinite(depth_metres) & (depth_metres < DEPTH_MAX)
    assert valid.sum() > 200_000
    np.testing.assert_array_equal(np.isnan(decoded), ~valid)
    # exactly the plugin's float32 formula ...
    with np.errstate(divide='ignore'):
        plugin = np.float32(a) / (values.astype(np.float32) - np.float32(b))
    np.testing.assert_array_equal(decoded[valid], plugin[valid])
    # ... which is within one quantisation step (truncation: never nearer than the original)
    original = depth_metres[valid].astype(np.float64)
    step = original**2 / (a - original)  # A / (A / d - 1) - d
    error = decoded[valid] - original
    assert np.all(error >= -1e-6 * original)
    assert np.all(error <= step * 1.0001 + 1e-6 * original)
    assert np.abs(error).max() > 0  # quantised: not the raw values


def test_32fc1_divisions_by_zero_give_inf_without_warnings():
    values = np.array([[0, 1, 5, 9]], np.uint16)  # v - B = 0 at v = 5
    data = config_header(2.0, 5.0) + cv2.imencode('.png', values)[1].tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        decoded, _ = decode_compressed_depth(data, '32FC1; compressedDepth png')
    np.testing.assert_array_equal(decoded, [[np.nan, -0.5, np.inf, 0.5]])


def test_the_decoder_reuses_its_buffers(depth_mm, depth_metres):
    decoder = CompressedDepthDecoder()
    data, format = compressed_depth(depth_mm, 'rvl')
    first, _ = decoder.decode(data, format)
    second, _ = decoder.decode(data, format)
    assert second is first
    data, format = compressed_depth(depth_metres, 'png')
    metres_first, _ = decoder.decode(data, format)
    assert decoder.decode(data, format)[0] is metres_first


def test_decoding_releases_the_gil(depth_mm, depth_metres):
    messages = [compressed_depth(depth_mm, 'rvl'), compressed_depth(depth_metres, 'png'),
                compressed_depth(depth_mm, 'png')]
    decoder = CompressedDepthDecoder()
    with gil_probe() as ticks_during:
        held = ticks_during(lambda: sum(i * i for i in range(300_000)))
        released = ticks_during(lambda: [decoder.decode(*message) for message in messages
                                         for _ in range(10)])
    assert held == 0
    assert released > 10, released


# --- malformed messages ------------------------------------------------------------------
def rvl_message(depth, stream=None, size=None):
    cols, rows = size or (depth.shape[1], depth.shape[0])
    stream = rvl_encode(depth) if stream is None else stream
    return config_header() + struct.pack('<II', cols, rows) + stream


def malformed_cases(depth):
    png = compressed_depth(depth, 'png')[0]
    rvl = rvl_message(depth)
    corrupt = bytearray(png)
    corrupt[200:400] = bytes(200)
    eight_bit = (config_header() +
                 cv2.imencode('.png', (depth // 256).astype(np.uint8))[1].tobytes())
    return [
        ('empty', b'', '16UC1; compressedDepth png', 'bad_header', 'no payload'),
        ('header only', config_header(), '16UC1; compressedDepth png', 'bad_header',
         'no payload'),
        ('truncated header', config_header()[:7], '16UC1; compressedDepth rvl', 'bad_header',
         'no payload'),
        ('header format', config_header(format=-1) + png[12:], '16UC1; compressedDepth png',
         'bad_header', 'not INV_DEPTH'),
        ('wrong format string', png, '16UC1; compressedDepth zstd', 'bad_format', 'zstd'),
        ('colour format string', png, 'bgr8; jpeg compressed bgr8', 'bad_format',
         'unsupported compressedDepth format'),
        ('corrupt png', bytes(corrupt), '16UC1; compressedDepth png', 'bad_payload',
         'does not decode'),
        ('truncated png', png[:len(png) // 2], '16UC1; compressedDepth png', 'bad_payload',
         'does not decode'),
        ('8-bit png', eight_bit, '16UC1; compressedDepth png', 'bad_payload', 'uint8'),
        ('rvl as png', rvl, '16UC1; compressedDepth png', 'bad_payload', 'does not decode'),
        ('rvl overrun', rvl[:len(rvl) // 2], '16UC1; compressedDepth rvl', 'bad_payload',
         'overrun'),
        ('rvl stream longer than its size', rvl_message(depth, size=(640, 100)),
         '16UC1; compressedDepth rvl', 'bad_payload', 'longer than the pixels left'),
        ('rvl size cut', rvl[:12 + 5], '16UC1; compressedDepth rvl', 'bad_header',
         '8-byte size'),
        ('rvl zero size', rvl_message(depth, size=(0, 480)), '16UC1; compressedDepth rvl',
         'bad_header', 'contains zero'),
        ('rvl value of 11 nibbles', rvl_message(depth, stream=b'\xff' * 8),
         '32FC1; compressedDepth rvl', 'bad_payload', '10 nibbles'),
        ('non-finite quantisation', config_header(float('nan'), 1.0) + png[12:],
         '32FC1; compressedDepth png', 'bad_header', 'not finite'),
        ('png as rvl', png, '16UC1; compressedDepth rvl', 'too_large', 'limit'),
    ]


@pytest.mark.parametrize('case', range(17))
def test_malformed_messages_raise_a_reason(depth_mm, case):
    name, data, format, reason, message = malformed_cases(depth_mm)[case]
    decoder = CompressedDepthDecoder()
    with pytest.raises(CompressedImageError, match=message) as error:
        decoder.decode(data, format, max_bytes=2**26)
    assert error.value.reason == reason, name
    # and the decoder still decodes the next good message
    good, format = compressed_depth(depth_mm, 'rvl')
    np.testing.assert_array_equal(decoder.decode(good, format)[0], depth_mm)


def test_sizes_are_checked_before_decoding(depth_mm):
    png, format = compressed_depth(depth_mm, 'png')
    assert declared_size(png[12:]) == (640, 480)
    limit = 640 * 480 * 2 - 1
    with pytest.raises(CompressedImageError, match='decoded 640x480 image') as error:
        decode_compressed_depth(png, format, max_bytes=limit)
    assert error.value.reason == 'too_large'
    rvl = rvl_message(depth_mm, size=(100_000, 100_000))  # 20 GB if it were believed
    with pytest.raises(CompressedImageError, match='100000x100000') as error:
        decode_compressed_depth(rvl, '16UC1; compressedDepth rvl', max_bytes=2**28)
    assert error.value.reason == 'too_large'
    with pytest.raises(CompressedImageError, match='compressedDepth data of'):
        decode_compressed_depth(png, format, max_bytes=100)


# --- compressed colour -------------------------------------------------------------------
@pytest.fixture(scope='module')
def color_bgr(seven_scenes_frame):
    return seven_scenes_frame[1]


def jpeg(image):
    ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def test_jpeg_colour_in_the_stated_encoding(color_bgr):
    data = jpeg(color_bgr)  # the publisher: colour -> bgr8 -> JPEG
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert declared_size(data) == (640, 480)
    pixels, encoding = decode_compressed_image(data, 'bgr8; jpeg compressed bgr8')
    assert encoding == 'bgr8'
    np.testing.assert_array_equal(pixels, reference)
    pixels, encoding = decode_compressed_image(data, 'rgb8; jpeg compressed bgr8')
    assert encoding == 'rgb8'
    np.testing.assert_array_equal(pixels, reference[..., ::-1])
    pixels, encoding = decode_compressed_image(data, 'bgra8; jpeg compressed bgr8')
    assert encoding == 'bgra8' and pixels.shape == (480, 640, 4)
    np.testing.assert_array_equal(pixels[..., :3], reference)
    assert (pixels[..., 3] == 255).all()
    pixels, encoding = decode_compressed_image(data, 'jpeg')  # no ';': 3 channels are bgr8
    assert encoding == 'bgr8'
    np.testing.assert_array_equal(pixels, reference)


def test_png_colour_is_lossless(color_bgr):
    ok, data = cv2.imencode('.png', color_bgr)
    assert ok
    pixels, encoding = decode_compressed_image(data.tobytes(), 'rgb8; png compressed bgr8')
    assert encoding == 'rgb8'
    np.testing.assert_array_equal(pixels, color_bgr[..., ::-1])
    grey = cv2.cvtColor(color_bgr, cv2.COLOR_BGR2GRAY)
    data = cv2.imencode('.png', grey)[1].tobytes()
    pixels, encoding = decode_compressed_image(data, 'mono8; png compressed ')
    assert encoding == 'mono8'
    np.testing.assert_array_equal(pixels, grey)
    # an RGB payload (no "compressed bgr"): the subscriber's RGB -> BGR conversion
    data = cv2.imencode('.png', color_bgr[..., ::-1].copy())[1].tobytes()
    pixels, _ = decode_compressed_image(data, 'bgr8; tiff compressed ')
    np.testing.assert_array_equal(pixels, color_bgr)


def test_the_colour_decoder_reuses_its_conversion_buffer(color_bgr):
    decoder = CompressedImageDecoder()
    data = jpeg(color_bgr)
    first, _ = decoder.decode(data, 'rgb8; jpeg compressed bgr8')
    assert decoder.decode(data, 'rgb8; jpeg compressed bgr8')[0] is first


@pytest.mark.parametrize('name,format,reason,message', [
    ('corrupt', 'bgr8; jpeg compressed bgr8', 'bad_payload', 'does not decode'),
    ('16-bit colour', 'bgr16; png compressed bgr16', 'bad_encoding', 'bgr16'),
    ('depth format', '16UC1; compressedDepth png', 'bad_encoding', '16UC1'),
    ('grey for colour', 'bgr8; jpeg compressed bgr8', 'bad_payload', 'not bgr8'),
    ('colour for mono', 'mono8; jpeg compressed mono8', 'bad_payload', 'not mono8'),
    ('too large', 'bgr8; jpeg compressed bgr8', 'too_large', 'decoded 640x480 image'),
])
def test_bad_colour_messages_raise_a_reason(color_bgr, name, format, reason, message):
    data = jpeg(color_bgr)
    max_bytes = None
    if name == 'corrupt':
        data = data[:600]
    elif name == 'grey for colour':
        data = jpeg(cv2.cvtColor(color_bgr, cv2.COLOR_BGR2GRAY))
    elif name == 'too large':
        max_bytes = 640 * 480 * 3 - 1
    with pytest.raises(CompressedImageError, match=message) as error:
        decode_compressed_image(data, format, max_bytes=max_bytes)
    assert error.value.reason == reason


# --- random streams: the decoder never reads or writes out of bounds ------------------------
def test_random_images_round_trip_through_rvl():
    rng = np.random.default_rng(13)
    decoder = CompressedDepthDecoder()
    for _ in range(200):
        rows, cols = rng.integers(1, 40, 2)
        image = rng.integers(0, 65536, (rows, cols)).astype(np.uint16)
        image[rng.random(image.shape) < rng.random()] = 0  # any sparsity, all-zero included
        if rng.random() < 0.3:  # smooth depth: small deltas
            image = np.cumsum(rng.integers(-3, 4, image.shape), axis=1).astype(np.uint16)
        decoded, _ = decoder.decode(rvl_message(image), '16UC1; compressedDepth rvl')
        np.testing.assert_array_equal(decoded, image)


def test_random_rvl_streams_decode_or_raise_a_reason():
    rng = np.random.default_rng(14)
    decoder = CompressedDepthDecoder()
    outcomes = set()
    for _ in range(2000):
        size = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        stream = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        try:
            decoded, _ = decoder.decode(rvl_message(np.zeros((1, 1), np.uint16), stream, size),
                                        '32FC1; compressedDepth rvl')
            assert decoded.shape == size[::-1]
            outcomes.add('decoded')
        except CompressedImageError as error:
            outcomes.add(error.reason)
    assert outcomes == {'decoded', 'bad_payload'}
