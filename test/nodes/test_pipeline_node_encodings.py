"""The pipeline node over real DDS (loopback) against the numpy references: intrinsics from P or
K (camera_info with K != P, and the runtime switch), ``invalid_depth``, 32FC1 and mono16 depth,
``bev.enable: false`` and the BEV image of a dense cloud."""
import random

import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter

from pointcloud_pipeline.ros.camera_messages import array_to_image, image_to_array
from reference_bev import reference_bev_points
from reference_depth import reference_points
from ros_helpers import spinning, wait_until
from test_pipeline_node import TIMEOUT, Rig

pytestmark = pytest.mark.ros

# K and P of a rectified camera that differ (P from cv2.getOptimalNewCameraMatrix, say)
K = [585.0, 0.0, 320.0, 0.0, 585.0, 240.0, 0.0, 0.0, 1.0]
P = [520.0, 0.0, 310.5, 0.0, 0.0, 530.0, 250.25, 0.0, 0.0, 0.0, 1.0, 0.0]
K_INTRINSICS = (585.0, 585.0, 320.0, 240.0)  # fx = K[0], fy = K[4], cx = K[2], cy = K[5]
P_INTRINSICS = (520.0, 530.0, 310.5, 250.25)  # fx = P[0], fy = P[5], cx = P[2], cy = P[6]
DEPTH_SCALE = 0.001  # the node's default: 16UC1 / mono16 in millimetres
MAX_RANGE = 20.0  # the node's default


@pytest.fixture(scope='module')
def depth_mm(shared_data):
    """A real 7-Scenes depth frame, uint16 millimetres, 640x480, with holes (0)."""
    import cv2
    path = shared_data / 'rgbd/7scenes_tsdf_fusion/frame-000000.depth.png'
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and np.count_nonzero(depth == 0) > 1000
    return depth


def cloud_points(cloud):
    """The x, y, z float32 columns of a node's cloud (point_step 16: x, y, z, padding/rgb) as
    (height, width, 3)."""
    assert cloud.point_step == 16 and not cloud.is_bigendian
    rows = np.frombuffer(bytes(cloud.data), np.float32).reshape(cloud.height, cloud.width, 4)
    return rows[..., :3]


def assert_cloud_is(cloud, expected):
    """``cloud`` holds exactly the reference points ``expected`` ((rows, cols, 4) or (N, 4))."""
    expected = expected.reshape(-1, expected.shape[-1]) if cloud.height == 1 else expected
    points = cloud_points(cloud).reshape(expected.shape[:-1] + (3,))
    np.testing.assert_array_equal(points, expected[..., :3])


def publish_depth(rig, pixels, encoding):
    """Publish a depth image with a stamp of its own (random nanoseconds: a message of another
    test process that happens to share the DDS domain cannot be taken for the answer)."""
    header = rig.header(nanosec=random.randrange(1, 10**9))
    rig.depth_pub.publish(array_to_image(pixels, encoding, header))
    return header


def received(collector, header):
    """The message of ``collector`` stamped like ``header`` (waits for it)."""
    def find():
        return next((m for m in list(collector.messages) if m.header.stamp == header.stamp),
                    None)
    message = wait_until(find, TIMEOUT)
    assert message is not None, f'nothing stamped {header.stamp} arrived'
    return message


def test_the_reference_tells_k_from_p(depth_mm):
    """The two intrinsics give different clouds, so the tests below can tell which was used."""
    from_k = reference_points(depth_mm, K_INTRINSICS, DEPTH_SCALE, max_range=MAX_RANGE)
    from_p = reference_points(depth_mm, P_INTRINSICS, DEPTH_SCALE, max_range=MAX_RANGE)
    valid = np.isfinite(from_k[..., 2])
    assert np.abs(from_k[..., 0] - from_p[..., 0])[valid].max() > 0.01
    assert np.abs(from_k[..., 1] - from_p[..., 1])[valid].max() > 0.01
    np.testing.assert_array_equal(from_k[..., 2], from_p[..., 2])


@pytest.mark.parametrize('use_projection_matrix,intrinsics', [
    (True, P_INTRINSICS), (False, K_INTRINSICS)])
def test_intrinsics_from_p_or_k(rclpy_context, depth_mm, use_projection_matrix, intrinsics):
    rig = Rig(rclpy_context, use_projection_matrix=use_projection_matrix)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info(k=K, p=P)
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        cloud = received(rig.points, publish_depth(rig, depth_mm, '16UC1'))
    # x = (u - cx) * z / fx, y = (v - cy) * z / fy with the chosen matrix's fx, fy, cx, cy
    assert_cloud_is(cloud, reference_points(depth_mm, intrinsics, DEPTH_SCALE,
                                            max_range=MAX_RANGE))
    u, v = 600, 400  # one pixel written out
    z = np.float32(depth_mm[v, u]) * np.float32(DEPTH_SCALE)
    fx, fy, cx, cy = intrinsics
    np.testing.assert_allclose(cloud_points(cloud)[v, u], [(u - cx) * z / fx,
                                                           (v - cy) * z / fy, z], rtol=1e-6)


def test_use_projection_matrix_switched_at_runtime(rclpy_context, depth_mm):
    rig = Rig(rclpy_context)
    client_node = Node('projection_client', context=rclpy_context)
    client = client_node.create_client(SetParameters, '/pointcloud_pipeline/set_parameters')

    def set_remotely(value):
        request = SetParameters.Request(parameters=[
            Parameter('use_projection_matrix', value=value).to_parameter_msg()])
        future = client.call_async(request)
        assert wait_until(future.done, TIMEOUT)
        assert future.result().results[0].successful

    clouds = []
    with spinning(rclpy_context, client_node, *rig.nodes):
        rig.connect()
        assert client.wait_for_service(timeout_sec=TIMEOUT)
        rig.send_info(k=K, p=P)  # sent once: the switch re-reads the last camera_info
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        for value in (None, False, True):
            if value is not None:
                set_remotely(value)
            clouds.append(received(rig.points, publish_depth(rig, depth_mm, '16UC1')))
    for cloud, intrinsics in zip(clouds, (P_INTRINSICS, K_INTRINSICS, P_INTRINSICS)):
        assert_cloud_is(cloud, reference_points(depth_mm, intrinsics, DEPTH_SCALE,
                                                max_range=MAX_RANGE))


@pytest.mark.parametrize('organized', [True, False])
def test_invalid_depth_becomes_points_at_that_range(rclpy_context, depth_mm, organized):
    rig = Rig(rclpy_context, invalid_depth=4.5, max_range=3.0, organized=organized)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info(k=K, p=P)
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        cloud = received(rig.points, publish_depth(rig, depth_mm, '16UC1'))
    expected = reference_points(depth_mm, P_INTRINSICS, DEPTH_SCALE, max_range=3.0,
                                invalid_depth=4.5, organized=organized)
    holes = depth_mm == 0
    if organized:
        np.testing.assert_array_equal(expected[..., 2][holes], np.float32(4.5))
        assert np.isnan(expected[..., 2][depth_mm > 3000]).all()  # beyond max_range: NaN
    else:
        assert expected.shape[0] == np.count_nonzero(holes | (depth_mm <= 3000))
    assert_cloud_is(cloud, expected)


def test_32fc1_depth_in_metres(rclpy_context, depth_mm):
    metres = depth_mm.astype(np.float32) * np.float32(DEPTH_SCALE)
    metres[depth_mm == 0] = np.nan  # holes of a float image: NaN, 0, -inf
    metres[:10, :10] = 0.0
    metres[10:20, :10] = -np.inf
    metres[20:30, :10] = -1.0
    rig = Rig(rclpy_context, depth_scale=0.5)  # depth_scale applies to integer depth only
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info(k=K, p=P)
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        cloud = received(rig.points, publish_depth(rig, metres, '32FC1'))
    expected = reference_points(metres, P_INTRINSICS, max_range=MAX_RANGE)
    assert np.isnan(expected[:30, :10, 2]).all()
    assert_cloud_is(cloud, expected)


def test_mono16_depth_is_read_like_16uc1(rclpy_context, depth_mm):
    rig = Rig(rclpy_context, depth_scale=0.002)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info(k=K, p=P)
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        cloud = received(rig.points, publish_depth(rig, depth_mm, 'mono16'))
    assert_cloud_is(cloud, reference_points(depth_mm, P_INTRINSICS, 0.002, max_range=MAX_RANGE))


def test_bev_disabled_publishes_no_image(rclpy_context, depth_mm):
    rig = Rig(rclpy_context, subscribe_bev=True, **{'bev.enable': False})
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_bev=True)  # a BEV subscriber is there, and is ignored
        rig.send_info(k=K, p=P)
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        cloud = received(rig.points, publish_depth(rig, depth_mm, '16UC1'))
        # published is counted at the end of the frame's callback, after a BEV would have been
        # made and published (and its latency recorded): once it is 1, none can come any more
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['published'] == 1, TIMEOUT)
    snapshot = rig.pipeline.statistics.snapshot()
    assert 'bev_latency_ms' not in snapshot and snapshot['latency_ms']['samples'] == 1
    assert len(rig.bev) == 0
    assert_cloud_is(cloud, reference_points(depth_mm, P_INTRINSICS, DEPTH_SCALE,
                                            max_range=MAX_RANGE))


def test_bev_disabled_and_no_cloud_subscriber_means_no_work(rclpy_context, depth_mm):
    rig = Rig(rclpy_context, subscribe_points=False, subscribe_bev=True,
              **{'bev.enable': False})
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_points=False, expect_bev=True)
        rig.send_info(k=K, p=P)
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        publish_depth(rig, depth_mm, '16UC1')
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['skipped'] == 1, TIMEOUT)
    snapshot = rig.pipeline.statistics.snapshot()
    assert snapshot['published'] == 0 and snapshot['dropped'] == 0 and len(rig.bev) == 0


def test_bev_image_of_a_dense_cloud(rclpy_context, depth_mm):
    rig = Rig(rclpy_context, subscribe_points=True, subscribe_bev=True, organized=False,
              decimation_x=2, **{'mount.height': 1.0, 'mount.pitch': 0.3,
                                 'bev.z_range': [-0.5, 2.5]})
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_bev=True)
        rig.send_info(k=K, p=P)
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        header = publish_depth(rig, depth_mm, '16UC1')
        image = received(rig.bev, header)
        cloud = received(rig.points, header)
    settings = rig.pipeline.settings
    points = reference_points(depth_mm, P_INTRINSICS, DEPTH_SCALE, max_range=MAX_RANGE,
                              decimation_x=2, organized=False)
    assert cloud.height == 1 and cloud.width == points.shape[0]
    assert_cloud_is(cloud, points)
    expected = reference_bev_points(points[:, :3], settings.bev_grid, transform=settings.mount)
    assert (image.encoding, image.height, image.width) == ('bgr8', 200, 200)
    assert np.count_nonzero(expected[..., 1]) > 1000
    np.testing.assert_array_equal(image_to_array(image), expected)
