"""The BEV node on a real KITTI scan over DDS, fields found by name, bad clouds dropped."""
import os
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from pointcloud_pipeline.bev import BevGrid, bev_image
from pointcloud_pipeline.layouts import POINT_FIELD_DTYPES
from pointcloud_pipeline.nodes.bev_node import BevNode
from pointcloud_pipeline.ros.camera_messages import image_to_array
from pointcloud_pipeline.ros.data_field import set_data
from reference_bev import reference_bev
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = ReliabilityPolicy.BEST_EFFORT


@pytest.fixture(scope='module')
def kitti_points(shared_data):
    return np.fromfile(shared_data / 'kitti' / 'velodyne' / '000000.bin',
                       dtype=np.float32).reshape(-1, 4)


def velodyne_cloud(points, header=None):
    """A PointCloud2 like a Velodyne driver's: x, y, z, intensity float32, point_step 16."""
    msg = PointCloud2(height=1, width=len(points), point_step=16, row_step=16 * len(points),
                      is_dense=True, is_bigendian=False)
    msg.header = header or Header(frame_id='velodyne')
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in (('x', 0), ('y', 4), ('z', 8), ('intensity', 12))]
    set_data(msg, np.ascontiguousarray(points, dtype=np.float32))
    return msg


class Rig:
    def __init__(self, context, subscribe=True, **parameters):
        parameters.setdefault('log_period', 0.0)
        self.node = BevNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in parameters.items()])
        self.source = Node('cloud_source', context=context)
        reliable = parameters.get('qos') == 'reliable'
        self.publisher = self.source.create_publisher(
            PointCloud2, 'points', RELIABLE if reliable else QoSProfile(depth=5))
        self.images = Collector()
        if subscribe:
            self.source.create_subscription(Image, 'bev/image', self.images, RELIABLE if reliable
                                            else QoSProfile(depth=5, reliability=BEST_EFFORT))

    def connect(self, subscribed=True):
        assert wait_for_subscribers(self.publisher, timeout=TIMEOUT)
        if subscribed:
            assert wait_until(lambda: self.node.publisher.get_subscription_count(), TIMEOUT)


def test_kitti_scan_bev_equals_the_kernels(rclpy_context, kitti_points):
    rig = Rig(rclpy_context)
    header = Header(frame_id='velodyne')
    header.stamp.sec = 42
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        rig.publisher.publish(velodyne_cloud(kitti_points, header))
        image = rig.images.wait_for(1, TIMEOUT)[0]
    grid = BevGrid(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), z_range=(-2.73, 1.27),
                   resolution=0.1)
    expected = bev_image(kitti_points, grid)
    assert (image.height, image.width, image.encoding) == (800, 800, 'bgr8')
    assert image.header.stamp.sec == 42 and image.header.frame_id == 'velodyne'
    np.testing.assert_array_equal(image_to_array(image), expected)
    assert np.count_nonzero(expected.any(axis=2)) > 10_000


def test_fields_are_found_by_name_in_any_layout(rclpy_context, kitti_points):
    """32-byte points: ring (uint16) first, then z, x, y, an unused float, intensity."""
    points = kitti_points[:5000]
    rows = np.zeros((len(points), 8), np.float32)
    rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 5] = (points[:, 2], points[:, 0], points[:, 1],
                                                      points[:, 3])
    rows.view(np.uint16)[:, 0] = 7
    msg = PointCloud2(height=1, width=len(points), point_step=32, row_step=32 * len(points))
    msg.fields = [PointField(name='ring', offset=0, datatype=PointField.UINT16, count=1),
                  PointField(name='z', offset=4, datatype=PointField.FLOAT32, count=1),
                  PointField(name='x', offset=8, datatype=PointField.FLOAT32, count=1),
                  PointField(name='y', offset=12, datatype=PointField.FLOAT32, count=1),
                  PointField(name='intensity', offset=20, datatype=PointField.FLOAT32, count=1)]
    set_data(msg, rows)
    rig = Rig(rclpy_context, x_range=[0.0, 50.0], y_range=[-25.0, 25.0], resolution=0.25)
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        rig.publisher.publish(msg)
        image = rig.images.wait_for(1, TIMEOUT)[0]
    grid = BevGrid(x_range=(0.0, 50.0), y_range=(-25.0, 25.0), z_range=(-2.73, 1.27),
                   resolution=0.25)
    np.testing.assert_array_equal(image_to_array(image), bev_image(points, grid))


def test_bad_clouds_are_dropped_and_the_next_one_converted(rclpy_context, kitti_points):
    points = kitti_points[:2000]
    rig = Rig(rclpy_context, qos='reliable', queue_size=50, max_cloud_bytes=2000 * 16)

    def variant(**fields):
        msg = velodyne_cloud(points)
        for name, value in fields.items():
            setattr(msg, name, value)
        return msg

    xyz = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
           for n, o in (('x', 0), ('y', 4), ('z', 8))]
    cases = [
        (variant(is_bigendian=True), 'big_endian'),
        (variant(fields=xyz[:2]), 'missing_field'),
        (variant(fields=xyz[:2] + [PointField(name='z', offset=8, datatype=8, count=1)]),
         'bad_field'),
        (variant(fields=xyz[:2] + [PointField(name='z', offset=14, datatype=7, count=1)]),
         'bad_field'),
        (variant(row_step=100), 'bad_size'),
        (variant(width=2001), 'bad_size'),
        (variant(point_step=0), 'bad_field'),
        (velodyne_cloud(kitti_points[:2001]), 'too_large'),
    ]
    sent, expected = 0, {}
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        for _ in range(20):
            for msg, reason in cases:
                rig.publisher.publish(msg)
                sent += 1
                expected[reason] = expected.get(reason, 0) + 1
            assert wait_until(lambda: rig.node.statistics.snapshot()['received'] == sent,
                              TIMEOUT)
        rig.publisher.publish(velodyne_cloud(points))
        image = rig.images.wait_for(1, TIMEOUT)[0]
    snapshot = rig.node.statistics.snapshot()
    assert snapshot['dropped_by_reason'] == expected and snapshot['published'] == 1
    np.testing.assert_array_equal(image_to_array(image),
                                  bev_image(points, rig.node.settings.grid))


def test_idle_without_subscribers_and_runtime_grid_change(rclpy_context, kitti_points):
    rig = Rig(rclpy_context, subscribe=False)
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect(subscribed=False)
        rig.publisher.publish(velodyne_cloud(kitti_points))
        assert wait_until(lambda: rig.node.statistics.snapshot()['skipped'] == 1, TIMEOUT)
        assert rig.node.statistics.snapshot()['published'] == 0
        assert rig.node.set_parameters([Parameter('resolution', value=0.2)])[0].successful
        assert rig.node.settings.grid.shape == (400, 400, 3)
        rejected = rig.node.set_parameters([Parameter('resolution', value=0.3)])[0]
        assert not rejected.successful and 'whole number' in rejected.reason
        assert rig.node.settings.grid.shape == (400, 400, 3)
        assert not rig.node.set_parameters([Parameter('qos', value='reliable')])[0].successful


def cloud_with_intensity(points, datatype, values, count=1):
    """A PointCloud2 like an Ouster / Livox / Hesai driver's: x, y, z FLOAT32, then a pad byte
    and an ``intensity`` of PointField ``datatype`` (point_step 24)."""
    dtype = POINT_FIELD_DTYPES.get(datatype, np.dtype('u1'))
    data = np.zeros((len(points), 24), np.uint8)
    data[:, :12] = np.ascontiguousarray(points[:, :3]).view(np.uint8).reshape(-1, 12)
    data[:, 13:13 + dtype.itemsize] = values.astype(dtype).view(np.uint8).reshape(len(points), -1)
    msg = PointCloud2(height=1, width=len(points), point_step=24, row_step=24 * len(points),
                      is_dense=True, is_bigendian=False)
    msg.header = Header(frame_id='lidar')
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in (('x', 0), ('y', 4), ('z', 8))]
    msg.fields.append(PointField(name='intensity', offset=13, datatype=datatype, count=count))
    set_data(msg, data)
    return msg


@pytest.mark.parametrize('datatype,value_range', [
    (PointField.UINT8, (0, 255)), (PointField.UINT16, (0, 65535)),
    (PointField.FLOAT64, (0.0, 1.0)), (PointField.INT32, (-1000, 1000))])
def test_intensity_of_any_numeric_type_reaches_the_blue_channel(rclpy_context, kitti_points,
                                                                datatype, value_range):
    points = kitti_points[:20000]
    low, high = value_range
    rng = np.random.default_rng(datatype)
    values = (rng.uniform(low, high, len(points)) if datatype == PointField.FLOAT64 else
              rng.integers(low, high, len(points), endpoint=True))
    rig = Rig(rclpy_context, intensity_range=[float(low), float(high)])
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        rig.publisher.publish(cloud_with_intensity(points, datatype, values))
        image = image_to_array(rig.images.wait_for(1, TIMEOUT)[0])
    grid = rig.node.settings.grid
    expected = reference_bev(points[:, 0], points[:, 1], points[:, 2],
                             values.astype(POINT_FIELD_DTYPES[datatype]).astype(np.float32),
                             grid)
    np.testing.assert_array_equal(image, expected)
    assert np.count_nonzero(image[..., 0]) > 1000, 'the blue (intensity) channel is blank'
    assert rig.node.statistics.snapshot()['events'] == {}


@pytest.mark.parametrize('datatype,count', [(9, 1), (0, 1), (PointField.UINT16, 2),
                                            (PointField.FLOAT64, 1)])
def test_unusable_intensity_is_warned_and_counted_not_silently_zero(rclpy_context, kitti_points,
                                                                    datatype, count):
    """Unknown datatype, count 2, or a float64 at offset 13 that runs past point_step 20:
    the cloud is still converted (blue = 0) and the event counted and warned."""
    points = kitti_points[:20000]
    msg = cloud_with_intensity(points, datatype, np.ones(len(points)), count)
    if datatype == PointField.FLOAT64:
        rows = np.frombuffer(msg.data, np.uint8).reshape(len(points), 24)[:, :20]
        msg.point_step, msg.row_step = 20, 20 * len(points)
        set_data(msg, np.ascontiguousarray(rows))
    rig = Rig(rclpy_context, qos='reliable', queue_size=10, diagnostics_period=0.2)
    diagnostics = Collector()
    rig.source.create_subscription(DiagnosticArray, '/diagnostics', diagnostics, 10)

    def reported_ignored():
        return any(value.key == 'events.intensity_ignored' and value.value == '3'
                   for array in list(diagnostics.messages) for status in array.status
                   for value in status.values)
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        for _ in range(3):
            rig.publisher.publish(msg)
        images = rig.images.wait_for(3, TIMEOUT)
        assert wait_until(reported_ignored, TIMEOUT), 'not counted on /diagnostics'
    assert len(images) == 3
    expected = bev_image(np.ascontiguousarray(points[:, :3]), rig.node.settings.grid)
    np.testing.assert_array_equal(image_to_array(images[-1]), expected)
    snapshot = rig.node.statistics.snapshot()
    assert snapshot['events'] == {'intensity_ignored': 3}
    assert snapshot['published'] == 3 and snapshot['dropped'] == 0
    assert wait_until(lambda: 'blue (intensity) channel left at 0' in ros_log_text(), TIMEOUT)


def ros_log_text():
    """What this process's rclpy loggers wrote to their file in ROS_LOG_DIR."""
    folder = Path(os.environ['ROS_LOG_DIR'])
    return ''.join(path.read_text(errors='replace')
                   for path in folder.glob(f'python_{os.getpid()}_*.log'))
