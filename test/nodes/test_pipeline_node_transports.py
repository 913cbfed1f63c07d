"""The pipeline node over real DDS with image_transport's compressedDepth and compressed
transports: messages in the plugins' wire format (built by the independent encoder of
test_compressed_images) become the clouds of the decoded images; bad ones are counted."""
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, PointCloud2
from std_msgs.msg import Header

from pointcloud_pipeline.camera import intrinsics_from_camera_info
from pointcloud_pipeline.compressed_images import (decode_compressed_depth,
                                                   decode_compressed_image)
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.nodes.pipeline_node import PipelineNode
from pointcloud_pipeline.ros.camera_messages import make_camera_info
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until
from test_compressed_images import compressed_depth, jpeg

pytestmark = pytest.mark.ros

K = [585.0, 0.0, 320.0, 0.0, 585.0, 240.0, 0.0, 0.0, 1.0]
P = [585.0, 0.0, 320.0, 0.0, 0.0, 585.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
DEPTH_TOPIC = '/camera/depth/image_rect_raw'  # the base topic after remapping
COLOR_TOPIC = '/camera/color/image_raw'


class CompressedRig:
    """The pipeline node with depth/image_rect and rgb/image_rect_color remapped as a camera
    driver's topics, and a source publishing image_transport's compressed topics."""

    def __init__(self, context, subscribe_points=True, **parameters):
        parameters = {'log_period': 0.0, 'qos': 'reliable', 'queue_size': 20,
                      'depth_transport': 'compressedDepth', **parameters}
        self.pipeline = PipelineNode(
            context=context,
            cli_args=['--ros-args', '-r', f'depth/image_rect:={DEPTH_TOPIC}',
                      '-r', f'rgb/image_rect_color:={COLOR_TOPIC}'],
            parameter_overrides=[Parameter(name, value=value)
                                 for name, value in parameters.items()])
        self.source = Node('compressed_source', context=context)
        self.depth_pub = self.source.create_publisher(
            CompressedImage, f'{DEPTH_TOPIC}/compressedDepth', RELIABLE)
        self.color_pub = self.source.create_publisher(
            CompressedImage, f'{COLOR_TOPIC}/compressed', RELIABLE)
        self.info_pub = self.source.create_publisher(CameraInfo, 'depth/camera_info', RELIABLE)
        self.points = Collector()
        if subscribe_points:
            self.source.create_subscription(PointCloud2, 'points', self.points, RELIABLE)
        self.nodes = (self.pipeline, self.source)
        self.stamp_sec = 100

    def connect(self, expect_points=True, color=False):
        assert wait_for_subscribers(self.depth_pub, timeout=TIMEOUT)
        assert wait_for_subscribers(self.info_pub, timeout=TIMEOUT)
        if color:
            assert wait_for_subscribers(self.color_pub, timeout=TIMEOUT)
        if expect_points:
            assert wait_until(lambda: self.pipeline.points_publisher.get_subscription_count(),
                              TIMEOUT)
        self.info_pub.publish(make_camera_info(self.header(), 640, 480, K, P))
        assert wait_until(lambda: self.pipeline._camera is not None, TIMEOUT)

    def header(self):
        self.stamp_sec += 1
        header = Header(frame_id='camera_depth_optical_frame')
        header.stamp.sec = self.stamp_sec
        return header

    def publish(self, publisher, data, format, header=None):
        msg = CompressedImage(header=header or self.header(), format=format)
        msg.data = bytes(data)
        publisher.publish(msg)
        return msg


def expected_cloud(depth, color=None, encoding='rgb8'):
    return depth_to_cloud(depth, intrinsics_from_camera_info(np.array(K), np.array(P)),
                          depth_scale=0.001, max_range=20.0, color=color,
                          color_encoding=encoding)


def test_compressed_depth_png_and_rvl_become_the_decoded_clouds(rclpy_context,
                                                                seven_scenes_frame):
    depth_mm = seven_scenes_frame[0]
    depth_metres = depth_mm.astype(np.float32) * np.float32(0.001)
    depth_metres[depth_mm == 0] = np.nan
    messages = [compressed_depth(depth_mm, 'png'), compressed_depth(depth_metres, 'png'),
                compressed_depth(depth_mm, 'rvl'), compressed_depth(depth_metres, 'rvl')]
    corrupt = bytearray(messages[0][0])
    corrupt[100:300] = bytes(200)
    rig = CompressedRig(rclpy_context)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        for data, format in messages:
            rig.publish(rig.depth_pub, data, format)
        rig.points.wait_for(4, TIMEOUT)
        rig.publish(rig.depth_pub, corrupt, messages[0][1])  # dropped, counted ...
        rig.publish(rig.depth_pub, b'\x00' * 8, '16UC1; compressedDepth rvl')
        rig.publish(rig.depth_pub, messages[2][0], '16UC1; compressedDepth zstd')
        rig.publish(rig.depth_pub, *messages[2])  # ... and the next good one converts
        clouds = rig.points.wait_for(5, TIMEOUT)
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['dropped'] == 3, TIMEOUT)
    assert len(clouds) == 5
    for cloud, (data, format) in zip(clouds, messages + messages[2:3]):
        decoded, _ = decode_compressed_depth(data, format)
        expected = expected_cloud(decoded)
        assert (cloud.height, cloud.width) == (480, 640)
        assert bytes(cloud.data) == expected.data.tobytes(), format
    # 32FC1 was quantised: its cloud is close to the 16UC1 one, not equal
    xyz = [np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 4)[:, :3]
           for cloud in clouds[:2]]
    valid = np.isfinite(xyz[0][:, 2])
    assert np.array_equal(valid, np.isfinite(xyz[1][:, 2]))
    assert np.abs(xyz[1][valid] - xyz[0][valid]).max() < 0.02
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['dropped_by_reason'] == {'bad_compressed_depth': 3}
    assert snapshot['published'] == 5


def test_compressed_colour_and_depth_are_paired_by_stamp(rclpy_context, seven_scenes_frame):
    depth_mm, color_bgr = seven_scenes_frame
    depth_data, depth_format = compressed_depth(depth_mm, 'png')
    color_data = jpeg(color_bgr)
    rig = CompressedRig(rclpy_context, use_rgb=True, rgb_transport='compressed')
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(color=True)
        header = rig.header()
        rig.publish(rig.color_pub, color_data, 'rgb8; jpeg compressed bgr8', header)
        rig.publish(rig.depth_pub, depth_data, depth_format, header)
        first = rig.points.wait_for(1, TIMEOUT)[0]
        header = rig.header()
        rig.publish(rig.color_pub, color_data[:500], 'rgb8; jpeg compressed bgr8', header)
        rig.publish(rig.depth_pub, depth_data, depth_format, header)  # bad colour: dropped
        header = rig.header()
        rig.publish(rig.color_pub, color_data, 'bgr8; jpeg compressed bgr8', header)
        rig.publish(rig.depth_pub, depth_data, depth_format, header)
        second = rig.points.wait_for(2, TIMEOUT)[1]
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['dropped'] == 1, TIMEOUT)
    rgb, encoding = decode_compressed_image(color_data, 'rgb8; jpeg compressed bgr8')
    assert encoding == 'rgb8'
    expected = expected_cloud(depth_mm, rgb, 'rgb8')
    assert [f.name for f in first.fields] == ['x', 'y', 'z', 'rgb']
    assert bytes(first.data) == expected.data.tobytes()
    assert bytes(second.data) == expected.data.tobytes()  # the same colours from bgr8
    assert rig.pipeline.statistics.snapshot()['dropped_by_reason'] == {'rgb_bad_compressed': 1}


def test_nothing_is_decoded_without_a_subscriber(rclpy_context, seven_scenes_frame):
    rig = CompressedRig(rclpy_context, subscribe_points=False)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_points=False)
        rig.publish(rig.depth_pub, b'not a png', '16UC1; compressedDepth png')
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['skipped'] == 1, TIMEOUT)
    assert rig.pipeline.statistics.snapshot()['dropped'] == 0


def subscribed(node):
    return {subscription.topic_name: subscription.msg_type.__name__
            for subscription in node.subscriptions}


def test_transport_topics_are_image_transports_names(rclpy_context):
    raw = PipelineNode(context=rclpy_context, parameter_overrides=[
        Parameter('use_rgb', value=True)])
    compressed = PipelineNode(context=rclpy_context, namespace='/robot', parameter_overrides=[
        Parameter('use_rgb', value=True), Parameter('depth_transport', value='compressedDepth'),
        Parameter('rgb_transport', value='compressed')])
    try:
        assert {'/depth/image_rect': 'Image',
                '/rgb/image_rect_color': 'Image'}.items() <= subscribed(raw).items()
        assert {'/robot/depth/image_rect/compressedDepth': 'CompressedImage',
                '/robot/rgb/image_rect_color/compressed': 'CompressedImage'}.items() <= \
            subscribed(compressed).items()
        assert '/robot/depth/image_rect' not in subscribed(compressed)
        result = compressed.set_parameters([Parameter('depth_transport', value='raw')])[0]
        assert not result.successful and 'read-only' in result.reason
    finally:
        raw.destroy_node()
        compressed.destroy_node()
    with pytest.raises(ValueError, match='theora'):
        PipelineNode(context=rclpy_context, parameter_overrides=[
            Parameter('rgb_transport', value='theora')])
