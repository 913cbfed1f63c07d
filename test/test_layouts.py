"""The shared byte layouts agree with ROS's definitions and with numpy."""
from array import array

import numpy as np
import pytest
from sensor_msgs.msg import PointField

from pointcloud_pipeline.layouts import (COLOR_ENCODINGS, DEPTH_ENCODINGS, ENCODINGS, FLOAT32,
                                         POINT_FIELD_DTYPES, bytes_per_pixel, color_encoding,
                                         writable_bytes)


def test_point_field_datatypes_are_the_message_constants():
    constants = {name: getattr(PointField, name) for name in
                 ('INT8', 'UINT8', 'INT16', 'UINT16', 'INT32', 'UINT32', 'FLOAT32', 'FLOAT64')}
    assert FLOAT32 == PointField.FLOAT32
    for name, datatype in constants.items():
        dtype = POINT_FIELD_DTYPES[datatype]
        assert dtype.kind == {'I': 'i', 'U': 'u', 'F': 'f'}[name[0]]
        assert dtype.itemsize * 8 == int(name.lstrip('INTUFLOA'))
        assert dtype.byteorder in ('<', '|') or dtype.isnative


@pytest.mark.parametrize('encoding,size', [('16UC1', 2), ('mono16', 2), ('32FC1', 4),
                                           ('rgb8', 3), ('bgra8', 4), ('mono8', 1)])
def test_bytes_per_pixel(encoding, size):
    assert bytes_per_pixel(encoding) == size


def test_every_colour_encoding_says_where_red_green_and_blue_are():
    pixel = {'rgb8': (10, 20, 30), 'bgr8': (30, 20, 10), 'rgba8': (10, 20, 30, 255),
             'bgra8': (30, 20, 10, 255), 'mono8': (10,)}
    assert set(pixel) == set(COLOR_ENCODINGS)
    for encoding, values in pixel.items():
        layout = color_encoding(encoding)
        assert layout.channels == len(values)
        rgb = tuple(values[i] for i in layout.rgb_index)
        assert rgb == ((10, 10, 10) if encoding == 'mono8' else (10, 20, 30))
    assert all(ENCODINGS[encoding].rgb_index is None for encoding in DEPTH_ENCODINGS)
    with pytest.raises(ValueError, match="unsupported colour encoding '16UC1'"):
        color_encoding('16UC1')
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        bytes_per_pixel('yuv422')


@pytest.mark.parametrize('make', [lambda n: np.zeros(n, np.uint8), bytearray,
                                  lambda n: array('B', bytes(n)),
                                  lambda n: np.zeros(n // 4, np.float32)])
def test_writable_bytes_views_without_copying(make):
    out = make(64)
    view = writable_bytes(out, 32)
    view[:] = 7
    assert bytes(memoryview(out).cast('B'))[:32] == bytes([7]) * 32
    assert view.size == 32


@pytest.mark.parametrize('out,kwargs,message', [
    (bytes(8), {}, 'read-only'),
    ([0] * 8, {}, 'out must be a writable buffer'),
    (np.zeros((4, 4), np.uint8)[:, ::2], {}, 'contiguous'),
    (bytearray(4), {}, 'too small: 4 bytes, the cloud needs 8'),
    (bytearray(9), {'exact': True}, 'exactly 8'),
])
def test_writable_bytes_says_what_is_wrong(out, kwargs, message):
    with pytest.raises(ValueError, match=message):
        writable_bytes(out, 8, what='cloud', **kwargs)
