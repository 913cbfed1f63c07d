"""What the browser view draws, from a cloud's point bytes (ROS-free: numpy and OpenCV).

A cloud is ``num_points`` records of ``point_step`` bytes with float32 x, y, z (metres, in the
cloud's own frame, e.g. the camera optical frame: x right, y down, z forward) and optionally the
ROS/PCL packed colour ``rgb`` (4 bytes, ``0x00RRGGBB`` little-endian, stored as FLOAT32 or
UINT32). :func:`display_cloud` keeps the finite points, decimates them to a point budget
(evenly spaced, deterministic) and colours them by their rgb or by their height along an up
axis (OpenCV's turbo colour map).
"""
import ipaddress
from typing import NamedTuple

import cv2
import numpy as np

COLOR_MODES = ('rgb', 'height')
UP_AXES = {'+x': (1.0, 0.0, 0.0), '-x': (-1.0, 0.0, 0.0), '+y': (0.0, 1.0, 0.0),
           '-y': (0.0, -1.0, 0.0), '+z': (0.0, 0.0, 1.0), '-z': (0.0, 0.0, -1.0)}
"""Up axis name -> unit vector in the cloud's frame ('-y' for a camera optical frame, '+z' for a
z-up body or LiDAR frame)."""
HEIGHT_PERCENTILES = (2.0, 98.0)  # heights mapped to the ends of the colour map (per cloud)


class DisplayCloud(NamedTuple):
    """Points ready to draw."""

    points: np.ndarray   # (N, 3) float32 x, y, z, metres in the cloud's frame
    colors: np.ndarray   # (N, 3) uint8 red, green, blue
    finite_points: int   # finite points of the cloud before decimation (N <= budget of them)
    colored_by: str      # 'rgb' or 'height'


def decimation_indices(count, budget):
    """Indices of at most ``budget`` of ``count`` items, evenly spaced from index 0 (all of
    them when ``count <= budget``); the same for the same arguments (no randomness)."""
    count, budget = int(count), int(budget)
    if count < 0:
        raise ValueError(f'count must be >= 0, got {count}')
    if budget < 1:
        raise ValueError(f'budget must be >= 1 point, got {budget}')
    if count <= budget:
        return np.arange(count, dtype=np.int64)
    return np.arange(budget, dtype=np.int64) * count // budget


def height_colors(heights, height_range=None):
    """(N, 3) uint8 RGB of the turbo colour map for ``heights`` (metres, any shape flattened):
    blue at ``height_range[0]`` and below, red at ``height_range[1]`` and above; None: the
    2nd and 98th percentiles of ``heights``."""
    heights = np.asarray(heights, dtype=np.float32).reshape(-1)
    if heights.size == 0:
        return np.empty((0, 3), np.uint8)
    if height_range is None:
        low, high = np.percentile(heights, HEIGHT_PERCENTILES)
    else:
        low, high = (float(value) for value in height_range)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f'height_range must be finite [low, high] with low < high, got '
                             f'{height_range!r}')
    scale = 255.0 / max(float(high) - float(low), 1e-6)
    levels = np.clip((heights - np.float32(low)) * np.float32(scale), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_TURBO)
    return np.ascontiguousarray(bgr.reshape(-1, 3)[:, ::-1])


def _field(data, num_points, point_step, offset, dtype, name):
    if not 0 <= offset <= point_step - np.dtype(dtype).itemsize:
        raise ValueError(f'{name} at byte {offset} does not fit in point_step {point_step}')
    return np.ndarray((num_points,), dtype=dtype, buffer=data, offset=offset,
                      strides=(point_step,))


def display_cloud(buffer, num_points, point_step, x_offset, y_offset, z_offset,
                  rgb_offset=None, *, budget, color='rgb', up='-y', height_range=None):
    """The :class:`DisplayCloud` of a cloud's point bytes.

    buffer: bytes-like, at least ``num_points * point_step`` bytes (e.g. ``msg.data``; read in
        place, never written); x/y/z_offset: bytes of the float32 coordinates in a point;
    rgb_offset: byte of the packed colour, or None (then coloured by height).
    budget: most points kept (of the finite ones, :func:`decimation_indices`).
    color: 'rgb' (the packed colour when there is one, else height) or 'height'.
    up: the cloud frame's up axis (:data:`UP_AXES`), along which height is measured.
    height_range: (low, high) metres of the colour map; None: per cloud (:func:`height_colors`).
    """
    if color not in COLOR_MODES:
        raise ValueError(f'color must be one of {COLOR_MODES}, got {color!r}')
    if up not in UP_AXES:
        raise ValueError(f'up must be one of {tuple(UP_AXES)}, got {up!r}')
    num_points, point_step = int(num_points), int(point_step)
    if num_points < 0 or point_step < 1:
        raise ValueError(f'need num_points >= 0 and point_step >= 1, got {num_points}, '
                         f'{point_step}')
    data = np.frombuffer(buffer, dtype=np.uint8)
    if data.size < num_points * point_step:
        raise ValueError(f'{num_points} points of {point_step} bytes need '
                         f'{num_points * point_step} bytes, the buffer has {data.size}')
    coordinates = [_field(data, num_points, point_step, int(offset), np.float32, name)
                   for name, offset in (('x', x_offset), ('y', y_offset), ('z', z_offset))]
    finite = np.isfinite(coordinates[0])
    for values in coordinates[1:]:
        finite &= np.isfinite(values)
    kept = np.flatnonzero(finite)
    kept = kept[decimation_indices(kept.size, budget)]
    points = np.empty((kept.size, 3), np.float32)
    for axis, values in enumerate(coordinates):
        np.take(values, kept, out=points[:, axis])
    if color == 'rgb' and rgb_offset is not None:
        packed = _field(data, num_points, point_step, int(rgb_offset), np.uint32, 'rgb')[kept]
        # bytes b, g, r, 0 of 0x00RRGGBB (little-endian): red first read backwards from byte 2
        colors = np.ascontiguousarray(packed.view(np.uint8).reshape(-1, 4)[:, 2::-1])
        return DisplayCloud(points, colors, int(finite.sum()), 'rgb')
    axis = 'xyz'.index(up[1])  # the up axes are the frame's axes
    heights = points[:, axis] if up[0] == '+' else -points[:, axis]
    return DisplayCloud(points, height_colors(heights, height_range), int(finite.sum()),
                        'height')


def is_loopback(host):
    """True when ``host`` (a name or address to bind to) is this machine only: 'localhost'
    or an address in 127.0.0.0/8 or ::1."""
    if host.strip().lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip().strip('[]')).is_loopback
    except ValueError:
        return False


def host_warning(host, port):
    """The warning for serving on ``host`` (None for loopback): other machines can see it."""
    if is_loopback(host):
        return None
    return (f'serving on {host}, not loopback: anyone who can reach this machine on port '
            f'{port} sees the live cloud (no authentication); the default is 127.0.0.1')


def page_url(host, port):
    """The URL of the page served on ``host``:``port`` (IPv6 addresses in brackets)."""
    host = host.strip()
    if ':' in host and not host.startswith('['):
        host = f'[{host}]'
    return f'http://{host}:{int(port)}'


IMAGE_ENCODINGS = ('bgr8', 'rgb8', 'mono8')  # BEV images the view shows


def rgb_image(pixels, encoding):
    """(H, W, 3) contiguous uint8 red, green, blue of an image in one of
    :data:`IMAGE_ENCODINGS` ((H, W, 3) or, mono8, (H, W) uint8, any strides)."""
    if encoding == 'bgr8':
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB)
    if encoding == 'rgb8':
        return np.ascontiguousarray(pixels)
    if encoding == 'mono8':
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    raise ValueError(f'encoding must be one of {IMAGE_ENCODINGS}, got {encoding!r}')
