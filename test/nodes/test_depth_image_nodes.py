"""convert_metric_node, crop_foremost_node and disparity_node over real DDS (loopback):
outputs equal to the library's on a real frame, headers copied, malformed frames dropped and
counted, and config/depth_images.yaml equal to what the nodes declare."""
import math

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage
import yaml

from conftest import REPO_ROOT
from pointcloud_pipeline.depth_images import (convert_metric, crop_foremost,
                                              disparity_from_depth)
from pointcloud_pipeline.nodes.convert_metric_node import ConvertMetricNode
from pointcloud_pipeline.nodes.crop_foremost_node import CropForemostNode
from pointcloud_pipeline.nodes.disparity_node import DisparityNode
from pointcloud_pipeline.ros.camera_messages import (array_to_image, image_to_array,
                                                     make_camera_info)
from pointcloud_pipeline.ros.diagnostics import flatten
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
K = [585.0, 0.0, 320.0, 0.0, 585.0, 240.0, 0.0, 0.0, 1.0]
RIGHT_P = [585.0, 0.0, 320.0, -585.0 * 0.075, 0.0, 585.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
NODES = [(ConvertMetricNode, 'convert_metric'), (CropForemostNode, 'crop_foremost'),
         (DisparityNode, 'disparity')]


def header(sec):
    stamp = Header(frame_id='camera_depth_optical_frame')
    stamp.stamp.sec, stamp.stamp.nanosec = sec, 250
    return stamp


def run_relay(context, node, input_topic, output_type, output_topic, send):
    """Start ``node`` and a source/sink node; ``send(publish, source)`` publishes; returns the
    collector of outputs after the block."""
    source = Node('test_source', context=context)
    publisher = source.create_publisher(Image, input_topic, RELIABLE)
    outputs = Collector()
    source.create_subscription(output_type, output_topic, outputs, RELIABLE)
    with spinning(context, node, source):
        assert wait_for_subscribers(publisher, timeout=TIMEOUT)
        assert wait_until(lambda: node.publisher.get_subscription_count(), TIMEOUT)
        send(publisher, source, outputs)
    return outputs


def bad_step(depth, stamp):
    msg = array_to_image(depth, '16UC1', stamp)
    msg.step = 100  # smaller than a row
    return msg


def test_yaml_defaults_are_the_declared_defaults(rclpy_context):
    config = yaml.safe_load((REPO_ROOT / 'config' / 'depth_images.yaml').read_text())
    for cls, key in NODES:
        node = cls(context=rclpy_context)
        try:
            declared = {name: parameter.value for name, parameter in
                        node.get_parameters_by_prefix('').items()
                        if name not in ('use_sim_time', 'start_type_description_service')}
            assert flatten(config[f'/**/{key}']['ros__parameters']) == declared
        finally:
            node.destroy_node()


def test_params_file_is_read_by_rcl(tmp_path):
    """rcl parses the file (``.inf`` included) and the node takes its values."""
    import rclpy
    file = tmp_path / 'params.yaml'
    file.write_text((REPO_ROOT / 'config' / 'depth_images.yaml').read_text().replace(
        'min_range: 0.0', 'min_range: 0.5'))
    context = rclpy.Context()
    rclpy.init(args=['--ros-args', '--params-file', str(file)], context=context)
    try:
        node = DisparityNode(context=context)
        assert node.settings['min_range'] == 0.5 and node.settings['max_range'] == math.inf
        node.destroy_node()
    finally:
        context.try_shutdown()


def test_convert_metric_publishes_metres_and_survives_a_bad_frame(rclpy_context,
                                                                  seven_scenes_frame):
    depth, _ = seven_scenes_frame
    node = ConvertMetricNode(context=rclpy_context,
                             parameter_overrides=[Parameter('qos', value='reliable'),
                                                  Parameter('log_period', value=0.0)])

    def send(publisher, source, outputs):
        publisher.publish(bad_step(depth, header(1)))
        publisher.publish(array_to_image(np.zeros((4, 4, 3), np.uint8), 'rgb8', header(2)))
        publisher.publish(array_to_image(depth, '16UC1', header(3)))
        outputs.wait_for(1, TIMEOUT)
        metres = convert_metric(depth)
        publisher.publish(array_to_image(metres, '32FC1', header(4)))
        outputs.wait_for(2, TIMEOUT)

    outputs = run_relay(rclpy_context, node, 'image_raw', Image, 'image', send)
    first, second = outputs.messages[:2]
    assert first.encoding == '32FC1' and first.header == header(3)
    np.testing.assert_array_equal(image_to_array(first), convert_metric(depth))
    assert second.encoding == '16UC1' and second.header == header(4)
    np.testing.assert_array_equal(image_to_array(second), depth)
    snapshot = node.statistics.snapshot()
    assert snapshot['dropped_by_reason'] == {'bad_step': 1, 'bad_encoding': 1}
    assert snapshot['published'] == 2


def test_crop_foremost_node_keeps_the_nearest_object(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    node = CropForemostNode(context=rclpy_context, parameter_overrides=[
        Parameter('qos', value='reliable'), Parameter('distance', value=0.3),
        Parameter('log_period', value=0.0)])

    def send(publisher, source, outputs):
        publisher.publish(bad_step(depth, header(1)))
        publisher.publish(array_to_image(depth, 'mono16', header(2)))
        outputs.wait_for(1, TIMEOUT)

    outputs = run_relay(rclpy_context, node, 'image_raw', Image, 'image', send)
    msg = outputs.messages[0]
    assert msg.encoding == 'mono16' and msg.header == header(2)
    nearest = depth[depth > 0].min()
    np.testing.assert_array_equal(image_to_array(msg), np.where(depth <= nearest + 300, depth, 0))
    np.testing.assert_array_equal(image_to_array(msg), crop_foremost(depth, 0.3))
    assert node.statistics.snapshot()['dropped_by_reason'] == {'bad_step': 1}


def test_disparity_node_fields_and_bad_camera_info(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    node = DisparityNode(context=rclpy_context, parameter_overrides=[
        Parameter('qos', value='reliable'), Parameter('min_range', value=0.5),
        Parameter('max_range', value=8.0), Parameter('delta_d', value=0.25),
        Parameter('log_period', value=0.0)])

    def send(publisher, source, outputs):
        info_publisher = source.create_publisher(CameraInfo, 'right/camera_info', RELIABLE)
        assert wait_for_subscribers(info_publisher, timeout=TIMEOUT)
        publisher.publish(array_to_image(depth, '16UC1', header(1)))  # no camera_info yet
        assert wait_until(lambda: node.statistics.snapshot()['dropped'] == 1, TIMEOUT)
        monocular = [585.0, 0.0, 320.0, 0.0, 0.0, 585.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        info_publisher.publish(make_camera_info(header(2), 640, 480, K, monocular))
        assert wait_until(lambda: node.statistics.snapshot()['events'].get(
            'camera_info_rejected') == 1, TIMEOUT)
        info_publisher.publish(make_camera_info(header(3), 640, 480, K, RIGHT_P))
        assert wait_until(lambda: node.stereo is not None, TIMEOUT)
        publisher.publish(array_to_image(depth[:240], '16UC1', header(4)))  # wrong size
        publisher.publish(array_to_image(depth, '16UC1', header(5)))
        outputs.wait_for(1, TIMEOUT)

    outputs = run_relay(rclpy_context, node, 'left/image_rect', DisparityImage,
                        'left/disparity', send)
    msg = outputs.messages[0]
    expected = disparity_from_depth(depth, 585.0, 0.075, min_range=0.5, max_range=8.0,
                                    delta_d=0.25)
    assert msg.header == header(5) and msg.image.header == header(5)
    assert msg.image.encoding == '32FC1'
    np.testing.assert_array_equal(image_to_array(msg.image), expected.image)
    np.testing.assert_allclose(image_to_array(msg.image),
                               np.where(depth > 0, 585.0 * 0.075 / (depth * 0.001), 0.0),
                               rtol=3e-7)
    assert msg.f == pytest.approx(585.0) and msg.t == pytest.approx(0.075)
    assert msg.min_disparity == pytest.approx(585.0 * 0.075 / 8.0, rel=1e-6)
    assert msg.max_disparity == pytest.approx(585.0 * 0.075 / 0.5, rel=1e-6)
    assert msg.delta_d == 0.25
    rows, cols = np.nonzero(depth)
    window = msg.valid_window
    assert (window.x_offset, window.y_offset, window.width, window.height) == (
        cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
    snapshot = node.statistics.snapshot()
    assert snapshot['dropped_by_reason'] == {'no_camera_info': 1, 'camera_info_mismatch': 1}
    assert snapshot['published'] == 1


def test_nodes_are_lazy(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    node = ConvertMetricNode(context=rclpy_context,
                             parameter_overrides=[Parameter('qos', value='reliable')])
    source = Node('lazy_source', context=rclpy_context)
    publisher = source.create_publisher(Image, 'image_raw', RELIABLE)
    with spinning(rclpy_context, node, source):
        assert wait_for_subscribers(publisher, timeout=TIMEOUT)
        publisher.publish(array_to_image(depth, '16UC1', header(1)))
        assert wait_until(lambda: node.statistics.snapshot()['skipped'] == 1, TIMEOUT)
    assert node.statistics.snapshot()['published'] == 0


def test_inconsistent_ranges_are_rejected_at_runtime(rclpy_context):
    node = DisparityNode(context=rclpy_context)
    try:
        result = node.set_parameters([Parameter('min_range', value=5.0),
                                      Parameter('max_range', value=2.0)])
        assert not all(r.successful for r in result)
        assert node.settings['max_range'] == math.inf
    finally:
        node.destroy_node()
