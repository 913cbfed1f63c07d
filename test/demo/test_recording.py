"""Recorded outputs: atomic files, PLY readable by plyfile, and the recorder node over DDS."""
import json
import os

import cv2
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from optional import require

PlyData = require('plyfile').PlyData

from message_builders import point_fields
from pointcloud_pipeline.demo.recording import (finite_points, unpack_rgb, write_json, write_ply,
                                                write_png)
from pointcloud_pipeline.ros.camera_messages import array_to_image
from pointcloud_pipeline.ros.data_field import set_data  # noqa: E402


def test_ply_round_trip_with_colour(tmp_path):
    xyz = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    rgb = np.random.default_rng(2).integers(0, 256, (50, 3)).astype(np.uint8)
    write_ply(tmp_path / 'c.ply', xyz, rgb)
    vertex = PlyData.read(str(tmp_path / 'c.ply'))['vertex']
    np.testing.assert_array_equal(np.stack([vertex['x'], vertex['y'], vertex['z']], 1), xyz)
    np.testing.assert_array_equal(np.stack([vertex['red'], vertex['green'], vertex['blue']], 1),
                                  rgb)
    assert (tmp_path / 'c.ply').read_bytes().startswith(b'ply\nformat binary_little_endian')
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / 'c.ply').stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        write_ply(tmp_path / 'bad.ply', np.zeros((3, 3)), np.zeros((2, 3)))
    assert list(tmp_path.iterdir()) == []


def test_png_and_json(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    image[5, 7] = (1, 2, 3)
    write_png(tmp_path / 'b.png', image)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'b.png')), image)
    write_json(tmp_path / 's.json', {'a': [1, 2.5, None]})
    assert json.loads((tmp_path / 's.json').read_text()) == {'a': [1, 2.5, None]}


def test_finite_points_and_packed_colours():
    packed = np.array([0x00FF8001, 0x00010203, 0x00000000], np.uint32).view(np.float32)
    x = np.array([1.0, np.nan, 3.0], np.float32)
    xyz, rgb = finite_points(x, x, x, packed)
    np.testing.assert_array_equal(xyz, [[1, 1, 1], [3, 3, 3]])
    np.testing.assert_array_equal(rgb, [[255, 128, 1], [0, 0, 0]])
    np.testing.assert_array_equal(unpack_rgb(packed)[1], [1, 2, 3])


@pytest.mark.ros
def test_recorder_node_writes_the_last_frames(rclpy_context, tmp_path):
    from pointcloud_pipeline.nodes.recorder_node import RecorderNode
    from ros_helpers import spinning, wait_for_subscribers, wait_until

    recorder = RecorderNode(context=rclpy_context, parameter_overrides=[
        Parameter('duration', value=3.0), Parameter('output_dir', value=str(tmp_path))])
    source = Node('fake_pipeline', context=rclpy_context)
    points_pub = source.create_publisher(PointCloud2, 'points', 5)
    bev_pub = source.create_publisher(Image, 'bev/image', 5)
    points = np.array([[1, 2, 3, 0], [np.nan, 0, 0, 0], [4, 5, 6, 0]], np.float32)
    points[:, 3] = np.array([0x00102030, 0, 0x00FFFFFF], np.uint32).view(np.float32)
    cloud = PointCloud2(height=1, width=3, point_step=16, row_step=48, is_dense=False)
    cloud.fields = point_fields([PointField(name=n, offset=o, datatype=7, count=1)
                                 for n, o in (('x', 0), ('y', 4), ('z', 8), ('rgb', 12))])
    set_data(cloud, points.tobytes())
    bev = np.zeros((40, 30, 3), np.uint8)
    bev[10:12, 5] = 255
    with spinning(rclpy_context, recorder, source):
        assert wait_for_subscribers(points_pub, timeout=20)
        assert wait_for_subscribers(bev_pub, timeout=20)
        while not recorder.done:
            header = Header(frame_id='camera', stamp=source.get_clock().now().to_msg())
            cloud.header = header
            points_pub.publish(cloud)
            bev_pub.publish(array_to_image(bev, 'bgr8', header))
            wait_until(lambda: recorder.done, timeout=0.05)
    assert recorder.exit_code == 0
    vertex = PlyData.read(str(tmp_path / 'cloud.ply'))['vertex']
    np.testing.assert_array_equal(vertex['x'], [1, 4])
    np.testing.assert_array_equal(vertex['red'], [0x10, 0xFF])
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'bev.png')), bev)
    stats = json.loads((tmp_path / 'stats.json').read_text())
    assert stats['points']['received'] > 5 and stats['points']['rate_hz'] > 5
    assert stats['points']['finite_points'] == 2 and stats['points']['colored'] is True
    assert stats['bev']['occupied_cells'] == 2
    assert stats['points']['latency_ms']['p50'] < 1000
    assert stats['problems'] == []


@pytest.mark.ros
def test_recorder_fails_when_nothing_arrives(rclpy_context, tmp_path):
    from pointcloud_pipeline.nodes.recorder_node import RecorderNode
    from ros_helpers import spinning, wait_until

    recorder = RecorderNode(context=rclpy_context, parameter_overrides=[
        Parameter('duration', value=0.5), Parameter('output_dir', value=str(tmp_path))])
    with spinning(rclpy_context, recorder):
        assert wait_until(lambda: recorder.done, timeout=20)
    assert recorder.exit_code == 1
    assert 'no point cloud received on points' in recorder.stats['problems']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stats.json']
