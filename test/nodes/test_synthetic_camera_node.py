"""The synthetic camera node publishes depth, camera info and colour like an RGB-D driver."""
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from pointcloud_pipeline.nodes.synthetic_camera_node import SyntheticCameraNode
from pointcloud_pipeline.ros.camera_messages import image_to_array
from ros_helpers import Collector, spinning, wait_until

pytestmark = pytest.mark.ros


def start(context, **parameters):
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    camera = SyntheticCameraNode(context=context, parameter_overrides=overrides)
    listener = Node('camera_listener', context=context)
    topics = {'depth': Collector(), 'info': Collector(), 'rgb': Collector()}
    listener.create_subscription(Image, 'depth/image_rect', topics['depth'], 10)
    listener.create_subscription(CameraInfo, 'depth/camera_info', topics['info'], 10)
    listener.create_subscription(Image, 'rgb/image_rect_color', topics['rgb'], 10)
    return camera, listener, topics


def test_publishes_matching_depth_info_and_rgb(rclpy_context):
    camera, listener, topics = start(rclpy_context, width=80, height=60, rate=20.0)
    with spinning(rclpy_context, camera, listener):
        assert wait_until(lambda: min(len(c) for c in topics.values()) >= 3, timeout=30)
    depth, info, rgb = (topics[k].messages[1] for k in ('depth', 'info', 'rgb'))
    assert depth.header.stamp == info.header.stamp == rgb.header.stamp
    assert depth.header.frame_id == info.header.frame_id == 'camera_depth_optical_frame'
    assert (depth.width, depth.height, depth.encoding) == (80, 60, '16UC1')
    assert (rgb.width, rgb.height, rgb.encoding) == (80, 60, 'rgb8')
    assert (info.width, info.height) == (80, 60)
    np.testing.assert_allclose(info.k, camera.camera.intrinsics.camera_matrix())
    np.testing.assert_allclose(info.p, camera.camera.intrinsics.projection_matrix())
    # the published frame is the scene rendered at the stamp's time into the loop
    stamp_ns = depth.header.stamp.sec * 10**9 + depth.header.stamp.nanosec
    expected = camera.camera.render((stamp_ns - camera._start.nanoseconds) * 1e-9)
    np.testing.assert_array_equal(image_to_array(depth), expected.depth_mm)
    np.testing.assert_array_equal(image_to_array(rgb), expected.rgb)


def test_32fc1_in_metres_with_nan_for_no_return_and_no_rgb(rclpy_context):
    camera, listener, topics = start(rclpy_context, width=64, height=48, rate=20.0,
                                     depth_encoding='32FC1', publish_rgb=False)
    with spinning(rclpy_context, camera, listener):
        assert wait_until(lambda: len(topics['depth']) >= 2, timeout=30)
    depth = topics['depth'].messages[0]
    assert depth.encoding == '32FC1'
    metres = image_to_array(depth)
    stamp_ns = depth.header.stamp.sec * 10**9 + depth.header.stamp.nanosec
    expected = camera.camera.render((stamp_ns - camera._start.nanoseconds) * 1e-9).depth_mm
    np.testing.assert_array_equal(np.isnan(metres), expected == 0)
    np.testing.assert_allclose(metres[expected > 0], expected[expected > 0] / 1000.0, rtol=1e-6)
    assert len(topics['rgb']) == 0


def test_unregistered_mode_publishes_a_separate_colour_camera(rclpy_context):
    camera, listener, topics = start(rclpy_context, width=96, height=72, rate=20.0,
                                     registered=False)
    topics['rgb_info'] = Collector()
    listener.create_subscription(CameraInfo, 'rgb/camera_info', topics['rgb_info'], 10)
    with spinning(rclpy_context, camera, listener):
        assert wait_until(lambda: min(len(c) for c in topics.values()) >= 3, timeout=30)
    depth, info, rgb, rgb_info = (topics[k].messages[1]
                                  for k in ('depth', 'info', 'rgb', 'rgb_info'))
    assert depth.header.stamp == info.header.stamp == rgb.header.stamp == rgb_info.header.stamp
    assert depth.header.frame_id == info.header.frame_id == 'camera_depth_optical_frame'
    assert rgb.header.frame_id == rgb_info.header.frame_id == 'camera_color_optical_frame'
    assert (depth.width, depth.height) == (info.width, info.height) == (96, 72)
    assert (rgb.width, rgb.height) == (rgb_info.width, rgb_info.height) == (96, 54)  # 16:9
    np.testing.assert_allclose(rgb_info.k, camera.rig.color_intrinsics.camera_matrix())
    np.testing.assert_allclose(info.k, camera.rig.depth_intrinsics.camera_matrix())
    assert rgb_info.k[0] != info.k[0]  # its own focal length
    stamp_ns = depth.header.stamp.sec * 10**9 + depth.header.stamp.nanosec
    expected_depth, expected_color = camera.rig.render(
        (stamp_ns - camera._start.nanoseconds) * 1e-9)
    np.testing.assert_array_equal(image_to_array(depth), expected_depth.depth_mm)
    np.testing.assert_array_equal(image_to_array(rgb), expected_color.rgb)


def test_renders_nothing_without_subscribers(rclpy_context):
    camera = SyntheticCameraNode(context=rclpy_context,
                                 parameter_overrides=[Parameter('rate', value=50.0)])
    with spinning(rclpy_context, camera):
        wait_until(lambda: False, timeout=0.5)
        assert camera.frames_published == 0


def test_rejects_an_unknown_depth_encoding(rclpy_context):
    with pytest.raises(ValueError, match='depth_encoding'):
        SyntheticCameraNode(context=rclpy_context,
                            parameter_overrides=[Parameter('depth_encoding', value='8UC1')])
