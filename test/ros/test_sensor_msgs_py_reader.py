"""Clouds read back with ROS's own reader, sensor_msgs_py.point_cloud2.read_points_numpy.

sensor_msgs_py is not on PyPI. This test imports it when it is importable (a ROS 2 install) or
from $SENSOR_MSGS_PY_SOURCE (a checkout's sensor_msgs_py directory, e.g. of
ros2/common_interfaces); otherwise it is skipped with that reason.
"""
import importlib
import os
import sys

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from message_builders import cloud_to_pointcloud2
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import cloud_fields, depth_to_cloud
from pointcloud_pipeline.ros.cloud_messages import SerializedPointCloud2
from pointcloud_pipeline.ros.data_field import MessageBuffer

INTRINSICS = CameraIntrinsics(585.0, 585.0, 320.0, 240.0)


def ros_reader():
    try:
        return importlib.import_module('sensor_msgs_py.point_cloud2')
    except ImportError:
        source = os.environ.get('SENSOR_MSGS_PY_SOURCE')
        if source and os.path.isdir(source):
            sys.path.insert(0, source)
            try:
                return importlib.import_module('sensor_msgs_py.point_cloud2')
            finally:
                sys.path.remove(source)
    pytest.skip('sensor_msgs_py is not installed (not on PyPI) and SENSOR_MSGS_PY_SOURCE '
                'does not point at its source')


def pack(cloud_args, depth, packing):
    """The cloud as a PointCloud2 the way the node publishes it ('serialized': written in place
    into the CDR bytes, as pipeline_node does) or through the message API ('message')."""
    if packing == 'serialized':
        serializer = SerializedPointCloud2()
        out = serializer.data_view('camera', cloud_fields(cloud_args['color'] is not None),
                                   depth.size * 16)
        cloud = depth_to_cloud(depth, INTRINSICS, out=out, **cloud_args)
        raw = serializer.serialize(cloud, Time(sec=5, nanosec=6))
        return cloud, deserialize_message(raw, PointCloud2)
    buffer = MessageBuffer()
    cloud = depth_to_cloud(depth, INTRINSICS, out=buffer.view(depth.size * 16), **cloud_args)
    return cloud, cloud_to_pointcloud2(cloud, Header(frame_id='camera'), buffer)


@pytest.mark.parametrize('packing', ['serialized', 'message'])
@pytest.mark.parametrize('organized', [True, False])
@pytest.mark.parametrize('with_color', [False, True])
def test_read_points_numpy_reads_our_clouds(seven_scenes_frame, organized, with_color, packing):
    point_cloud2 = ros_reader()
    depth, color = seven_scenes_frame
    cloud, msg = pack({'organized': organized, 'color': color if with_color else None,
                       'color_encoding': 'bgr8'}, depth, packing)
    xyz = point_cloud2.read_points_numpy(msg, field_names=['x', 'y', 'z'])
    np.testing.assert_array_equal(xyz, cloud.xyz().reshape(-1, 3))
    finite = point_cloud2.read_points_numpy(msg, field_names=['x', 'y', 'z'], skip_nans=True)
    assert len(finite) == cloud.valid_points
    if with_color:
        structured = point_cloud2.read_points(msg, field_names=['rgb'])
        packed = np.ascontiguousarray(structured['rgb']).view(np.uint32)
        red = (packed >> 16) & 0xFF
        np.testing.assert_array_equal(red, cloud.rgb().reshape(-1, 3)[:, 0])
