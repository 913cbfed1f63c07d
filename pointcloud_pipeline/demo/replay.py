"""Recorded RGB-D data as a camera: folders of depth PNGs and rosbag2 files (no ROS needed).

Sources are named like the demo's ``--source`` option: ``synthetic``, ``rgbd-dir:PATH``,
``bag:PATH``.

Folders (:class:`RgbdFolder`), two common layouts:
- 7-Scenes / tsdf-fusion: ``frame-XXXXXX.depth.png`` [+ ``frame-XXXXXX.color.{png,jpg}``];
- TUM / Redwood: ``depth/*.png`` [+ ``rgb/`` or ``color/`` images with the same name, or for
  TUM the nearest timestamp name within 20 ms].
Depth PNGs are 16-bit in device units (7-Scenes and Redwood: mm; TUM: 1/5000 m, so the
pipeline needs ``depth_scale`` 0.0002). Intrinsics come from ``camera-intrinsics.txt`` (3x3 K),
an Open3D camera JSON (``intrinsic_matrix``, column-major) or are given explicitly.

Bags (:class:`BagFrames`): rosbag2 ``.mcap`` / ``.db3`` files or bag directories, read with the
``rosbags`` package; the raw CDR messages of the chosen depth / camera-info / colour topics are
replayed as they are (optionally restamped to the present, see :func:`restamp_cdr`).
"""
import bisect
import json
from pathlib import Path
import re
import struct
from typing import NamedTuple

import cv2
import numpy as np

from ..camera import CameraIntrinsics, checked_intrinsics

NS_PER_SECOND = 1_000_000_000
IMAGE_TYPE = 'sensor_msgs/msg/Image'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'


def parse_source(text):
    """``'synthetic'`` -> ('synthetic', None); ``'rgbd-dir:PATH'`` / ``'bag:PATH'`` -> (kind,
    Path). ValueError for anything else."""
    if text == 'synthetic':
        return 'synthetic', None
    kind, separator, path = text.partition(':')
    if separator and kind in ('rgbd-dir', 'bag') and path:
        return kind, Path(path).expanduser()
    raise ValueError(f'unknown source {text!r}: expected synthetic, rgbd-dir:PATH or bag:PATH')


def read_intrinsics(folder):
    """Intrinsics of a dataset folder: ``camera-intrinsics.txt`` (3x3 K, whitespace separated)
    or a JSON file with Open3D's ``intrinsic_matrix`` (9 numbers, column-major).
    ValueError when there is none or it is malformed."""
    folder = Path(folder)
    text_file = folder / 'camera-intrinsics.txt'
    if text_file.is_file():
        values = np.array(text_file.read_text().split(), dtype=np.float64)
        if values.size != 9:
            raise ValueError(f'{text_file}: expected a 3x3 matrix, got {values.size} numbers')
        k = values.reshape(3, 3)
    else:
        for json_file in sorted(folder.glob('*.json')):
            try:
                content = json.loads(json_file.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f'{json_file}: {error}') from error
            if isinstance(content, dict) and 'intrinsic_matrix' in content:
                values = np.array(content['intrinsic_matrix'], dtype=np.float64)
                if values.size != 9:
                    raise ValueError(f'{json_file}: intrinsic_matrix needs 9 numbers')
                k = values.reshape(3, 3).T  # Open3D stores it column-major
                break
        else:
            raise ValueError(f'no intrinsics in {folder}: add camera-intrinsics.txt (3x3 K) or '
                             'pass them explicitly')
    try:
        return checked_intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2])
    except ValueError as error:
        raise ValueError(f'invalid intrinsics in {folder}: {error}') from None


class RgbdFrame(NamedTuple):
    depth: np.ndarray          # H x W uint16, device units
    color: np.ndarray | None   # H x W x 3 uint8, BGR
    name: str


class RgbdFolder:
    """The depth (+ colour) frames of a dataset folder, read one at a time.

    intrinsics: a :class:`~pointcloud_pipeline.camera.CameraIntrinsics` (or fx, fy, cx, cy) to
    use instead of the folder's files.
    """

    def __init__(self, path, intrinsics=None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f'{self.path} is not a directory')
        self.frames = self._find_frames()
        if not self.frames:
            raise ValueError(f'no depth images in {self.path} (expected frame-*.depth.png or '
                             'depth/*.png)')
        self.intrinsics = (CameraIntrinsics(*map(float, intrinsics)) if intrinsics is not None
                           else read_intrinsics(self.path))

    def _find_frames(self):
        seven_scenes = sorted(self.path.glob('frame-*.depth.png'))
        if seven_scenes:
            frames = []
            for depth in seven_scenes:
                stem = depth.name[:-len('.depth.png')]
                color = next((c for c in (self.path / f'{stem}.color.png',
                                          self.path / f'{stem}.color.jpg') if c.is_file()), None)
                frames.append((depth, color))
            return frames
        depth_dir = self.path / 'depth'
        if not depth_dir.is_dir():
            return []
        color_dir = next((d for d in (self.path / 'rgb', self.path / 'color') if d.is_dir()),
                         None)
        colors = sorted(p for p in color_dir.iterdir() if p.suffix.lower() in
                        ('.png', '.jpg', '.jpeg')) if color_dir else []
        by_stem = {p.stem: p for p in colors}
        timestamps = _timestamps(colors)
        frames = []
        for depth in sorted(depth_dir.glob('*.png')):
            color = by_stem.get(depth.stem)
            if color is None and timestamps:
                color = _nearest(timestamps, depth.stem, tolerance=0.02)
            frames.append((depth, color))
        return frames

    def __len__(self):
        return len(self.frames)

    def read(self, index):
        """Frame ``index``; ValueError naming the file when an image is unreadable or the colour
        image's size differs from the depth image's."""
        depth_path, color_path = self.frames[index]
        depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise ValueError(f'{depth_path}: not a readable image')
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise ValueError(f'{depth_path}: expected a 16-bit single-channel depth PNG, got '
                             f'{depth.dtype} with shape {depth.shape}')
        color = None
        if color_path is not None:
            color = cv2.imread(str(color_path), cv2.IMREAD_COLOR)
            if color is None:
                raise ValueError(f'{color_path}: not a readable image')
        return RgbdFrame(depth, color, depth_path.name)


def _timestamps(paths):
    stamped = []
    for path in paths:
        if re.fullmatch(r'\d+(\.\d+)?', path.stem):
            stamped.append((float(path.stem), path))
    return sorted(stamped)


def _nearest(timestamps, stem, tolerance):
    if not re.fullmatch(r'\d+(\.\d+)?', stem):
        return None
    value = float(stem)
    keys = [t for t, _ in timestamps]
    index = bisect.bisect_left(keys, value)
    best = min((abs(keys[i] - value), timestamps[i][1])
               for i in (index - 1, index) if 0 <= i < len(keys))
    return best[1] if best[0] <= tolerance else None


def restamp_cdr(raw, offset_ns):
    """A copy of a serialized message that starts with a ``std_msgs/Header`` (Image,
    CameraInfo, PointCloud2, ...) with ``offset_ns`` added to its stamp. Little-endian CDR only
    (what ROS 2 writes); ValueError otherwise."""
    if len(raw) < 12 or raw[1] not in (0x01, 0x03, 0x07, 0x09, 0x0b):  # little-endian ids
        raise ValueError('not a little-endian CDR message with a header')
    sec, nanosec = struct.unpack_from('<iI', raw, 4)
    total = sec * NS_PER_SECOND + nanosec + int(offset_ns)
    if total < 0:
        raise ValueError('restamped time would be negative')
    restamped = bytearray(raw)
    struct.pack_into('<iI', restamped, 4, total // NS_PER_SECOND, total % NS_PER_SECOND)
    return bytes(restamped)


def header_stamp_ns(raw):
    """The header stamp (ns) of a little-endian CDR message that starts with a header."""
    sec, nanosec = struct.unpack_from('<iI', raw, 4)
    return sec * NS_PER_SECOND + nanosec


class BagFrames:
    """The depth, camera-info and colour messages of a rosbag2, in recording order.

    depth_topic / info_topic / rgb_topic: topics to replay; None picks them: the only Image
    topic with 'depth' in its name, the CameraInfo topic next to it (else the only one), and
    an Image topic with 'rgb', 'color' or 'colour' in its name (optional).
    """

    def __init__(self, path, depth_topic=None, info_topic=None, rgb_topic=None):
        from rosbags.rosbag2 import Reader
        self.path = Path(path)
        with Reader(self.path) as reader:
            self.topics = {c.topic: c.msgtype for c in reader.connections}
            self.duration_ns = reader.duration
        images = sorted(t for t, kind in self.topics.items() if kind == IMAGE_TYPE)
        infos = sorted(t for t, kind in self.topics.items() if kind == CAMERA_INFO_TYPE)
        self.depth_topic = depth_topic or self._pick(
            [t for t in images if 'depth' in t.lower()], 'depth Image')
        self.info_topic = info_topic or self._pick_info(infos)
        if rgb_topic is None:
            colored = [t for t in images if t != self.depth_topic and
                       re.search(r'rgb|colou?r', t.lower())]
            rgb_topic = colored[0] if len(colored) == 1 else None
        self.rgb_topic = rgb_topic or None
        for topic, kind in ((self.depth_topic, IMAGE_TYPE), (self.info_topic, CAMERA_INFO_TYPE),
                            (self.rgb_topic, IMAGE_TYPE)):
            if topic is not None and self.topics.get(topic) != kind:
                raise ValueError(f'{self.path}: topic {topic!r} is not a {kind} topic '
                                 f'(topics: {self._listing()})')
        self.roles = {self.depth_topic: 'depth', self.info_topic: 'info'}
        if self.rgb_topic:
            self.roles[self.rgb_topic] = 'rgb'

    def _listing(self):
        return ', '.join(f'{t} [{k}]' for t, k in sorted(self.topics.items())) or 'none'

    def _pick(self, candidates, what):
        if len(candidates) != 1:
            raise ValueError(f'{self.path}: cannot choose the {what} topic among '
                             f'{candidates or "no candidates"}; name it explicitly (topics: '
                             f'{self._listing()})')
        return candidates[0]

    def _pick_info(self, infos):
        namespace = self.depth_topic.rsplit('/', 1)[0]
        beside = [t for t in infos if t.rsplit('/', 1)[0] == namespace]
        return self._pick(beside if len(beside) == 1 else infos, 'CameraInfo')

    def messages(self):
        """Iterate ``(role, log_time_ns, raw_cdr_bytes)`` with role 'depth', 'info' or 'rgb'."""
        from rosbags.rosbag2 import Reader
        with Reader(self.path) as reader:
            connections = [c for c in reader.connections if c.topic in self.roles]
            for connection, timestamp, raw in reader.messages(connections=connections):
                yield self.roles[connection.topic], timestamp, bytes(raw)


def write_rgbd_bag(folder, bag_dir, storage='mcap', rate=10.0,
                   depth_topic='/camera/depth/image_rect',
                   info_topic='/camera/depth/camera_info', rgb_topic='/camera/rgb/image_rect_color',
                   frame_id='camera_depth_optical_frame'):
    """Write the frames of an :class:`RgbdFolder` as a rosbag2 directory ``bag_dir`` (a new
    directory; ``storage`` 'mcap' or 'sqlite3'), ``rate`` Hz apart: 16UC1 depth, CameraInfo and
    bgr8 colour with equal stamps. Returns the path of the written .mcap / .db3 file."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    Image = store.types[IMAGE_TYPE]
    CameraInfo = store.types[CAMERA_INFO_TYPE]
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    RegionOfInterest = store.types['sensor_msgs/msg/RegionOfInterest']
    source = RgbdFolder(folder)
    if storage not in ('mcap', 'sqlite3'):
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    target = Path(bag_dir)
    k = source.intrinsics
    with Writer(target, version=9, storage_plugin=plugin) as writer:
        depth_conn = writer.add_connection(depth_topic, IMAGE_TYPE, typestore=store)
        info_conn = writer.add_connection(info_topic, CAMERA_INFO_TYPE, typestore=store)
        rgb_conn = writer.add_connection(rgb_topic, IMAGE_TYPE, typestore=store)
        for index in range(len(source)):
            frame = source.read(index)
            stamp_ns = NS_PER_SECOND + round(index * NS_PER_SECOND / rate)
            header = Header(stamp=Time(sec=stamp_ns // NS_PER_SECOND,
                                       nanosec=stamp_ns % NS_PER_SECOND), frame_id=frame_id)
            height, width = frame.depth.shape
            info = CameraInfo(
                header=header, height=height, width=width, distortion_model='plumb_bob',
                d=np.zeros(5), k=np.array(k.camera_matrix()), r=np.eye(3).ravel(),
                p=np.array(k.projection_matrix()), binning_x=0, binning_y=0,
                roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                     do_rectify=False))
            depth = Image(header=header, height=height, width=width, encoding='16UC1',
                          is_bigendian=0, step=width * 2,
                          data=np.ascontiguousarray(frame.depth).view(np.uint8).ravel())
            writer.write(info_conn, stamp_ns, store.serialize_cdr(info, CAMERA_INFO_TYPE))
            writer.write(depth_conn, stamp_ns, store.serialize_cdr(depth, IMAGE_TYPE))
            if frame.color is not None:
                color = Image(header=header, height=frame.color.shape[0],
                              width=frame.color.shape[1], encoding='bgr8', is_bigendian=0,
                              step=frame.color.shape[1] * 3,
                              data=np.ascontiguousarray(frame.color).ravel())
                writer.write(rgb_conn, stamp_ns, store.serialize_cdr(color, IMAGE_TYPE))
    return next(target.glob('*.mcap' if storage == 'mcap' else '*.db3'))
