"""Message packing takes rclpy's fast paths and round-trips through real messages."""
from array import array

import numpy as np
import pytest
from sensor_msgs.msg import Image, PointCloud2

from pointcloud_pipeline.ros.camera_messages import array_to_image, image_to_array
from pointcloud_pipeline.ros.data_field import set_data


@pytest.mark.parametrize('make', [bytes, lambda b: array('B', b), bytearray,
                                  lambda b: np.frombuffer(b, np.uint8), memoryview])
def test_set_data_stores_an_array_of_the_bytes(make):
    payload = bytes(range(256)) * 4
    msg = PointCloud2()
    set_data(msg, make(payload))
    assert isinstance(msg.data, array) and msg.data.typecode == 'B'
    assert msg.data.tobytes() == payload


def test_set_data_accepts_multibyte_arrays():
    values = np.arange(10, dtype=np.float32)
    msg = PointCloud2()
    set_data(msg, values)
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.float32), values)


@pytest.mark.parametrize('encoding,pixels', [
    ('32FC1', np.linspace(0, 5, 12, dtype=np.float32).reshape(3, 4)),
    ('16UC1', np.arange(12, dtype=np.uint16).reshape(3, 4)),
    ('bgr8', np.arange(36, dtype=np.uint8).reshape(3, 4, 3)),
])
def test_image_round_trip(encoding, pixels):
    msg = array_to_image(pixels, encoding)
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (3, 4, encoding, 0)
    assert msg.step * msg.height == len(msg.data)
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_array_to_image_rejects_mismatched_pixels():
    with pytest.raises(ValueError, match='32FC1 needs 1-channel float32'):
        array_to_image(np.zeros((2, 2), np.uint16), '32FC1')
    with pytest.raises(ValueError, match='bgr8 needs 3-channel'):
        array_to_image(np.zeros((2, 2, 4), np.uint8), 'bgr8')
