"""register_node over real DDS (loopback): registered depth and camera_info, the chain
synthetic camera (unregistered) -> register_node -> pipeline_node giving a correctly coloured
cloud, bad frames dropped and counted, laziness, and config/register.yaml."""
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from scipy import ndimage
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
import yaml

from conftest import REPO_ROOT
from pointcloud_pipeline.demo.synthetic import UnregisteredCamera, depth_to_color_transform
from pointcloud_pipeline.nodes.pipeline_node import PipelineNode
from pointcloud_pipeline.nodes.register_node import RegisterNode
from pointcloud_pipeline.nodes.synthetic_camera_node import SyntheticCameraNode
from pointcloud_pipeline.register import register_depth
from pointcloud_pipeline.ros.camera_messages import array_to_image, image_to_array, \
    make_camera_info
from pointcloud_pipeline.ros.diagnostics import flatten
from ros_helpers import Collector, spinning, wait_for_subscribers, wait_until

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
EXTRINSIC = depth_to_color_transform().ravel().tolist()
ROS_BUILTIN = {'use_sim_time', 'start_type_description_service'}


def test_yaml_defaults_are_the_declared_defaults(rclpy_context):
    config = yaml.safe_load((REPO_ROOT / 'config' / 'register.yaml').read_text())
    documented = flatten(config['/**/register_node']['ros__parameters'])
    node = RegisterNode(context=rclpy_context)
    try:
        declared = {name: parameter.value for name, parameter in
                    node.get_parameters_by_prefix('').items() if name not in ROS_BUILTIN}
        assert documented == declared
    finally:
        node.destroy_node()


class Rig:
    """A source publishing depth + both camera_infos, the register node and collectors."""

    def __init__(self, context, subscribe=True, **parameters):
        parameters.setdefault('log_period', 0.0)
        parameters.setdefault('qos', 'reliable')
        self.node = RegisterNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in parameters.items()])
        self.source = Node('register_source', context=context)
        self.depth_pub = self.source.create_publisher(Image, 'depth/image_rect', RELIABLE)
        self.depth_info_pub = self.source.create_publisher(CameraInfo, 'depth/camera_info',
                                                           RELIABLE)
        self.rgb_info_pub = self.source.create_publisher(CameraInfo, 'rgb/camera_info', RELIABLE)
        self.images, self.infos = Collector(), Collector()
        if subscribe:
            self.source.create_subscription(Image, 'depth_registered/image_rect', self.images,
                                            RELIABLE)
            self.source.create_subscription(CameraInfo, 'depth_registered/camera_info',
                                            self.infos, RELIABLE)
        self.nodes = (self.node, self.source)
        self.camera = UnregisteredCamera(160, 120)
        self.stamp_sec = 100

    def connect(self, expect_subscriber=True):
        for publisher in (self.depth_pub, self.depth_info_pub, self.rgb_info_pub):
            assert wait_for_subscribers(publisher, timeout=TIMEOUT)
        if expect_subscriber:
            assert wait_until(lambda: self.node.image_publisher.get_subscription_count(),
                              TIMEOUT)

    def header(self, frame_id='camera_depth_optical_frame'):
        self.stamp_sec += 1
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = self.stamp_sec, 250
        return header

    def send_infos(self, depth=True, rgb=True):
        depth_k, color = self.camera.depth_intrinsics, self.camera.color
        if depth:
            self.depth_info_pub.publish(make_camera_info(
                self.header(), 160, 120, depth_k.camera_matrix(), depth_k.projection_matrix()))
        if rgb:
            self.rgb_info_pub.publish(make_camera_info(
                self.header('camera_color_optical_frame'), color.width, color.height,
                color.intrinsics.camera_matrix(), color.intrinsics.projection_matrix()))
        assert wait_until(lambda: (self.node.depth_info.model is not None or not depth) and
                          (self.node.rgb_info.model is not None or not rgb), TIMEOUT)

    def expected(self, depth, **kwargs):
        return register_depth(depth, self.camera.depth_intrinsics,
                              self.camera.color_intrinsics,
                              (self.camera.color.width, self.camera.color.height),
                              depth_to_color_transform(), **kwargs)


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16', '32FC1'])
def test_publishes_registered_depth_and_the_colour_camera_info(rclpy_context, encoding):
    rig = Rig(rclpy_context, depth_to_rgb_transform=EXTRINSIC, fill_upsampling_holes=True)
    depth = rig.camera.render(4.0)[0].depth_mm
    if encoding == '32FC1':
        depth = np.where(depth > 0, depth * 0.001, np.nan).astype(np.float32)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_infos()
        header = rig.header()
        rig.depth_pub.publish(array_to_image(depth, encoding, header))
        image = rig.images.wait_for(1, TIMEOUT)[0]
        info = rig.infos.wait_for(1, TIMEOUT)[0]
    assert (image.width, image.height, image.encoding) == (160, 90, encoding)
    assert image.header.stamp == header.stamp == info.header.stamp
    assert image.header.frame_id == info.header.frame_id == 'camera_color_optical_frame'
    np.testing.assert_array_equal(image_to_array(image),
                                  rig.expected(depth, fill_upsampling_holes=True))
    assert (info.width, info.height) == (160, 90)
    np.testing.assert_allclose(info.k, rig.camera.color_intrinsics.camera_matrix())
    np.testing.assert_allclose(info.p, rig.camera.color_intrinsics.projection_matrix())
    snapshot = rig.node.statistics.snapshot()
    assert snapshot['published'] == 1 and snapshot['dropped'] == 0


def test_bad_frames_are_dropped_counted_and_survived(rclpy_context):
    rig = Rig(rclpy_context)  # no depth_to_rgb_transform yet
    depth = rig.camera.render(2.0)[0].depth_mm

    def dropped():
        return rig.node.statistics.snapshot()['dropped_by_reason']

    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        assert wait_until(lambda: dropped() == {'no_camera_info': 1}, TIMEOUT)
        rig.send_infos(rgb=False)
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        assert wait_until(lambda: dropped().get('no_rgb_camera_info') == 1, TIMEOUT)
        rig.send_infos()
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        assert wait_until(lambda: dropped().get('no_transform') == 1, TIMEOUT)
        # a non-rigid transform is rejected and the running settings stay
        result = rig.node.set_parameters([Parameter('depth_to_rgb_transform',
                                                    value=[2.0] + EXTRINSIC[1:])])[0]
        assert not result.successful and 'orthonormal' in result.reason
        assert rig.node.set_parameters([Parameter('depth_to_rgb_transform',
                                                  value=EXTRINSIC)])[0].successful
        rig.depth_pub.publish(array_to_image(depth[:, :100], '16UC1', rig.header()))
        assert wait_until(lambda: dropped().get('camera_info_mismatch') == 1, TIMEOUT)
        bad = array_to_image(depth, '16UC1', rig.header())
        bad.encoding = 'rgb8'
        rig.depth_pub.publish(bad)
        assert wait_until(lambda: dropped().get('bad_encoding') == 1, TIMEOUT)
        bad_info = make_camera_info(rig.header(), 160, 90, [0.0] * 9, [0.0] * 12)
        rig.rgb_info_pub.publish(bad_info)
        assert wait_until(lambda: rig.node.statistics.snapshot()['events'].get(
            'rgb_camera_info_rejected') == 1, TIMEOUT)
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        image = rig.images.wait_for(1, TIMEOUT)[0]  # the last valid camera_info is kept
    np.testing.assert_array_equal(image_to_array(image), rig.expected(depth))
    assert dropped() == {'no_camera_info': 1, 'no_rgb_camera_info': 1, 'no_transform': 1,
                         'camera_info_mismatch': 1, 'bad_encoding': 1}


def test_extrinsic_from_tf_on_a_ros_install(rclpy_context):
    """With tf2_ros (a ROS install) the extrinsic comes from TF: colour frame <- depth frame."""
    tf2_ros = pytest.importorskip(
        'tf2_ros', reason='tf2_ros is not on PyPI: runs on a ROS install (the bare path uses '
                          'depth_to_rgb_transform, tested above)')
    from geometry_msgs.msg import TransformStamped
    from scipy.spatial.transform import Rotation
    rig = Rig(rclpy_context)  # depth_to_rgb_transform not set: TF is the only source
    transform = depth_to_color_transform()
    static = TransformStamped()
    static.header.frame_id = 'camera_color_optical_frame'  # parent: p_parent = T p_child
    static.child_frame_id = 'camera_depth_optical_frame'
    static.transform.translation.x, static.transform.translation.y, \
        static.transform.translation.z = transform[:3, 3]
    q = Rotation.from_matrix(transform[:3, :3]).as_quat()  # x, y, z, w
    (static.transform.rotation.x, static.transform.rotation.y, static.transform.rotation.z,
     static.transform.rotation.w) = q
    broadcaster = tf2_ros.StaticTransformBroadcaster(rig.source)
    broadcaster.sendTransform(static)
    depth = rig.camera.render(3.0)[0].depth_mm
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_infos()
        image = None
        for _ in range(50):  # until the static transform has arrived
            rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
            if rig.images.wait_for(1, 0.2):
                image = rig.images.messages[0]
                break
    assert image is not None, rig.node.statistics.snapshot()
    np.testing.assert_array_equal(image_to_array(image), rig.expected(depth))


def test_nothing_is_registered_without_subscribers(rclpy_context):
    rig = Rig(rclpy_context, subscribe=False, depth_to_rgb_transform=EXTRINSIC)
    depth = rig.camera.render(1.0)[0].depth_mm
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_subscriber=False)
        rig.send_infos()
        for _ in range(3):
            rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        assert wait_until(lambda: rig.node.statistics.snapshot()['skipped'] == 3, TIMEOUT)
    snapshot = rig.node.statistics.snapshot()
    assert snapshot['published'] == 0 and snapshot['received'] == 3


def test_chain_unregistered_camera_register_pipeline_colours_the_cloud(rclpy_context):
    """synthetic_camera (registered: false) -> register_node -> pipeline_node (use_rgb, its
    depth inputs remapped to depth_registered/*): each point carries the colour the colour
    camera sees at the point's pixel, and lies on the surface the colour camera sees there (its
    z is the colour camera's own depth), so it is coloured by the right surface."""
    camera = SyntheticCameraNode(context=rclpy_context, parameter_overrides=[
        Parameter('width', value=320), Parameter('height', value=240),
        Parameter('rate', value=10.0), Parameter('registered', value=False)])
    register = RegisterNode(context=rclpy_context, parameter_overrides=[
        Parameter('qos', value='reliable'), Parameter('log_period', value=0.0),
        Parameter('depth_to_rgb_transform', value=EXTRINSIC)])
    pipeline = PipelineNode(
        context=rclpy_context,
        cli_args=['--ros-args', '-r', 'depth/image_rect:=depth_registered/image_rect',
                  '-r', 'depth/camera_info:=depth_registered/camera_info'],
        parameter_overrides=[Parameter('use_rgb', value=True), Parameter('qos', value='reliable'),
                             Parameter('max_range', value=8.0), Parameter('log_period', value=0.0),
                             Parameter('bev.enable', value=False)])
    sink = Node('chain_sink', context=rclpy_context)
    clouds = Collector()
    sink.create_subscription(PointCloud2, 'points', clouds, RELIABLE)
    with spinning(rclpy_context, camera, register, pipeline, sink):
        assert clouds.wait_for(3, 60.0), (register.statistics.snapshot(),
                                          pipeline.statistics.snapshot())
    cloud = clouds.messages[-1]
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb']
    assert cloud.header.frame_id == 'camera_color_optical_frame'
    assert (cloud.width, cloud.height) == (320, 180)  # the colour camera's size
    stamp_ns = cloud.header.stamp.sec * 10**9 + cloud.header.stamp.nanosec
    _, color = camera.rig.render((stamp_ns - camera._start.nanoseconds) * 1e-9)
    points = np.frombuffer(bytes(cloud.data), np.uint8).reshape(180, 320, 16)
    z_mm = points[:, :, 8:12].copy().view(np.float32)[:, :, 0] * 1000.0
    rgb = points[:, :, 14:11:-1]  # 0x00RRGGBB little-endian: bytes 14, 13, 12 = r, g, b
    valid = np.isfinite(z_mm)
    assert valid.mean() > 0.7
    np.testing.assert_array_equal(rgb[valid], color.rgb[valid])
    truth = color.depth_mm.astype(np.float64)
    low, high = ndimage.minimum_filter(truth, 3), ndimage.maximum_filter(truth, 3)
    smooth = valid & (low > 0) & (high - low <= 0.02 * truth)
    error = np.abs(z_mm - truth)
    tolerance = 2.0 + 0.5 * (high - low)  # mm rounding + half a pixel of depth gradient
    print(f'chain: {smooth.mean():.1%} of the points compared')
    assert smooth.mean() > 0.5  # 320x180: depth edges and the wider colour view leave out
    assert (error[smooth] <= tolerance[smooth]).all()
    # without registration (the depth camera's own image at the colour size), many points
    # would lie on another surface than the colour they get
    depth_frame = camera.rig.depth.render((stamp_ns - camera._start.nanoseconds) * 1e-9)
    naive = ndimage.zoom(depth_frame.depth_mm.astype(np.float64), (180 / 240, 320 / 320),
                         order=0)
    assert np.mean(np.abs(naive - truth)[smooth] > tolerance[smooth]) > 0.2
