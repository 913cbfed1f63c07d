"""pipeline_node's ``bev/occupancy`` over DDS: the demo camera's view of the synthetic room."""
from nav_msgs.msg import OccupancyGrid
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from pointcloud_pipeline.demo.synthetic import SyntheticDepthCamera, camera_pose
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.nodes.pipeline_node import PipelineNode
from pointcloud_pipeline.occupancy import (FREE, OCCUPIED, UNKNOWN, OccupancyBands,
                                           occupancy_grid_from_buffer)
from pointcloud_pipeline.ros.camera_messages import array_to_image, make_camera_info
from pointcloud_pipeline.transforms import camera_mount_transform
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
DEMO_MOUNT = dict(height=0.8, pitch=0.15)  # config/demo.yaml


def test_demo_camera_frame_gives_the_kernels_grid_in_the_body_frame(rclpy_context):
    camera = SyntheticDepthCamera(with_color=False)
    depth = camera.render(pose=camera_pose(0.0)).depth_mm
    intrinsics = camera.intrinsics
    k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    p = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, 0.0, intrinsics.fy, intrinsics.cy, 0.0,
         0.0, 0.0, 1.0, 0.0]
    parameters = {'qos': 'reliable', 'log_period': 0.0, 'max_range': 8.0,
                  'mount.height': DEMO_MOUNT['height'], 'mount.pitch': DEMO_MOUNT['pitch']}
    pipeline = PipelineNode(context=rclpy_context, parameter_overrides=[
        Parameter(name, value=value) for name, value in parameters.items()])
    source = Node('test_source', context=rclpy_context)
    depth_pub = source.create_publisher(Image, 'depth/image_rect', RELIABLE)
    info_pub = source.create_publisher(CameraInfo, 'depth/camera_info', RELIABLE)
    grids = Collector()
    source.create_subscription(OccupancyGrid, 'bev/occupancy', grids, RELIABLE)
    header = Header(frame_id='camera_depth_optical_frame')
    header.stamp.sec = 7
    with spinning(rclpy_context, pipeline, source):
        assert wait_for_subscribers(depth_pub, timeout=TIMEOUT)
        assert wait_until(lambda: pipeline.occupancy_publisher.get_subscription_count(),
                          TIMEOUT)
        info_pub.publish(make_camera_info(header, 640, 480, k, p))
        assert wait_until(lambda: pipeline._camera is not None, TIMEOUT)
        depth_pub.publish(array_to_image(depth, '16UC1', header))
        msg = grids.wait_for(1, TIMEOUT)[0]
        # occupancy.enable false: an occupancy subscriber alone makes the frame skipped
        assert pipeline.set_parameters([Parameter('occupancy.enable', value=False)])[0] \
            .successful
        rejected = pipeline.set_parameters([Parameter('occupancy.min_height', value=0.04)])[0]
        assert not rejected.successful and 'min_height' in rejected.reason
        depth_pub.publish(array_to_image(depth, '16UC1', header))
        assert wait_until(lambda: pipeline.statistics.snapshot()['skipped'] == 1, TIMEOUT)
    assert len(grids) == 1
    assert msg.header.frame_id == 'base_link' and msg.header.stamp.sec == 7
    assert (msg.info.width, msg.info.height) == (200, 200)
    assert msg.info.resolution == pytest.approx(0.05, rel=1e-7)
    position = msg.info.origin.position
    assert (position.x, position.y, position.z) == (0.0, -5.0, 0.0)
    assert msg.info.origin.orientation.w == 1.0
    cloud = depth_to_cloud(depth, intrinsics, max_range=8.0)
    expected = occupancy_grid_from_buffer(
        cloud.data, cloud.point_step, cloud.width * cloud.height,
        grid=pipeline.settings.bev_grid, bands=OccupancyBands(),
        transform=camera_mount_transform(**DEMO_MOUNT))
    cells = np.frombuffer(msg.data, np.int8).reshape(200, 200)
    np.testing.assert_array_equal(cells, expected)
    assert np.count_nonzero(cells == FREE) > 2000 and np.count_nonzero(cells == OCCUPIED) > 100
    # straight ahead (row 100: y 0..5 cm; column: x / 5 cm): the floor is seen from 1.2 m
    # (0.8 m high, 0.15 rad down, half the vertical field of view 0.43 rad) to the room's
    # furniture about 4.3 m ahead
    assert cells[100, 20] == UNKNOWN                       # 1 m: below the field of view
    assert cells[100, 30] == FREE and cells[100, 60] == FREE  # 1.5 m, 3 m
    assert (cells[100, 80:100] == OCCUPIED).any()            # 4 to 5 m
