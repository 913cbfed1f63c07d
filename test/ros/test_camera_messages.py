"""Raw sensor_msgs/Image fields <-> numpy: layouts, padding, byte order and every rejection."""
import numpy as np
import pytest

from pointcloud_pipeline.ros.camera_messages import image_array


def padded(pixels, pad):
    """Row-padded bytes of ``pixels`` (H x W[xC]) and the resulting step."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    step = rows.shape[1] + pad
    out = np.zeros((pixels.shape[0], step), np.uint8)
    out[:, :rows.shape[1]] = rows
    return out.tobytes(), step


@pytest.mark.parametrize('encoding,dtype,channels', [
    ('16UC1', np.uint16, 1), ('mono16', np.uint16, 1), ('32FC1', np.float32, 1),
    ('rgb8', np.uint8, 3), ('bgra8', np.uint8, 4), ('mono8', np.uint8, 1)])
@pytest.mark.parametrize('pad', [0, 6, 7])
def test_round_trip_with_row_padding(encoding, dtype, channels, pad):
    rng = np.random.default_rng(0)
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    pixels = (rng.random(shape) * 200).astype(dtype)
    data, step = padded(pixels, pad)
    out = image_array(data, 7, 5, step, encoding)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_array_equal(out, pixels)


def test_zero_copy_view_when_aligned():
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    data = bytearray(pixels.tobytes())
    out = image_array(data, 4, 3, 8, '16UC1')
    data[0] = 99
    assert out[0, 0] == 99


def test_big_endian_is_byte_swapped():
    pixels = np.array([[1, 256, 1000]], dtype='>u2')
    out = image_array(pixels.tobytes(), 3, 1, 6, '16UC1', is_bigendian=True)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, [[1, 256, 1000]])
    floats = np.array([[1.5, -2.0]], dtype='>f4')
    out = image_array(floats.tobytes(), 2, 1, 8, '32FC1', is_bigendian=1)
    np.testing.assert_array_equal(out, [[1.5, -2.0]])


def test_big_endian_flag_is_irrelevant_for_bytes():
    pixels = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    out = image_array(pixels.tobytes(), 2, 1, 6, 'rgb8', is_bigendian=True)
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize('kwargs,message', [
    (dict(encoding='bayer_rggb8'), 'unsupported image encoding'),
    (dict(width=0), 'empty image'),
    (dict(height=0), 'empty image'),
    (dict(step=7), 'step 7 is smaller'),
    (dict(data=bytes(31)), 'data has 31 bytes'),
    (dict(data=bytes(33)), 'data has 33 bytes'),
    (dict(max_bytes=16), 'exceeds the 16-byte limit'),
])
def test_rejections_say_what_is_wrong(kwargs, message):
    args = dict(data=bytes(32), width=4, height=4, step=8, encoding='16UC1')
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        image_array(**args)


def test_allowed_encodings():
    with pytest.raises(ValueError, match="expected one of 16UC1"):
        image_array(bytes(12), 4, 1, 12, 'rgb8', allowed_encodings=('16UC1',))
