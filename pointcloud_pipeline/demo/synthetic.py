"""A synthetic depth camera: a procedural room rendered to depth (and colour) images.

The scene: a 10 m x 8 m room (world frame x east, y north, z up, metres, origin at the room's
centre on the floor) with 2.5 m walls, open at the top, a checkerboard floor and furniture-sized
boxes. A camera moves around an ellipse inside it, 0.8 m above the floor, tilted slightly down,
looking a little inward; the loop takes :data:`LOOP_SECONDS`.

Rendering is a ray cast per pixel in a Cython kernel (``_synthetic.pyx``, GIL released): about
2-4 ms for 640x480 depth + RGB on one core, so a 30 Hz camera costs a small share of a core and
needs no pre-rendered frames (chosen over a pre-rendered loop, which would hold ~45 MB per second
of VGA depth+RGB in memory and repeat visibly).

Depth is z-depth along the optical axis in millimetres (``16UC1``), 0 where nothing returns
within ``max_depth`` (the open ceiling, far walls). Images are in the camera optical frame
(x right, y down, z forward); the intrinsics are a pinhole camera with no distortion.

:class:`UnregisteredCamera` is the same room seen by a depth camera and a separate colour camera
(like a Kinect, an Azure Kinect or an Orbbec camera before registration): the colour camera sits
:data:`COLOR_OFFSET` to the right of the depth camera, turned by :data:`COLOR_ROLL_PITCH_YAW`,
with its own size and focal length; :func:`depth_to_color_transform` is the extrinsic that
``register_node`` needs.
"""
from dataclasses import dataclass, field
import math
from typing import NamedTuple

import numpy as np

from . import _synthetic
from ..camera import CameraIntrinsics
from ..transforms import camera_mount_transform, rotation_from_rpy

LOOP_SECONDS = 30.0
CAMERA_HEIGHT = 0.8  # metres above the floor
CAMERA_PITCH = 0.15  # radians, tilted down
# The unregistered rig: the colour camera's pose in the depth camera's optical frame (x right,
# y down, z forward): 25 mm to the right, rotated 0.01 rad about x, 0.02 rad about y.
COLOR_OFFSET = (0.025, 0.0, 0.0)  # metres
COLOR_ROLL_PITCH_YAW = (0.01, 0.02, 0.0)  # radians about the depth optical x, y, z axes
COLOR_FOCAL_FACTOR = 0.72  # colour fx = fy = this x colour width (depth: 0.82 x width)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box: corners in metres (world frame), colour RGB 0..255."""

    min_corner: tuple
    max_corner: tuple
    color: tuple


@dataclass(frozen=True)
class Scene:
    """Room bounds (min and max corner, metres; max z = wall height), surface colours and boxes."""

    room_min: tuple = (-5.0, -4.0, 0.0)
    room_max: tuple = (5.0, 4.0, 2.5)
    floor_color: tuple = (170, 170, 160)
    wall_colors: tuple = ((200, 120, 110), (110, 170, 200), (190, 190, 120), (140, 190, 140))
    boxes: tuple = field(default_factory=tuple)


def depth_mm_to_metres(depth_mm):
    """A 16UC1 millimetre depth image as 32FC1 metres, NaN where there is no return (REP 118)."""
    metres = depth_mm.astype(np.float32) * np.float32(0.001)
    metres[depth_mm == 0] = np.nan
    return metres


def default_scene():
    """The demo room: a table in the middle, shelves, crates, a sofa, a cabinet and a pillar."""
    return Scene(boxes=(
        Box((-0.6, -0.4, 0.0), (0.6, 0.4, 0.75), (150, 100, 60)),    # table
        Box((-4.8, -3.6, 0.0), (-4.3, -0.8, 1.8), (120, 90, 70)),    # shelves on the west wall
        Box((3.6, -3.5, 0.0), (4.4, -2.7, 0.8), (210, 160, 60)),     # crate
        Box((3.8, -2.5, 0.0), (4.6, -1.7, 0.5), (200, 140, 50)),     # low crate
        Box((-2.0, 3.0, 0.0), (0.5, 3.8, 0.9), (70, 90, 160)),       # sofa
        Box((1.0, -3.6, 0.0), (2.0, -2.6, 1.2), (90, 140, 90)),      # cabinet
        Box((3.3, 2.3, 0.0), (3.7, 2.7, 2.5), (220, 220, 220)),      # pillar
    ))


def camera_pose(seconds, height=CAMERA_HEIGHT, pitch=CAMERA_PITCH):
    """4x4 world <- optical transform of the camera ``seconds`` into its loop.

    The camera goes counter-clockwise around an ellipse (radii 3.0 m x 2.2 m) centred in the
    room, looking 0.4 rad left of its direction of travel (towards the middle of the room).
    """
    angle = 2.0 * math.pi * (seconds % LOOP_SECONDS) / LOOP_SECONDS
    x, y = 3.0 * math.cos(angle), 2.2 * math.sin(angle)
    heading = math.atan2(2.2 * math.cos(angle), -3.0 * math.sin(angle))
    return camera_mount_transform(height=height, pitch=pitch, yaw=heading + 0.4, x=x, y=y)


def depth_from_color_transform():
    """4x4 pose of the unregistered rig's colour camera in the depth optical frame
    (``p_depth = T @ p_color``)."""
    transform = np.eye(4)
    transform[:3, :3] = rotation_from_rpy(*COLOR_ROLL_PITCH_YAW)
    transform[:3, 3] = COLOR_OFFSET
    return transform


def depth_to_color_transform():
    """4x4 extrinsic of the unregistered rig, ``p_color = T @ p_depth`` (metres): what
    ``register_node``'s ``depth_to_rgb_transform`` (row-major, ``.ravel()``) or a TF
    ``camera_color_optical_frame`` <- ``camera_depth_optical_frame`` holds."""
    pose = depth_from_color_transform()
    transform = np.eye(4)
    transform[:3, :3] = pose[:3, :3].T
    transform[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return transform


def color_camera_size(depth_width):
    """(width, height) of the unregistered rig's colour image for a depth image
    ``depth_width`` wide: the same width at 16:9 (like most RGB-D colour streams)."""
    return int(depth_width), max(1, round(depth_width * 9 / 16))


class SyntheticFrame(NamedTuple):
    depth_mm: np.ndarray        # H x W uint16, millimetres, 0 = no return
    rgb: np.ndarray | None      # H x W x 3 uint8 (rgb8), None without colour
    world_from_optical: np.ndarray  # 4x4 camera pose


class SyntheticDepthCamera:
    """Renders :func:`default_scene` (or ``scene``) from :func:`camera_pose`.

    width, height: pixels. focal: fx = fy in pixels (default: 0.82 x width, a ~63 degree
    horizontal field of view like common RGB-D cameras). max_depth: metres; farther returns
    read 0. with_color: also render an RGB image. threads: OpenMP threads of the kernel.
    ``intrinsics``: the pinhole :class:`~pointcloud_pipeline.camera.CameraIntrinsics` (no
    distortion) for the camera_info.
    """

    def __init__(self, width=640, height=480, focal=None, max_depth=8.0, with_color=True,
                 scene=None, threads=1):
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f'image size must be positive, got {width}x{height}')
        if not max_depth > 0 or max_depth > 65.535:
            raise ValueError(f'max_depth must be in (0, 65.535] metres (16-bit millimetres), '
                             f'got {max_depth!r}')
        if int(threads) < 1:
            raise ValueError(f'threads must be >= 1, got {threads!r}')
        self.width, self.height = int(width), int(height)
        self.fx = self.fy = float(focal) if focal is not None else 0.82 * self.width
        if not self.fx > 0:
            raise ValueError(f'focal must be > 0 pixels, got {focal!r}')
        self.cx, self.cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        self.intrinsics = CameraIntrinsics(self.fx, self.fy, self.cx, self.cy)
        self.max_depth = float(max_depth)
        self.with_color = bool(with_color)
        self.threads = int(threads)
        self.scene = scene or default_scene()
        self._room = np.array(self.scene.room_min + self.scene.room_max, dtype=np.float64)
        self._boxes = np.array([b.min_corner + b.max_corner for b in self.scene.boxes],
                               dtype=np.float64).reshape(-1, 6)
        colors = [self.scene.floor_color, *self.scene.wall_colors,
                  *(b.color for b in self.scene.boxes)]
        self._colors = np.array(colors, dtype=np.uint8).reshape(-1, 3)
        if len(self._boxes) > 120:
            raise ValueError('at most 120 boxes (surface ids are 8-bit)')
        self._no_rgb = np.empty((0, 0, 3), dtype=np.uint8)
        self._hit_depth = np.empty((self.height, self.width), dtype=np.float32)
        self._hit_surface = np.empty((self.height, self.width, 2), dtype=np.int8)

    def render(self, seconds=0.0, depth_out=None, rgb_out=None, pose=None):
        """Render the view at ``seconds`` (or at ``pose``, a 4x4 world <- optical transform).

        depth_out / rgb_out: optional preallocated outputs (H x W uint16 / H x W x 3 uint8).
        """
        pose = camera_pose(seconds) if pose is None else np.ascontiguousarray(pose, np.float64)
        depth = self._output(depth_out, (self.height, self.width), np.uint16, 'depth_out')
        rgb = (self._output(rgb_out, (self.height, self.width, 3), np.uint8, 'rgb_out')
               if self.with_color else None)
        _synthetic.render(pose, self.fx, self.fy, self.cx, self.cy, self._room, self._boxes,
                          self._box_pixels(pose), self._colors, self.max_depth, depth,
                          rgb if rgb is not None else self._no_rgb, rgb is not None,
                          self._hit_depth, self._hit_surface, self.threads)
        return SyntheticFrame(depth, rgb, pose)

    def _box_pixels(self, pose):
        """Conservative image rectangle of every box (N x 4: row0, row1, col0, col1), so the
        kernel tests a ray against only the boxes that can cover its pixel."""
        count = len(self._boxes)
        rects = np.empty((count, 4), dtype=np.int32)
        if not count:
            return rects
        corner_choice = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)])
        lo, hi = self._boxes[:, None, :3], self._boxes[:, None, 3:]
        corners = np.where(corner_choice[None], hi, lo)  # N x 8 x 3, world
        rotation, origin = pose[:3, :3], pose[:3, 3]
        optical = (corners - origin) @ rotation  # = rotation.T @ (corner - origin)
        z = optical[..., 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            cols = self.cx + self.fx * optical[..., 0] / z
            rows = self.cy + self.fy * optical[..., 1] / z
        for index in range(count):
            if (z[index] <= 1e-6).all():  # entirely behind the camera
                rects[index] = (1, 0, 1, 0)
            elif (z[index] <= 1e-6).any():  # straddles the camera plane: test everywhere
                rects[index] = (0, self.height - 1, 0, self.width - 1)
            else:
                rects[index] = (
                    max(0, math.floor(rows[index].min()) - 1),
                    min(self.height - 1, math.ceil(rows[index].max()) + 1),
                    max(0, math.floor(cols[index].min()) - 1),
                    min(self.width - 1, math.ceil(cols[index].max()) + 1))
        return rects

    @staticmethod
    def _output(out, shape, dtype, name):
        if out is None:
            return np.empty(shape, dtype=dtype)
        if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f'{name} must be a C-contiguous {shape} {np.dtype(dtype)} array, '
                             f'got {out.shape} {out.dtype}')
        return out


class UnregisteredCamera:
    """A depth camera and a separate colour camera in the synthetic room (see the module
    docstring): depth rendered from :func:`camera_pose`, colour from that pose moved by
    :func:`depth_from_color_transform`.

    width, height: depth image pixels; the colour image is ``color_size`` (default
    :func:`color_camera_size`) with fx = fy = ``color_focal`` (default
    :data:`COLOR_FOCAL_FACTOR` x its width). ``depth`` and ``color`` are the two
    :class:`SyntheticDepthCamera`; ``color_intrinsics``, ``depth_intrinsics`` their intrinsics.
    """

    def __init__(self, width=640, height=480, focal=None, color_size=None, color_focal=None,
                 max_depth=8.0, scene=None, threads=1):
        color_width, color_height = color_size or color_camera_size(width)
        self.depth = SyntheticDepthCamera(width, height, focal=focal, max_depth=max_depth,
                                          with_color=False, scene=scene, threads=threads)
        self.color = SyntheticDepthCamera(
            color_width, color_height,
            focal=color_focal if color_focal is not None else COLOR_FOCAL_FACTOR * color_width,
            max_depth=max_depth, with_color=True, scene=self.depth.scene, threads=threads)
        self.depth_intrinsics = self.depth.intrinsics
        self.color_intrinsics = self.color.intrinsics
        self.depth_from_color = depth_from_color_transform()

    def render(self, seconds=0.0, depth_out=None, rgb_out=None, pose=None):
        """(depth frame, colour frame) at ``seconds`` (or with the depth camera at ``pose``, a
        4x4 world <- depth optical transform). The colour frame's ``depth_mm`` is the colour
        camera's own depth image (what registration should give) and its pose is
        ``pose @ depth_from_color``."""
        pose = camera_pose(seconds) if pose is None else np.ascontiguousarray(pose, np.float64)
        depth = self.depth.render(pose=pose, depth_out=depth_out)
        color = self.color.render(pose=pose @ self.depth_from_color, rgb_out=rgb_out)
        return depth, color
