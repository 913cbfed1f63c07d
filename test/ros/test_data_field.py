"""Message packing takes rclpy's fast paths and round-trips through real messages, with
rclpy's field checks (ROS_PYTHON_CHECK_FIELDS=1) on or off."""
from array import array
import os

import numpy as np
import pytest
from sensor_msgs.msg import Image, PointCloud2

from pointcloud_pipeline.ros.camera_messages import array_to_image, image_to_array
from pointcloud_pipeline.ros.data_field import MessageBuffer, set_data
from pointcloud_pipeline.ros.dds_environment import CHECK_FIELDS_OPT_IN


@pytest.mark.parametrize('make', [bytes, lambda b: array('B', b), bytearray,
                                  lambda b: np.frombuffer(b, np.uint8), memoryview])
def test_set_data_stores_an_array_of_the_bytes(make):
    payload = bytes(range(256)) * 4
    msg = PointCloud2()
    set_data(msg, make(payload))
    assert isinstance(msg.data, array) and msg.data.typecode == 'B'
    assert msg.data.tobytes() == payload


@pytest.mark.parametrize('check_fields', [False, True])
@pytest.mark.parametrize('make', [bytes, lambda b: array('B', b), bytearray,
                                  lambda b: np.frombuffer(bytearray(b), np.uint8),
                                  lambda b: memoryview(bytearray(b)), lambda b: array('H', b)])
def test_set_data_gives_the_message_its_own_copy(check_fields, make):
    """With field checks on, rclpy stores an array('B') without copying it: the message must
    still own its bytes (the caller reuses its buffer for the next frame)."""
    payload = bytes(range(256)) * 4
    source = make(payload)
    msg = PointCloud2(check_fields=check_fields)
    set_data(msg, source)
    assert isinstance(msg.data, array) and msg.data.typecode == 'B'
    assert msg.data is not source
    assert msg.data.tobytes() == payload
    if not isinstance(source, bytes):
        memoryview(source).cast('B')[:4] = b'\xff\xff\xff\xff'  # the next frame
        assert msg.data.tobytes() == payload


@pytest.mark.parametrize('check_fields', [False, True])
@pytest.mark.parametrize('message_type', [PointCloud2, Image])
def test_message_buffer_never_shares_its_bytes(check_fields, message_type):
    buffer = MessageBuffer()
    view = buffer.view(64)
    view[:] = np.arange(64, dtype=np.uint8)
    first = message_type(check_fields=check_fields)
    buffer.assign(first, view)  # the one-copy path
    view[:] = 0  # the next frame overwrites the buffer ...
    second = message_type(check_fields=check_fields)
    buffer.assign(second, view[:32])  # a prefix: the set_data path
    view[:] = 9
    assert first.data.tobytes() == bytes(range(64))  # ... not the published messages
    assert second.data.tobytes() == bytes(32)


def test_message_field_checks_follow_the_environment():
    """The loopback environment (conftest) removes ROS_PYTHON_CHECK_FIELDS unless
    POINTCLOUD_PIPELINE_CHECK_FIELDS=1 asks to keep the checks: messages built by the code
    under test (no check_fields argument) follow it."""
    wanted = os.environ.get(CHECK_FIELDS_OPT_IN) == '1'
    assert (os.environ.get('ROS_PYTHON_CHECK_FIELDS') == '1') is wanted
    assert PointCloud2()._check_fields is wanted and Image()._check_fields is wanted


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
