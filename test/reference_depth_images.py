"""Plain numpy references of pointcloud_pipeline.depth_images (the benchmark checks the kernels
against them, bit for bit, before timing).

Written the straightforward vectorised way from the documented rules, not from the kernels'
loops: uint16 depth is units of ``depth_scale`` metres (0: no reading), float32 depth is metres
(valid: finite and > 0).
"""
import math

import numpy as np


def units_to_metres(raw, depth_scale=0.001):
    """uint16 units -> float32 metres ``float32(raw) * float32(depth_scale)``, NaN for 0."""
    metres = raw.astype(np.float32) * np.float32(depth_scale)
    metres[raw == 0] = np.nan
    return metres


def metres_to_units(metres, depth_scale=0.001):
    """float32 metres -> uint16 units: ``metres / depth_scale`` (float64) rounded half to even,
    0 where that is not 1 .. 65535 (NaN, inf, <= 0, out of range)."""
    with np.errstate(invalid='ignore'):
        units = np.rint(metres.astype(np.float64) / depth_scale)
        in_range = (units >= 1) & (units <= 65535)
    return np.where(in_range, units, 0).astype(np.uint16)


def crop_foremost(depth, distance, depth_scale=0.001):
    """Pixels at most ``distance`` metres behind the nearest valid one kept, the others no
    reading (0 for uint16, NaN for float32). uint16: ``raw <= nearest + n`` with ``n`` the whole
    units in ``distance`` (rounded down, a quotient within 1e-9 of a whole number being it);
    float32: ``value <= nearest + distance`` compared in float64."""
    if depth.dtype == np.uint16:
        valid = depth > 0
        if not valid.any():
            return np.zeros_like(depth)
        units = distance / depth_scale
        whole = round(units) if abs(units - round(units)) <= 1e-9 * max(1.0, units) else \
            math.floor(units)
        limit = int(depth[valid].min()) + whole
        return np.where(valid & (depth.astype(np.int64) <= limit), depth, 0).astype(np.uint16)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return np.full_like(depth, np.nan)
    limit = float(depth[valid].min()) + distance
    return np.where(valid & (depth.astype(np.float64) <= limit), depth, np.float32(np.nan))


def disparity(depth, focal_length, baseline, depth_scale=0.001):
    """Disparity pixels ``f * T / Z`` as depth_image_proc computes it (f, T stored as float32,
    the constant ``f * T / unit`` in float32, one float32 division per pixel; unit =
    depth_scale for uint16, 1 for float32 metres), 0 where there is no reading. Returns
    (image, (x_offset, y_offset, width, height)) of the valid pixels' bounding box
    ((0, 0, 0, 0) when none)."""
    f, t = np.float32(focal_length), np.float32(baseline)
    if depth.dtype == np.uint16:
        valid = depth > 0
        unit = np.float32(depth_scale)
    else:
        valid = np.isfinite(depth) & (depth > 0)
        unit = np.float32(1)
    constant = np.float32(f * t) / unit
    with np.errstate(divide='ignore', invalid='ignore'):
        image = np.where(valid, constant / depth.astype(np.float32), np.float32(0))
    rows, columns = np.nonzero(valid)
    if rows.size == 0:
        return image, (0, 0, 0, 0)
    return image, (int(columns.min()), int(rows.min()), int(columns.max() - columns.min() + 1),
                   int(rows.max() - rows.min() + 1))
