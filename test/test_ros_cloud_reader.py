"""Clouds read back with ROS's own reader, sensor_msgs_py.point_cloud2.read_points_numpy.

sensor_msgs_py is not on PyPI. This test imports it when it is importable (a ROS 2 install) or
from $SENSOR_MSGS_PY_SOURCE (a checkout's sensor_msgs_py directory, e.g. of
ros2/common_interfaces); otherwise it is skipped with that reason.
"""
import importlib
import os
import sys

import cv2
import numpy as np
import pytest
from std_msgs.msg import Header

from pointcloud_pipeline.depth import CameraIntrinsics, depth_to_cloud
from pointcloud_pipeline.messages import MessageBuffer, cloud_to_pointcloud2


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


@pytest.fixture(scope='module')
def frame(shared_data):
    folder = shared_data / 'rgbd' / '7scenes_tsdf_fusion'
    return (cv2.imread(str(folder / 'frame-000000.depth.png'), cv2.IMREAD_UNCHANGED),
            cv2.imread(str(folder / 'frame-000000.color.jpg'), cv2.IMREAD_COLOR))


@pytest.mark.parametrize('organized', [True, False])
@pytest.mark.parametrize('with_color', [False, True])
def test_read_points_numpy_reads_our_clouds(frame, organized, with_color):
    point_cloud2 = ros_reader()
    depth, color = frame
    buffer = MessageBuffer()
    cloud = depth_to_cloud(depth, CameraIntrinsics(585.0, 585.0, 320.0, 240.0),
                           organized=organized, color=color if with_color else None,
                           color_encoding='bgr8', out=buffer.view(depth.size * 16))
    msg = cloud_to_pointcloud2(cloud, Header(frame_id='camera'), buffer)
    xyz = point_cloud2.read_points_numpy(msg, field_names=['x', 'y', 'z'])
    np.testing.assert_array_equal(xyz, cloud.xyz().reshape(-1, 3))
    finite = point_cloud2.read_points_numpy(msg, field_names=['x', 'y', 'z'], skip_nans=True)
    assert len(finite) == cloud.valid_points
    if with_color:
        structured = point_cloud2.read_points(msg, field_names=['rgb'])
        packed = np.ascontiguousarray(structured['rgb']).view(np.uint32)
        red = (packed >> 16) & 0xFF
        np.testing.assert_array_equal(red, cloud.rgb().reshape(-1, 3)[:, 0])
