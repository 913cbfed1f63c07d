"""ROS 2 node: replay recorded RGB-D data (a dataset folder or a rosbag2) as a camera.

Publishes on the same topics as a camera driver / ``synthetic_camera_node``:
``depth/image_rect``, ``depth/camera_info`` and ``rgb/image_rect_color`` (when the source has
colour). ``source`` is ``rgbd-dir:PATH`` or ``bag:PATH`` (see replay.py for the layouts).

- Folders: one frame every 1/``rate`` s, 16UC1 depth as stored (device units), bgr8 colour,
  CameraInfo from the folder's intrinsics, all stamped with the publish time.
- Bags: the recorded messages with their recorded spacing (``rate`` ignored), published raw;
  with ``restamp`` their header stamps are shifted so the first message of each pass is "now"
  (depth/colour/info of one frame keep equal stamps, so pairing still works).
Unreadable frames are skipped with a throttled warning and counted. ``loop`` restarts at the end.
"""
import sys
import time

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ..demo.replay import BagFrames, RgbdFolder, header_stamp_ns, parse_source, restamp_cdr
from ..ros.camera_messages import array_to_image, make_camera_info
from ..ros.executable import run_node
from ..ros.parameters import ParameterDeclarer, QOS_CHOICES, qos_profile


class ReplayNode(Node):
    """Publishes a dataset folder or a rosbag2 as depth/camera_info/rgb topics."""

    def __init__(self, **kwargs):
        super().__init__('replay', **kwargs)
        params = ParameterDeclarer(self)
        source = params.declare('source', '', 'rgbd-dir:PATH or bag:PATH', read_only=True)
        rate = params.declare('rate', 10.0, 'folder frames per second, Hz',
                              value_range=(0.1, 240.0), read_only=True)
        self.loop = params.declare('loop', True, 'start again at the end', read_only=True)
        self.frame_id = params.declare('frame_id', 'camera_depth_optical_frame',
                                       'frame_id of folder frames', read_only=True)
        self.publish_rgb = params.declare('publish_rgb', True, 'publish colour when present',
                                          read_only=True)
        self.restamp = params.declare('restamp', True, 'bags: shift stamps to the present',
                                      read_only=True)
        topics = {role: params.declare(f'bag.{role}_topic', '',
                                       f'bags: {role} topic to replay (empty: choose)',
                                       read_only=True)
                  for role in ('depth', 'info', 'rgb')}
        qos = params.declare('qos', 'reliable', 'QoS of the published topics',
                             choices=QOS_CHOICES, read_only=True)
        kind, path = parse_source(source)
        if kind == 'synthetic':
            raise ValueError('replay_node replays rgbd-dir:PATH or bag:PATH sources; use '
                             'synthetic_camera_node for the synthetic camera')
        profile = qos_profile(qos, depth=5)
        self.publishers_by_role = {
            'depth': self.create_publisher(Image, 'depth/image_rect', profile),
            'info': self.create_publisher(CameraInfo, 'depth/camera_info', profile),
            'rgb': self.create_publisher(Image, 'rgb/image_rect_color', profile),
        }
        self.published = 0
        self.skipped = 0
        self.finished = False
        if kind == 'rgbd-dir':
            self.folder = RgbdFolder(path)
            self._index = 0
            self._timer = self.create_timer(1.0 / rate, self._publish_folder_frame)
            description = f'{len(self.folder)} frames from {path} at {rate:g} Hz'
        else:
            self.bag = BagFrames(path, topics['depth'] or None, topics['info'] or None,
                                 topics['rgb'] or None)
            self._pass = None
            self._timer = self.create_timer(0.005, self._publish_bag_messages)
            description = (f'{path}: {self.bag.depth_topic}, {self.bag.info_topic}'
                           f'{", " + self.bag.rgb_topic if self.bag.rgb_topic else ""}')
        self.get_logger().info(f'replaying {description}')

    def _publish_folder_frame(self):
        if self.finished:
            return
        if self._index >= len(self.folder):
            if not self.loop:
                self._finish()
                return
            self._index = 0
        index = self._index
        self._index += 1
        try:
            frame = self.folder.read(index)
        except ValueError as error:
            self.skipped += 1
            self.get_logger().warning(f'skipping frame: {error}', throttle_duration_sec=5.0)
            return
        header = Header(frame_id=self.frame_id, stamp=self.get_clock().now().to_msg())
        height, width = frame.depth.shape
        k = self.folder.intrinsics
        self.publishers_by_role['info'].publish(make_camera_info(
            header, width, height, k.camera_matrix(), k.projection_matrix()))
        self.publishers_by_role['depth'].publish(array_to_image(frame.depth, '16UC1', header))
        if self.publish_rgb and frame.color is not None:
            self.publishers_by_role['rgb'].publish(array_to_image(frame.color, 'bgr8', header))
        self.published += 1

    def _publish_bag_messages(self):
        """Publish every message whose recorded time has come (called every 5 ms)."""
        if self.finished:
            return
        if self._pass is None:
            self._pass = self._bag_pass()
        try:
            next(self._pass)
        except StopIteration:
            if not self.loop:
                self._finish()
            self._pass = None

    def _bag_pass(self):
        """Generator publishing one pass through the bag, yielding while it waits."""
        start_wall = time.monotonic()
        first_log_time = None
        offset_ns = None
        for role, log_time, raw in self.bag.messages():
            if role == 'rgb' and not self.publish_rgb:
                continue
            first_log_time = log_time if first_log_time is None else first_log_time
            while time.monotonic() - start_wall < (log_time - first_log_time) * 1e-9:
                yield
            try:
                if self.restamp:
                    if offset_ns is None:
                        offset_ns = self.get_clock().now().nanoseconds - header_stamp_ns(raw)
                    raw = restamp_cdr(raw, offset_ns)
                self.publishers_by_role[role].publish(raw)
                self.published += role == 'depth'
            except ValueError as error:
                self.skipped += 1
                self.get_logger().warning(f'skipping a {role} message: {error}',
                                          throttle_duration_sec=5.0)

    def _finish(self):
        self.finished = True
        self.get_logger().info(f'replay finished: {self.published} frames, '
                               f'{self.skipped} skipped')


def main(args=None):
    return run_node(ReplayNode, args)


if __name__ == '__main__':
    sys.exit(main())
