"""PointCloud2 / Image packing from reusable buffers."""
from array import array
from types import SimpleNamespace

import numpy as np
import pytest
from sensor_msgs.msg import PointField
from std_msgs.msg import Header

from message_builders import cloud_to_pointcloud2, point_fields
from pointcloud_pipeline.ros.camera_messages import image_to_array, pixels_to_image
from pointcloud_pipeline.ros.data_field import MessageBuffer

XYZ_FIELDS = [SimpleNamespace(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
              for n, o in (('x', 0), ('y', 4), ('z', 8))]


def xyz_cloud(points, buffer=None, organized_shape=None):
    """A cloud in the depth module's layout (16-byte points, xyz float32 at 0, 4, 8)."""
    count = len(points)
    data = buffer.view(count * 16) if buffer is not None else np.empty(count * 16, np.uint8)
    as_floats = data.view(np.float32).reshape(count, 4)
    as_floats[:, :3] = points
    as_floats[:, 3] = 0
    height, width = organized_shape or (1, count)
    return SimpleNamespace(data=data, width=width, height=height, point_step=16,
                           row_step=16 * width, is_dense=organized_shape is None,
                           fields=XYZ_FIELDS)


def test_point_fields_from_specs():
    fields = point_fields(XYZ_FIELDS)
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [
        ('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)]


@pytest.mark.parametrize('use_buffer', [False, True])
def test_cloud_to_pointcloud2_copies_the_layout(use_buffer):
    points = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    buffer = MessageBuffer() if use_buffer else None
    cloud = xyz_cloud(points, buffer, organized_shape=(3, 4))
    header = Header(frame_id='camera_optical')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = cloud_to_pointcloud2(cloud, header, buffer)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (3, 4, 16, 64)
    assert msg.is_dense is False and msg.is_bigendian is False
    assert msg.header.frame_id == 'camera_optical' and msg.header.stamp.nanosec == 345
    assert isinstance(msg.data, array) and len(msg.data) == 3 * 64
    got = np.frombuffer(msg.data, np.float32).reshape(-1, 4)[:, :3]
    np.testing.assert_array_equal(got, points)


def test_buffer_is_reused_and_the_message_owns_a_copy():
    buffer = MessageBuffer()
    first = buffer.view(64)
    assert buffer.view(64) is first  # same size: no reallocation
    cloud = xyz_cloud(np.ones((4, 3), np.float32), buffer)
    msg = cloud_to_pointcloud2(cloud, Header(), buffer)
    first[:] = 0  # the next frame overwrites the buffer ...
    assert np.frombuffer(msg.data, np.float32)[0] == 1.0  # ... not the published message
    assert len(buffer.view(32)) == 32


def test_dense_prefix_of_a_larger_buffer_is_packed_exactly():
    buffer = MessageBuffer()
    whole = buffer.view(160)
    whole.view(np.float32)[:] = 7.0
    cloud = SimpleNamespace(data=whole[:48], width=3, height=1, point_step=16, row_step=48,
                            is_dense=True, fields=XYZ_FIELDS)
    msg = cloud_to_pointcloud2(cloud, Header(), buffer)
    assert len(msg.data) == 48 and msg.is_dense is True


def test_inconsistent_cloud_is_rejected():
    cloud = xyz_cloud(np.zeros((4, 3), np.float32))
    cloud.row_step = 32
    with pytest.raises(ValueError, match='height x row_step'):
        cloud_to_pointcloud2(cloud, Header())


@pytest.mark.parametrize('encoding,shape,dtype', [('bgr8', (5, 7, 3), np.uint8),
                                                  ('mono16', (4, 6), np.uint16)])
def test_pixels_to_image_from_a_buffer(encoding, shape, dtype):
    buffer = MessageBuffer()
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    pixels = buffer.view(nbytes).view(dtype).reshape(shape)
    pixels[...] = np.arange(pixels.size).reshape(shape) % 200
    msg = pixels_to_image(pixels, encoding, Header(frame_id='base'), buffer)
    assert msg.encoding == encoding and msg.header.frame_id == 'base'
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_pixels_to_image_checks_the_layout():
    with pytest.raises(ValueError, match='bgr8 needs 3-channel'):
        pixels_to_image(np.zeros((2, 2), np.uint8), 'bgr8', Header())


def test_pointcloud2_points_reads_fields_by_name_without_copying():
    from sensor_msgs.msg import PointCloud2

    from pointcloud_pipeline.ros.cloud_messages import pointcloud2_points
    points = np.arange(24, dtype=np.float32).reshape(6, 4)
    msg = PointCloud2(height=2, width=3, point_step=16, row_step=48)
    msg.fields = point_fields(XYZ_FIELDS) + [
        PointField(name='intensity', offset=12, datatype=PointField.FLOAT32, count=1)]
    msg.data = points.tobytes()
    views = pointcloud2_points(msg, ['x', 'z', 'intensity', 'rgb'])
    assert sorted(views) == ['intensity', 'x', 'z']
    np.testing.assert_array_equal(views['x'], points[:, 0])
    np.testing.assert_array_equal(views['intensity'], points[:, 3])
    assert np.shares_memory(views['z'], np.frombuffer(msg.data, np.uint8))


def test_pointcloud2_points_skips_row_padding_and_rejects_bad_sizes():
    from sensor_msgs.msg import PointCloud2

    from pointcloud_pipeline.ros.cloud_messages import pointcloud2_points
    rows = np.zeros((2, 40), np.uint8)  # 2 points of 16 bytes + 8 padding bytes per row
    rows[:, :32].view(np.float32)[:] = np.arange(16, dtype=np.float32).reshape(2, 8)
    msg = PointCloud2(height=2, width=2, point_step=16, row_step=40)
    msg.fields = point_fields(XYZ_FIELDS)
    msg.data = rows.tobytes()
    np.testing.assert_array_equal(pointcloud2_points(msg, ['y'])['y'], [1, 5, 9, 13])
    msg.row_step = 30
    with pytest.raises(ValueError, match='row_step'):
        pointcloud2_points(msg, ['x'])
    msg.row_step, msg.point_step = 40, 8
    with pytest.raises(ValueError, match='does not fit'):
        pointcloud2_points(msg, ['z'])


@pytest.mark.parametrize('frame_id', ['', 'c', 'cam', 'camera_depth_optical_frame'])
@pytest.mark.parametrize('with_rgb', [False, True])
@pytest.mark.parametrize('dense', [False, True])
def test_serialized_cloud_matches_rclpy_serialization(frame_id, with_rgb, dense):
    """Same length as rclpy's serialization and the same message after a round trip (rclpy
    leaves alignment padding uninitialised, so the bytes themselves cannot be compared)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2

    from pointcloud_pipeline.ros.cloud_messages import SerializedPointCloud2
    fields = XYZ_FIELDS + ([SimpleNamespace(name='rgb', offset=12, datatype=7, count=1)]
                           if with_rgb else [])
    serializer = SerializedPointCloud2()
    view = serializer.data_view(frame_id, fields, 10 * 16)
    points = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float32)
    view[:7 * 16] = points.view(np.uint8).ravel()
    height, width = (1, 7) if dense else (7, 1)
    cloud = SimpleNamespace(data=view[:7 * 16], width=width, height=height, point_step=16,
                            row_step=16 * width, is_dense=dense, fields=fields)
    stamp = SimpleNamespace(sec=1234, nanosec=999)
    raw = serializer.serialize(cloud, stamp)
    expected = PointCloud2(height=height, width=width, point_step=16, row_step=16 * width,
                           is_dense=dense, is_bigendian=False, fields=point_fields(fields))
    expected.header.frame_id = frame_id
    expected.header.stamp.sec, expected.header.stamp.nanosec = 1234, 999
    expected.data = points.tobytes()
    assert len(raw) == len(serialize_message(expected))
    assert deserialize_message(raw, PointCloud2) == expected


def test_serialized_cloud_copies_foreign_data_and_rebuilds_for_a_new_frame():
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2

    from pointcloud_pipeline.ros.cloud_messages import SerializedPointCloud2
    serializer = SerializedPointCloud2()
    serializer.data_view('a', XYZ_FIELDS, 64)
    cloud = xyz_cloud(np.full((4, 3), 2.0, np.float32))  # its own buffer
    msg = deserialize_message(serializer.serialize(cloud, SimpleNamespace(sec=1, nanosec=0)),
                              PointCloud2)
    assert msg.header.frame_id == 'a' and np.frombuffer(msg.data, np.float32)[0] == 2.0
    serializer.data_view('another_frame', XYZ_FIELDS, 64)
    msg = deserialize_message(serializer.serialize(cloud, SimpleNamespace(sec=1, nanosec=0)),
                              PointCloud2)
    assert msg.header.frame_id == 'another_frame'
    with pytest.raises(ValueError, match='exceeds'):
        serializer.serialize(xyz_cloud(np.zeros((5, 3), np.float32)),
                             SimpleNamespace(sec=0, nanosec=0))
