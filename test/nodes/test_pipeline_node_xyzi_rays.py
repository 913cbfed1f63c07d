"""The pipeline node as depth_image_proc's point_cloud_xyzi, _xyzrgb + intensity and _radial /
unrectified variants, over real DDS (loopback): the published bytes are the library's."""
import cv2
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointField
from std_msgs.msg import Header

from pointcloud_pipeline.bev import bev_image_from_buffer
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.rays import ray_table
from pointcloud_pipeline.ros.camera_messages import (array_to_image, image_to_array,
                                                     make_camera_info)
from ros_helpers import spinning, wait_for_subscribers, wait_until
from test_pipeline_node import K, TIMEOUT, Rig, expected_cloud

pytestmark = pytest.mark.ros

PLUMB_BOB = [0.12, -0.25, 0.001, -0.002, 0.08]


def intensity_rig(context, **parameters):
    """:class:`Rig` with an ``intensity/image_rect`` publisher (reliable QoS, deep queues)."""
    parameters.setdefault('qos', 'reliable')
    parameters.setdefault('queue_size', 20)
    rig = Rig(context, **parameters)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    rig.intensity_pub = rig.source.create_publisher(Image, 'intensity/image_rect', reliable)
    return rig


def publish_set(rig, depth, intensity=None, color=None, depth_encoding='16UC1'):
    """Depth and its partners with one stamp; partners first, so depth completes the set."""
    header = rig.header()
    if intensity is not None:
        encoding = {np.uint8: 'mono8', np.uint16: 'mono16', np.float32: '32FC1'}[
            intensity.dtype.type]
        rig.intensity_pub.publish(array_to_image(intensity, encoding,
                                                 Header(stamp=header.stamp, frame_id='ir')))
    if color is not None:
        rig.rgb_pub.publish(array_to_image(color, 'bgr8', Header(stamp=header.stamp)))
    rig.depth_pub.publish(array_to_image(depth, depth_encoding, header))
    return header


def fields_of(cloud):
    return [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields]


def test_xyzi_cloud_is_the_kernels_and_a_bad_intensity_frame_is_dropped(rclpy_context,
                                                                       seven_scenes_frame):
    depth, color = seven_scenes_frame
    infrared = cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)  # a real image standing in for IR
    rig = intensity_rig(rclpy_context, use_intensity=True)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        assert wait_for_subscribers(rig.intensity_pub, timeout=TIMEOUT)
        rig.send_info_and_wait()
        publish_set(rig, depth, infrared)
        first = rig.points.wait_for(1, TIMEOUT)[0]
        publish_set(rig, depth, infrared[:240, :320])  # not the depth size: dropped
        assert wait_until(lambda: rig.pipeline.statistics.snapshot()['dropped'] == 1, TIMEOUT)
        publish_set(rig, depth, infrared.astype(np.uint16) * 16)  # mono16 keeps working
        second = rig.points.wait_for(2, TIMEOUT)[1]
    assert fields_of(first) == [('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1),
                                ('z', 8, PointField.FLOAT32, 1),
                                ('intensity', 12, PointField.FLOAT32, 1)]
    assert first.point_step == 16
    assert bytes(first.data) == expected_cloud(depth, intensity=infrared).data.tobytes()
    expected = expected_cloud(depth, intensity=infrared.astype(np.uint16) * 16)
    assert bytes(second.data) == expected.data.tobytes()
    dropped = rig.pipeline.statistics.snapshot()['dropped_by_reason']
    assert dropped == {'intensity_size_mismatch': 1}


def test_xyzrgbi_cloud_and_the_bev_intensity_channel(rclpy_context, seven_scenes_frame):
    depth, color = seven_scenes_frame
    infrared = cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)
    rig = intensity_rig(rclpy_context, use_intensity=True, use_rgb=True, subscribe_bev=True,
                        **{'mount.height': 1.0})
    with spinning(rclpy_context, *rig.nodes):
        rig.connect(expect_bev=True)
        assert wait_for_subscribers(rig.intensity_pub, timeout=TIMEOUT)
        assert wait_for_subscribers(rig.rgb_pub, timeout=TIMEOUT)
        rig.send_info_and_wait()
        publish_set(rig, depth, infrared, color)
        cloud = rig.points.wait_for(1, TIMEOUT)[0]
        bev = rig.bev.wait_for(1, TIMEOUT)[0]
    assert [(name, offset) for name, offset, _, _ in fields_of(cloud)] == [
        ('x', 0), ('y', 4), ('z', 8), ('rgb', 12), ('intensity', 16)]
    assert (cloud.point_step, cloud.row_step) == (20, 640 * 20)
    expected = expected_cloud(depth, color, intensity=infrared)
    assert bytes(cloud.data) == expected.data.tobytes()
    settings = rig.pipeline.settings
    expected_bev = bev_image_from_buffer(expected.data, 20, 640 * 480, intensity_offset=16,
                                         grid=settings.bev_grid, transform=settings.mount)
    image = image_to_array(bev)
    assert np.array_equal(image, expected_bev)
    assert image[:, :, 0].any()  # blue = intensity, no longer always 0 for a camera cloud


def plane_range_image(intrinsics, width, height, z_metres):
    """float32 range along each pixel's ray of the plane z = ``z_metres`` (pinhole camera)."""
    u = (np.arange(width) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(height) - intrinsics.cy) / intrinsics.fy
    return (z_metres * np.sqrt(1.0 + u[np.newaxis, :] ** 2 + v[:, np.newaxis] ** 2)).astype(
        np.float32)


def test_radial_depth_of_a_plane_gives_the_plane(rclpy_context):
    intrinsics = CameraIntrinsics(K[0], K[4], K[2], K[5])
    ranges = plane_range_image(intrinsics, 640, 480, 2.5)
    rig = Rig(rclpy_context, depth_kind='radial')
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.send_info_and_wait()
        rig.depth_pub.publish(array_to_image(ranges, '32FC1', rig.header()))
        cloud = rig.points.wait_for(1, TIMEOUT)[0]
    xyz = np.frombuffer(bytes(cloud.data), np.float32).reshape(480, 640, 4)[:, :, :3]
    np.testing.assert_allclose(xyz[:, :, 2], 2.5, rtol=2e-6)
    pinhole = expected_cloud(np.full((480, 640), 2.5, np.float32)).xyz()
    np.testing.assert_allclose(xyz, pinhole, rtol=2e-6, atol=2e-6)


def test_unrectified_depth_uses_the_ray_table_of_k_and_d(rclpy_context, seven_scenes_frame):
    depth, _ = seven_scenes_frame
    p_rectified = [560.0, 0.0, 318.0, 0.0, 0.0, 560.0, 242.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    rig = Rig(rclpy_context, rectified=False, decimation_x=2)
    with spinning(rclpy_context, *rig.nodes):
        rig.connect()
        rig.info_pub.publish(make_camera_info(rig.header(), 640, 480, K, p_rectified,
                                              'plumb_bob', PLUMB_BOB))
        assert wait_until(lambda: rig.pipeline._camera is not None, TIMEOUT)
        rig.depth_pub.publish(array_to_image(depth, '16UC1', rig.header()))
        cloud = rig.points.wait_for(1, TIMEOUT)[0]
    intrinsics = CameraIntrinsics(K[0], K[4], K[2], K[5])  # K, not P: the image is raw
    rays = ray_table(intrinsics, 640, 480, depth_kind='z', rectified=False,
                     distortion_model='plumb_bob', distortion=tuple(PLUMB_BOB), decimation_x=2)
    expected = expected_cloud(depth, decimation_x=2, rays=rays)
    assert bytes(cloud.data) == expected.data.tobytes()
    pinhole = expected_cloud(depth, decimation_x=2)
    assert bytes(cloud.data) != pinhole.data.tobytes()  # the distortion did change the points
