"""bev_node's ``bev/occupancy`` (nav_msgs/OccupancyGrid) over DDS: cells, layout, parameters."""
from nav_msgs.msg import OccupancyGrid
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from pointcloud_pipeline.bev import BevGrid
from pointcloud_pipeline.nodes.bev_node import BevNode
from pointcloud_pipeline.occupancy import (FREE, OCCUPIED, UNKNOWN, OccupancyBands,
                                           occupancy_grid)
from pointcloud_pipeline.ros.data_field import set_data
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


@pytest.fixture(scope='module')
def kitti_points(shared_data):
    return np.fromfile(shared_data / 'kitti' / 'velodyne' / '000000.bin',
                       dtype=np.float32).reshape(-1, 4)


def xyz_cloud(points, header):
    """A dense PointCloud2 of x, y, z float32 (point_step 12)."""
    points = np.ascontiguousarray(points[:, :3], dtype=np.float32)
    msg = PointCloud2(height=1, width=len(points), point_step=12, row_step=12 * len(points),
                      is_dense=True, is_bigendian=False, header=header)
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in (('x', 0), ('y', 4), ('z', 8))]
    set_data(msg, points)
    return msg


class Rig:
    """bev_node, a cloud source and subscriptions to the outputs named in ``subscribe``."""

    def __init__(self, context, subscribe=('bev/occupancy',), **parameters):
        parameters.setdefault('log_period', 0.0)
        self.node = BevNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in parameters.items()])
        self.source = Node('cloud_source', context=context)
        reliable = parameters.get('qos') == 'reliable'
        self.publisher = self.source.create_publisher(
            PointCloud2, 'points', RELIABLE if reliable else QoSProfile(depth=5))
        self.grids, self.images = Collector(), Collector()
        qos = RELIABLE if reliable else BEST_EFFORT
        if 'bev/occupancy' in subscribe:
            self.source.create_subscription(OccupancyGrid, 'bev/occupancy', self.grids, qos)
        if 'bev/image' in subscribe:
            self.source.create_subscription(Image, 'bev/image', self.images, qos)

    def connect(self, occupancy=True):
        assert wait_for_subscribers(self.publisher, timeout=TIMEOUT)
        if occupancy:
            assert wait_until(lambda: self.node.occupancy_publisher.get_subscription_count(),
                              TIMEOUT)


def cells_of(msg):
    """The message's cells as a height x width int8 array (a view of msg.data)."""
    return np.frombuffer(msg.data, np.int8).reshape(msg.info.height, msg.info.width)


def test_kitti_scan_occupancy_equals_the_kernel_and_only_it_is_computed(rclpy_context,
                                                                       kitti_points):
    rig = Rig(rclpy_context)
    header = Header(frame_id='velodyne')
    header.stamp.sec, header.stamp.nanosec = 42, 7
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        rig.publisher.publish(xyz_cloud(kitti_points, header))
        msg = rig.grids.wait_for(1, TIMEOUT)[0]
    grid = BevGrid(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), resolution=0.1)
    bands = OccupancyBands(min_height=0.3, max_height=2.0, ground_tolerance=0.15,
                           ground_z=-1.73)
    expected = occupancy_grid(kitti_points, grid, bands)
    assert msg.header.frame_id == 'velodyne'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (42, 7)
    assert (msg.info.map_load_time.sec, msg.info.map_load_time.nanosec) == (42, 7)
    assert (msg.info.width, msg.info.height) == (800, 800)
    assert msg.info.resolution == pytest.approx(0.1, rel=1e-7)  # float32 field
    position, orientation = msg.info.origin.position, msg.info.origin.orientation
    assert (position.x, position.y, position.z) == (-40.0, -40.0, -1.73)
    assert (orientation.x, orientation.y, orientation.z, orientation.w) == (0, 0, 0, 1)
    np.testing.assert_array_equal(cells_of(msg), expected)
    assert min(np.count_nonzero(expected == v) for v in (FREE, OCCUPIED)) > 5000
    snapshot = rig.node.statistics.snapshot()
    assert snapshot['published'] == 1 and snapshot['skipped'] == 0


def test_a_wall_on_a_road_gives_the_known_cells(rclpy_context):
    """A lidar 1.73 m above a flat road (x 0..10 m, y -5..5 m) facing a wall at x = 10 m,
    y -2..2 m, 3 m tall; one point each in two far cells to check the row and column order."""
    step = 0.05
    x, y = np.meshgrid(np.arange(step / 2, 10.0, step), np.arange(-5.0 + step / 2, 5.0, step))
    road = np.stack([x.ravel(), y.ravel(), np.full(x.size, -1.73)], axis=1)
    y, z = np.meshgrid(np.arange(-2.0 + step / 2, 2.0, step), np.arange(-1.73, 1.27, 0.1))
    wall = np.stack([np.full(y.size, 10.2), y.ravel(), z.ravel()], axis=1)
    markers = np.array([[19.7, -9.7, -1.0],    # last column, first row: an obstacle
                        [0.2, 9.7, -1.7]])     # first column, last row: road
    points = np.concatenate([road, wall, markers]).astype(np.float32)
    rig = Rig(rclpy_context, qos='reliable', x_range=[0.0, 20.0], y_range=[-10.0, 10.0],
              resolution=0.5, frame_id='base_link')
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        rig.publisher.publish(xyz_cloud(points, Header(frame_id='lidar')))
        msg = rig.grids.wait_for(1, TIMEOUT)[0]
    assert msg.header.frame_id == 'base_link'
    assert (msg.info.width, msg.info.height, msg.info.resolution) == (40, 40, 0.5)
    cells = cells_of(msg)
    expected = np.full((40, 40), UNKNOWN, np.int8)
    expected[10:30, 0:20] = FREE            # rows: y from -10 m; columns: x from 0 m
    expected[16:24, 20] = OCCUPIED          # the wall at x = 10.2 m, y in [-2, 2)
    expected[0, 39] = OCCUPIED
    expected[39, 0] = FREE
    np.testing.assert_array_equal(cells, expected)
    flat = np.frombuffer(msg.data, np.int8)
    assert flat[0 * 40 + 39] == OCCUPIED and flat[39 * 40 + 0] == FREE


def test_enable_switch_laziness_and_parameter_checks(rclpy_context, kitti_points):
    points = kitti_points[:5000]
    with pytest.raises(ValueError, match='min_height'):
        BevNode(context=rclpy_context, parameter_overrides=[
            Parameter('occupancy.ground_tolerance', value=0.4)])
    rig = Rig(rclpy_context, qos='reliable', **{'occupancy.enable': False})
    with spinning(rclpy_context, rig.node, rig.source):
        rig.connect()
        rig.publisher.publish(xyz_cloud(points, Header(frame_id='velodyne')))
        assert wait_until(lambda: rig.node.statistics.snapshot()['skipped'] == 1, TIMEOUT)
        node = rig.node
        for name, value, reason in (('occupancy.ground_tolerance', 0.3, 'smaller than'),
                                    ('occupancy.max_height', 0.2, 'max_height'),
                                    ('occupancy.min_height', -1.0, 'range')):
            result = node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and reason in result.reason, (name, result.reason)
        assert node.occupancy.bands == OccupancyBands(min_height=0.3, max_height=2.0,
                                                      ground_tolerance=0.15, ground_z=-1.73)
        assert node.set_parameters_atomically([
            Parameter('occupancy.enable', value=True),
            Parameter('occupancy.min_height', value=0.5),
            Parameter('occupancy.ground_z', value=0.0)]).successful
        rig.publisher.publish(xyz_cloud(points, Header(frame_id='velodyne')))
        msg = rig.grids.wait_for(1, TIMEOUT)[0]
    assert msg.info.origin.position.z == 0.0
    expected = occupancy_grid(points, node.settings.grid, OccupancyBands(
        min_height=0.5, max_height=2.0, ground_tolerance=0.15, ground_z=0.0))
    np.testing.assert_array_equal(cells_of(msg), expected)
    assert node.statistics.snapshot()['published'] == 1
