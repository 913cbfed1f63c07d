"""The pipeline node over real DDS (loopback) with input that real drivers, bags and simulators
send: stamps that jump back, binned or cropped images (REP 104), an all-zero P, and a latched
camera_info delivered through two subscriptions (counted once)."""
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import Header

from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.nodes.pipeline_node import PipelineNode
from pointcloud_pipeline.ros.camera_messages import array_to_image, make_camera_info
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
NS = 1_000_000_000


def pinhole(fx, fy, cx, cy):
    """(K, P) row-major of a monocular pinhole camera."""
    return ([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
            [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


K, P = pinhole(585.0, 585.0, 320.0, 240.0)


class Rig:
    """A source node (depth, camera_info, colour publishers; points collector) and the node."""

    def __init__(self, context, info_qos=RELIABLE, **parameters):
        parameters.setdefault('log_period', 0.0)
        parameters.setdefault('qos', 'reliable')
        parameters.setdefault('queue_size', 20)
        self.pipeline = PipelineNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in parameters.items()])
        self.source = Node('robustness_source', context=context)
        self.depth_pub = self.source.create_publisher(Image, 'depth/image_rect', RELIABLE)
        self.info_pub = self.source.create_publisher(CameraInfo, 'depth/camera_info', info_qos)
        self.rgb_pub = self.source.create_publisher(Image, 'rgb/image_rect_color', RELIABLE)
        self.points = Collector()
        self.source.create_subscription(PointCloud2, 'points', self.points, RELIABLE)
        self.nodes = (self.pipeline, self.source)

    def connect(self, rgb=False):
        assert wait_for_subscribers(self.depth_pub, timeout=TIMEOUT)
        assert wait_for_subscribers(self.info_pub, timeout=TIMEOUT)
        if rgb:
            assert wait_for_subscribers(self.rgb_pub, timeout=TIMEOUT)
        assert wait_until(lambda: self.pipeline.points_publisher.get_subscription_count(),
                          TIMEOUT)

    def events(self):
        return self.pipeline.statistics.snapshot()['events']

    def send_info_and_wait(self, info):
        self.info_pub.publish(info)
        assert wait_until(lambda: self.pipeline._camera is not None, TIMEOUT)

    def send_pair(self, depth, color, stamp_ns):
        header = header_at(stamp_ns)
        self.rgb_pub.publish(array_to_image(color, 'bgr8', header))
        self.depth_pub.publish(array_to_image(depth, '16UC1', header))

    def send_depth(self, depth, stamp_ns=100 * NS):
        self.depth_pub.publish(array_to_image(depth, '16UC1', header_at(stamp_ns)))


def header_at(stamp_ns):
    header = Header(frame_id='camera_depth_optical_frame')
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), NS)
    return header


def cloud_bytes(depth, intrinsics, color=None):
    return depth_to_cloud(depth, intrinsics, depth_scale=0.001, max_range=20.0, color=color,
                          color_encoding='bgr8').data.tobytes()


# --- defect 1: colour pairing survives stamps going backwards --------------------------------

def test_pairing_resumes_after_the_stamps_jump_back(rclpy_context, seven_scenes_frame):
    """The reported case: 3 clouds, then a bag loop (stamps back by 90 s): 10 more pairs must
    give 10 more clouds, not 0."""
    depth, color = seven_scenes_frame
    rig = Rig(rclpy_context, use_rgb=True, sync_max_age=0.5)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(rgb=True)
        rig.send_info_and_wait(make_camera_info(Header(), 640, 480, K, P))
        stamps = [100 * NS + i * NS // 30 for i in range(3)] + \
            [10 * NS + i * NS // 30 for i in range(10)]
        for count, stamp in enumerate(stamps, 1):
            rig.send_pair(depth, color, stamp)
            assert wait_until(lambda: len(rig.points) == count, TIMEOUT), (
                count, rig.pipeline.statistics.snapshot())
    clouds = rig.points.messages
    assert [c.header.stamp.sec * NS + c.header.stamp.nanosec for c in clouds] == stamps
    intrinsics = CameraIntrinsics(P[0], P[5], P[2], P[6])
    assert bytes(clouds[-1].data) == cloud_bytes(depth, intrinsics, color)
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['events'].get('sync_reset') == 1
    assert snapshot['dropped'] == 0


def test_one_bogus_future_colour_stamp_does_not_stop_pairing(rclpy_context, seven_scenes_frame):
    depth, color = seven_scenes_frame
    rig = Rig(rclpy_context, use_rgb=True, sync_max_age=0.5)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(rgb=True)
        rig.send_info_and_wait(make_camera_info(Header(), 640, 480, K, P))
        for count in range(1, 4):
            rig.send_pair(depth, color, 100 * NS + count * NS // 30)
            assert wait_until(lambda: len(rig.points) == count, TIMEOUT)
        rig.rgb_pub.publish(array_to_image(color, 'bgr8', header_at(5000 * NS)))  # bogus
        assert wait_until(lambda: rig.pipeline.sync.pending()['color'] == 1, TIMEOUT)
        for count in range(4, 9):
            rig.send_pair(depth, color, 100 * NS + count * NS // 30)
            assert wait_until(lambda: len(rig.points) == count, TIMEOUT), (
                count, rig.pipeline.statistics.snapshot())
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['events'] == {'sync_reset': 1, 'rgb_without_depth': 1}
    assert snapshot['published'] == 8 and snapshot['dropped'] == 0


def test_ros_time_moving_backwards_restarts_the_pairing(rclpy_context, seven_scenes_frame):
    """With use_sim_time, /clock stepping back (a looping bag with --clock) resets the pairing
    even when the stamps go back by less than the stamp threshold (here 0.8 s < 1 s)."""
    depth, color = seven_scenes_frame
    rig = Rig(rclpy_context, use_rgb=True, sync_max_age=0.5, use_sim_time=True)
    clock_pub = rig.source.create_publisher(Clock, '/clock', 10)

    def set_clock(stamp_ns):
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(stamp_ns, NS)
        clock_pub.publish(clock)
        assert wait_until(lambda: rig.pipeline.get_clock().now().nanoseconds == stamp_ns,
                          TIMEOUT)

    with spinning(rclpy_context, *rig.nodes):
        rig.connect(rgb=True)
        assert wait_for_subscribers(clock_pub, timeout=TIMEOUT)
        set_clock(100 * NS)
        rig.send_info_and_wait(make_camera_info(Header(), 640, 480, K, P))
        for count, stamp in enumerate((100 * NS, 100 * NS + NS // 10), 1):
            rig.send_pair(depth, color, stamp)
            assert wait_until(lambda: len(rig.points) == count, TIMEOUT)
        set_clock(99 * NS + NS // 5)  # 0.8 s back
        assert wait_until(lambda: rig.events().get('sync_reset') == 1, TIMEOUT), rig.events()
        for count, stamp in enumerate((99 * NS + 3 * NS // 10, 99 * NS + 4 * NS // 10), 3):
            rig.send_pair(depth, color, stamp)
            assert wait_until(lambda: len(rig.points) == count, TIMEOUT), (
                count, rig.pipeline.statistics.snapshot())
    assert rig.pipeline.statistics.snapshot()['dropped'] == 0


# --- defect 2: binning, ROI and an all-zero P --------------------------------------------------

def camera_info_with(width, height, k, p, binning=(0, 0), roi=(0, 0, 0, 0)):
    info = make_camera_info(Header(frame_id='camera_depth_optical_frame'), width, height, k, p)
    info.binning_x, info.binning_y = binning
    x, y, roi_width, roi_height = roi
    info.roi = RegionOfInterest(x_offset=x, y_offset=y, width=roi_width, height=roi_height)
    return info


def image_geometry_intrinsics(fx, fy, cx, cy, binning, roi):
    """image_geometry's PinholeCameraModel formulas (REP 104): binning 0 is 1,
    fx / binning_x, (cx - roi.x_offset) / binning_x, same along y."""
    bx, by = max(1, binning[0]), max(1, binning[1])
    return CameraIntrinsics(fx / bx, fy / by, (cx - roi[0]) / bx, (cy - roi[1]) / by)


@pytest.mark.parametrize('full_size,full,binning,roi', [
    ((1280, 960), (1170.0, 1170.0, 640.0, 480.0), (2, 2), (0, 0, 0, 0)),      # binned
    ((800, 600), (585.0, 585.0, 400.0, 300.0), (0, 0), (80, 60, 640, 480)),   # cropped
    ((1600, 1200), (1170.0, 1172.0, 801.0, 598.0), (2, 2), (160, 120, 1280, 960)),  # both
])
def test_binned_or_cropped_images_use_the_reduced_intrinsics(rclpy_context, seven_scenes_frame, full_size,
                                                             full, binning, roi):
    depth, _ = seven_scenes_frame  # 640x480: the published (cropped and/or binned) image
    k, p = pinhole(*full)
    rig = Rig(rclpy_context)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info_and_wait(camera_info_with(*full_size, k, p, binning, roi))
        rig.send_depth(depth)
        cloud = rig.points.wait_for(1, TIMEOUT)[0]
    expected = image_geometry_intrinsics(*full, binning, roi)
    assert (cloud.width, cloud.height) == (640, 480)
    assert bytes(cloud.data) == cloud_bytes(depth, expected)
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['dropped'] == 0 and snapshot['events'] == {}


def test_invalid_roi_is_rejected_and_counted(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    rig = Rig(rclpy_context)
    k, p = pinhole(585.0, 585.0, 400.0, 300.0)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.info_pub.publish(camera_info_with(800, 600, k, p, roi=(200, 0, 640, 480)))  # > 800
        assert wait_until(lambda: rig.events().get('camera_info_rejected') == 1, TIMEOUT)
        rig.send_depth(depth)
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['dropped'] == 1, TIMEOUT)
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['dropped_by_reason'] == {'no_camera_info': 1}
    assert len(rig.points) == 0


def test_all_zero_p_falls_back_to_k_with_one_warning(rclpy_context, seven_scenes_frame, capfd):
    depth, _ = seven_scenes_frame
    rig = Rig(rclpy_context)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        for count in range(1, 4):
            rig.send_info_and_wait(camera_info_with(640, 480, K, [0.0] * 12))
            rig.send_depth(depth, stamp_ns=100 * NS + count)
            assert wait_until(lambda: len(rig.points) == count, TIMEOUT), \
                rig.pipeline.statistics.snapshot()
    assert bytes(rig.points.messages[-1].data) == cloud_bytes(
        depth, CameraIntrinsics(K[0], K[4], K[2], K[5]))
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['dropped'] == 0 and snapshot['events'] == {}
    assert capfd.readouterr().err.count('P is all zeros') == 1


# --- defect 8: camera_info counters are exact -------------------------------------------------

@pytest.mark.parametrize('info_qos', [RELIABLE, LATCHED], ids=['volatile', 'latched'])
def test_each_camera_info_is_counted_once(rclpy_context, seven_scenes_frame, info_qos):
    """Two rejectable camera_infos and one good one, sent once each, then depth frames: exactly
    2 rejections. A latched (transient-local) publisher reaches the node through both of its
    camera_info subscriptions, so every publication arrives twice: handled once."""
    depth, _ = seven_scenes_frame
    latched = info_qos is LATCHED
    rig = Rig(rclpy_context, info_qos=info_qos)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        if latched:  # the node's transient-local subscription exists too
            assert wait_until(lambda: rig.info_pub.get_subscription_count() == 2, TIMEOUT)
        infos = [make_camera_info(Header(), 0, 480, K, P),
                 make_camera_info(Header(), 640, 480, [0.0] * 9, [0.0] * 12),
                 make_camera_info(Header(), 640, 480, K, P)]
        for sent, info in enumerate(infos, 1):
            rig.info_pub.publish(info)  # one at a time: the latched history holds one message
            handled = (lambda: rig.pipeline._camera is not None) if sent == 3 else \
                (lambda: rig.events().get('camera_info_rejected', 0) >= sent)
            assert wait_until(handled, TIMEOUT), rig.events()
            if latched:
                assert wait_until(lambda: rig.events().get('camera_info_duplicate') == sent,
                                  TIMEOUT), rig.events()
        for count in range(1, 4):  # the cached camera_info is not re-judged per frame
            rig.send_depth(depth, stamp_ns=100 * NS + count)
            assert wait_until(lambda: len(rig.points) == count, TIMEOUT)
    events = rig.events()
    assert events.get('camera_info_rejected') == 2, events
    assert events.get('camera_info_duplicate', 0) == (3 if latched else 0)
    assert rig.pipeline.statistics.snapshot()['dropped'] == 0
