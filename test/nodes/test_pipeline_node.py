"""The pipeline node over real DDS (loopback): clouds, colour pairing, BEV, laziness,
runtime parameters, and survival of malformed input."""
import time

import cv2
import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from pointcloud_pipeline.bev import bev_image_from_buffer
from pointcloud_pipeline.camera import intrinsics_from_camera_info
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.nodes.pipeline_node import PipelineNode
from pointcloud_pipeline.ros.camera_messages import (array_to_image, image_to_array,
                                                     make_camera_info)
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = pytest.mark.ros

K = [585.0, 0.0, 320.0, 0.0, 585.0, 240.0, 0.0, 0.0, 1.0]
P = [585.0, 0.0, 320.0, 0.0, 0.0, 585.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class Rig:
    """A source node publishing depth/info/rgb, the pipeline node and collectors."""

    def __init__(self, context, subscribe_points=True, subscribe_bev=False, **parameters):
        parameters.setdefault('log_period', 0.0)
        self.pipeline = PipelineNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in parameters.items()])
        self.source = Node('test_source', context=context)
        qos = RELIABLE if parameters.get('qos') == 'reliable' else QoSProfile(depth=5)
        self.depth_pub = self.source.create_publisher(Image, 'depth/image_rect', qos)
        self.info_pub = self.source.create_publisher(CameraInfo, 'depth/camera_info', qos)
        self.rgb_pub = self.source.create_publisher(Image, 'rgb/image_rect_color', qos)
        self.points, self.bev = Collector(), Collector()
        sink_qos = RELIABLE if parameters.get('qos') == 'reliable' else \
            QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        if subscribe_points:
            self.source.create_subscription(PointCloud2, 'points', self.points, sink_qos)
        if subscribe_bev:
            self.source.create_subscription(Image, 'bev/image', self.bev, sink_qos)
        self.nodes = (self.pipeline, self.source)
        self.stamp_sec = 100

    def connect(self, expect_points=True, expect_bev=False):
        assert wait_for_subscribers(self.depth_pub, timeout=TIMEOUT)
        assert wait_for_subscribers(self.info_pub, timeout=TIMEOUT)
        if expect_points:
            assert wait_until(lambda: self.pipeline.points_publisher.get_subscription_count(),
                              TIMEOUT)
        if expect_bev:
            assert wait_until(lambda: self.pipeline.bev_publisher.get_subscription_count(),
                              TIMEOUT)

    def header(self, nanosec=0):
        self.stamp_sec += 1
        header = Header(frame_id='camera_depth_optical_frame')
        header.stamp.sec, header.stamp.nanosec = self.stamp_sec, nanosec
        return header

    def send_info(self, width=640, height=480, k=K, p=P):
        self.info_pub.publish(make_camera_info(self.header(), width, height, k, p))

    def send_info_and_wait(self):
        self.send_info()
        assert wait_until(lambda: self.pipeline._camera is not None, TIMEOUT)


def expected_cloud(depth, color=None, encoding='bgr8', **kwargs):
    kwargs.setdefault('max_range', 20.0)
    return depth_to_cloud(depth, intrinsics_from_camera_info(np.array(K), np.array(P)),
                          depth_scale=0.001, color=color, color_encoding=encoding, **kwargs)


def test_depth_frame_becomes_the_kernels_cloud(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    rig = Rig(rclpy_context)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info_and_wait()
        header = rig.header(nanosec=123)
        rig.depth_pub.publish(array_to_image(depth, '16UC1', header))
        clouds = rig.points.wait_for(1, TIMEOUT)
    cloud = clouds[0]
    expected = expected_cloud(depth)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1),
        ('z', 8, PointField.FLOAT32, 1)]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (480, 640, 16,
                                                                             640 * 16)
    assert cloud.is_dense is False and cloud.is_bigendian is False  # 7-Scenes has holes
    assert cloud.header.frame_id == 'camera_depth_optical_frame'
    assert cloud.header.stamp == header.stamp
    assert bytes(cloud.data) == expected.data.tobytes()
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['published'] == 1 and snapshot['dropped'] == 0


def test_dense_decimated_cloud_and_frame_id_override(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    rig = Rig(rclpy_context, organized=False, decimation_x=2, decimation_y=3,
              frame_id='camera_link_optical')
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info_and_wait()
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        cloud = rig.points.wait_for(1, TIMEOUT)[0]
    expected = expected_cloud(depth, organized=False, decimation_x=2, decimation_y=3)
    assert cloud.height == 1 and cloud.width == expected.width and cloud.is_dense is True
    assert cloud.header.frame_id == 'camera_link_optical'
    assert bytes(cloud.data) == expected.data.tobytes()


def test_latched_camera_info_is_received(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    driver = Node('latched_driver', context=rclpy_context)
    info_pub = driver.create_publisher(CameraInfo, 'depth/camera_info', latched)
    info_pub.publish(make_camera_info(Header(frame_id='cam'), 640, 480, K, P))  # before the node
    time.sleep(0.5)
    rig = Rig(rclpy_context)
    with spinning(rclpy_context, driver, *rig.nodes):
        rig.connect()
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        assert rig.points.wait_for(1, TIMEOUT)


def publish_pair(rig, depth, color, color_offset_ns=0, color_encoding='bgr8'):
    header = rig.header(nanosec=500_000_000)
    color_header = Header(frame_id=header.frame_id)
    total = header.stamp.sec * 10**9 + header.stamp.nanosec + color_offset_ns
    color_header.stamp.sec, color_header.stamp.nanosec = divmod(total, 10**9)
    rig.rgb_pub.publish(array_to_image(color, color_encoding, color_header))
    rig.depth_pub.publish(array_to_image(depth, '16UC1', header))
    return header


def test_rgb_exact_and_approximate_pairing(rclpy_context, seven_scenes_frame):
    depth, color = seven_scenes_frame
    rig = Rig(rclpy_context, use_rgb=True, sync_slop=0.010, qos='reliable', queue_size=20)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        assert wait_for_subscribers(rig.rgb_pub, timeout=TIMEOUT)
        rig.send_info_and_wait()
        exact = publish_pair(rig, depth, color)
        first = rig.points.wait_for(1, TIMEOUT)[0]
        near = publish_pair(rig, depth, color, color_offset_ns=8_000_000)  # 8 ms < slop
        second = rig.points.wait_for(2, TIMEOUT)[1]
    expected = expected_cloud(depth, color)
    assert [f.name for f in first.fields] == ['x', 'y', 'z', 'rgb']
    assert first.fields[3].offset == 12 and first.fields[3].datatype == PointField.FLOAT32
    assert bytes(first.data) == expected.data.tobytes()
    assert first.header.stamp == exact.stamp and second.header.stamp == near.stamp
    assert bytes(second.data) == expected.data.tobytes()


def test_missing_partner_and_beyond_slop_are_dropped(rclpy_context, seven_scenes_frame):
    depth, color = seven_scenes_frame
    rig = Rig(rclpy_context, use_rgb=True, sync_slop=0.010, sync_max_age=0.5,
              qos='reliable', queue_size=20)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        assert wait_for_subscribers(rig.rgb_pub, timeout=TIMEOUT)
        rig.send_info_and_wait()
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))  # no colour
        publish_pair(rig, depth, color, color_offset_ns=50_000_000)  # 50 ms apart
        publish_pair(rig, depth, color)  # newer stamps expire the waiting ones
        assert rig.points.wait_for(1, TIMEOUT)
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['dropped'] >= 2, TIMEOUT)
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['dropped_by_reason'] == {'no_rgb_partner': 2}
    assert snapshot['events'].get('rgb_without_depth') == 1
    assert len(rig.points) == 1


def test_rgb_size_mismatch_dropped_then_resized_after_a_parameter_change(rclpy_context, seven_scenes_frame):
    depth, color = seven_scenes_frame
    small = cv2.resize(color, (320, 240), interpolation=cv2.INTER_AREA)
    rig = Rig(rclpy_context, use_rgb=True, qos='reliable', queue_size=20)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        assert wait_for_subscribers(rig.rgb_pub, timeout=TIMEOUT)
        rig.send_info_and_wait()
        publish_pair(rig, depth, small)
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['dropped'] == 1, TIMEOUT)
        assert rig.pipeline.statistics.snapshot()['dropped_by_reason'] == {
            'rgb_size_mismatch': 1}
        result = rig.pipeline.set_parameters([Parameter('resize_rgb', value=True)])[0]
        assert result.successful
        publish_pair(rig, depth, small)
        cloud = rig.points.wait_for(1, TIMEOUT)[0]
    expected = expected_cloud(depth, small, resize_color=True)
    assert bytes(cloud.data) == expected.data.tobytes()


def test_bev_image_from_the_same_points(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    rig = Rig(rclpy_context, subscribe_points=False, subscribe_bev=True,
              **{'mount.height': 1.0, 'mount.pitch': 0.3, 'bev.z_range': [-0.5, 2.5]})
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_points=False, expect_bev=True)
        rig.send_info_and_wait()
        header = rig.header()
        rig.depth_pub.publish(array_to_image(depth, '16UC1', header))
        image = rig.bev.wait_for(1, TIMEOUT)[0]
    settings = rig.pipeline.settings
    cloud = expected_cloud(depth)
    expected = bev_image_from_buffer(cloud.data, 16, cloud.width * cloud.height,
                                     grid=settings.bev_grid, transform=settings.mount)
    assert (image.encoding, image.height, image.width) == ('bgr8', 200, 200)
    assert image.header.frame_id == 'base_link' and image.header.stamp == header.stamp
    np.testing.assert_array_equal(image_to_array(image), expected)
    assert np.count_nonzero(expected) > 1000
    assert len(rig.points) == 0


def test_no_subscriber_means_no_work(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    rig = Rig(rclpy_context, subscribe_points=False)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_points=False)
        rig.send_info_and_wait()
        for _ in range(3):
            rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['skipped'] == 3, TIMEOUT)
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['published'] == 0 and snapshot['received'] == 3
    assert rig.pipeline._serialized._key is None  # no cloud buffer was ever prepared


def test_parameter_changes_at_runtime(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    rig = Rig(rclpy_context)
    client_node = Node('param_client', context=rclpy_context)
    client = client_node.create_client(SetParameters, '/pointcloud_pipeline/set_parameters')
    with spinning(rclpy_context, client_node, *rig.nodes):
        rig.connect()
        rig.send_info_and_wait()
        assert client.wait_for_service(timeout_sec=TIMEOUT)

        def set_remotely(**values):
            request = SetParameters.Request(parameters=[
                Parameter(name, value=value).to_parameter_msg()
                for name, value in values.items()])
            future = client.call_async(request)
            assert wait_until(future.done, TIMEOUT)
            return future.result().results[0]

        accepted = set_remotely(decimation_x=2, max_range=3.0)
        assert accepted.successful
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        cloud = rig.points.wait_for(1, TIMEOUT)[0]
        assert cloud.width == 320
        expected = expected_cloud(depth, decimation_x=2, max_range=3.0)
        assert bytes(cloud.data) == expected.data.tobytes()
        read_only = set_remotely(qos='reliable')
        assert not read_only.successful and 'read-only' in read_only.reason
        inconsistent = set_remotely(min_range=5.0)
        assert not inconsistent.successful and 'min_range' in inconsistent.reason
        bad_grid = set_remotely(**{'bev.resolution': 0.3})
        assert not bad_grid.successful and 'whole number' in bad_grid.reason
        out_of_range = set_remotely(decimation_y=0)
        assert not out_of_range.successful
    assert rig.pipeline.get_parameter('min_range').value == 0.0
    assert rig.pipeline.settings.decimation_x == 2


SMALL_K = [58.5, 0.0, 32.0, 0.0, 58.5, 24.0, 0.0, 0.0, 1.0]
SMALL_P = [58.5, 0.0, 32.0, 0.0, 0.0, 58.5, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def malformed_pairs(depth, color):
    """(depth message, colour message, expected drop reason or None) covering every rule."""
    cases = []

    def image(pixels, image_encoding, **fields):
        msg = array_to_image(pixels, image_encoding)
        for name, value in fields.items():
            setattr(msg, name, value)
        return msg

    good_depth, good_color = image(depth, '16UC1'), image(color, 'bgr8')
    step, rows = good_depth.step, good_depth.height
    for reason, fields in [
            ('bad_encoding', {'encoding': 'bgr8'}), ('bad_encoding', {'encoding': '16SC1'}),
            ('bad_encoding', {'encoding': ''}), ('empty_image', {'width': 0}),
            ('empty_image', {'height': 0}), ('bad_step', {'step': step - 2}),
            ('bad_step', {'step': step + 2}), ('bad_step', {'height': rows + 1}),
            ('bad_step', {'data': bytes(10)}), ('too_large', {'data': bytes(10_000)})]:
        cases.append((image(depth, '16UC1', **fields), good_color, reason))
    cases.append((image(depth[:, :32], '16UC1'), good_color, 'camera_info_mismatch'))
    cases.append((image(depth[:24, :32], '16UC1'), image(color[:24, :32], 'bgr8'),
                  'camera_info_mismatch'))
    for reason, fields in [
            ('rgb_bad_encoding', {'encoding': 'rgb16'}),
            ('rgb_bad_encoding', {'encoding': '8UC3'}),
            ('rgb_empty_image', {'width': 0}), ('rgb_bad_step', {'step': 10}),
            ('rgb_too_large', {'data': bytes(10_000)})]:
        cases.append((good_depth, image(color, 'bgr8', **fields), reason))
    cases.append((good_depth, image(color[:24], 'bgr8'), 'rgb_size_mismatch'))
    big_endian = image(depth.astype('>u2').view(np.uint16), '16UC1', is_bigendian=1)
    cases.append((big_endian, good_color, None))  # converted (byte-swapped), not dropped
    cases.append((good_depth, image(color[:, :, 0].copy(), 'mono8'), None))
    return cases


def test_survives_a_thousand_malformed_messages(rclpy_context, seven_scenes_frame):
    depth, color = (image[:48, :64].copy() for image in seven_scenes_frame)
    rig = Rig(rclpy_context, use_rgb=True, qos='reliable', queue_size=100,
              sync_queue_size=100, sync_max_age=60.0, max_image_bytes=64 * 48 * 3)
    cases = malformed_pairs(depth, color)
    bad_infos = [make_camera_info(Header(), 0, 48, SMALL_K, SMALL_P),
                 make_camera_info(Header(), 64, 48, [0.0] * 9, [0.0] * 12),
                 make_camera_info(Header(), 64, 48, [np.nan] * 9, [np.inf] * 12)]
    expected, sent, valid = {}, 0, 0

    def publish(depth_msg, color_msg):
        header = rig.header()
        color_msg.header, depth_msg.header = header, header
        rig.rgb_pub.publish(color_msg)
        rig.depth_pub.publish(depth_msg)

    def statistics():
        return rig.pipeline.statistics.snapshot()

    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        assert wait_for_subscribers(rig.rgb_pub, timeout=TIMEOUT)
        for _ in range(5):  # frames before any camera_info
            publish(array_to_image(depth, '16UC1'), array_to_image(color, 'bgr8'))
        expected['no_camera_info'] = sent = 5
        for count, info in enumerate(bad_infos, 1):  # rejected: still no camera model
            rig.info_pub.publish(info)
            assert wait_until(lambda: statistics()['events'].get('camera_info_rejected') ==
                              count, TIMEOUT), statistics()
        assert wait_until(lambda: statistics()['dropped'] == 5, TIMEOUT), statistics()
        assert rig.pipeline._camera is None
        rig.info_pub.publish(make_camera_info(Header(), 64, 48, SMALL_K, SMALL_P))
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        while sent - valid < 1000:
            for depth_msg, color_msg, reason in cases:
                publish(depth_msg, color_msg)
                sent += 1
                if reason is None:
                    valid += 1
                else:
                    expected[reason] = expected.get(reason, 0) + 1
            # pace the flood so the reliable keep-last queues never overflow
            assert wait_until(lambda: statistics()['dropped'] + statistics()['published'] ==
                              sent, TIMEOUT), statistics()
        publish(array_to_image(depth, '16UC1'), array_to_image(color, 'bgr8'))
        assert wait_until(lambda: len(rig.points) == valid + 1, TIMEOUT)
    snapshot = statistics()
    assert snapshot['dropped_by_reason'] == expected
    assert snapshot['dropped'] >= 1000 and snapshot['received'] == sent + 1
    assert snapshot['published'] == valid + 1
    intrinsics = intrinsics_from_camera_info(np.array(SMALL_K), np.array(SMALL_P))
    last = depth_to_cloud(depth, intrinsics, max_range=20.0, color=color, color_encoding='bgr8')
    assert bytes(rig.points.messages[-1].data) == last.data.tobytes()
