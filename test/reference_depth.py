"""Plain numpy reference of depth image -> point cloud (tests and benchmarks compare against it).

Same formulas and layout as :func:`pointcloud_pipeline.depth.depth_to_cloud`, written the
straightforward vectorised way: camera optical frame, metres,
``X = (u - cx) * Z / fx``, ``Y = (v - cy) * Z / fy`` at the original pixel (u, v).
Z is computed in float32 (``float32(value) * float32(depth_scale)``) and compared with the range
limits in float32, so the invalid masks are exactly those of the kernel; the ray factor
``(u - cx) / fx`` is computed in float64 per column and rounded to float32 once.
With a ray table (``rays``: (rows, columns, 3) float32 of the output grid) a point is
``rays * d`` in float32, d being the value the pinhole path calls Z. Intensity is the raw
value as float32 in the 4th slot (XYZI) or, with colour, in a 5th (XYZRGBI, 20 bytes).
"""
import math

import numpy as np


def pack_rgb(rgb):
    """(..., 3) uint8 r, g, b -> (...) uint32 0x00RRGGBB (the ROS/PCL packed colour)."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_rgb(packed):
    """(...) uint32 0x00RRGGBB -> (..., 3) uint8 r, g, b."""
    packed = np.asarray(packed, dtype=np.uint32)
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255],
                    axis=-1).astype(np.uint8)


def reference_points(depth, intrinsics, depth_scale=0.001, min_range=0.0, max_range=math.inf,
                     invalid_depth=0.0, decimation_x=1, decimation_y=1, organized=True,
                     rgb=None, intensity=None, rays=None):
    """Points as float32 rows of 4 (x, y, z, rgb bits / intensity / 0), or of 5 (x, y, z, rgb
    bits, intensity) with both rgb and intensity: (rows, columns, 4 or 5) organized, (N, 4 or
    5) dense (finite points in row-major pixel order).

    depth: H x W uint16 (units of ``depth_scale`` metres, 0 invalid) or float32 (metres,
    non-finite or <= 0 invalid). intrinsics: (fx, fy, cx, cy). rgb: optional H x W x 3 uint8
    r, g, b of the same size as depth. intensity: optional H x W uint8/uint16/float32.
    rays: optional (rows, columns, 3) float32 ray table of the output grid.
    """
    fx, fy, cx, cy = (float(value) for value in intrinsics)
    height, width = depth.shape
    sampled = depth[::decimation_y, ::decimation_x]
    if depth.dtype == np.uint16:
        z = sampled.astype(np.float32) * np.float32(depth_scale)
        sensor_valid = sampled != 0
    else:
        z = sampled.astype(np.float32)
        with np.errstate(invalid='ignore'):
            sensor_valid = np.isfinite(z) & (z > 0)
    with np.errstate(invalid='ignore'):
        kept = sensor_valid & (z >= np.float32(min_range)) & (z <= np.float32(max_range))
    z = np.where(kept, z, np.float32(np.nan))
    if invalid_depth > 0:
        z = np.where(sensor_valid, z, np.float32(invalid_depth))
    floats = 5 if rgb is not None and intensity is not None else 4
    points = np.empty(z.shape + (floats,), dtype=np.float32)
    if rays is None:
        x_ray = ((np.arange(0, width, decimation_x) - cx) / fx).astype(np.float32)
        y_ray = ((np.arange(0, height, decimation_y) - cy) / fy).astype(np.float32)
        np.multiply(x_ray[np.newaxis, :], z, out=points[..., 0])
        np.multiply(y_ray[:, np.newaxis], z, out=points[..., 1])
        points[..., 2] = z
    else:
        assert rays.shape == z.shape + (3,) and rays.dtype == np.float32
        np.multiply(rays, z[..., np.newaxis], out=points[..., :3])
        z = points[..., 2]
    points[..., 3] = 0
    if rgb is not None:
        points[..., 3] = pack_rgb(rgb[::decimation_y, ::decimation_x]).view(np.float32)
    if intensity is not None:
        points[..., floats - 1] = intensity[::decimation_y, ::decimation_x].astype(np.float32)
    if organized:
        return points
    return points[~np.isnan(z)]
