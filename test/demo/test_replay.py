"""Recorded RGB-D sources: dataset folders, rosbag2 files, and the replay node."""
import json
import shutil

import cv2
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image

from optional import missing
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.demo.replay import (BagFrames, RgbdFolder, header_stamp_ns,
                                             parse_source, read_intrinsics, restamp_cdr,
                                             write_rgbd_bag)
from pointcloud_pipeline.ros.camera_messages import image_to_array

SEVEN_SCENES = 'rgbd/7scenes_tsdf_fusion'
REDWOOD = 'rgbd/redwood_livingroom1_synthetic_open3d'


def test_parse_source():
    assert parse_source('synthetic') == ('synthetic', None)
    kind, path = parse_source('rgbd-dir:/data/x')
    assert kind == 'rgbd-dir' and str(path) == '/data/x'
    assert parse_source('bag:run.mcap')[0] == 'bag'
    for bad in ('camera', 'bag:', 'rgbd-dir', 'usb:/dev/video0'):
        with pytest.raises(ValueError, match='unknown source'):
            parse_source(bad)


def test_seven_scenes_folder(shared_data):
    folder = RgbdFolder(shared_data / SEVEN_SCENES)
    assert len(folder) == 3
    assert folder.intrinsics == CameraIntrinsics(585.0, 585.0, 320.0, 240.0)
    frame = folder.read(0)
    assert frame.depth.dtype == np.uint16 and frame.depth.shape == (480, 640)
    assert frame.color.shape == (480, 640, 3)
    expected = cv2.imread(str(shared_data / SEVEN_SCENES / 'frame-000000.depth.png'),
                          cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(frame.depth, expected)


def test_redwood_folder_with_open3d_json_intrinsics(shared_data):
    folder = RgbdFolder(shared_data / REDWOOD)
    assert len(folder) == 5
    assert folder.intrinsics == CameraIntrinsics(525.0, 525.0, 319.5, 239.5)
    assert folder.frames[2][1].name == '00002.jpg'


def test_tum_layout_pairs_colour_by_nearest_timestamp(shared_data, tmp_path):
    (tmp_path / 'depth').mkdir()
    (tmp_path / 'rgb').mkdir()
    tum = shared_data / 'rgbd/tum_nyu_sun_open3d'
    shutil.copy(tum / 'TUM_depth.png', tmp_path / 'depth' / '1305031102.160407.png')
    shutil.copy(tum / 'TUM_depth.png', tmp_path / 'depth' / '1305031102.194330.png')
    shutil.copy(tum / 'TUM_color.png', tmp_path / 'rgb' / '1305031102.175304.png')
    with pytest.raises(ValueError, match='no intrinsics'):
        RgbdFolder(tmp_path)
    folder = RgbdFolder(tmp_path, intrinsics=(525.0, 525.0, 319.5, 239.5))
    assert [c.name if c else None for _, c in folder.frames] == [
        '1305031102.175304.png', '1305031102.175304.png']
    assert folder.read(1).color.shape == (480, 640, 3)


def test_unreadable_and_wrong_depth_files_are_named(shared_data, tmp_path):
    shutil.copy(shared_data / SEVEN_SCENES / 'camera-intrinsics.txt', tmp_path)
    (tmp_path / 'frame-000000.depth.png').write_bytes(b'not a png')
    shutil.copy(shared_data / SEVEN_SCENES / 'frame-000000.color.jpg',
                tmp_path / 'frame-000001.depth.png')  # 8-bit colour, not depth
    folder = RgbdFolder(tmp_path)
    with pytest.raises(ValueError, match='frame-000000.depth.png: not a readable image'):
        folder.read(0)
    with pytest.raises(ValueError, match='expected a 16-bit single-channel'):
        folder.read(1)


def test_intrinsics_errors(tmp_path):
    (tmp_path / 'camera-intrinsics.txt').write_text('1 2 3\n')
    with pytest.raises(ValueError, match='3x3'):
        read_intrinsics(tmp_path)
    (tmp_path / 'camera-intrinsics.txt').unlink()
    (tmp_path / 'cam.json').write_text(json.dumps({'intrinsic_matrix': [0] * 9}))
    with pytest.raises(ValueError, match='invalid intrinsics'):
        read_intrinsics(tmp_path)
    with pytest.raises(ValueError, match='no depth images'):
        RgbdFolder(tmp_path)


def test_restamp_cdr_shifts_the_header_stamp_only():
    info = CameraInfo(width=640, height=480)
    info.header.stamp.sec, info.header.stamp.nanosec = 10, 999_999_999
    info.header.frame_id = 'cam'
    raw = serialize_message(info)
    assert header_stamp_ns(raw) == 10_999_999_999
    moved = deserialize_message(restamp_cdr(raw, 2), CameraInfo)
    assert (moved.header.stamp.sec, moved.header.stamp.nanosec) == (11, 1)
    assert moved.header.frame_id == 'cam' and moved.width == 640
    with pytest.raises(ValueError, match='little-endian CDR'):
        restamp_cdr(b'\x00\x00' + raw[2:], 0)


@missing('rosbags')
@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_written_from_a_folder_reads_back(shared_data, tmp_path, storage):
    path = write_rgbd_bag(shared_data / SEVEN_SCENES, tmp_path / 'bag', storage=storage)
    assert path.suffix == ('.mcap' if storage == 'mcap' else '.db3')
    bag = BagFrames(path)
    assert (bag.depth_topic, bag.info_topic, bag.rgb_topic) == (
        '/camera/depth/image_rect', '/camera/depth/camera_info', '/camera/rgb/image_rect_color')
    messages = list(bag.messages())
    assert [role for role, _, _ in messages] == ['info', 'depth', 'rgb'] * 3
    depth = deserialize_message(messages[1][2], Image)
    np.testing.assert_array_equal(image_to_array(depth),
                                  RgbdFolder(shared_data / SEVEN_SCENES).read(0).depth)
    info = deserialize_message(messages[0][2], CameraInfo)
    assert info.k[0] == 585.0 and info.header.stamp == depth.header.stamp
    with pytest.raises(ValueError, match='not a sensor_msgs/msg/Image topic'):
        BagFrames(path, depth_topic='/camera/depth/camera_info')


def wait_for_every_subscription(replay, roles=('depth', 'info', 'rgb'), timeout=30.0):
    """Wait until the publishers of ``replay`` for ``roles`` are matched with a subscription
    (DDS discovery); done before the node spins, so that no frame is published to nobody."""
    from ros_helpers import wait_for_subscribers
    for role in roles:
        publisher = replay.publishers_by_role[role]
        assert wait_for_subscribers(publisher, timeout=timeout), f'{role}: no subscriber'


def stamp_ns(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


@pytest.mark.ros
def test_replay_node_publishes_a_folder(rclpy_context, shared_data):
    from pointcloud_pipeline.nodes.replay_node import ReplayNode
    from ros_helpers import Collector, spinning, wait_until

    replay = ReplayNode(context=rclpy_context, parameter_overrides=[
        Parameter('source', value=f'rgbd-dir:{shared_data / SEVEN_SCENES}'),
        Parameter('rate', value=20.0), Parameter('loop', value=False)])
    listener = Node('replay_listener', context=rclpy_context)
    depth, info, rgb = Collector(), Collector(), Collector()
    listener.create_subscription(Image, 'depth/image_rect', depth, 10)
    listener.create_subscription(CameraInfo, 'depth/camera_info', info, 10)
    listener.create_subscription(Image, 'rgb/image_rect_color', rgb, 10)
    wait_for_every_subscription(replay)  # the timer publishes only once the node spins
    with spinning(rclpy_context, replay, listener):
        assert wait_until(lambda: replay.finished, timeout=30)
        assert wait_until(lambda: min(len(depth), len(info), len(rgb)) >= 3, timeout=10)
    # reliable QoS, discovery done before the first frame: every frame arrives, in order
    assert replay.published == 3 and (len(depth), len(info), len(rgb)) == (3, 3, 3)
    folder = RgbdFolder(shared_data / SEVEN_SCENES)
    for index in range(3):
        frame = folder.read(index)
        np.testing.assert_array_equal(image_to_array(depth.messages[index]), frame.depth)
        assert rgb.messages[index].encoding == 'bgr8'
        np.testing.assert_array_equal(image_to_array(rgb.messages[index]), frame.color)
        assert info.messages[index].k[0] == 585.0 and info.messages[index].width == 640
        assert (info.messages[index].header.stamp == depth.messages[index].header.stamp ==
                rgb.messages[index].header.stamp)
    stamps = [stamp_ns(msg) for msg in depth.messages]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


@missing('rosbags')
@pytest.mark.ros
def test_replay_node_plays_a_bag_restamped(rclpy_context, shared_data, tmp_path):
    from pointcloud_pipeline.nodes.replay_node import ReplayNode
    from ros_helpers import Collector, spinning, wait_until

    path = write_rgbd_bag(shared_data / SEVEN_SCENES, tmp_path / 'bag', rate=10.0)
    listener = Node('bag_listener', context=rclpy_context)
    depth, info = Collector(), Collector()
    listener.create_subscription(Image, 'depth/image_rect', depth, 10)
    listener.create_subscription(CameraInfo, 'depth/camera_info', info, 10)
    replay = ReplayNode(context=rclpy_context, parameter_overrides=[
        Parameter('source', value=f'bag:{path}')])
    wait_for_every_subscription(replay, ('depth', 'info'))  # the first pass arrives whole
    with spinning(rclpy_context, replay, listener):
        assert wait_until(lambda: len(depth) >= 4 and len(info) >= 4, timeout=30)
        now_ns = listener.get_clock().now().nanoseconds
    stamps = [stamp_ns(m) for m in depth.messages]
    assert abs(now_ns - stamps[-1]) < 5 * 10**9  # restamped to the present, not 1970
    info_stamps = [stamp_ns(m) for m in info.messages]
    assert info_stamps[:3] == stamps[:3]  # CameraInfo and depth keep their common stamps
    # the first pass, frames 0, 1, 2: the recorded 10 Hz spacing is kept exactly (one offset)
    assert np.diff(stamps[:3]).tolist() == [10**8, 10**8]
    folder = RgbdFolder(shared_data / SEVEN_SCENES)
    for index in range(3):
        np.testing.assert_array_equal(image_to_array(depth.messages[index]),
                                      folder.read(index).depth)
